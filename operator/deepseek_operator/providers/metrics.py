"""Metric providers: how many requests the canary answered, how many failed, and its p99, over a window.

Three providers behind one Protocol, as Flagger has them:
- `prometheus`: PromQL `increase()` over Triton's `nv_inference_request_success` / `_failure` per revision label;
- `triton`: scrapes the canary pods' `:8002/metrics` directly and differences the counters against the last
  sample (kept in status, so a restarted operator differences against the same numbers); needs no Prometheus;
- `gateway`: the gateway's own per-backend response codes (Traefik's `traefik_service_requests_total`): what
  clients really saw, including failures Triton never counted.
A provider that cannot measure returns a Measurement with `error` set: the analysis calls that Inconclusive.
"""

from __future__ import annotations

import json
import math
import re
import urllib.parse
import urllib.request
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Protocol

from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.api.spec import duration_seconds
from deepseek_operator.render import triton
from deepseek_operator.render.children import METRICS_PORT
from deepseek_operator.render.plan import AnalysisRequest
from deepseek_operator.rollout.analysis import Measurement, histogram_quantile, window

TIMEOUT_S = 5.0
# Triton counts requests per model; clients call the `llmapi` model (TensorRT-LLM's PyTorch backend).
CLIENT_MODEL = triton.MODEL_NAME
SUCCESS, FAILURE = "nv_inference_request_success", "nv_inference_request_failure"
# Triton's latency histogram (with --metrics-config histogram_latencies=true): time to the first response, which
# for a non-streaming request is the whole request.
LATENCY_HISTOGRAM = "nv_inference_first_response_histogram_ms"

SecretReader = Callable[[str, str, str], str]  # (namespace, name, key) -> value


class MetricProvider(Protocol):
    def measure(self, request: AnalysisRequest) -> Measurement: ...


def _get(url: str, headers: Mapping[str, str] | None = None) -> str:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    with urllib.request.urlopen(req, timeout=TIMEOUT_S) as resp:
        return str(resp.read().decode())


# ---------------------------------------------------------------------------------------------------- prometheus


@dataclass
class PrometheusProvider:
    read_secret: SecretReader

    def measure(self, request: AnalysisRequest) -> Measurement:
        settings = request.prometheus
        assert settings is not None
        headers = {}
        if settings.bearer_token_secret_ref is not None:
            ref = settings.bearer_token_secret_ref
            headers["Authorization"] = f"Bearer {self.read_secret(request.namespace, ref.name, ref.key).strip()}"
        span = f"{max(math.ceil(request.window_seconds), duration_seconds(settings.min_range))}s"

        def selector(revision: str) -> str:
            return (f'namespace="{request.namespace}",{settings.revision_label}="{revision}",'
                    f'model="{CLIENT_MODEL}"')

        def scalar(query: str) -> float | None:
            url = f"{settings.address.rstrip('/')}/api/v1/query?" + urllib.parse.urlencode({"query": query})
            body = json.loads(_get(url, headers))
            if body.get("status") != "success":
                raise RuntimeError(f"query failed: {body.get('error', body)}")
            result = body["data"]["result"]
            return float(result[0]["value"][1]) if result else None

        try:
            canary = selector(request.canary_revision)
            ok = scalar(f"sum(increase({SUCCESS}{{{canary}}}[{span}]))")
            failed = scalar(f"sum(increase({FAILURE}{{{canary}}}[{span}]))")
            p99_ms = scalar(f"histogram_quantile(0.99, sum by (le) "
                            f"(increase({LATENCY_HISTOGRAM}_bucket{{{canary}}}[{span}])))")
            stable = selector(request.stable_revision)
            stable_ok = scalar(f"sum(increase({SUCCESS}{{{stable}}}[{span}]))")
            stable_failed = scalar(f"sum(increase({FAILURE}{{{stable}}}[{span}]))")
        except Exception as err:
            return Measurement(0, 0, window_seconds=request.window_seconds, error=f"prometheus: {err}")
        if ok is None and failed is None:
            return Measurement(0, 0, window_seconds=request.window_seconds)  # no samples: no requests seen
        errors = failed or 0.0
        return Measurement(
            requests=(ok or 0.0) + errors, errors=errors,
            p99_seconds=p99_ms / 1000 if p99_ms is not None and math.isfinite(p99_ms) else None,
            window_seconds=request.window_seconds,
            stable_requests=(stable_ok or 0.0) + (stable_failed or 0.0), stable_errors=stable_failed or 0.0,
            errors_counted=False)


# ---------------------------------------------------------------------------------------------------- triton


def triton_counters(text: str, prefix: str) -> dict[str, float]:
    """The client model's request counters and latency buckets of one Triton metrics page, keyed under `prefix`."""
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.labels.get("model") != CLIENT_MODEL:
                continue
            name = sample.name.removesuffix("_total")  # the parser names counter samples <name>_total
            if name in (SUCCESS, FAILURE):
                key = f"{prefix}|{name}"
                out[key] = out.get(key, 0.0) + sample.value
            elif sample.name == f"{LATENCY_HISTOGRAM}_bucket":
                key = f"{prefix}|le={float(sample.labels['le'])}"
                out[key] = out.get(key, 0.0) + sample.value
    return out


def summarize_counters(increase: Mapping[str, float], window_seconds: float,
                       stable_prefix: str = "stable") -> Measurement:
    """Requests, errors and p99 of the canary (and the stable's error figures) from per-key increases."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[float, float] = defaultdict(float)
    for key, value in increase.items():
        prefix, _, name = key.rpartition("|")
        role = "stable" if prefix.startswith(stable_prefix) else "canary"
        if name.startswith("le="):
            if role == "canary":
                buckets[float(name[3:])] += value
        else:
            sums[(role, name)] += value
    errors = sums[("canary", FAILURE)]
    p99_ms = histogram_quantile(0.99, list(buckets.items())) if buckets else None
    stable_errors = sums[("stable", FAILURE)]
    return Measurement(requests=sums[("canary", SUCCESS)] + errors, errors=errors,
                       p99_seconds=p99_ms / 1000 if p99_ms is not None else None, window_seconds=window_seconds,
                       stable_requests=sums[("stable", SUCCESS)] + stable_errors, stable_errors=stable_errors)


def _differenced(request: AnalysisRequest, current: dict[str, float]) -> Measurement:
    if not request.previous_counters:
        # The first sample of this canary: a baseline; the first judged window starts now.
        return Measurement(0, 0, window_seconds=request.window_seconds, baseline_only=True, counters=current)
    increase = window(request.previous_counters, current)
    return replace(summarize_counters(increase, request.window_seconds), counters=current)


@dataclass
class TritonProvider:
    port: int = METRICS_PORT

    def measure(self, request: AnalysisRequest) -> Measurement:
        if not request.canary_pod_ips:
            return Measurement(0, 0, window_seconds=request.window_seconds, error="no Ready canary pod to scrape")
        current: dict[str, float] = {}
        try:
            for role, ips in (("canary", request.canary_pod_ips), ("stable", request.stable_pod_ips)):
                for ip in ips:
                    current |= triton_counters(_get(f"http://{ip}:{self.port}/metrics"), f"{role}:{ip}")
        except Exception as err:
            return Measurement(0, 0, window_seconds=request.window_seconds, error=f"triton metrics: {err}")
        return replace(_differenced(request, current), errors_counted=False)


# ---------------------------------------------------------------------------------------------------- gateway


def gateway_counters(text: str, services: Mapping[str, str], failure_codes: str) -> dict[str, float]:
    """Traefik's per-service request counters and latency buckets, for the services named {role: pattern}.

    A status code matching `failure_codes` is a failure; any other answer counts as answered.
    """
    patterns = {role: re.compile(pattern) for role, pattern in services.items()}
    failed = re.compile(failure_codes)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            service = sample.labels.get("service", "")
            role = next((r for r, p in patterns.items() if p.search(service)), None)
            if role is None:
                continue
            if sample.name == "traefik_service_requests_total":
                name = FAILURE if failed.search(sample.labels.get("code", "")) else SUCCESS
                key = f"{role}:gateway|{name}"
                out[key] = out.get(key, 0.0) + sample.value
            elif sample.name == "traefik_service_request_duration_seconds_bucket" and role == "canary":
                key = f"{role}:gateway|le={float(sample.labels['le']) * 1000}"  # ms, as the Triton histogram
                out[key] = out.get(key, 0.0) + sample.value
    return out


def traefik_service_pattern(namespace: str, service: str, port: int) -> str:
    """How Traefik's Gateway API provider names a backend in its metrics: <ns>-<svc>-<port name>-<port>@…"""
    return rf"^{re.escape(namespace)}-{re.escape(service)}-(http-)?{port}(-|@|$)"


@dataclass
class GatewayProvider:
    def measure(self, request: AnalysisRequest) -> Measurement:
        settings = request.gateway
        assert settings is not None
        services = {"canary": traefik_service_pattern(request.namespace, request.canary_service, 8000),
                    "stable": traefik_service_pattern(request.namespace, request.stable_service, 8000)}
        try:
            current = gateway_counters(_get(settings.metrics_address), services, settings.failure_status_codes)
        except Exception as err:
            return Measurement(0, 0, window_seconds=request.window_seconds, error=f"gateway metrics: {err}")
        return _differenced(request, current)


def provider_for(name: str, read_secret: SecretReader) -> MetricProvider:
    providers: dict[str, MetricProvider] = {"prometheus": PrometheusProvider(read_secret),
                                            "triton": TritonProvider(), "gateway": GatewayProvider()}
    return providers[name]

