"""The counter arithmetic of the scraping providers (triton, gateway): the increase of each counter since the
sample kept in status, summed per role into the canary's requests, errors and p99 and the stable's figures."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from dataclasses import replace

from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import FAILURE, SUCCESS
from deepseek_operator.rollout.analysis import Measurement, histogram_quantile, window


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


def differenced(request: AnalysisRequest, current: dict[str, float]) -> Measurement:
    if not request.previous_counters:
        # The first sample of this canary: a baseline; the first judged window starts now.
        return Measurement(0, 0, window_seconds=request.window_seconds, baseline_only=True, counters=current)
    increase = window(request.previous_counters, current)
    return replace(summarize_counters(increase, request.window_seconds), counters=current)
