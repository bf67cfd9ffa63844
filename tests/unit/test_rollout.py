"""The rollout state machine and the analysis verdicts, as tables. Pure: no cluster, no clock."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest

from deepseek_operator.rollout import machine
from deepseek_operator.rollout.analysis import Measurement, Policy, analyse, counter_increase, histogram_quantile
from deepseek_operator.rollout.machine import Action, Decision, Rollout, State, Step, World
from deepseek_operator.rollout.sequential import SequentialPolicy

POLICY = Policy(max_error_rate=0.02, min_requests=50)
CANARY = Rollout(strategy="canary", steps=(Step(weight=10), Step(pause_seconds=60), Step(weight=50),
                                           Step(pause_seconds=60)),
                 router="gatewayAPI", policy=POLICY, interval_seconds=30, failure_limit=2)
GOOD = Measurement(requests=200, errors=1, window_seconds=30)
BAD = Measurement(requests=200, errors=60, window_seconds=30)
QUIET = Measurement(requests=10, errors=0, window_seconds=30)
STABLE, NEW = "aaaaaaaaaa", "bbbbbbbbbb"


def p99(seconds: float) -> dict[str, float]:
    """A provider's own figure of the canary's whole-request p99 (as a prometheus latency template gives it)."""
    return {"canary:e2e@0.99": seconds}


class Sim:
    """Drives the machine the way the operator does: one decision per pass; Deployments become Ready at once."""

    def __init__(self, rollout: Rollout = CANARY, replicas: int = 4) -> None:
        self.rollout, self.replicas, self.now = rollout, replicas, 1000.0
        self.state = State(stable=STABLE, history=(STABLE,))
        self.live = {STABLE: replicas}
        self.decisions: list[Decision] = []

    def step(self, target: str = NEW, measurement: Measurement | None = None, action: Action | None = None,
             advance: float = 1.0, ready: bool = True) -> Decision:
        self.now += advance
        ready_map = dict(self.live) if ready else {STABLE: self.live.get(STABLE, 0)}
        d = machine.decide(self.rollout, self.state, World(
            target=target, target_servable=True, replicas=self.replicas, now=self.now, ready=ready_map,
            desired=dict(self.live), pods=dict(self.live), measurement=measurement, action=action))
        self.state, self.live = d.state, dict(d.replicas)
        self.decisions.append(d)
        return d

    def until_outcome(self, passes: int = 20) -> Decision:
        for _ in range(passes):
            d = self.step()
            if d.outcome:
                return d
        raise AssertionError(f"no outcome after {passes} passes: {d}")

    def measure_when_due(self, m: Measurement, target: str = NEW) -> Decision:
        """Passes every 5 s; the provider answers `m` whenever the analysis is due."""
        due = machine.analysis_due(self.rollout, self.state, self.now + 5, self.live.get(self.state.canary, 0) > 0)
        return self.step(target, measurement=m if due else None, advance=5)


def test_clean_canary_walks_every_step_and_is_promoted() -> None:
    sim = Sim()
    weights = []
    for _ in range(200):
        d = sim.measure_when_due(GOOD)
        if d.state.canary:
            weights.append(d.state.weight)
        if d.outcome:
            break
    assert d.outcome == "promoted"
    assert (d.state.stable, d.state.canary, d.phase) == (NEW, "", "Healthy")
    assert d.state.history == (NEW, STABLE)
    assert d.replicas == {NEW: 4}
    assert weights == sorted(weights) and {0, 10, 50} <= set(weights)
    steps = [x.replicas for x in sim.decisions if x.state.canary and x.state.step < len(CANARY.steps)]
    promotion = [x.replicas for x in sim.decisions if x.state.canary and x.state.step == len(CANARY.steps)]
    # Through the steps the canary got the replicas its weight needed, the stable the rest within one replica
    # beyond the 4 (maxSurge 1): 10% took the surge (1 of 5), 50% two stable replicas' GPUs too (3 of 5)...
    assert {r[NEW] for r in steps} == {1, 3} and all(sum(r.values()) <= 5 for r in steps)
    assert min(r[STABLE] for r in steps) == 2
    # ...and promotion replaced the stable one replica at a time: never more than one extra replica.
    assert promotion and all(sum(r.values()) <= 5 for r in promotion)
    assert [r[STABLE] for r in promotion] == sorted((r[STABLE] for r in promotion), reverse=True)


def test_failed_analysis_rolls_back_after_failure_limit_and_holds_the_revision() -> None:
    sim = Sim()
    for _ in range(50):
        d = sim.measure_when_due(BAD)
        if d.outcome:
            break
    assert d.outcome == "rolled_back"
    assert (d.phase, d.reason, d.degraded) == ("RolledBack", "AnalysisFailed", True)
    assert (d.state.stable, d.state.canary, d.state.weight, d.state.held) == (STABLE, "", 0, NEW)
    assert d.replicas == {STABLE: 4}  # the canary gets no replicas at all
    assert [v.result for v in (x.verdict for x in sim.decisions) if v] == ["Failed", "Failed"]
    assert any(e.type == "Warning" and e.reason == "AnalysisFailed" for e in d.events)
    # Still named by the spec, the bad revision is not tried again...
    for _ in range(5):
        again = sim.step()
        assert (again.state.canary, again.phase) == ("", "RolledBack")
    # ...until a person asks, or the spec names another revision.
    retried = sim.step(action=Action("retry", "n1"))
    assert (retried.state.canary, retried.state.held) == (NEW, "")
    sim2 = Sim()
    sim2.state = d.state
    moved_on = sim2.step(target="cccccccccc")
    assert (moved_on.state.canary, moved_on.state.held) == ("cccccccccc", "")


def test_one_failure_below_the_limit_does_not_roll_back_and_blocks_promotion() -> None:
    sim = Sim(replace(CANARY, steps=(Step(weight=50),)))
    while sim.step().state.step < 1:  # the canary takes its 2 replicas (the surge, then a stable one's GPUs)
        pass
    d = sim.step(measurement=BAD, advance=31)
    assert (d.state.canary, d.state.analysis.failures if d.state.analysis else None) == (NEW, 1)
    assert d.phase == "Progressing" and "failed measurement" in d.message
    d = sim.step(measurement=GOOD, advance=31)
    assert d.state.analysis is not None and d.state.analysis.failures == 0
    assert sim.until_outcome().outcome == "promoted"


@pytest.mark.parametrize(("on_inconclusive", "phase", "outcome"), [
    ("pause", "Paused", ""), ("rollback", "RolledBack", "rolled_back"), ("continue", "Healthy", "promoted")])
def test_low_traffic_is_inconclusive_and_never_promotes_by_itself(on_inconclusive: str, phase: str,
                                                                  outcome: str) -> None:
    sim = Sim(replace(CANARY, on_inconclusive=on_inconclusive))  # type: ignore[arg-type]
    for _ in range(400):  # each window short of minRequests measures on for 10 intervals before it is Inconclusive
        d = sim.measure_when_due(QUIET)
        if d.outcome or d.phase == "Paused":
            break
    assert (d.phase, d.outcome) == (phase, outcome)
    if phase == "Paused":
        assert d.reason == "AnalysisInconclusive" and "fewer than minRequests 50" in d.message
        for _ in range(20):  # paused: no measurement is asked for, nothing moves
            assert not machine.analysis_due(sim.rollout, sim.state, sim.now + 1000, True)
            assert sim.step(advance=60).state == d.state


@pytest.mark.parametrize("measurement", [
    Measurement(0, 0, error="connection refused"), Measurement(float("nan"), 0), Measurement(100, float("nan"))])
def test_provider_failure_and_nan_are_inconclusive(measurement: Measurement) -> None:
    assert analyse(measurement, POLICY).result == "Inconclusive"


ANALYSE = [
    (Measurement(200, 4), POLICY, "Successful"),
    (Measurement(200, 5), POLICY, "Failed"),  # 2.5 % > 2 %
    (Measurement(49, 0), POLICY, "Inconclusive"),
    (Measurement(50, 0), POLICY, "Successful"),
    (Measurement(200, 0, quantiles=p99(3.0)), replace(POLICY, max_p99_seconds=2.5), "Failed"),
    (Measurement(200, 0, quantiles=p99(1.0)), replace(POLICY, max_p99_seconds=2.5), "Successful"),
    (Measurement(200, 0), replace(POLICY, max_p99_seconds=2.5), "Inconclusive"),
]


@pytest.mark.parametrize(("measurement", "policy", "result"), ANALYSE)
def test_analysis_verdicts(measurement: Measurement, policy: Policy, result: str) -> None:
    assert analyse(measurement, policy).result == result


def test_counters_and_histograms() -> None:
    assert counter_increase(None, 5) == 5
    assert counter_increase(5, 12) == 7
    assert counter_increase(12, 3) == 3  # the process restarted
    buckets = [(10.0, 50.0), (100.0, 90.0), (1000.0, 100.0), (math.inf, 100.0)]
    assert histogram_quantile(0.5, buckets) == 10.0
    assert histogram_quantile(0.99, buckets) == pytest.approx(910.0)
    assert histogram_quantile(0.99, [(10.0, 0.0), (math.inf, 0.0)]) is None


def test_spec_change_during_a_rollout_supersedes_the_canary() -> None:
    sim = Sim()
    sim.step()
    d = sim.step()
    assert d.state.canary == NEW and d.state.weight == 10
    d = sim.step(target="cccccccccc")
    assert (d.state.canary, d.state.step, d.state.weight) == ("cccccccccc", 0, 0)
    assert NEW not in d.replicas and d.replicas[STABLE] == 4
    assert [e.reason for e in d.events][:2] == ["RolloutSuperseded", "RolloutStarted"]
    d = sim.step(target=STABLE)  # back to the stable spec: the rollout is simply cancelled
    assert (d.state.canary, d.phase) == ("", "Healthy")


ACTIONS = [
    # action, expected (canary, paused, step) after it, result text contains
    (Action("pause", "n"), (NEW, True, 1), "paused"),
    (Action("promote", "n"), (NEW, False, 2), "skipped"),
    (Action("promote-full", "n"), (NEW, False, 4), "promoting"),
    (Action("abort", "n"), ("", False, 0), "aborted"),
    (Action("rollback-to", "n", STABLE), ("", False, 0), "rolling back"),
    (Action("rollback-to", "n", "ffffffffff"), (NEW, False, 1), "not in the history"),
]


@pytest.mark.parametrize(("action", "after", "result"), ACTIONS, ids=[a[0].name + a[0].argument for a in ACTIONS])
def test_actions_during_a_rollout(action: Action, after: tuple[str, bool, int], result: str) -> None:
    sim = Sim()
    sim.step()
    assert sim.step().state.step == 1  # weight 10 reached, pausing
    d = sim.step(action=action)
    assert (d.state.canary, d.state.paused, d.state.step) == after
    assert result in d.action_result


def test_abort_holds_and_degrades_and_resume_follows_pause() -> None:
    sim = Sim()
    sim.step()
    sim.step()
    paused = sim.step(action=Action("pause", "1"))
    assert paused.phase == "Paused" and paused.reason == "PausedByUser"
    resumed = sim.step(action=Action("resume", "2"))
    assert resumed.phase == "Progressing" and not resumed.state.paused
    aborted = sim.step(action=Action("abort", "3"))
    assert (aborted.phase, aborted.reason, aborted.degraded, aborted.outcome) == (
        "RolledBack", "Aborted", True, "aborted")
    assert aborted.state.held == NEW


def test_rollback_to_an_earlier_revision_skips_steps_and_analysis_and_holds_the_spec_revision() -> None:
    sim = Sim(replace(CANARY, steps=()))
    d = sim.until_outcome()
    assert d.outcome == "promoted" and d.state.history == (NEW, STABLE)
    d = sim.step(action=Action("rollback-to", "r", STABLE))
    assert (d.state.canary, d.state.kind, d.state.held) == (STABLE, machine.ROLLBACK, NEW)
    assert not machine.analysis_due(sim.rollout, sim.state, sim.now + 1000, True)
    d = sim.until_outcome()
    assert (d.outcome, d.state.stable, d.phase, d.reason, d.degraded) == (
        "promoted", STABLE, "RolledBack", "RolledBackByUser", False)
    assert sim.step().state.canary == ""  # the spec still names NEW: held


def test_indefinite_pause_waits_for_promote() -> None:
    sim = Sim(replace(CANARY, steps=(Step(weight=20), Step()), policy=None))
    sim.step()
    d = sim.step()
    assert (d.phase, d.reason) == ("Paused", "CanaryPaused")
    assert sim.step(advance=3600).phase == "Paused"
    d = sim.step(action=Action("promote", "p"))
    assert d.state.step == 2
    assert sim.until_outcome().outcome == "promoted"


def test_canary_that_cannot_be_scheduled_waits_and_the_stable_keeps_serving() -> None:
    sim = Sim()
    for _ in range(10):
        d = sim.step(ready=False)
    assert (d.phase, d.state.weight, d.replicas) == ("Progressing", 0, {STABLE: 4, NEW: 1})
    assert "0/1 canary replicas ready" in d.message


def test_ab_test_routes_matching_requests_once_the_canary_is_ready() -> None:
    ab = replace(CANARY, strategy="abTest", steps=(Step(pause_seconds=60),))
    sim = Sim(ab)
    d = sim.step(ready=False)
    assert (d.ab_routing, d.replicas[NEW]) == (False, 1)
    d = sim.step()
    assert d.ab_routing and d.state.weight == 0
    assert machine.analysis_due(ab, sim.state, sim.now + 31, True)
    for _ in range(40):
        d = sim.measure_when_due(GOOD)
        if d.outcome:
            break
    assert d.outcome == "promoted" and not d.ab_routing


def test_recreate_stops_the_stable_first() -> None:
    sim = Sim(replace(CANARY, strategy="recreate", steps=()))
    d = sim.step(ready=False)
    assert d.replicas == {STABLE: 0, NEW: 4}
    assert sim.step().outcome == "promoted"


def test_first_deployment_needs_no_rollout() -> None:
    d = machine.decide(CANARY, State(), World(target=NEW, target_servable=True, replicas=2, now=0, ready={NEW: 2}))
    assert (d.state.stable, d.state.history, d.phase, d.outcome, d.events) == (NEW, (NEW,), "Healthy", "", ())
    waiting = machine.decide(CANARY, State(), World(target=NEW, target_servable=False, replicas=2, now=0))
    assert waiting.replicas == {}


@pytest.mark.parametrize(("annotations", "handled", "expected"), [
    ({}, "", None),
    ({"a": "promote"}, "", None),  # no nonce: nothing to do
    ({"a": "promote", "n": "1"}, "1", None),  # already handled
    ({"a": "promote", "n": "2"}, "1", Action("promote", "2")),
    ({"a": "rollback-to=abc", "n": "3"}, "", Action("rollback-to", "3", "abc")),
    ({"a": "rollback-to", "n": "3"}, "", "rollback-to needs a revision: rollback-to=<revision>"),
    ({"a": "launch", "n": "4"}, "", "unknown action"),
])
def test_actions_are_parsed_once_per_nonce(annotations: dict[str, str], handled: str,
                                           expected: Action | str | None) -> None:
    got = machine.parse_action(annotations, "a", "n", handled)
    if isinstance(expected, str):
        assert isinstance(got, str) and got.startswith(expected)
    else:
        assert got == expected


def test_triton_counters_can_prove_a_canary_bad_but_never_good() -> None:
    # Triton counts the llmapi model's error responses as successes (triton-inference-server/server#7713).
    policy = Policy(max_error_rate=0.05, min_requests=10)
    assert analyse(Measurement(requests=100, errors=20, errors_counted=False), policy).result == "Failed"
    blind = analyse(Measurement(requests=100, errors=0, errors_counted=False), policy)
    assert blind.result == "Inconclusive" and "provider frontend" in blind.message
    assert analyse(Measurement(requests=100, errors=0), policy).result == "Successful"


def test_a_differencing_provider_takes_its_baseline_when_the_canary_gets_traffic() -> None:
    """No wasted window: the first judged window closes one interval after the weight went up, so a bad canary
    is at weight 0 within interval x failureLimit (+ a pass) of its first traffic, not one interval later."""
    rollout = replace(CANARY, baseline_first=True, interval_seconds=10)
    sim = Sim(rollout)
    first_traffic = None
    for _ in range(100):
        due = machine.analysis_due(rollout, sim.state, sim.now + 1, sim.live.get(sim.state.canary, 0) > 0)
        first = sim.state.analysis is None or sim.state.analysis.revision != sim.state.canary
        m = (Measurement(0, 0, baseline_only=True) if first else BAD) if due else None
        d = sim.step(measurement=m, advance=1)
        if first_traffic is None and d.state.weight > 0:
            first_traffic = sim.now
        if d.outcome:
            break
    assert d.outcome == "rolled_back" and first_traffic is not None
    assert sim.now - first_traffic <= rollout.interval_seconds * rollout.failure_limit + 5
    without = Sim(replace(rollout, baseline_first=False))
    assert machine.next_analysis_at(without.rollout, replace(d.state, canary=NEW, analysis=None,
                                                             step_started_at=100.0)) == 110.0
    assert machine.next_analysis_at(rollout, replace(d.state, canary=NEW, analysis=None, step_started_at=100.0)) \
        == 100.0


SEQUENTIAL = replace(CANARY, policy=Policy(max_error_rate=0.05, min_requests=50), interval_seconds=2,
                     baseline_first=True, sequential=SequentialPolicy.for_limit(0.05, 50))


def _sequential_run(rate: float, *, errors_counted: bool = True, p99: float | None = None,
                    rollout: Rollout = SEQUENTIAL, seconds: int = 600) -> tuple[Sim, Decision, float | None]:
    """Passes every second; the canary gets 2 req/s, `rate` of them failing evenly; a measurement when due."""
    sim = Sim(rollout)
    first_traffic, window_start, served, failed = None, 0.0, 0.0, 0.0
    d = sim.step()
    for _ in range(seconds):
        if first_traffic is None and sim.state.weight > 0:
            first_traffic = window_start = sim.now
        due = machine.analysis_due(rollout, sim.state, sim.now + 1, sim.live.get(sim.state.canary, 0) > 0)
        m = None
        if due:
            first = sim.state.analysis is None or sim.state.analysis.revision != sim.state.canary
            n = 2 * (sim.now + 1 - window_start) if first_traffic is not None else 0.0
            errors = math.floor((served + n) * rate) - failed
            m = Measurement(0, 0, baseline_only=True) if first else Measurement(
                n, errors, window_seconds=n / 2, errors_counted=errors_counted,
                quantiles={} if p99 is None else {"canary:e2e@0.99": p99})
            if not first:
                served, failed = served + n, failed + errors
            window_start = sim.now + 1
        d = sim.step(measurement=m, advance=1)
        if d.outcome or d.phase == "Paused":
            break
    return sim, d, first_traffic


def test_sequential_mode_rolls_back_on_the_evidence_without_waiting_for_failed_windows() -> None:
    sim, d, first_traffic = _sequential_run(0.3)
    assert d.outcome == "rolled_back" and first_traffic is not None
    # 17 requests at 30% errors cross the bound (8.5 s at 2 req/s); here the baseline drops the first second's
    # requests and a measurement comes every 2 s.
    assert sim.now - first_traffic <= 12
    # The same canary judged by windows: 4 requests a window never reach minRequests, so it only pauses.
    _, windowed, _ = _sequential_run(0.3, rollout=replace(SEQUENTIAL, sequential=None))
    assert (windowed.phase, windowed.state.pause_reason) == ("Paused", "AnalysisInconclusive")
    assert d.state.analysis is not None and d.state.analysis.result == "Failed"
    assert "the sequential test: roll back" in next(e.message for e in d.events if e.reason == "AnalysisFailed"
                                                     and e.type == "Warning" and "rolled back" in e.message)
    # Measurements short of the evidence were Pending: neither failures nor a pause.
    pending = [x.state.analysis for x in sim.decisions if x.state.analysis and x.state.analysis.result == "Pending"]
    assert pending and all(a.failures == 0 for a in pending)


def test_sequential_mode_passes_a_clean_canary_only_past_min_requests_and_promotes_it() -> None:
    sim, d, first_traffic = _sequential_run(0.0)
    assert d.outcome == "promoted" and first_traffic is not None
    passed = next(x for x in sim.decisions if x.state.analysis and x.state.analysis.result == "Successful")
    assert passed.state.analysis is not None and passed.state.analysis.totals is not None
    assert passed.state.analysis.totals[0] >= 50  # minRequests: never a pass on too little evidence
    assert not any(x.state.paused for x in sim.decisions)


def test_sequential_mode_on_tritons_counters_never_passes_a_canary() -> None:
    _, d, _ = _sequential_run(0.0, errors_counted=False)
    assert (d.phase, d.state.pause_reason) == ("Paused", "AnalysisInconclusive")
    assert d.state.analysis is not None and "server#7713" in d.state.analysis.message


def test_sequential_mode_keeps_the_latency_gate_per_window_with_its_failure_limit() -> None:
    slow = replace(SEQUENTIAL, policy=Policy(max_error_rate=0.05, min_requests=1, max_p99_seconds=1.0))
    sim, d, _ = _sequential_run(0.0, p99=3.0, rollout=slow)
    assert d.outcome == "rolled_back"
    assert [x.state.analysis.failures for x in sim.decisions if x.verdict and x.verdict.result == "Failed"
            and x.state.analysis] == [1, 2]  # failureLimit 2 windows over the gate


def test_sequential_totals_survive_a_restart_through_status() -> None:
    status = {"canaryRevision": NEW, "stableRevision": STABLE, "analysis": {
        "revision": NEW, "at": "2025-01-20T10:00:00Z", "result": "Pending", "totalRequests": 12.5,
        "totalErrors": 3.0, "totalSlow": 1.0}}
    last = State.from_status(status).analysis
    assert last is not None and last.totals == (12.5, 3.0, 1.0)


def test_a_provider_error_in_sequential_mode_keeps_the_canarys_totals() -> None:
    sim = Sim(SEQUENTIAL)
    sim.step()
    sim.step()  # weight 10: the canary has traffic
    sim.step(measurement=Measurement(0, 0, baseline_only=True), advance=2)
    sim.step(measurement=Measurement(10, 2), advance=2)
    sim.step(measurement=Measurement(0, 0, error="connection refused"), advance=2)
    assert sim.state.analysis is not None and sim.state.analysis.totals == (10, 2, 0)
    d = sim.step(measurement=Measurement(10, 1), advance=2)
    assert d.state.analysis is not None and d.state.analysis.totals == (20, 3, 0)
