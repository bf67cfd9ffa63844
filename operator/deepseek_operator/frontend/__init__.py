"""The serving pod's front door: every HTTP API of the pod, on the pod's `http` port, counted as clients saw it.

Beside Triton (whose HTTP moves to 8080 on localhost; gRPC stays Triton's own 8001, not counted here) it serves
OpenAI's `/v1/chat/completions`, `/v1/completions` and `/v1/models`, forwards Triton's whole HTTP API (`/v2/...`:
generate, generate_stream event by event as it arrives, infer, metadata, health, repository) and answers the
pod's probes (`/health/live`, `/health/ready`); `/metrics` is on its own port (server.py has the routes,
metrics.py the names). It holds no GPU and no weights: it renders the checkpoint's chat template, counts tokens
with the checkpoint's tokenizer.json, and splits DeepSeek-R1's `<think>…</think>` into `reasoning_content`.

Why ours and not Triton's own OpenAI frontend (`/opt/tritonserver/python/openai`): that one starts Triton in its
own process and sends a TensorRT-LLM model the inputs of the removed `inflight_batcher_llm` model; the `llmapi`
model takes `streaming`, `sampling_param_*` and one-dimensional tensors, so Triton rejects every request, and it
has no reasoning parser. `trtllm-serve` has both but is a server of its own that loads the model again.

What the `llmapi` model of TensorRT-LLM 1.2 does, and what follows here (/work/research/trtllm-serving.md):
- It echoes the prompt before the answer unless `sampling_param_exclude_input_from_output` is true (upstream's
  helpers.py defaults it to false): every `/v1` request sends it true; for generate traffic, the echoed prompt is
  left out of the output token count when the text starts with it.
- Its tokenizer adds BOS (`SamplingParams.add_special_tokens` defaults to True) and R1's chat template already
  starts with `{{ bos_token }}`: one leading BOS text is stripped from a `/v1` prompt when tokenizer_config.json's
  `add_bos_token` is true (NVIDIA's deployment guide warns a double BOS hurts R1's accuracy).
- With `streaming: true` it sends the CUMULATIVE text, one response per `stream_interval` tokens (an engine
  setting, given here as --stream-interval), else one final response. Time to first token is what the client saw:
  with a stream_interval of 10 the first response, and so the first token a client gets, comes after 10 tokens.
  Inter-token latency is the gap between responses divided by the tokens each carries. A non-streamed answer's
  first token is its whole answer, and it has no inter-token latency.
- A failure comes as an error response that Triton may still wrap in a 200 (an error event in generate_stream, an
  `error` field in generate), and Triton's own statistics count it as a success: every one counts as a failure
  here, never as a plain 200.
- It reports no KV-cache use, so the Gateway API Inference Extension's KVCacheUtilization gauge
  (`nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}`) is not exported: there is no true value
  to give. Its waiting and running gauges are (metrics.py).

Mirroring (mirror.py): during a canary rollout the canary gets only its traffic weight of client requests, so its
analysis waits long for enough evidence, and a larger weight would show more clients an untested revision. So the
operator may order the STABLE revision's front doors (PUT /mirror on the metrics port, never the client port) to
send a `fraction` of their clients' generation requests (chat, completions, generate, generate_stream) to the
canary's Service as well: the client gets the stable answer and never waits for, nor sees, the canary's, which
is read and discarded. More canary evidence sooner, at no cost to clients. The order lives `ttl_seconds` unless
renewed, so mirroring ends by itself when the operator stops renewing it (a crash, the rollout's end). The
operator sizes `fraction` so that a canary replica carries no more load than a stable one: with S stable and C
canary replicas and a canary weight w, a canary replica gets (w + fraction*(1-w))/C of the traffic and a stable
one (1-w)/S, so fraction <= C/S - w/(1-w) (none when that is <= 0). A mirrored request carries
`x-deepseek-mirror-of: <the sender's revision>`: the canary serves it and counts it apart (mirrored="true" on the
front door's own series; dashboards and billing take mirrored="false", the analysis sums over both), and a pod of
that same revision (a target leading back to it, e.g. when no canary is left) answers 204 at once, untouched and
uncounted. A mirrored request is never mirrored again. The sender counts deepseek_frontend_mirrored_total{outcome}.

Drain: on SIGTERM (after the pod's 10 s preStop, 40 s before SIGKILL) it stops accepting, closes idle keep-alive
connections, cancels its mirrored requests in flight and starts no more, lets the requests in flight finish for at
most --drain-timeout (35 s), and exits 0.

It needs only its own image's packages (aiohttp, jinja2, prometheus_client, tokenizers; `requirements.txt`),
held by an import contract. The tests' and the benchmark's stand-in for Triton is tests/fake_triton.py.
"""
