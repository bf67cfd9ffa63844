"""`frontend` (the default): scrapes the front door of each Ready canary and stable pod (`:8003/metrics`,
deepseek_operator.frontend.metrics) and differences its counters against the sample kept in status (so a
restarted operator differences against the same numbers). The front door takes every HTTP API of the pod and
counts what clients got, so this works with `trafficRouting: service: {}` and behind any gateway, and sees the
errors Triton's own counters miss.

Counted, for each revision over the window, summed over its pods, over the inference APIs only (chat,
completions, generate, generate_stream, infer; not `other`: /v1/models and Triton's metadata, health and
repository routes):
- requests: deepseek_frontend_requests_total, whatever the code (a client that went away, 499, included);
- errors: deepseek_frontend_request_failures_total with reason http_5xx, error_in_200 (an error event in a 200
  stream, an `error` field in a 200 generate answer) or engine_error (the engine's failure in Triton's 400). Any
  other 4xx is the client's mistake (a bad field, a prompt over the context), not the revision's: it is a request,
  not an error;
- latency histograms: deepseek_frontend_time_to_first_token_seconds (ttft),
  deepseek_frontend_inter_token_latency_seconds (itl) and deepseek_frontend_request_duration_seconds (e2e).
"""

from __future__ import annotations

from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.frontend.metrics import APIS, ENGINE_ERROR, ERROR_IN_200, SERVER_ERROR
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
from deepseek_operator.render.children import FRONTEND_METRICS_PORT
from deepseek_operator.rollout.analysis import E2E, ITL, TTFT, Measurement

INFERENCE_APIS = frozenset(a for a in APIS if a != "other")
FAILURE_REASONS = frozenset({SERVER_ERROR, ERROR_IN_200, ENGINE_ERROR})  # not http_4xx: the client's
REQUESTS_TOTAL = "deepseek_frontend_requests_total"
FAILURES_TOTAL = "deepseek_frontend_request_failures_total"
HISTOGRAMS = {"deepseek_frontend_time_to_first_token_seconds_bucket": TTFT,
              "deepseek_frontend_inter_token_latency_seconds_bucket": ITL,
              "deepseek_frontend_request_duration_seconds_bucket": E2E}


def frontend_counters(text: str, role: str, source: str) -> dict[str, float]:
    """One front door metrics page's requests, errors and latency buckets over the inference APIs (module
    docstring), keyed for counters.py."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("api") not in INFERENCE_APIS:
                continue
            if sample.name == REQUESTS_TOTAL:
                add(out, counter_key(role, source, REQUESTS), sample.value)
            elif sample.name == FAILURES_TOTAL:
                if sample.labels.get("reason") in FAILURE_REASONS:
                    add(out, counter_key(role, source, ERRORS), sample.value)
            elif (kind := HISTOGRAMS.get(sample.name)) is not None:
                add(out, bucket_key(role, source, kind, float(sample.labels["le"])), sample.value)
    return out


@dataclass
class FrontendProvider:
    port: int = FRONTEND_METRICS_PORT

    def measure(self, request: AnalysisRequest) -> Measurement:
        if not request.canary_pod_ips:
            return Measurement(0, 0, window_seconds=request.window_seconds, error="no Ready canary pod to scrape")
        try:
            current = scrape_pods(request, "frontend metrics", self.port, frontend_counters)
        except ProviderError as err:
            return unmeasured(request, err)
        return differenced(request, current)
