"""What the frontend counts, on its own registry (served on --metrics-port only), and the per-request tracker.

Every series carries the served `model` and the pod's `revision`; the frontend's own ones also carry `api`:
chat | completions (OpenAI), generate | generate_stream | infer (Triton's inference routes), other (every other
`/v2/...` route and `/v1/models`), and `mirrored`: "false" for a client's request, "true" for one that another
revision's front door mirrored here (it carries `x-deepseek-mirror-of`; mirror.py). Both exist from the start.
Dashboards and billing take `mirrored="false"` (what clients got); a canary analysis sums over both (the mirrored
requests are the extra evidence they are sent for). `/health/*` and `/metrics` are not counted, nor a mirrored
request that came back to its own revision (answered 204 at once).

    deepseek_frontend_requests_total{code}                   every API: answered, by the HTTP status sent
    deepseek_frontend_request_failures_total{reason}         every API: http_4xx | http_5xx | error_in_200 |
                                                             engine_error
    deepseek_frontend_request_duration_seconds               every API: arrival to last byte
    deepseek_frontend_requests_in_flight                     every API (the autoscaler's inFlightRequests)
    deepseek_frontend_time_to_first_token_seconds            generating APIs: to the first generated text sent
    deepseek_frontend_inter_token_latency_seconds            generating APIs, streamed: gap / tokens per response
    deepseek_frontend_prompt_tokens_total                    generating APIs: the prompt as the engine gets it
    deepseek_frontend_output_tokens_total                    generating APIs: the generated text, echo left out
    deepseek_frontend_requests_waiting_first_token           generating APIs
    nv_trt_llm_request_metrics{request_type=waiting|scheduled}  generating APIs, together (below)
    deepseek_frontend_mirrored_total{outcome}               mirroring (no api, no mirrored label), below

What each API path counts:
- chat, completions: all of the above. The prompt is the rendered one without the stripped BOS, plus the BOS the
  engine adds; a request refused before the engine (a 400 for a field, context_length_exceeded) counts no token.
  An engine failure before the first response is a 5xx; after it, OpenAI's error event ends the 200 stream and
  counts as error_in_200.
- generate, generate_stream: the same, read from Triton's answer as it passes through unchanged: the prompt from
  `text_input`, the output from the final cumulative `text_output` less an echoed prompt, error events or an
  `error` field inside a 200 as error_in_200, the engine's failure in Triton's 400 as engine_error.
- infer: requests, failures by status (the engine's failure in a 400 as engine_error), duration, in flight; its
  tensors (binary ones too) pass through unread.
- other: requests, failures by status, duration, in flight.
A client that goes away mid-answer is counted as code 499 and not as a failure.

Mirroring, on the SENDING pod (mirror.py): deepseek_frontend_mirrored_total{model, revision, outcome}, one outcome
per request chosen for mirroring: `sent` (the target answered, whatever its status, and its body was read to the
end and discarded), `dropped` (64 mirrored requests were already in flight: never sent), `failed` (no answer: the
target unreachable, the 300 s timeout, a cut answer, or cancelled by the drain). The RECEIVING pod counts what it
served in its own series above with mirrored="true".

The two gauges that the Gateway API Inference Extension's endpoint picker reads from a Triton TensorRT-LLM pod are
exported under the names its mapping gives that engine:

    nv_trt_llm_request_metrics{request_type="waiting"}    TotalQueuedRequests
    nv_trt_llm_request_metrics{request_type="scheduled"}  TotalRunningRequests

(kubernetes-sigs/gateway-api-inference-extension docs/proposals/003-model-server-protocol/README.md at commit
84436a96b9e6ce2b59ddacd3d04c31b4fbd442de; the picker's built-in "triton-tensorrt-llm" engine config in
llm-d/llm-d-router pkg/epp/framework/plugins/datalayer/extractor/metrics/factories.go at commit
683100dc9f29744f61209af5d42336f15d228bdc; a spec's labels must be a subset of the series' labels, and the picker
takes one matching series: gateway-api-inference-extension pkg/epp/backend/metrics/metrics.go `labelsMatch` at
commit 66e0376cb3046d487f190fc702cd28646b697bc1 — so each request_type is one series per pod here.) The `llmapi`
model exports no `nv_trt_llm_*` family itself (only the removed `inflight_batcher_llm` C++ backend did), so these
names collide with nothing on Triton's own :8002. They are the frontend's view: `waiting` is the generation
requests (chat, completions, generate, generate_stream) that have not yet had their first token, `scheduled` those
that have and are still answering, mirrored ones included (they are load on this pod's engine, and the picker
must see it: these gauges have no `mirrored` label); the engine's own queue is not visible from here. The third
gauge of that mapping, `nv_trt_llm_kv_cache_block_metrics{kv_cache_block_type="fraction"}` (KVCacheUtilization), is NOT
exported: the `llmapi` model reports no KV-cache use (only per-request `kv_cache_*` perf outputs when asked), and
a made-up value would steer the picker wrongly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

APIS = ("chat", "completions", "generate", "generate_stream", "infer", "other")
GENERATING = frozenset({"chat", "completions", "generate", "generate_stream"})
MIRROR_OUTCOMES = ("sent", "dropped", "failed")

# Failure reasons: an HTTP 4xx or 5xx, an error carried inside a 200 (an error event in a stream, an `error` field
# in a generate answer), or the engine's failure that Triton answers with a 400 (engine_error: the llmapi model
# reports every failure of generation as "Error generating request: ...", which tritonserver's generate and infer
# endpoints send with status 400; the client's request was fine). A client that went away mid-answer is counted
# as code 499 and not as a failure.
CLIENT_ERROR, SERVER_ERROR, ERROR_IN_200, ENGINE_ERROR = "http_4xx", "http_5xx", "error_in_200", "engine_error"
ENGINE_ERROR_PREFIX = "Error generating request"  # llmapi/tensorrt_llm/1/model.py `_execute_single_request`
CLIENT_CLOSED = 499

# Fine where latency objectives are set (an analysis counts a request slow above the first bound at or over its
# objective): an objective of 0.2 s is judged at 0.2 s, not 0.25.
TTFT_BUCKETS = (.01, .025, .05, .075, .1, .15, .2, .25, .3, .4, .5, .75, 1, 1.5, 2, 2.5, 3, 5, 7.5, 10, 15, 30, 60, 120)
ITL_BUCKETS = (.001, .0025, .005, .01, .02, .03, .04, .05, .075, .1, .15, .2, .32, .64, 1.28, 2.56)
DURATION_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)


class ApiStats:
    """One API's metric children for client or mirrored requests, bound once (no label lookups per request), and
    its live counts."""

    def __init__(self, metrics: Metrics, api: str, mirrored: bool = False) -> None:
        labels = (metrics.model, metrics.revision, api, "true" if mirrored else "false")
        self.api, self.mirrored = api, mirrored
        self._requests, self._failures = metrics.requests, metrics.failures
        self._labels = labels
        # Series that exist from the start (at 0), so that rates and ratios have them before the first request.
        self._by_code: dict[int, Any] = {200: metrics.requests.labels(*labels, "200")}
        self._by_reason: dict[str, Any] = {r: metrics.failures.labels(*labels, r)
                                           for r in (CLIENT_ERROR, SERVER_ERROR, ERROR_IN_200, ENGINE_ERROR)}
        self.duration = metrics.duration.labels(*labels)
        self.ttft = metrics.ttft.labels(*labels)
        self.itl = metrics.itl.labels(*labels)
        self.prompt_tokens = metrics.prompt_tokens.labels(*labels)
        self.output_tokens = metrics.output_tokens.labels(*labels)
        self.in_flight = 0
        self.waiting = 0  # generation requests without their first token yet
        self.running = 0  # generation requests past their first token
        metrics.in_flight.labels(*labels).set_function(lambda: self.in_flight)
        if api in GENERATING:
            metrics.waiting_first_token.labels(*labels).set_function(lambda: self.waiting)

    def answered(self, code: int, failure: str | None) -> None:
        child = self._by_code.get(code)
        if child is None:
            child = self._by_code[code] = self._requests.labels(*self._labels, str(code))
        child.inc()
        if failure is not None:
            reason = self._by_reason.get(failure)
            if reason is None:
                reason = self._by_reason[failure] = self._failures.labels(*self._labels, failure)
            reason.inc()


class Metrics:
    def __init__(self, model: str, revision: str) -> None:
        self.model, self.revision = model, revision
        self.registry = registry = CollectorRegistry()
        labels = ["model", "revision", "api", "mirrored"]
        self.requests = Counter("deepseek_frontend_requests", "Requests answered, by API and the HTTP status code "
                                "the client got", [*labels, "code"], registry=registry)
        self.failures = Counter("deepseek_frontend_request_failures", "Requests that failed: an HTTP 4xx or 5xx, "
                                "or an error inside a 200 (an error event in a stream, an error field in a "
                                "generate answer)", [*labels, "reason"], registry=registry)
        self.duration = Histogram("deepseek_frontend_request_duration_seconds", "From the request's arrival to "
                                  "its last byte", labels, buckets=DURATION_BUCKETS, registry=registry)
        self.ttft = Histogram("deepseek_frontend_time_to_first_token_seconds", "From the request's arrival to "
                              "the first generated text the client got (a non-streamed answer: the whole answer; "
                              "a stream: its first response, which carries stream_interval tokens)", labels,
                              buckets=TTFT_BUCKETS, registry=registry)
        self.itl = Histogram("deepseek_frontend_inter_token_latency_seconds", "Between consecutive streamed "
                             "responses of one answer, divided by the tokens each carries", labels,
                             buckets=ITL_BUCKETS, registry=registry)
        self.prompt_tokens = Counter("deepseek_frontend_prompt_tokens", "Prompt tokens, counted with the "
                                     "checkpoint's tokenizer (with the BOS the engine adds)", labels,
                                     registry=registry)
        self.output_tokens = Counter("deepseek_frontend_output_tokens", "Generated tokens, counted with the "
                                     "checkpoint's tokenizer (an echoed prompt left out)", labels, registry=registry)
        self.in_flight = Gauge("deepseek_frontend_requests_in_flight", "Requests being answered", labels,
                               registry=registry)
        self.waiting_first_token = Gauge("deepseek_frontend_requests_waiting_first_token", "Generation requests "
                                         "still waiting for their first token", labels, registry=registry)
        request_metrics = Gauge("nv_trt_llm_request_metrics", "Generation requests by state, as the frontend sees "
                                "them (waiting: no token yet; scheduled: answering) — the Gateway API Inference "
                                "Extension's TotalQueuedRequests and TotalRunningRequests for Triton TensorRT-LLM",
                                ["model", "revision", "request_type"], registry=registry)
        mirrored = Counter("deepseek_frontend_mirrored", "Requests this pod chose to mirror to another revision, "
                           "by outcome: sent (answered, body discarded), dropped (too many in flight), failed",
                           ["model", "revision", "outcome"], registry=registry)
        self.mirror_outcomes = {o: mirrored.labels(model, revision, o) for o in MIRROR_OUTCOMES}
        self.apis = {api: ApiStats(self, api) for api in APIS}  # client requests (mirrored="false")
        self.mirrored_apis = {api: ApiStats(self, api, mirrored=True) for api in APIS}  # mirrored here
        generating = [apis[api] for apis in (self.apis, self.mirrored_apis) for api in GENERATING]
        request_metrics.labels(model, revision, "waiting").set_function(lambda: sum(s.waiting for s in generating))
        request_metrics.labels(model, revision, "scheduled").set_function(lambda: sum(s.running for s in generating))

    def stats(self, api: str, mirrored: bool) -> ApiStats:
        return (self.mirrored_apis if mirrored else self.apis)[api]

    def in_flight_total(self) -> int:
        return sum(s.in_flight for apis in (self.apis, self.mirrored_apis) for s in apis.values())


class Tracker:
    """One request's counts, from its arrival to `finish`: in flight, waiting for the first token, the time to it,
    the gaps between streamed responses, and its answer."""

    __slots__ = ("_clock", "_done", "_first", "_last", "_pending_gap", "_responses", "generating", "started", "stats")

    def __init__(self, stats: ApiStats, clock: Callable[[], float]) -> None:
        self.stats, self._clock = stats, clock
        self.started = clock()
        self.generating = False
        self._first = False
        self._last = 0.0
        self._pending_gap: float | None = None
        self._responses = 0
        self._done = False
        stats.in_flight += 1

    def generation_started(self) -> None:
        """The request went to the engine: it waits for its first token from here."""
        if not self.generating:
            self.generating = True
            self.stats.waiting += 1

    def text(self, stream_interval: int) -> None:
        """A response with new generated text reached the client. The first one ends the wait (time to first
        token); each later one closes a gap, observed per token once the next response tells that the gap's
        response was not the last (the last one's token count is known only at the end)."""
        now = self._clock()
        self._responses += 1
        if not self._first:
            self._first = True
            self.stats.ttft.observe(now - self.started)
            if self.generating:
                self.stats.waiting -= 1
                self.stats.running += 1
        else:
            if self._pending_gap is not None:
                self.stats.itl.observe(self._pending_gap / stream_interval)
            self._pending_gap = now - self._last
        self._last = now

    def finish(self, code: int, failure: str | None, *, stream_interval: int = 1, prompt_tokens: int | None = None,
               output_tokens: int | None = None) -> None:
        if self._done:
            return
        self._done = True
        stats = self.stats
        if self._pending_gap is not None:  # the last response's tokens: what the others did not carry
            carried = stream_interval * (self._responses - 1)
            last = output_tokens - carried if output_tokens is not None else stream_interval
            stats.itl.observe(self._pending_gap / max(1, min(last, stream_interval)))
        stats.duration.observe(self._clock() - self.started)
        stats.answered(code, failure)
        if prompt_tokens:
            stats.prompt_tokens.inc(prompt_tokens)
        if output_tokens:
            stats.output_tokens.inc(output_tokens)
        stats.in_flight -= 1
        if self.generating:
            if self._first:
                stats.running -= 1
            else:
                stats.waiting -= 1


def engine_failure(body: bytes) -> bool:
    """Whether a Triton error answer is the model's failure to generate, not a refusal of the request: a JSON body,
    or generate_stream's one event (tritonserver sends the first response's error as `data: {...}` with a 400)."""
    text = body.strip()
    if text.startswith(b"data:"):
        text = text[len(b"data:"):]
    try:
        error = json.loads(text).get("error")
    except (ValueError, AttributeError):
        return False
    return isinstance(error, str) and error.startswith(ENGINE_ERROR_PREFIX)


def failure_of(code: int, body: bytes = b"") -> str | None:
    """The failure reason of an answer with this status (and, for Triton's 400, its body)."""
    if code == 400 and engine_failure(body):
        return ENGINE_ERROR
    if code >= 500:
        return SERVER_ERROR
    if code >= 400 and code != CLIENT_CLOSED:
        return CLIENT_ERROR
    return None
