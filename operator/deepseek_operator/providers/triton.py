"""`triton`: scrapes Triton's own metrics (`:8002/metrics`) of the canary's (and the stable's) pods directly and
differences the counters against the last sample (kept in status, so a restarted operator differences against
the same numbers); needs no Prometheus.

Its error counters miss the llmapi model's failures: TensorRT-LLM's llmapi model replies an error as an error
response from a background task, and Triton's python backend counts that as a SUCCESS
(triton-inference-server/server#7713): nv_inference_request_failure never moves for them. So this provider can
fail a canary (on the failures it does count, and on latency) but never pass one (errors_counted False); use
`frontend`. Its latency histogram, nv_inference_first_response_histogram_ms (with --metrics-config
histogram_latencies=true), is the time to the first response: the time to first token when streaming
(spec.serving.streaming), the whole request otherwise (then it is both ttft and e2e). It has no inter-token
latency.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import ProviderError, unmeasured
from deepseek_operator.providers.counters import (
    ERRORS,
    REQUESTS,
    add,
    bucket_key,
    counter_key,
    differenced,
    scrape_pods,
)
from deepseek_operator.render import triton
from deepseek_operator.render.children import METRICS_PORT
from deepseek_operator.rollout.analysis import E2E, TTFT, Measurement

# Triton counts requests per model; clients call the `llmapi` model (TensorRT-LLM's PyTorch backend).
CLIENT_MODEL = triton.MODEL_NAME
SUCCESS, FAILURE = "nv_inference_request_success", "nv_inference_request_failure"
LATENCY_HISTOGRAM = "nv_inference_first_response_histogram_ms"


def triton_counters(text: str, role: str, source: str, streaming: bool = True) -> dict[str, float]:
    """The client model's request counters and latency buckets (in seconds) of one Triton metrics page."""
    out: dict[str, float] = {}
    kinds = (TTFT,) if streaming else (TTFT, E2E)
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != CLIENT_MODEL:
                continue
            name = sample.name.removesuffix("_total")  # the parser names counter samples <name>_total
            if name in (SUCCESS, FAILURE):
                add(out, counter_key(role, source, REQUESTS), sample.value)
                if name == FAILURE:
                    add(out, counter_key(role, source, ERRORS), sample.value)
            elif sample.name == f"{LATENCY_HISTOGRAM}_bucket":
                for kind in kinds:
                    add(out, bucket_key(role, source, kind, float(sample.labels["le"]) / 1000), sample.value)
    return out


@dataclass
class TritonProvider:
    port: int = METRICS_PORT

    def measure(self, request: AnalysisRequest) -> Measurement:
        if not request.canary_pod_ips:
            return Measurement(0, 0, window_seconds=request.window_seconds, error="no Ready canary pod to scrape")
        try:
            current = scrape_pods(request, "triton metrics", self.port,
                                  lambda page, role, ip: triton_counters(page, role, ip, request.streaming))
        except ProviderError as err:
            return unmeasured(request, err)
        return replace(differenced(request, current), errors_counted=False)
