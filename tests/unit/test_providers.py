"""Metric providers' parsing and differencing, on metrics pages in the exposition format Triton and Traefik
serve (the end-to-end rollout tests run the same code against the real ones)."""

from __future__ import annotations

import pytest

from deepseek_operator.api.spec import GatewayProvider
from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import FAILURE, SUCCESS
from deepseek_operator.providers.counters import differenced, summarize_counters
from deepseek_operator.providers.gateway import gateway_counters, traefik_service_pattern
from deepseek_operator.providers.triton import triton_counters


def triton_page(success: int, failure: int, fast: int, slow: int) -> str:
    return f"""# HELP nv_inference_request_success Number of successful inference requests, all batch sizes
# TYPE nv_inference_request_success counter
nv_inference_request_success{{model="tensorrt_llm",version="1"}} {success}
nv_inference_request_success{{model="safety_guard",version="1"}} 999
# HELP nv_inference_request_failure Number of failed inference requests, all batch sizes
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{{model="tensorrt_llm",reason="BACKEND",version="1"}} {failure}
nv_inference_request_failure{{model="tensorrt_llm",reason="REJECTED",version="1"}} 0
# HELP nv_inference_first_response_histogram_ms Duration from request to first response in milliseconds
# TYPE nv_inference_first_response_histogram_ms histogram
nv_inference_first_response_histogram_ms_bucket{{model="tensorrt_llm",version="1",le="10"}} {fast}
nv_inference_first_response_histogram_ms_bucket{{model="tensorrt_llm",version="1",le="100"}} {fast + slow}
nv_inference_first_response_histogram_ms_bucket{{model="tensorrt_llm",version="1",le="+Inf"}} {fast + slow}
nv_inference_first_response_histogram_ms_sum{{model="tensorrt_llm",version="1"}} 1
nv_inference_first_response_histogram_ms_count{{model="tensorrt_llm",version="1"}} {fast + slow}
"""


def request(previous: dict[str, float]) -> AnalysisRequest:
    return AnalysisRequest(provider="triton", namespace="llm", name="r1", canary_revision="c", stable_revision="s",
                           window_seconds=30, previous_counters=previous, canary_pod_ips=("10.244.128.7",),
                           stable_pod_ips=("10.244.128.5",), canary_service="r1-canary", stable_service="r1-stable")


def test_triton_counters_keep_the_client_model_only_and_sum_failure_reasons() -> None:
    counters = triton_counters(triton_page(100, 7, 90, 17), "canary:10.244.128.7")
    assert counters[f"canary:10.244.128.7|{SUCCESS}"] == 100
    assert counters[f"canary:10.244.128.7|{FAILURE}"] == 7
    assert counters["canary:10.244.128.7|le=100.0"] == 107


def test_first_sample_is_a_baseline_and_the_next_is_judged_on_the_difference() -> None:
    first = triton_counters(triton_page(100, 7, 90, 17), "canary:10.244.128.7") | \
        triton_counters(triton_page(500, 0, 500, 0), "stable:10.244.128.5")
    baseline = differenced(request({}), first)
    assert baseline.baseline_only and dict(baseline.counters) == first
    second = triton_counters(triton_page(190, 17, 150, 57), "canary:10.244.128.7") | \
        triton_counters(triton_page(800, 3, 803, 0), "stable:10.244.128.5")
    m = differenced(request(first), second)
    assert (m.requests, m.errors) == (100, 10)  # 90 + 10 new requests, 10 of them failed
    assert (m.stable_requests, m.stable_errors) == (303, 3)
    # 60 of the window's 100 requests took 10-100 ms: p99 lands near the top of that bucket.
    assert m.p99_seconds == pytest.approx(0.0985, abs=1e-3)


def test_a_restarted_pod_counts_from_zero() -> None:
    before = {"canary:10.244.128.7|" + SUCCESS: 500.0, "canary:10.244.128.7|" + FAILURE: 5.0}
    after = {"canary:10.244.128.7|" + SUCCESS: 40.0, "canary:10.244.128.7|" + FAILURE: 1.0}
    m = differenced(request(before), after)
    assert (m.requests, m.errors) == (41, 1)


def traefik_line(code: int, service: str, value: int) -> str:
    return (f'traefik_service_requests_total{{code="{code}",method="POST",protocol="http",'
            f'service="{service}@kubernetesgateway"}} {value}')


TRAEFIK = "\n".join(["# TYPE traefik_service_requests_total counter",
                     traefik_line(200, "llm-r1-canary-http-8000", 80),
                     traefik_line(500, "llm-r1-canary-http-8000", 20),
                     traefik_line(404, "llm-r1-canary-http-8000", 3),
                     traefik_line(400, "llm-r1-canary-http-8000", 5),
                     traefik_line(200, "llm-r1-stable-http-8000", 390),
                     traefik_line(200, "llm-r1-stable-http-9000", 10),
                     traefik_line(500, "other-r1-canary-http-8000", 99), ""])


def test_gateway_counts_5xx_and_triton_execution_errors_as_failures_per_backend_on_both_ports() -> None:
    services = {"canary": traefik_service_pattern("llm", "r1-canary", (8000, 9000)),
                "stable": traefik_service_pattern("llm", "r1-stable", (8000, 9000))}
    default = GatewayProvider(source="traefik").failure_status_codes
    m = summarize_counters(gateway_counters(TRAEFIK, services, default), 30)
    assert (m.requests, m.errors) == (108, 25)  # 500s and 400s (a failed execution); a 404 is answered
    assert (m.stable_requests, m.stable_errors) == (400, 0)
    only_5xx = summarize_counters(gateway_counters(TRAEFIK, services, r"^5"), 30)
    assert (only_5xx.requests, only_5xx.errors) == (108, 20)
