"""Whether a measurement of the new revision passes. Pure.

A provider error and NaN are Inconclusive, never Successful. Too few requests are never Successful either: low
traffic is the commonest way a canary analysis promotes a version nobody has really tried. But too few requests
is no reason to stop looking: a window short of minRequests is Pending (the machine keeps it open and measures it
again, longer, until it has them), and its failures alone fail it when they already prove the limit exceeded:
errors > maxErrorRate x max(requests, minRequests), over the limit even if every request still missing to
minRequests succeeded.

Latency gates (time to first token, inter-token latency, whole-request p99) are judged on the latency histograms
a provider measured, for the canary and the stable over the same window, and fail a canary whatever its error
counters can see. Error counters that cannot see every error can fail a canary but never pass one: Triton counts
an error *response* of a Python-backend model, which is how TensorRT-LLM's `llmapi` model reports every failure
of the LLM, as a success (triton-inference-server/server#7713). The pods' front door counts what clients got.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

from deepseek_operator.api.status import AnalysisResult

Result = AnalysisResult
TRITON_CANNOT_PASS = ("Triton counts the llmapi model's error responses as successes "
                      "(triton-inference-server/server#7713): this provider cannot show the canary healthy; "
                      "use provider frontend (or gateway)")
# A cumulative latency histogram: (upper bound in seconds, requests at or below it), by bound, +Inf last.
Histogram = tuple[tuple[float, float], ...]
ROLES = ("canary", "stable")
# The latency figures a provider may measure, by key kind: time to first token, inter-token latency (one
# observation per gap of a streamed answer, per token), whole request.
TTFT, ITL, E2E = "ttft", "itl", "e2e"
GATE_NAMES = {TTFT: "timeToFirstToken", ITL: "interTokenLatency", E2E: "maxP99LatencySeconds"}
FIGURE_NAMES = {TTFT: "time to first token", ITL: "inter-token latency", E2E: "latency"}


def latency_key(role: str, kind: str) -> str:
    """`canary:ttft`, `stable:e2e`: the key of a histogram in Measurement.latency."""
    return f"{role}:{kind}"


def quantile_key(role: str, kind: str, q: float) -> str:
    """`canary:e2e@0.99`: the key of a figure a provider computed itself (Measurement.quantiles)."""
    return f"{role}:{kind}@{q:g}"


def histogram(buckets: Mapping[float, float]) -> Histogram:
    """A cumulative histogram from {upper bound: count}, sorted; counts made monotonic (a pod that restarted
    between two samples can leave one bucket's increase above the next one's)."""
    out, top = [], 0.0
    for bound, count in sorted(buckets.items()):
        top = max(top, count)
        out.append((bound, top))
    return tuple(out)


@dataclass(frozen=True)
class Measurement:
    """What a provider saw of the new revision (and of the stable, over the same window)."""

    requests: float
    errors: float
    window_seconds: float = 0.0
    stable_requests: float | None = None
    stable_errors: float | None = None
    # Cumulative latency histograms of the window, by latency_key (e.g. "canary:ttft", "stable:itl").
    latency: Mapping[str, Histogram] = field(default_factory=dict)
    # Percentiles a provider computed itself (a query template's answer), by quantile_key; they take precedence
    # over a histogram of the same key.
    quantiles: Mapping[str, float] = field(default_factory=dict)
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

    def percentile(self, role: str, kind: str, q: float) -> float | None:
        """The q-quantile (0-1) of a latency, in seconds: the provider's own figure, else interpolated in the
        histogram as Prometheus' histogram_quantile does; None without one (or without observations)."""
        figure = self.quantiles.get(quantile_key(role, kind, q))
        if figure is not None:
            return figure if math.isfinite(figure) else None
        buckets = self.latency.get(latency_key(role, kind))
        return histogram_quantile(q, buckets) if buckets else None

    def slower_than(self, role: str, kind: str, bound: float) -> float | None:
        """How many observations exceeded `bound` seconds: the histogram's total less its cumulative count at the
        smallest bucket bound >= `bound`. So the objective is rounded UP to a bucket bound: an observation
        between the objective and that bound counts as within it (with the front door's TTFT buckets an objective
        of 0.3 s counts what exceeded 0.5 s). None without a histogram."""
        buckets = self.latency.get(latency_key(role, kind))
        if not buckets:
            return None
        total = buckets[-1][1]
        within = next((count for le, count in buckets if le >= bound), total)
        return max(0.0, total - within)

    @property
    def p99_seconds(self) -> float | None:
        """The canary's whole-request p99."""
        return self.percentile("canary", E2E, 0.99)


@dataclass(frozen=True)
class LatencyGate:
    """One latency objective: the canary's percentile at most max_seconds, and at most max_ratio_to_stable times
    the stable's same percentile over the same window."""

    kind: str  # TTFT, ITL or E2E
    percentile: float  # 0-100
    max_seconds: float | None = None
    max_ratio_to_stable: float | None = None

    @property
    def name(self) -> str:
        return f"{FIGURE_NAMES[self.kind]} p{self.percentile:g}"


@dataclass(frozen=True)
class Policy:
    max_error_rate: float
    min_requests: int
    max_p99_seconds: float | None = None
    ttft: LatencyGate | None = None
    itl: LatencyGate | None = None

    @property
    def gates(self) -> tuple[LatencyGate, ...]:
        p99 = LatencyGate(E2E, 99, self.max_p99_seconds) if self.max_p99_seconds is not None else None
        return tuple(g for g in (p99, self.ttft, self.itl) if g is not None)

    def window_gates_only(self) -> Policy:
        """The gates mode sequential still judges per window: all but timeToFirstToken.maxSeconds, which makes
        a slow request bad in its test instead; and no error limit (the test has it)."""
        ttft = self.ttft
        if ttft is not None:
            ttft = replace(ttft, max_seconds=None) if ttft.max_ratio_to_stable is not None else None
        return replace(self, max_error_rate=1.0, ttft=ttft)


@dataclass(frozen=True)
class Verdict:
    result: Result
    message: str
    # An Inconclusive verdict that is only a window short of minRequests: the machine keeps the window open.
    pending: bool = False


def judge_gate(m: Measurement, gate: LatencyGate) -> tuple[Result, str]:
    """One latency gate on the measurement: Failed over a bound, Inconclusive without the figures it needs (a
    ratio without the stable's figure is no pass), else Successful; with the figures."""
    q = gate.percentile / 100
    canary = m.percentile("canary", gate.kind, q)
    if canary is None:
        return AnalysisResult.INCONCLUSIVE, f"no {gate.name} measured for {GATE_NAMES[gate.kind]}"
    said = f"{gate.name} {canary:.3f}s"
    if gate.max_seconds is not None and canary > gate.max_seconds:
        bound = GATE_NAMES[gate.kind] + ("" if gate.kind == E2E else ".maxSeconds")
        return AnalysisResult.FAILED, f"{said} > {bound} {gate.max_seconds:g}"
    if gate.max_ratio_to_stable is not None:
        stable = m.percentile("stable", gate.kind, q)
        if stable is None:
            return AnalysisResult.INCONCLUSIVE, (f"{said}, but no stable {gate.name} in the window for "
                                                 f"{GATE_NAMES[gate.kind]}.maxRatioToStable")
        said += f" (stable {stable:.3f}s)"
        if canary > gate.max_ratio_to_stable * stable:
            return AnalysisResult.FAILED, (f"{said} > {GATE_NAMES[gate.kind]}.maxRatioToStable "
                                           f"{gate.max_ratio_to_stable:g} x the stable's")
    return AnalysisResult.SUCCESSFUL, said


def analyse(m: Measurement, policy: Policy) -> Verdict:
    """One window's verdict (module docstring): provider error or NaN Inconclusive; failures that prove the limit
    exceeded Failed; short of minRequests Pending; a latency gate over its bound Failed; counters that miss errors,
    or a gate without its figures, Inconclusive; else Successful."""
    if m.error:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"provider could not measure: {m.error}")
    if not math.isfinite(m.requests) or not math.isfinite(m.errors):
        return Verdict(AnalysisResult.INCONCLUSIVE, "the provider returned no number (NaN)")
    figures = f"error rate {m.errors / m.requests:.4f} ({m.errors:.0f}/{m.requests:.0f})" if m.requests \
        else f"{m.errors:.0f} errors in 0 requests"
    if m.errors > policy.max_error_rate * max(m.requests, policy.min_requests):
        if m.requests >= policy.min_requests:
            return Verdict(AnalysisResult.FAILED, f"{figures} > maxErrorRate {policy.max_error_rate:g}")
        return Verdict(AnalysisResult.FAILED, f"{figures} in {m.window_seconds:.0f}s: over maxErrorRate "
                                              f"{policy.max_error_rate:g} even if the {policy.min_requests} "
                                              f"minRequests were made up with successes")
    if m.requests < policy.min_requests:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"{m.requests:.0f} requests in {m.window_seconds:.0f}s, fewer "
                                                    f"than minRequests {policy.min_requests}", pending=True)
    judged = [judge_gate(m, g) for g in policy.gates]
    said = "; ".join([figures, *(message for _, message in judged)])
    if any(result == AnalysisResult.FAILED for result, _ in judged):
        return Verdict(AnalysisResult.FAILED, said)
    if not m.errors_counted:
        return Verdict(AnalysisResult.INCONCLUSIVE, f"{said}, but {TRITON_CANNOT_PASS}")
    if any(result == AnalysisResult.INCONCLUSIVE for result, _ in judged):
        return Verdict(AnalysisResult.INCONCLUSIVE, said)
    return Verdict(AnalysisResult.SUCCESSFUL, f"{said}: within bounds")


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
