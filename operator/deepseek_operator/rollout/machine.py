"""The rollout state machine: given the rollout state kept in status and what this pass saw, what happens next.

Pure: no clock (the time comes in), no I/O. Every field of `State` lives in the resource's status, so an
operator restarted at any point resumes exactly where the last status write left it.

Vocabulary. The *target* is the revision the spec names. The *stable* revision serves; the *canary* is the one
being rolled out. A *held* revision was rolled back or aborted: it is not rolled out again until the spec names
another revision or a person sends `retry`. A `rollback-to` makes an earlier revision the canary with
`kind=rollback`, which skips the steps and the analysis.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from deepseek_operator.api.status import AnalysisResult, Outcome, Phase, Reason
from deepseek_operator.rollout import capacity
from deepseek_operator.rollout.analysis import TRITON_CANNOT_PASS, TTFT, Measurement, Policy, Verdict, analyse
from deepseek_operator.rollout.clock import epoch, rfc3339
from deepseek_operator.rollout.sequential import SequentialPolicy, sequential_verdict

Strategy = Literal["canary", "abTest", "recreate"]
Router = Literal["gatewayAPI", "service"]
INDEFINITE = "indefinite"
POLL_SECONDS = 5.0  # how often a rollout waiting on pods looks again when no event wakes it
ACTIONS = ("promote", "promote-full", "abort", "pause", "resume", "retry", "rollback-to")
# Rollout kinds that skip the remaining steps and the analysis: a return to a known revision, a forced promotion.
ROLLBACK, PROMOTE_FULL = "rollback", "promote-full"
FAST = (ROLLBACK, PROMOTE_FULL)
# A window short of minRequests stays open (Pending) until it has them or spans this many intervals, after which
# it is Inconclusive.
MAX_WINDOW_INTERVALS = 10


@dataclass(frozen=True)
class Step:
    weight: int | None = None
    pause_seconds: int | None = None  # None with weight None: an indefinite pause


@dataclass(frozen=True)
class Rollout:
    """The rollout settings of the spec, reduced to what the machine needs."""

    strategy: Strategy = "canary"
    steps: tuple[Step, ...] = ()
    router: Router = "service"
    policy: Policy | None = None  # None: no analysis
    interval_seconds: int = 30
    failure_limit: int = 2
    on_inconclusive: Literal["pause", "continue", "rollback"] = "pause"
    history_limit: int = 5
    # A provider that differences counters (frontend, triton, gateway) needs a baseline before its first window:
    # taken as soon as the canary gets traffic, so that its first window is judged one interval later, not two.
    baseline_first: bool = False
    sequential: SequentialPolicy | None = None  # analysis.mode sequential: the test of the canary's totals
    max_surge: int = 1  # replicas beyond the desired count a rollout may hold (rollout/capacity.py)
    max_unavailable: int = 1  # replicas below it that Ready ones of both revisions may fall to


@dataclass(frozen=True)
class Action:
    name: str  # one of ACTIONS
    nonce: str
    argument: str = ""  # the revision of rollback-to


@dataclass(frozen=True)
class LastAnalysis:
    revision: str
    at: float
    result: str  # an AnalysisResult
    failures: int
    message: str = ""
    step: int = -1  # the step it was taken in
    # Sequential mode: the canary's requests, errors and requests slower to their first token than the
    # objective, since its traffic started (None in windowed mode).
    totals: tuple[float, float, float] | None = None
    # Windowed mode: where the window still open starts, while it is short of minRequests (None: closed at `at`).
    window_start: float | None = None


@dataclass(frozen=True)
class State:
    stable: str = ""
    canary: str = ""
    weight: int = 0
    canary_replicas: int = 0
    step: int = 0
    step_started_at: float = 0.0
    paused: bool = False
    pause_reason: str = ""
    kind: str = ""  # "", ROLLBACK or PROMOTE_FULL
    held: str = ""
    held_reason: str = ""
    analysis: LastAnalysis | None = None
    history: tuple[str, ...] = ()  # promoted revisions, newest first (the stable is history[0])

    @classmethod
    def from_status(cls, status: Mapping[str, Any]) -> State:
        """The state as the last status write left it (the status fields `to_status` writes, and the last
        analysis and the history's revisions)."""
        a = status.get("analysis")
        totals = (float(a["totalRequests"]), float(a.get("totalErrors") or 0), float(a.get("totalSlow") or 0)) \
            if a and a.get("totalRequests") is not None else None
        last = LastAnalysis(a["revision"], epoch(a["at"]), a["result"], int(a.get("failures", 0)),
                            a.get("message", ""), int(a.get("step", -1)), totals,
                            epoch(a["windowStart"]) if a.get("windowStart") else None) if a else None
        return cls(
            stable=status.get("stableRevision", ""), canary=status.get("canaryRevision", ""),
            weight=int(status.get("canaryWeight", 0)), canary_replicas=int(status.get("canaryReplicas", 0)),
            step=int(status.get("currentStep", 0)), step_started_at=epoch(status.get("stepStartedAt", "")),
            paused=bool(status.get("paused", False)), pause_reason=status.get("pauseReason", ""),
            kind=status.get("rolloutKind", ""), held=status.get("heldRevision", ""),
            held_reason=status.get("heldReason", ""), analysis=last,
            history=tuple(h["revision"] for h in status.get("history") or []))

    def to_status(self) -> dict[str, Any]:
        """The status fields of the state, by their names on DeepSeekDeploymentStatus; the analysis figures
        and history entries are the pass's to add."""
        return {"stable_revision": self.stable, "canary_revision": self.canary, "canary_weight": self.weight,
                "canary_replicas": self.canary_replicas if self.canary else 0, "current_step": self.step,
                "step_started_at": rfc3339(self.step_started_at) if self.step_started_at else "",
                "paused": self.paused, "pause_reason": self.pause_reason, "rollout_kind": self.kind,
                "held_revision": self.held, "held_reason": self.held_reason}


@dataclass(frozen=True)
class World:
    """What this pass saw."""

    target: str
    target_servable: bool  # the target's checkpoint is ready (and its preflight passed): its pods may be created
    replicas: int  # spec.serving.replicas
    now: float
    ready: Mapping[str, int] = field(default_factory=dict)  # Ready replicas by revision (Deployment caught up)
    desired: Mapping[str, int] = field(default_factory=dict)  # replicas each revision's workload asks for now
    pods: Mapping[str, int] = field(default_factory=dict)  # pods (groups) each revision holds GPUs with
    measurement: Measurement | None = None
    action: Action | None = None
    # What a target that is not servable waits for, in the words and reason its status gives.
    waiting_for: str = "its quantized checkpoint"
    wait_reason: str = Reason.QUANTIZING
    job_running: bool = False  # a Job of the target (quantize, NCCL preflight) runs on one replica's GPUs


@dataclass(frozen=True)
class Event:
    """An event to post on the resource: every decision is said once."""

    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class Decision:
    state: State
    replicas: dict[str, int]  # desired replicas of each live revision
    phase: str
    reason: str
    message: str
    events: tuple[Event, ...] = ()
    requeue_after: float | None = None
    outcome: str = ""  # promoted | rolled_back | aborted, when this pass ended a rollout
    action_result: str = ""
    verdict: Verdict | None = None
    ab_routing: bool = False  # abTest: matching requests go to the canary now
    degraded: bool = False


# ---------------------------------------------------------------------------------------------------- weights


def budget(rollout: Rollout, replicas: int) -> capacity.Budget:
    return capacity.Budget(replicas, rollout.max_surge, rollout.max_unavailable)


def held(world: World, revision: str, desired: int) -> capacity.Held:
    return capacity.Held(desired=desired, ready=world.ready.get(revision, 0), existing=world.pods.get(revision, 0))


def window_start(state: State) -> float:
    """Where the canary's next measurement window starts: the start of the window still open (short of
    minRequests), else the last measurement of it, or the step's start."""
    last = state.analysis
    if last is None or last.revision != state.canary:
        return state.step_started_at
    return last.at if last.window_start is None else last.window_start


def next_analysis_at(rollout: Rollout, state: State) -> float | None:
    """When the canary's next measurement is due (one interval after the last, even while the window it measures
    stays open); None while nothing is to be analysed. The baseline of a differencing provider is due when the
    canary's step starts: its first judged window closes one interval after the canary got traffic."""
    if rollout.policy is None or not state.canary or state.kind in FAST or state.paused:
        return None
    last = state.analysis if state.analysis is not None and state.analysis.revision == state.canary else None
    if rollout.baseline_first and last is None:
        return state.step_started_at
    return (state.step_started_at if last is None else last.at) + rollout.interval_seconds


def analysis_due(rollout: Rollout, state: State, now: float, canary_ready: bool) -> bool:
    """Whether this pass should ask the provider for a measurement of the canary."""
    due = next_analysis_at(rollout, state)
    if due is None or rollout.strategy == "recreate" or not canary_ready:
        return False
    if rollout.strategy == "canary" and state.weight <= 0:
        return False
    return now >= due


# ---------------------------------------------------------------------------------------------------- decide


@dataclass
class _Pass:
    rollout: Rollout
    world: World
    state: State
    events: list[Event] = field(default_factory=list)
    outcome: str = ""
    action_result: str = ""
    verdict: Verdict | None = None
    waits: list[float] = field(default_factory=list)

    def say(self, type_: str, reason: str, message: str) -> None:
        self.events.append(Event(type_, reason, message))

    def set(self, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]

    def start(self, revision: str) -> None:
        self.set(canary=revision, weight=0, canary_replicas=0, step=0, step_started_at=self.world.now,
                 paused=False, pause_reason="", kind="")
        n = len(self.rollout.steps)
        self.say("Normal", "RolloutStarted",
                 f"rolling out revision {revision} over {self.state.stable} ({self.rollout.strategy}, {n} steps)")

    def end_canary(self) -> None:
        self.set(canary="", weight=0, canary_replicas=0, step=0, step_started_at=self.world.now, paused=False,
                 pause_reason="", kind="")

    def roll_back(self, reason: str, message: str) -> None:
        bad = self.state.canary
        self.end_canary()
        self.set(held=bad, held_reason=reason)
        self.outcome = Outcome.ABORTED if reason == Reason.ABORTED else Outcome.ROLLED_BACK
        self.say("Warning", reason, f"revision {bad} rolled back to {self.state.stable}: {message}")

    def promote(self) -> None:
        new, old = self.state.canary, self.state.stable
        history = (new, *(r for r in self.state.history if r != new))[: self.rollout.history_limit]
        self.end_canary()
        self.set(stable=new, history=history)
        if self.state.held == new:
            self.set(held="", held_reason="")
        self.outcome = Outcome.PROMOTED
        self.say("Normal", Reason.PROMOTED, f"revision {new} promoted to stable" + (f" (was {old})" if old else ""))


def decide(rollout: Rollout, state: State, world: World) -> Decision:
    p = _Pass(rollout, world, state)
    if world.action is not None:
        _act(p, world.action)
    if p.state.held and p.state.held != world.target and p.state.kind != ROLLBACK:
        p.set(held="", held_reason="")  # the spec moved on: the held revision is no longer asked for

    if not p.state.stable:
        return _first_deployment(p)
    _follow_target(p)
    if not p.state.canary:
        return _steady(p)
    if world.measurement is not None:
        _judge(p, world.measurement)
    if not p.state.canary:  # rolled back by the analysis
        return _steady(p)
    return _advance(p)


def _act(p: _Pass, action: Action) -> None:
    s, name = p.state, action.name
    rolling = bool(s.canary)
    if name == "retry":
        if not s.held:
            p.action_result = "nothing to retry: no revision is held"
            return
        p.action_result = f"revision {s.held} may roll out again"
        p.set(held="", held_reason="")
    elif name == "rollback-to":
        target = action.argument
        if target == s.stable and not rolling:
            p.action_result = f"revision {target} is already the stable revision"
            return
        if target != s.stable and target not in s.history:
            known = ", ".join(s.history) or "none"
            p.action_result = f"revision {target} is not in the history (known: {known})"
            return
        p.action_result = f"rolling back to revision {target}"
        p.say("Normal", Reason.ROLLED_BACK_BY_USER, f"rollback to revision {target} requested")
        if rolling:
            p.end_canary()
        if p.world.target != target:
            p.set(held=p.world.target, held_reason=Reason.ROLLED_BACK_BY_USER)
        if target != s.stable:
            p.set(canary=target, kind=ROLLBACK, step=len(p.rollout.steps), step_started_at=p.world.now,
                  weight=0, canary_replicas=0)
    elif not rolling:
        p.action_result = f"no rollout in progress: {name} does nothing"
    elif name == "abort":
        p.action_result = f"aborted revision {s.canary}"
        p.roll_back(Reason.ABORTED, "aborted by a person")
    elif name == "pause":
        p.action_result = "paused"
        p.set(paused=True, pause_reason=Reason.PAUSED_BY_USER)
        p.say("Normal", Reason.PAUSED_BY_USER, f"rollout of {s.canary} paused")
    elif name == "resume":
        p.action_result = "resumed" if s.paused else "not paused"
        if s.paused:
            p.set(paused=False, pause_reason="")
            if s.step < len(p.rollout.steps) and p.rollout.steps[s.step].weight is None \
                    and p.rollout.steps[s.step].pause_seconds is None:
                p.set(step=s.step + 1, step_started_at=p.world.now)  # an indefinite pause ends on resume
            p.say("Normal", "Resumed", f"rollout of {s.canary} resumed")
    elif name == "promote":
        step = min(s.step + 1, len(p.rollout.steps))
        p.action_result = f"step {s.step} skipped" if s.step < len(p.rollout.steps) else "promoting"
        p.set(paused=False, pause_reason="", step=step, step_started_at=p.world.now)
        p.say("Normal", "PromotedByUser", f"rollout of {s.canary}: {p.action_result}")
    elif name == "promote-full":
        p.action_result = "promoting without further steps or analysis"
        p.set(paused=False, pause_reason="", step=len(p.rollout.steps), step_started_at=p.world.now,
              kind=PROMOTE_FULL)
        p.say("Normal", "PromotedByUser", f"rollout of {s.canary}: {p.action_result}")


def _first_deployment(p: _Pass) -> Decision:
    """Nothing serves yet: the target comes up at full size and becomes stable once all its replicas are Ready."""
    w = p.world
    if not w.target_servable:
        return _decision(p, {}, Phase.PROGRESSING, w.wait_reason, f"revision {w.target} waits for {w.waiting_for}")
    ready = w.ready.get(w.target, 0)
    if ready >= w.replicas:
        p.set(canary=w.target)
        p.promote()
        p.outcome = ""  # a first deployment is no rollout: the phase event (Healthy) says it all
        p.events.pop()
        return _steady(p)
    return _decision(p, {w.target: w.replicas}, Phase.PROGRESSING, Reason.REPLICAS_NOT_READY,
                     f"{ready}/{w.replicas} replicas of revision {w.target} ready", wait=POLL_SECONDS)


def _follow_target(p: _Pass) -> None:
    """Starts, supersedes or cancels a rollout when the spec names another revision."""
    s, target = p.state, p.world.target
    if s.canary and s.kind != ROLLBACK and s.canary != target:
        p.say("Normal", "RolloutSuperseded", f"revision {s.canary} superseded by {target} before promotion")
        p.end_canary()
    if s.canary and s.kind == ROLLBACK and target not in (s.held, s.canary):
        p.say("Normal", "RolloutSuperseded", f"rollback to {s.canary} superseded by revision {target}")
        p.end_canary()
        p.set(held="", held_reason="")
    s = p.state
    if not s.canary and target != s.stable and target != s.held and p.world.target_servable:
        p.start(target)


def _held_by_others(w: World, stable: str) -> int:
    """Replicas (pods, or groups) of revisions other than the stable that hold GPUs."""
    return sum(count for revision, count in w.pods.items() if revision != stable)


def _steady_replicas(p: _Pass) -> int:
    """The stable's replicas outside a rollout: N, grown back (after a rollback, a promotion of a revision that
    had fewer) only into GPUs the other revisions' pods gave up, so that no stable pod waits Pending for them."""
    s, w = p.state, p.world
    n, now = w.replicas, w.desired.get(s.stable, w.replicas)
    if now >= n:
        return n
    return min(n, max(now, budget(p.rollout, n).room - _held_by_others(w, s.stable)))


def _steady(p: _Pass) -> Decision:
    s, w = p.state, p.world
    n = w.replicas
    ready = w.ready.get(s.stable, 0)
    replicas = {s.stable: _steady_replicas(p)}
    if s.held and s.held == w.target:
        degraded = s.held_reason != Reason.ROLLED_BACK_BY_USER
        message = f"revision {s.held} was rolled back ({s.held_reason}); serving {s.stable}. Change the spec or " \
                  "send the `retry` action to roll it out again"
        return _decision(p, replicas, Phase.ROLLED_BACK, s.held_reason, message, degraded=degraded)
    if w.target != s.stable and not w.target_servable:
        message = f"revision {w.target} waits for {w.waiting_for}; {s.stable} keeps serving"
        if w.job_running:
            stable = held(w, s.stable, w.desired.get(s.stable, n))
            replicas[s.stable] = min(replicas[s.stable], capacity.room_for_a_job(budget(p.rollout, n), stable,
                                                                                 _held_by_others(w, s.stable)))
            if replicas[s.stable] < n:
                message += f" on {replicas[s.stable]} of {n} replicas (the Job needs one replica's GPUs)"
        return _decision(p, replicas, Phase.PREPARING, w.wait_reason, message)
    if ready >= n:
        return _decision(p, replicas, Phase.HEALTHY, Reason.SCALED_TO_ZERO if n == 0 else Reason.REPLICAS_READY,
                         f"{ready}/{n} replicas of revision {s.stable} ready")
    return _decision(p, replicas, Phase.PROGRESSING, Reason.REPLICAS_NOT_READY,
                     f"{ready}/{n} replicas of revision {s.stable} ready", wait=POLL_SECONDS)


@dataclass(frozen=True)
class _Judged:
    """A measurement's verdict as the machine records it."""

    verdict: Verdict
    result: str  # the verdict's, or Pending while a window or a sequential test keeps measuring
    failures: int  # consecutive failed measurements
    rollback: str = ""  # why the canary is rolled back now, if it is
    keep_window: bool = False  # the window is short of minRequests: the next measurement covers it again


def _judge(p: _Pass, m: Measurement) -> None:
    s, r = p.state, p.rollout
    assert r.policy is not None
    previous = s.analysis if s.analysis and s.analysis.revision == s.canary else None
    failures = previous.failures if previous else 0
    # Sequential mode's totals since the canary's traffic started; a window it cannot use keeps them.
    totals = previous.totals if previous and previous.totals else ((0.0, 0.0, 0.0) if r.sequential else None)
    if m.baseline_only:
        p.set(analysis=LastAnalysis(s.canary, p.world.now, AnalysisResult.PENDING, failures, "baseline taken", s.step,
                                    totals))
        return
    if r.sequential is not None and not m.error and math.isfinite(m.requests) and math.isfinite(m.errors):
        assert totals is not None
        objective = r.policy.ttft.max_seconds if r.policy.ttft is not None else None
        slow = (m.slower_than("canary", TTFT, objective) or 0.0) if objective is not None else 0.0
        totals = (totals[0] + m.requests, totals[1] + m.errors, totals[2] + slow)
        judged = _judged_sequentially(m, r, r.sequential, totals, failures, objective is not None)
    else:
        judged = _judged_by_window(m, r, failures, p.world.now - window_start(s))
    verdict = judged.verdict
    p.verdict = verdict
    p.set(analysis=LastAnalysis(s.canary, p.world.now, judged.result, judged.failures, verdict.message, s.step,
                                totals, window_start(s) if judged.keep_window else None))
    if judged.result != AnalysisResult.PENDING:
        p.say("Warning" if judged.result == AnalysisResult.FAILED else "Normal", f"Analysis{judged.result}",
              f"revision {s.canary}: {verdict.message}")
    if judged.rollback:
        p.roll_back(Reason.ANALYSIS_FAILED, judged.rollback)
    elif judged.result == AnalysisResult.INCONCLUSIVE:
        if r.on_inconclusive == "rollback":
            p.roll_back(Reason.ANALYSIS_FAILED, f"inconclusive analysis (onInconclusive: rollback): "
                                                f"{verdict.message}")
        elif r.on_inconclusive == "pause":
            p.set(paused=True, pause_reason=Reason.ANALYSIS_INCONCLUSIVE)


def _judged_by_window(m: Measurement, r: Rollout, failures: int, window_seconds: float) -> _Judged:
    """The window's error rate and latency gates against the policy; failureLimit failures in a row roll back.
    A window short of minRequests stays open (Pending) until it has them or spans MAX_WINDOW_INTERVALS
    intervals; then it is Inconclusive."""
    assert r.policy is not None
    verdict = analyse(m, r.policy)
    if verdict.pending:
        longest = MAX_WINDOW_INTERVALS * r.interval_seconds
        if window_seconds < longest:
            return _Judged(verdict, AnalysisResult.PENDING, failures, keep_window=True)
        return _Judged(Verdict(AnalysisResult.INCONCLUSIVE, f"{verdict.message}, after {MAX_WINDOW_INTERVALS} "
                                                            f"intervals"), AnalysisResult.INCONCLUSIVE, failures)
    return _counted(verdict, r, failures)


def _counted(verdict: Verdict, r: Rollout, failures: int) -> _Judged:
    """A window's verdict with the consecutive failures it makes: a success resets them, a failure adds one and
    rolls back at failureLimit, anything else leaves them."""
    if verdict.result == AnalysisResult.SUCCESSFUL:
        return _Judged(verdict, verdict.result, 0)
    if verdict.result != AnalysisResult.FAILED:
        return _Judged(verdict, verdict.result, failures)
    failures += 1
    rollback = f"{failures} consecutive failed measurements; last: {verdict.message}" \
        if failures >= r.failure_limit else ""
    return _Judged(verdict, verdict.result, failures, rollback)


def _judged_sequentially(m: Measurement, r: Rollout, test: SequentialPolicy, totals: tuple[float, float, float],
                         failures: int, slow_counts: bool) -> _Judged:
    """analysis.mode sequential: the test of the canary's totals of bad requests (failed, or slower to the first
    token than timeToFirstToken.maxSeconds) rolls back at once; "keep measuring" is Pending, neither a failure
    nor a pause. The other latency gates still judge each window (failureLimit in a row)."""
    assert r.policy is not None
    requests, errors, slow = totals
    bad = min(requests, errors + slow)
    verdict = sequential_verdict(requests, bad, test, "bad (failed or slow)" if slow_counts else "errors")
    if verdict.result == AnalysisResult.FAILED:
        return _Judged(verdict, verdict.result, failures, f"the sequential test: {verdict.message}")
    gates = analyse(m, r.policy.window_gates_only())
    if gates.result == AnalysisResult.FAILED:  # a window's latency alone, as in windowed mode
        return _counted(gates, r, failures)
    if verdict.result == AnalysisResult.SUCCESSFUL and not m.errors_counted:
        return _Judged(Verdict(AnalysisResult.INCONCLUSIVE, f"{verdict.message}, but {TRITON_CANNOT_PASS}"),
                       AnalysisResult.INCONCLUSIVE, failures)
    if verdict.result == AnalysisResult.SUCCESSFUL:
        return _Judged(verdict, verdict.result, 0)
    return _Judged(verdict, AnalysisResult.PENDING, failures)  # between the test's bounds: keep measuring


def _gate_open(p: _Pass) -> tuple[bool, str]:
    """Whether the analysis lets the rollout leave the current step: a verdict taken in it that passed."""
    r, s = p.rollout, p.state
    if r.policy is None or s.kind in FAST:
        return True, ""
    last = s.analysis
    if last is None or last.revision != s.canary or last.step != s.step:
        return False, "waiting for a measurement in this step"
    if _counts_as_passed(last, r):
        return True, ""
    return False, f"waiting for a Successful measurement (last: {last.result})"


def _promotion_gate(p: _Pass) -> tuple[bool, str]:
    """Promotion needs the last measurement to have passed. Without steps the canary never had traffic of its
    own to measure, so only readiness counts (documented with spec.rollout.steps)."""
    r, s = p.rollout, p.state
    if r.policy is None or s.kind in FAST or not r.steps:
        return True, ""
    last = s.analysis if s.analysis and s.analysis.revision == s.canary else None
    if last is None:
        return False, "waiting for a first measurement before promotion"
    if last.result == AnalysisResult.PENDING:
        return False, f"waiting for a verdict before promotion (last: Pending, {last.message})"
    if last.failures:
        return False, "waiting until the last failed measurement is outweighed"
    if _counts_as_passed(last, r):
        return True, ""
    return False, f"waiting for a Successful measurement (last: {last.result})"


@dataclass(frozen=True)
class _Walk:
    """Where the steps stopped this pass: the canary's replica goal, what it waits for, and whether it is
    promoting (the last step passed)."""

    canary_goal: int
    waiting: str = ""
    promoting: bool = False


def _advance(p: _Pass) -> Decision:
    """A rollout in progress: walk the steps as far as they allow, then move the revisions' replicas one safe step
    toward where the walk stopped (rollout/capacity.py), and say where the rollout stands."""
    if p.rollout.strategy == "recreate" and p.state.kind not in FAST:
        return _recreate(p)
    walk = _walk_steps(p)
    if walk is None:  # promoted
        return _steady(p)
    stable_now, canary_now = _move(p, walk)
    s = p.state
    replicas = {s.stable: stable_now, s.canary: canary_now}
    if s.paused:
        return _paused(p, replicas)
    kind = "rollback to" if s.kind == ROLLBACK else "rollout of"
    message = f"{kind} {s.canary}: step {s.step}/{len(p.rollout.steps)}, weight {s.weight}%"
    if stable_now + canary_now < p.world.replicas:
        message += (f"; {stable_now} stable + {canary_now} new replicas while GPUs move to the new revision "
                    f"(maxSurge {p.rollout.max_surge}, maxUnavailable {p.rollout.max_unavailable})")
    reason = Reason.PROMOTING if walk.promoting else Reason.CANARY_STEP
    return _decision(p, replicas, Phase.PROGRESSING, reason,
                     f"{message}; {walk.waiting}" if walk.waiting else message, wait=POLL_SECONDS)


def _walk_steps(p: _Pass) -> _Walk | None:
    """Takes each step the rollout may take now, in order; None once the canary is promoted."""
    r, w = p.rollout, p.world
    n, plan = w.replicas, budget(p.rollout, w.replicas)
    while True:
        s = p.state
        ready = w.ready.get(s.canary, 0)
        if s.paused:
            return _Walk(_holding_goal(p))
        if s.step >= len(r.steps):
            open_, why = _promotion_gate(p)
            if not open_:
                return _Walk(_holding_goal(p), why)
            if ready >= n:
                p.promote()
                return None
            return _Walk(n, f"promoting: {ready}/{n} replicas of revision {s.canary} ready", promoting=True)
        step = r.steps[s.step]
        if step.weight is not None:
            if not _weight_step(p, step.weight, capacity.canary_target(step.weight, plan)):
                need = capacity.canary_target(step.weight, plan)
                return _Walk(need, f"{ready}/{need} canary replicas ready for weight {step.weight}%")
            continue
        if r.strategy == "abTest" and ready < 1:
            return _Walk(max(1, s.canary_replicas), f"waiting for a Ready replica of revision {s.canary}")
        waiting = _pause_step(p, step)
        if waiting is not None:
            return _Walk(_holding_goal(p), waiting)


def _weight_step(p: _Pass, weight: int, need: int) -> bool:
    """A weight step passes once the canary has the replicas its weight needs; the weight it then gets is what
    those replicas can carry (never more than their share of the Ready replicas)."""
    s, w = p.state, p.world
    ready = w.ready.get(s.canary, 0)
    if ready < need:
        return False
    stable_ready = w.ready.get(s.stable, 0)
    effective = capacity.effective_weight(weight, stable_ready, ready, p.rollout.router == "service")
    if effective != s.weight:
        share = "" if effective == weight else f" (its {ready} Ready replica(s) beside {stable_ready} stable)"
        p.say("Normal", Reason.CANARY_STEP, f"revision {s.canary} now receives {effective}% of traffic{share}")
    p.set(weight=effective, step=s.step + 1, step_started_at=w.now)
    return True


def _pause_step(p: _Pass, step: Step) -> str | None:
    """A pause step (indefinite, or timed and then the analysis' gate): None once it is over, else why it
    holds."""
    s, w = p.state, p.world
    if step.pause_seconds is None:
        p.set(paused=True, pause_reason=Reason.CANARY_PAUSED)
        p.say("Normal", Reason.CANARY_PAUSED, f"rollout of {s.canary} paused at step {s.step} until `promote`")
        return ""
    ends = s.step_started_at + step.pause_seconds
    if w.now < ends:
        p.waits.append(ends - w.now)
        return f"step {s.step}: pause until {ends - w.now:.0f}s from now"
    open_, why = _gate_open(p)
    if not open_:
        return f"step {s.step}: {why}"
    p.set(step=s.step + 1, step_started_at=w.now)
    return None


def _holding_goal(p: _Pass) -> int:
    """The canary's replicas where the walk holds: its last weight step's share of the count now (so a scaler's
    change of it reaches the canary between steps), or what it has (a pause before any weight, an A/B test)."""
    s, r = p.state, p.rollout
    weights = [step.weight for step in r.steps[: s.step] if step.weight is not None]
    if r.strategy == "canary" and weights and 0 < weights[-1] < 100:
        return capacity.canary_target(weights[-1], budget(r, p.world.replicas))
    return max(1 if r.strategy == "abTest" else 0, s.canary_replicas)


def _move(p: _Pass, walk: _Walk) -> tuple[int, int]:
    """The replicas of the stable and the canary this pass (one safe move toward the walk's goal), and the
    weight a promotion's Ready replicas carry."""
    s, w, r = p.state, p.world, p.rollout
    plan = budget(r, w.replicas)
    stable = held(w, s.stable, w.desired.get(s.stable, w.replicas))
    canary = held(w, s.canary, s.canary_replicas)
    stable_now, canary_now = capacity.step(plan, stable=stable, canary=canary,
                                           stable_goal=capacity.stable_target(walk.canary_goal, plan),
                                           canary_goal=walk.canary_goal)
    p.set(canary_replicas=canary_now)
    if walk.promoting:  # traffic follows the Ready replicas of the promotion (never back)
        serving = canary.ready + min(stable_now, stable.ready)
        p.set(weight=max(s.weight, round(100 * canary.ready / serving) if serving else 0))
    return stable_now, canary_now


def _paused(p: _Pass, replicas: dict[str, int]) -> Decision:
    s = p.state
    why = {Reason.ANALYSIS_INCONCLUSIVE: "the analysis was inconclusive",
           Reason.PAUSED_BY_USER: "paused by a person",
           Reason.CANARY_PAUSED: "an indefinite pause step"}.get(s.pause_reason, s.pause_reason)
    detail = f" ({s.analysis.message})" if s.pause_reason == Reason.ANALYSIS_INCONCLUSIVE and s.analysis else ""
    return _decision(p, replicas, Phase.PAUSED, s.pause_reason,
                     f"rollout of {s.canary} at step {s.step}/{len(p.rollout.steps)}, weight {s.weight}%, paused: "
                     f"{why}{detail}; send `resume` or `promote`")


def _recreate(p: _Pass) -> Decision:
    s, w = p.state, p.world
    ready = w.ready.get(s.canary, 0)
    p.set(canary_replicas=w.replicas)
    if ready >= w.replicas:
        p.promote()
        return _steady(p)
    return _decision(p, {s.stable: 0, s.canary: w.replicas}, "Progressing", Reason.ROLLING_OUT,
                     f"recreate: {s.stable} stopped, {ready}/{w.replicas} replicas of {s.canary} ready",
                     wait=POLL_SECONDS)


def _decision(p: _Pass, replicas: dict[str, int], phase: str, reason: str, message: str, *,
              degraded: bool = False, wait: float | None = None) -> Decision:
    s = p.state
    if len(s.history) > p.rollout.history_limit:  # the limit was lowered: prune at once
        s = replace(s, history=s.history[: p.rollout.history_limit])
    waits = list(p.waits)
    if wait is not None:
        waits.append(wait)
    due = next_analysis_at(p.rollout, s)
    if due is not None:
        waits.append(max(0.5, due - p.world.now))
    ab = p.rollout.strategy == "abTest" and bool(s.canary) and s.kind != ROLLBACK \
        and p.world.ready.get(s.canary, 0) >= 1
    return Decision(state=s, replicas={k: v for k, v in replicas.items() if k}, phase=phase, reason=reason,
                    message=message, events=tuple(p.events), requeue_after=min(waits) if waits else None,
                    outcome=p.outcome, action_result=p.action_result, verdict=p.verdict, ab_routing=ab,
                    degraded=degraded)


def parse_action(annotations: Mapping[str, str], action_key: str, nonce_key: str,
                 handled_nonce: str) -> Action | str | None:
    """The action a person asked for with annotations, if its nonce is new; a string says why it is invalid."""
    name, nonce = annotations.get(action_key, "").strip(), annotations.get(nonce_key, "").strip()
    if not name or not nonce or nonce == handled_nonce:
        return None
    verb, _, argument = name.partition("=")
    if verb not in ACTIONS:
        return f"unknown action {name!r}; one of: {', '.join(ACTIONS)} (rollback-to=<revision>)"
    if (verb == "rollback-to") != bool(argument):
        return "rollback-to needs a revision: rollback-to=<revision>" if verb == "rollback-to" \
            else f"{verb} takes no argument"
    return Action(verb, nonce, argument)


def _counts_as_passed(last: LastAnalysis, r: Rollout) -> bool:
    """A Successful measurement, or an Inconclusive one where the rollout is told to go on regardless."""
    return last.result == AnalysisResult.SUCCESSFUL or (
        last.result == AnalysisResult.INCONCLUSIVE and r.on_inconclusive == "continue")
