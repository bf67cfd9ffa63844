"""`triton`: scrapes the canary's (and the stable's) pods' `:8002/metrics` directly and differences the counters
against the last sample (kept in status, so a restarted operator differences against the same numbers); needs
no Prometheus."""

from __future__ import annotations

from dataclasses import dataclass, replace

from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import (
    CLIENT_MODEL,
    FAILURE,
    LATENCY_HISTOGRAM,
    SUCCESS,
    ProviderError,
    get,
    unmeasured,
)
from deepseek_operator.providers.counters import differenced
from deepseek_operator.render.children import METRICS_PORT
from deepseek_operator.rollout.analysis import Measurement


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
                    page = get("triton metrics", f"http://{ip}:{self.port}/metrics")
                    try:
                        current |= triton_counters(page, f"{role}:{ip}")
                    except ValueError as err:  # not the exposition format
                        raise ProviderError("triton metrics", f"{ip}: {err}") from err
        except ProviderError as err:
            return unmeasured(request, err)
        return replace(differenced(request, current), errors_counted=False)
