"""The analysis' LLM gates (time to first token, inter-token latency, whole-request p99; absolute and relative to
the stable), in both modes, and the windowed mode's handling of modest traffic: failures that prove the limit
exceeded fail a short window, and a window merely short of requests keeps measuring. Pure: no cluster, no clock."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

import pytest

from deepseek_operator.frontend.metrics import ITL_BUCKETS, TTFT_BUCKETS
from deepseek_operator.rollout import machine
from deepseek_operator.rollout.analysis import (
    E2E,
    ITL,
    TTFT,
    Histogram,
    LatencyGate,
    Measurement,
    Policy,
    analyse,
    latency_key,
)
from deepseek_operator.rollout.machine import Decision, Rollout, State, Step, World
from deepseek_operator.rollout.sequential import SequentialPolicy

STABLE, NEW = "aaaaaaaaaa", "bbbbbbbbbb"
E2E_BUCKETS = (.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
BOUNDS = {TTFT: TTFT_BUCKETS, ITL: ITL_BUCKETS, E2E: E2E_BUCKETS}


def hist(kind: str, values: Sequence[float]) -> Histogram:
    """The cumulative histogram the front door would export for these observations."""
    return tuple((float(b), float(sum(v <= b for v in values))) for b in (*BOUNDS[kind], math.inf))


def latency(**figures: Sequence[float]) -> dict[str, Histogram]:
    """{"canary_ttft": [0.2] * 100} -> the histograms of Measurement.latency."""
    out = {}
    for name, values in figures.items():
        role, kind = name.split("_")
        out[latency_key(role, kind)] = hist(kind, values)
    return out


FAST, SLOW = [0.2] * 100, [0.8] * 100  # time to first token: p95 ~0.2 s, ~0.99 s
SMOOTH, STUTTER = [0.015] * 100, [0.1] * 100  # inter-token latency: p95 ~0.02 s, ~0.16 s
BASE = Policy(max_error_rate=0.02, min_requests=10)


def ttft(max_seconds: float | None = None, ratio: float | None = None, percentile: float = 95) -> LatencyGate:
    return LatencyGate(TTFT, percentile, max_seconds, ratio)


def itl(max_seconds: float | None = None, ratio: float | None = None, percentile: float = 95) -> LatencyGate:
    return LatencyGate(ITL, percentile, max_seconds, ratio)


GATES = [
    # (id, policy, latency histograms, verdict, text of the message)
    ("ttft-absolute-pass", replace(BASE, ttft=ttft(0.5)), latency(canary_ttft=FAST), "Successful", "p95 0.198s"),
    ("ttft-absolute-fail", replace(BASE, ttft=ttft(0.5)), latency(canary_ttft=SLOW), "Failed",
     "timeToFirstToken.maxSeconds 0.5"),
    ("ttft-p50-absolute", replace(BASE, ttft=ttft(0.5, percentile=50)), latency(canary_ttft=[0.2] * 60 + [0.8] * 40),
     "Successful", "time to first token p50"),
    ("ttft-relative-pass", replace(BASE, ttft=ttft(ratio=1.5)), latency(canary_ttft=SLOW, stable_ttft=SLOW),
     "Successful", "(stable 0.988s)"),
    ("ttft-relative-fail", replace(BASE, ttft=ttft(ratio=1.5)), latency(canary_ttft=SLOW, stable_ttft=FAST),
     "Failed", "maxRatioToStable 1.5 x the stable's"),
    # No stable figure in the window: no pass, whatever the canary's.
    ("ttft-relative-no-stable", replace(BASE, ttft=ttft(ratio=1.5)), latency(canary_ttft=FAST), "Inconclusive",
     "no stable time to first token p95"),
    ("ttft-both-bounds-ratio-fails", replace(BASE, ttft=ttft(2.0, 1.5)), latency(canary_ttft=SLOW, stable_ttft=FAST),
     "Failed", "maxRatioToStable"),
    ("ttft-both-bounds-absolute-fails", replace(BASE, ttft=ttft(0.5, 1.5)),
     latency(canary_ttft=SLOW, stable_ttft=SLOW), "Failed", "maxSeconds"),
    ("ttft-not-measured", replace(BASE, ttft=ttft(0.5)), {}, "Inconclusive", "no time to first token p95 measured"),
    ("itl-absolute-pass", replace(BASE, itl=itl(0.05)), latency(canary_itl=SMOOTH), "Successful", "inter-token"),
    ("itl-absolute-fail", replace(BASE, itl=itl(0.05)), latency(canary_itl=STUTTER), "Failed",
     "interTokenLatency.maxSeconds 0.05"),
    ("itl-relative-pass", replace(BASE, itl=itl(ratio=2)), latency(canary_itl=SMOOTH, stable_itl=SMOOTH),
     "Successful", "stable"),
    ("itl-relative-fail", replace(BASE, itl=itl(ratio=2)), latency(canary_itl=STUTTER, stable_itl=SMOOTH), "Failed",
     "interTokenLatency.maxRatioToStable 2"),
    ("itl-relative-no-stable", replace(BASE, itl=itl(ratio=2)), latency(canary_itl=STUTTER), "Inconclusive",
     "no stable inter-token latency"),
    ("e2e-p99-pass", replace(BASE, max_p99_seconds=2.0), latency(canary_e2e=[0.3] * 100), "Successful",
     "latency p99"),
    ("e2e-p99-fail", replace(BASE, max_p99_seconds=2.0), latency(canary_e2e=[8.0] * 100), "Failed",
     "maxP99LatencySeconds 2"),
    ("every-gate-one-fails", replace(BASE, max_p99_seconds=2.0, ttft=ttft(0.5), itl=itl(0.05)),
     latency(canary_e2e=[0.3] * 100, canary_ttft=FAST, canary_itl=STUTTER), "Failed", "interTokenLatency"),
]


@pytest.mark.parametrize(("policy", "histograms", "result", "says"), [g[1:] for g in GATES], ids=[g[0] for g in GATES])
def test_latency_gates_in_windowed_mode(policy: Policy, histograms: dict[str, Histogram], result: str,
                                        says: str) -> None:
    verdict = analyse(Measurement(100, 0, window_seconds=30, latency=histograms), policy)
    assert (verdict.result, says in verdict.message) == (result, True), verdict.message


@pytest.mark.parametrize(("m", "result", "pending"), [
    # Failures that prove the limit exceeded, however few the requests: 2 errors > 2% of minRequests 50.
    (Measurement(17, 2), "Failed", False),
    (Measurement(17, 1), "Inconclusive", True),  # 1 of 50 would be 2%: not yet proven; keep measuring
    (Measurement(0, 0), "Inconclusive", True),
    (Measurement(50, 1), "Successful", False),
    (Measurement(50, 2), "Failed", False),
    (Measurement(17, 0, error="connection refused"), "Inconclusive", False),  # at once, never Pending
    (Measurement(float("nan"), 0), "Inconclusive", False),
])
def test_a_short_window_fails_on_proven_failures_and_otherwise_keeps_measuring(m: Measurement, result: str,
                                                                               pending: bool) -> None:
    verdict = analyse(m, Policy(max_error_rate=0.02, min_requests=50))
    assert (verdict.result, verdict.pending) == (result, pending), verdict.message


def test_latency_fails_a_canary_whatever_the_error_counters_can_see() -> None:
    # Triton's counters cannot pass a canary (they count the llmapi model's errors as successes), but latency
    # is judged before that: 10x over the limit is Failed, not Inconclusive.
    blind = Measurement(200, 0, window_seconds=30, errors_counted=False, latency=latency(canary_e2e=[10.0] * 200))
    verdict = analyse(blind, replace(BASE, max_p99_seconds=1.0))
    assert verdict.result == "Failed" and "maxP99LatencySeconds 1" in verdict.message
    within = replace(blind, latency=latency(canary_e2e=[0.3] * 200))
    assert analyse(within, replace(BASE, max_p99_seconds=1.0)).result == "Inconclusive"


# ---------------------------------------------------------------------------------------------- the machine

CANARY = Rollout(strategy="canary", steps=(Step(weight=10), Step(pause_seconds=60), Step(weight=50),
                                           Step(pause_seconds=60)),
                 router="gatewayAPI", policy=Policy(max_error_rate=0.05, min_requests=20), interval_seconds=30,
                 failure_limit=2, baseline_first=True)


@dataclass
class Traffic:
    """The canary's requests as a provider counts them: `rate` per second since its traffic started, `failing` of
    them failed, each with the latencies `shape(n)` gives (histograms of its n requests)."""

    rate: float
    failing: float = 0.0
    shape: Callable[[int], dict[str, Histogram]] = lambda n: {}
    errors_counted: bool = True

    def served(self, seconds: float) -> int:
        return math.floor(self.rate * seconds + 1e-9)

    def window(self, start: float, end: float) -> Measurement:
        n = self.served(end) - self.served(start)
        errors = math.floor(self.failing * self.served(end)) - math.floor(self.failing * self.served(start))
        return Measurement(n, errors, window_seconds=end - start, latency=self.shape(n),
                           errors_counted=self.errors_counted)


def run(rollout: Rollout, traffic: Traffic, seconds: int = 3000, every: float = 5.0) -> list[Decision]:
    """Passes every `every` s; when the analysis is due the provider measures the window since
    machine.window_start (the time 0 of `traffic` is when the canary first had weight); a baseline first."""
    now, state = 1000.0, State(stable=STABLE, history=(STABLE,))
    live = {STABLE: 4}
    first_traffic: float | None = None
    decisions = []
    for _ in range(int(seconds / every)):
        now += every
        m = None
        if machine.analysis_due(rollout, state, now, live.get(state.canary, 0) > 0):
            measured = state.analysis is not None and state.analysis.revision == state.canary
            if first_traffic is None:
                first_traffic = now
            if rollout.baseline_first and not measured:
                m = Measurement(0, 0, baseline_only=True)
            else:
                m = traffic.window(max(0.0, machine.window_start(state) - first_traffic), now - first_traffic)
        d = machine.decide(rollout, state, World(target=NEW, target_servable=True, replicas=4, now=now,
                                                 ready=dict(live), desired=dict(live), pods=dict(live),
                                                 measurement=m))
        state, live = d.state, dict(d.replicas)
        decisions.append(d)
        if d.outcome:
            break
    return decisions


MODEST = 17 / 30  # 17 requests a 30 s window, minRequests 20


def test_a_broken_canary_at_modest_traffic_is_rolled_back_not_paused() -> None:
    decisions = run(CANARY, Traffic(MODEST, failing=0.3))
    d = decisions[-1]
    assert d.outcome == "rolled_back" and not any(x.state.paused for x in decisions)
    failed = [x.verdict.message for x in decisions if x.verdict and x.verdict.result == "Failed"]
    assert len(failed) == 2 and "even if the 20 minRequests were made up with successes" in failed[0]
    # Within two intervals of the baseline (a pass of 5 s each).
    baseline = next(i for i, x in enumerate(decisions) if x.state.analysis and x.state.analysis.message ==
                    "baseline taken")
    assert (len(decisions) - 1 - baseline) * 5 <= 2 * 30 + 5


def test_a_healthy_canary_at_modest_traffic_is_promoted_without_a_human() -> None:
    decisions = run(CANARY, Traffic(MODEST))
    assert decisions[-1].outcome == "promoted" and not any(x.state.paused for x in decisions)
    analyses = [x.state.analysis for x in decisions if x.verdict is not None and x.state.analysis]
    # Each window short of minRequests stayed open (Pending, its start kept) until the next measurement covered
    # 60 s and 34 requests.
    pending = [a for a in analyses if a.result == "Pending"]
    assert pending and all(a.window_start is not None and a.window_start < a.at for a in pending)
    assert all(a.window_start is None for a in analyses if a.result == "Successful")
    assert not any(x.verdict.result == "Failed" for x in decisions if x.verdict)


def test_a_window_short_for_ten_intervals_is_inconclusive_and_the_rollout_pauses() -> None:
    decisions = run(CANARY, Traffic(1 / 30))  # 1 request a window: 10 in 10 intervals, short of 20
    paused = next(x for x in decisions if x.state.paused)
    assert paused.state.pause_reason == "AnalysisInconclusive"
    assert paused.state.analysis is not None and "after 10 intervals" in paused.state.analysis.message
    pendings = [x for x in decisions if x.state.analysis and x.state.analysis.result == "Pending"
                and x.state.analysis.window_start is not None]
    assert len({x.state.analysis.at for x in pendings if x.state.analysis}) == 9  # measured every interval


def test_a_pending_window_is_measured_every_interval_not_every_pass() -> None:
    state = State(stable=STABLE, canary=NEW, weight=10, step=1, step_started_at=0.0, analysis=machine.LastAnalysis(
        NEW, at=90.0, result="Pending", failures=0, step=1, window_start=30.0))
    assert machine.window_start(state) == 30.0  # the window measured next still starts at 30...
    assert machine.next_analysis_at(CANARY, state) == 120.0  # ...but it is measured one interval after the last
    restored = State.from_status({"canaryRevision": NEW, "stableRevision": STABLE, "analysis": {
        "revision": NEW, "at": "2025-01-20T10:01:30Z", "windowStart": "2025-01-20T10:00:30Z", "result": "Pending"}})
    assert restored.analysis is not None and restored.analysis.at - restored.analysis.window_start == 60  # type: ignore[operator]


def test_tritons_blind_counters_with_a_canary_ten_times_over_its_latency_limit_roll_it_back() -> None:
    """The ordering bug: with onInconclusive continue, a canary 10x over its latency limit was promoted because
    Triton's counters (errors_counted False) made every window Inconclusive before latency was looked at."""
    slow = Traffic(2.0, shape=lambda n: latency(canary_ttft=[10.0] * n), errors_counted=False)
    rollout = replace(CANARY, on_inconclusive="continue",
                      policy=replace(CANARY.policy, ttft=ttft(1.0)))  # type: ignore[arg-type]
    d = run(rollout, slow)[-1]
    assert d.outcome == "rolled_back"
    fine = replace(slow, shape=lambda n: latency(canary_ttft=[0.2] * n))
    assert run(rollout, fine)[-1].outcome == "promoted"  # Inconclusive, and onInconclusive says continue


# ---------------------------------------------------------------------------------------------- sequential

SEQUENTIAL = replace(CANARY, interval_seconds=2, policy=Policy(max_error_rate=0.05, min_requests=50),
                     sequential=SequentialPolicy.for_limit(0.05, 50))


def slow_share(share: float, seconds: float = 1.5) -> Callable[[int], dict[str, Histogram]]:
    """n requests of which `share` took `seconds` to their first token, the others 0.2 s; the stable's all 0.2 s."""
    return lambda n: latency(canary_ttft=[seconds] * math.floor(share * n) + [0.2] * (n - math.floor(share * n)),
                             stable_ttft=[0.2] * max(n, 1))


def test_sequential_mode_counts_a_request_slower_than_the_ttft_objective_as_bad() -> None:
    rollout = replace(SEQUENTIAL, policy=replace(SEQUENTIAL.policy, ttft=ttft(1.0)))  # type: ignore[arg-type]
    decisions = run(rollout, Traffic(2.0, shape=slow_share(0.3)), every=1)
    d = decisions[-1]
    assert d.outcome == "rolled_back"
    last = d.state.analysis
    assert last is not None and last.totals is not None and last.totals[1] == 0 and last.totals[2] > 0
    assert "bad (failed or slow)" in last.message and "the sequential test" in d.events[-1].message
    # The same slow requests under an objective they meet (2 s), or with no objective: promoted.
    lenient = replace(rollout, policy=replace(rollout.policy, ttft=ttft(2.0)))  # type: ignore[arg-type]
    assert run(lenient, Traffic(2.0, shape=slow_share(0.3)), every=1)[-1].outcome == "promoted"
    assert run(SEQUENTIAL, Traffic(2.0, shape=slow_share(0.3)), every=1)[-1].outcome == "promoted"


@pytest.mark.parametrize(("gate", "shape"), [
    (ttft(ratio=2.0), lambda n: latency(canary_ttft=[1.5] * n, stable_ttft=[0.2] * n)),
    (itl(0.05), lambda n: latency(canary_itl=STUTTER)),
    (itl(ratio=2.0), lambda n: latency(canary_itl=STUTTER, stable_itl=SMOOTH)),
], ids=["ttft-relative", "itl-absolute", "itl-relative"])
def test_sequential_mode_judges_the_other_latency_gates_per_window(
        gate: LatencyGate, shape: Callable[[int], dict[str, Histogram]]) -> None:
    kind = {TTFT: "ttft", ITL: "itl"}[gate.kind]
    policy = replace(SEQUENTIAL.policy, min_requests=1, **{kind: gate})  # type: ignore[arg-type]
    decisions = run(replace(SEQUENTIAL, policy=policy), Traffic(2.0, shape=shape), every=1)
    assert decisions[-1].outcome == "rolled_back"
    failures = [x.state.analysis.failures for x in decisions if x.verdict and x.verdict.result == "Failed"
                and x.state.analysis]
    assert failures == [1, 2]  # failureLimit 2 windows over the gate, as the p99 gate


def test_sequential_mode_passes_a_canary_within_every_gate() -> None:
    policy = replace(SEQUENTIAL.policy, ttft=ttft(1.0, 2.0), itl=itl(0.05, 2.0), max_p99_seconds=5.0)

    def shape(n: int) -> dict[str, Histogram]:
        return latency(canary_ttft=FAST, stable_ttft=FAST, canary_itl=SMOOTH, stable_itl=SMOOTH,
                       canary_e2e=[0.3] * 100)

    decisions = run(replace(SEQUENTIAL, policy=policy), Traffic(2.0, shape=shape), every=1)
    assert decisions[-1].outcome == "promoted"
    passed = next(x.state.analysis for x in decisions if x.state.analysis and x.state.analysis.result == "Successful")
    assert passed.totals is not None and passed.totals[2] == 0
