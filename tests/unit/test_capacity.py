"""The step arithmetic of a rollout on a full GPU pool (rollout/capacity.py and the machine's use of it): the
canary's replicas for a weight, the weight they carry, one safe move per pass within maxSurge/maxUnavailable, and
whole rollouts, promotions and rollbacks on a pool with no GPU to spare. Pure: no cluster, no clock."""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import pytest
from pydantic import ValidationError

from deepseek_operator.api.spec import ONE_REPLICA_NO_SURGE, DeepSeekDeploymentSpec
from deepseek_operator.rollout import capacity, machine
from deepseek_operator.rollout.analysis import Measurement, Policy
from deepseek_operator.rollout.capacity import Budget, Held
from deepseek_operator.rollout.machine import Decision, Rollout, State, Step, World

STABLE, NEW = "aaaaaaaaaa", "bbbbbbbbbb"


@pytest.mark.parametrize(("weight", "desired", "surge", "canary", "stable", "carried", "by_replicas"), [
    # weight %, N, maxSurge -> the canary's replicas, the stable's beside them, the weight they carry
    (10, 4, 1, 1, 4, 10, False),   # the surge holds it: the stable keeps all 4 (1 of 5 carries 20% >= 10%)
    (10, 4, 1, 1, 4, 20, True),    # behind one Service the weight is the ratio: 1 of 5
    (50, 4, 1, 3, 2, 50, False),   # 2 of 5 would carry 40%: 3, beside 2 stable
    (10, 4, 0, 1, 3, 10, False),   # a full pool: the canary takes a stable replica's GPUs
    (10, 4, 0, 1, 3, 25, True),
    (50, 4, 0, 2, 2, 50, False),
    (90, 2, 0, 1, 1, 50, False),   # the stable keeps one below 100%: 1 of 2 carries at most 50%
    (25, 8, 1, 3, 6, 25, False),   # a scaler's 8: 2 of 9 would carry 22%
    (100, 4, 0, 4, 0, 100, False),
])
def test_the_canarys_replicas_carry_its_weight(weight: int, desired: int, surge: int, canary: int, stable: int,
                                               carried: int, by_replicas: bool) -> None:
    plan = Budget(desired, surge, 1)
    assert capacity.canary_target(weight, plan) == canary
    assert capacity.stable_target(canary, plan) == stable
    assert capacity.effective_weight(weight, stable, canary, by_replicas) == carried
    assert stable + canary <= desired + surge


@pytest.mark.parametrize(("budget", "stable", "canary", "goals", "moved", "why"), [
    # Budget(N, maxSurge, maxUnavailable); Held(desired, ready, existing); goals (stable, canary) -> (stable, canary)
    (Budget(4, 0, 1), Held(4, 4, 4), Held(0, 0, 0), (3, 1), (3, 0),
     "a full pool: drain one stable replica first, no canary pod yet"),
    (Budget(4, 0, 1), Held(3, 3, 4), Held(0, 0, 0), (3, 1), (3, 0),
     "the drained pod still holds its GPUs: the canary waits for them"),
    (Budget(4, 0, 1), Held(3, 3, 3), Held(0, 0, 0), (3, 1), (3, 1),
     "the drained pod is gone: the canary takes its GPUs"),
    (Budget(4, 0, 1), Held(3, 3, 3), Held(1, 0, 1), (2, 2), (3, 1),
     "the canary's replica is not Ready yet: no further stable replica is drained"),
    (Budget(4, 0, 1), Held(3, 3, 3), Held(1, 1, 1), (2, 2), (2, 1),
     "Ready again at 4: one more may go"),
    (Budget(4, 0, 2), Held(4, 4, 4), Held(0, 0, 0), (2, 2), (2, 0), "maxUnavailable 2: two at once"),
    (Budget(4, 1, 1), Held(4, 4, 4), Held(0, 0, 0), (4, 1), (4, 1), "the surge: the stable is not touched"),
    (Budget(4, 1, 1), Held(4, 4, 4), Held(1, 0, 1), (3, 2), (4, 1),
     "the surged replica is not Ready: the stable waits"),
    (Budget(4, 1, 1), Held(4, 4, 4), Held(1, 1, 1), (3, 2), (3, 1), "proven: one stable replica drains"),
    (Budget(4, 0, 1), Held(2, 2, 2), Held(2, 2, 2), (4, 0), (2, 0), "a rollback: the canary goes at once..."),
    (Budget(4, 0, 1), Held(2, 2, 2), Held(0, 0, 2), (4, 0), (2, 0),
     "...and the stable waits while the canary's pods drain..."),
    (Budget(4, 0, 1), Held(2, 2, 2), Held(0, 0, 1), (4, 0), (3, 0), "...growing back into what they gave up"),
    (Budget(6, 1, 1), Held(3, 3, 3), Held(2, 2, 2), (5, 2), (5, 2), "a scaler's higher count: the stable grows"),
])
def test_one_safe_move_per_pass(budget: Budget, stable: Held, canary: Held, goals: tuple[int, int],
                                moved: tuple[int, int], why: str) -> None:
    assert capacity.step(budget, stable=stable, canary=canary, stable_goal=goals[0], canary_goal=goals[1]) == moved, why


@dataclass
class Pool:
    """A GPU pool of `gpus` replica slots driven by the machine: a pod is Ready one pass after it is created, and
    a deleted pod drains for `drain` passes before its GPUs are free. Counts what a scheduler would see."""

    rollout: Rollout
    replicas: int
    gpus: int
    drain: int = 2
    state: State = field(default_factory=lambda: State(stable=STABLE, history=(STABLE,)))
    desired: dict[str, int] = field(default_factory=dict)
    pods: dict[str, list[int]] = field(default_factory=dict)  # per revision: each pod's age, or -k while draining
    now: float = 1000.0
    pending_passes: int = 0  # passes in which a pod was Pending for lack of GPUs
    lowest_ready: int = 1 << 30
    decisions: list[Decision] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.desired = {STABLE: self.replicas}
        self.pods = {STABLE: [1] * self.replicas}

    def ready(self) -> dict[str, int]:
        return {r: sum(1 for age in ages if age >= 1) for r, ages in self.pods.items()}

    def held(self) -> int:
        return sum(len(ages) for ages in self.pods.values())

    def step(self, target: str = NEW, measurement: Measurement | None = None) -> Decision:
        self.now += 5
        ready = self.ready()
        self.lowest_ready = min(self.lowest_ready, sum(ready.values()))
        d = machine.decide(self.rollout, self.state, World(
            target=target, target_servable=True, replicas=self.replicas, now=self.now, ready=ready,
            desired=dict(self.desired), pods={r: len(a) for r, a in self.pods.items()}, measurement=measurement))
        self.state, self.desired = d.state, {**{r: 0 for r in self.desired}, **d.replicas}
        self.decisions.append(d)
        self._kubelet()
        return d

    def _kubelet(self) -> None:
        for revision, want in self.desired.items():
            ages = self.pods.setdefault(revision, [])
            running = [a for a in ages if a >= 0]
            for _ in range(len(running) - want):  # scaled down: the youngest drains, still holding its GPUs
                ages[ages.index(min(running))] = -self.drain
                running.remove(min(running))
            for _ in range(want - len(running)):  # scaled up: a pod needs free GPUs, else it waits Pending
                if self.held() >= self.gpus:
                    self.pending_passes += 1
                    break
                ages.append(0)
        for revision, ages in self.pods.items():
            self.pods[revision] = [a + 1 for a in ages if a != -1]  # a pod's last drain pass frees its GPUs


CANARY = Rollout(strategy="canary", steps=(Step(weight=10), Step(pause_seconds=30), Step(weight=50),
                                           Step(pause_seconds=30)),
                 router="gatewayAPI", policy=Policy(max_error_rate=0.05, min_requests=10), interval_seconds=10,
                 max_surge=0, max_unavailable=1)
GOOD, BAD = Measurement(100, 0, window_seconds=10), Measurement(100, 30, window_seconds=10)


@pytest.mark.parametrize("drain", [1, 3])
def test_a_canary_on_a_full_pool_is_promoted_without_a_pending_pod(drain: int) -> None:
    pool = Pool(CANARY, replicas=4, gpus=4, drain=drain)
    for _ in range(200):
        due = machine.analysis_due(pool.rollout, pool.state, pool.now + 5, pool.ready().get(NEW, 0) > 0)
        d = pool.step(measurement=GOOD if due else None)
        if d.outcome:
            break
    assert d.outcome == "promoted" and d.replicas == {NEW: 4}
    assert pool.pending_passes == 0  # every new pod found free GPUs: no extra GPU was ever needed
    assert pool.lowest_ready >= 3  # never below desired - maxUnavailable
    weights = [x.state.weight for x in pool.decisions if x.state.canary]
    assert {10, 50} <= set(weights) and weights == sorted(weights)


def test_a_broken_canary_on_a_full_pool_gives_its_gpus_back_to_the_stable() -> None:
    pool = Pool(replace(CANARY, failure_limit=1), replicas=4, gpus=4, drain=2)
    for _ in range(100):
        due = machine.analysis_due(pool.rollout, pool.state, pool.now + 5, pool.ready().get(NEW, 0) > 0)
        d = pool.step(measurement=BAD if due else None)
        if d.outcome:
            break
    assert d.outcome == "rolled_back" and d.state.weight == 0
    for _ in range(10):
        d = pool.step()
    assert d.replicas == {STABLE: 4} and pool.ready()[STABLE] == 4
    assert pool.pending_passes == 0 and pool.lowest_ready >= 3


def test_with_surge_the_stable_is_untouched_until_the_canary_needs_more_than_the_surge() -> None:
    pool = Pool(replace(CANARY, max_surge=1, steps=(Step(weight=10), Step(pause_seconds=None))), replicas=4, gpus=5)
    for _ in range(6):
        d = pool.step()
    assert d.replicas == {STABLE: 4, NEW: 1} and d.state.weight == 10 and pool.pending_passes == 0


def _preparing(rollout: Rollout, *, desired: int, pods: int, ready: int, job_running: bool = True,
               servable: bool = False) -> Decision:
    """A pass of an update of a 4-replica resource whose new revision's Job (its NCCL preflight) runs."""
    return machine.decide(rollout, State(stable=STABLE, history=(STABLE,)), World(
        target=NEW, target_servable=servable, replicas=4, now=100.0, ready={STABLE: ready},
        desired={STABLE: desired}, pods={STABLE: pods}, waiting_for="its NCCL preflight", job_running=job_running))


def test_a_job_of_the_new_revision_on_a_full_pool_gets_one_stable_replicas_gpus_and_no_more() -> None:
    d = _preparing(CANARY, desired=4, pods=4, ready=4)
    assert d.phase == "Preparing" and d.replicas == {STABLE: 3}
    assert "keeps serving on 3 of 4 replicas (the Job needs one replica's GPUs)" in d.message
    # The drained pod still holds its GPUs and Ready dropped: nothing more is drained while the Job waits.
    assert _preparing(CANARY, desired=3, pods=4, ready=3).replicas == {STABLE: 3}
    assert _preparing(CANARY, desired=3, pods=4, ready=4).replicas == {STABLE: 3}
    # Once the Job passed, the canary's first replica takes the GPUs the Job gave back.
    started = _preparing(CANARY, desired=3, pods=3, ready=3, job_running=False, servable=True)
    assert started.replicas == {STABLE: 3, NEW: 1}


@pytest.mark.parametrize(("surge", "unavailable", "job_running", "stable"), [
    (1, 1, True, 4),   # the surge holds the Job
    (0, 1, False, 4),  # no Job runs (the weights still download): nothing to make room for
    (0, 2, True, 3),   # one replica's GPUs, however much more maxUnavailable allows
])
def test_the_stable_drains_for_a_job_only_where_the_surge_cannot_hold_it(surge: int, unavailable: int,
                                                                         job_running: bool, stable: int) -> None:
    rollout = replace(CANARY, max_surge=surge, max_unavailable=unavailable)
    assert _preparing(rollout, desired=4, pods=4, ready=4, job_running=job_running).replicas == {STABLE: stable}


def test_a_full_pool_with_a_replica_not_ready_drains_nothing_for_the_job() -> None:
    assert _preparing(CANARY, desired=4, pods=4, ready=3).replicas == {STABLE: 4}


@pytest.mark.parametrize(("spec", "refused"), [
    ({"replicas": 1}, True),
    ({"replicas": 2}, False),
    ({"replicas": 1, "autoscaling": {"minReplicas": 2, "maxReplicas": 4, "target": 8}}, False),
    ({"replicas": 3, "autoscaling": {"minReplicas": 1, "maxReplicas": 4, "target": 8}}, True),
])
def test_one_replica_without_surge_is_refused(spec: dict[str, object], refused: bool) -> None:
    body = {"model": {"name": "deepseek-r1-distill-qwen-7b", "revision": "r1",
                      "source": {"pvc": {"claimName": "model-store", "path": "/models/q7"}}},
            "serving": {"gpu": {"type": "A100-80GB", "perNode": 4}, **spec}, "rollout": {"maxSurge": 0}}
    if refused:
        with pytest.raises(ValidationError, match="recreate"):
            DeepSeekDeploymentSpec.model_validate(body)
        assert "maxSurge: 1" in ONE_REPLICA_NO_SURGE
    else:
        DeepSeekDeploymentSpec.model_validate(body)
