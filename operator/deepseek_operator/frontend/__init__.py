"""The OpenAI-compatible frontend of a serving pod: `/v1/chat/completions`, `/v1/completions` and `/v1/models`
in front of Triton's generate endpoint on the `tensorrt_llm` model, with DeepSeek-R1's reasoning kept apart.

Why ours and not Triton's own OpenAI frontend (`/opt/tritonserver/python/openai` in the image): that one starts
Triton in its own process and sends a TensorRT-LLM model the inputs of the removed `inflight_batcher_llm`
model (`stream`, `max_tokens`, `stop_words`, two-dimensional tensors); the `llmapi` model takes `streaming`,
`sampling_param_*` and one-dimensional tensors, so Triton rejects every request, and it has no reasoning parser.
`trtllm-serve` has both but is a server of its own that loads the model again. This frontend is a sidecar that
holds no GPU and no weights: it renders the chat template of the checkpoint, calls Triton on localhost, and
splits `<think>…</think>` into `reasoning_content`. Triton's metrics count its requests like any other.

It needs only its own image's packages (jinja2, prometheus_client; `requirements.txt`), held by an import
contract.
"""
