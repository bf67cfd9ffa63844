"""Whether a measurement of the new revision passes. Pure.

Too few requests, NaN and a provider error are Inconclusive, never Successful: low traffic is the commonest way
a canary analysis promotes a version nobody has really tried. So is a low error rate from counters that cannot
see errors: Triton counts an error *response* of a Python-backend model, which is how TensorRT-LLM's `llmapi`
model reports every failure of the LLM, as a success (triton-inference-server/server#7713). Triton's own
counters can prove a canary bad (the failures they do count are real) but never good: only the gateway's
status codes see what clients saw.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from deepseek_operator.api.status import AnalysisResult

Result = AnalysisResult
TRITON_CANNOT_PASS = ("Triton counts the llmapi model's error responses as successes "
                      "(triton-inference-server/server#7713): this provider cannot show the canary healthy; "
                      "use provider gateway")


@dataclass(frozen=True)
class Measurement:
    """What a provider saw of one revision over a window."""

    requests: float
    errors: float
    p99_seconds: float | None = None
    window_seconds: float = 0.0
    stable_requests: float | None = None
    stable_errors: float | None = None
    error: str = ""  # the provider could not measure: why
    baseline_only: bool = False  # a differencing provider's first sample: counters recorded, nothing judged
    counters: Mapping[str, float] = field(default_factory=dict)  # for the next window of a differencing provider
    errors_counted: bool = True  # False: the source misses some errors (Triton's counters, module docstring)

    @property
    def error_rate(self) -> float | None:
        if not self.requests or not math.isfinite(self.requests) or not math.isfinite(self.errors):
            return None
        return self.errors / self.requests

    @property
    def stable_error_rate(self) -> float | None:
        if not self.stable_requests or self.stable_errors is None:
            return None
        return self.stable_errors / self.stable_requests


@dataclass(frozen=True)
class Policy:
    max_error_rate: float
    min_requests: int
    max_p99_seconds: float | None = None


@dataclass(frozen=True)
class Verdict:
    result: Result
    message: str


def analyse(m: Measurement, policy: Policy) -> Verdict:
    if m.error:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"provider could not measure: {m.error}")
    if not math.isfinite(m.requests) or not math.isfinite(m.errors):
        return Verdict(AnalysisResult.INCONCLUSIVE, "the provider returned no number (NaN)")
    if m.requests < policy.min_requests:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"{m.requests:.0f} requests in {m.window_seconds:.0f}s, fewer than "
                                       f"minRequests {policy.min_requests}")
    rate = m.errors / m.requests
    figures = f"error rate {rate:.4f} ({m.errors:.0f}/{m.requests:.0f})"
    if rate > policy.max_error_rate:
        return Verdict(AnalysisResult.FAILED, f"{figures} > maxErrorRate {policy.max_error_rate}")
    if not m.errors_counted:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"{figures}, but {TRITON_CANNOT_PASS}")
    if policy.max_p99_seconds is not None:
        if m.p99_seconds is None or not math.isfinite(m.p99_seconds):
            return Verdict(AnalysisResult.INCONCLUSIVE, f"{figures}; no p99 latency measured for maxP99LatencySeconds")
        if m.p99_seconds > policy.max_p99_seconds:
            return Verdict(AnalysisResult.FAILED, f"{figures}; p99 {m.p99_seconds:.3f}s > maxP99LatencySeconds "
                                     f"{policy.max_p99_seconds}")
        figures += f", p99 {m.p99_seconds:.3f}s"
    return Verdict(AnalysisResult.SUCCESSFUL, f"{figures} within bounds")


def counter_increase(previous: float | None, current: float) -> float:
    """The increase of a monotonic counter; a value below the previous one means the process restarted."""
    if previous is None or current < previous:
        return current
    return current - previous


def window(previous: Mapping[str, float], current: Mapping[str, float]) -> dict[str, float]:
    """Per-key increase between two samples of counters; keys seen only now count from zero."""
    return {k: counter_increase(previous.get(k), v) for k, v in current.items()}


def histogram_quantile(q: float, buckets: Sequence[tuple[float, float]]) -> float | None:
    """The q-quantile of a cumulative histogram [(upper bound, count)], interpolated as Prometheus does."""
    ordered = sorted(buckets)
    if not ordered or ordered[-1][1] <= 0:
        return None
    rank = q * ordered[-1][1]
    lower_bound, lower_count = 0.0, 0.0
    for bound, count in ordered:
        if count >= rank:
            if math.isinf(bound):
                return lower_bound  # the highest finite bound: the best a histogram can say
            if count == lower_count:
                return bound
            return lower_bound + (bound - lower_bound) * (rank - lower_count) / (count - lower_count)
        lower_bound, lower_count = bound, count
    return lower_bound
