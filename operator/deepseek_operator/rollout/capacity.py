"""How many replicas each revision holds while a rollout moves GPUs from the stable revision to the new one. Pure.

A rollout may hold `maxSurge` replicas beyond the desired count N (the spec's, or a scaler's), and may let Ready
replicas of both revisions together fall to N - `maxUnavailable`, no lower. Within that budget, each pass moves
the revisions toward their targets for the current step (the canary's share of N and the stable's rest) one safe
move at a time:

- the new revision grows only into GPUs no pod holds: the surge, and those of stable pods that are gone (a pod
  being deleted still holds its GPUs until it has drained and stopped), so its pods are never left Pending behind
  a stable pod that is still draining;
- the stable drains only once every replica the new revision has so far is Ready (a new revision whose pods do
  not come up costs no further stable replica), and only as far as Ready replicas of both stay at
  N - maxUnavailable;
- the stable grows back (a rollback, a higher count) only into GPUs the new revision gave up.

With maxSurge 0 the pool stays full: a canary step first drains stable replicas, then creates the canary's in
the GPUs they freed; a Job the new revision needs first (quantize, NCCL preflight) gets one replica's GPUs the
same way. A replica is a pod, or for a layout across nodes a group of them (they scale whole).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    desired: int  # N: spec.serving.replicas, or the count a scaler set
    max_surge: int
    max_unavailable: int

    @property
    def room(self) -> int:
        """Replicas both revisions may hold together."""
        return self.desired + self.max_surge


@dataclass(frozen=True)
class Held:
    """One revision's replicas as this pass sees them."""

    desired: int  # what its workload asks for now (the last pass's decision)
    ready: int
    existing: int  # pods (groups) that hold GPUs: created and not yet gone, draining ones too

    @property
    def holding(self) -> int:
        """The GPUs it holds or has asked for, in replicas."""
        return max(self.desired, self.existing)


def canary_target(weight: int, budget: Budget) -> int:
    """The new revision's replicas for a step of `weight` percent: the fewest whose share of the replicas held
    (beside the stable's `stable_target`) carries the weight, since a replica takes no more than its share of the
    traffic; 1 at least, and the stable keeps at least one while the step is below 100% (the weight is then the
    share those replicas can carry)."""
    n = budget.desired
    if weight >= 100 or n <= 0:
        return max(n, 0)
    most = max(1, min(n - 1 + budget.max_surge, budget.room - 1))
    for canary in range(1, most + 1):
        if 100 * canary >= weight * (canary + stable_target(canary, budget)):
            return canary
    return most


def stable_target(canary: int, budget: Budget) -> int:
    """The stable's replicas beside `canary` new ones: N, less what the surge cannot hold."""
    return max(0, min(budget.desired, budget.room - canary))


def step(budget: Budget, *, stable: Held, canary: Held, stable_goal: int, canary_goal: int) -> tuple[int, int]:
    """(stable, canary) replicas for this pass, one safe move toward the goals (module docstring)."""
    if canary_goal > canary.desired:
        canary_now = min(canary_goal, max(canary.desired, budget.room - stable.holding))
    else:
        canary_now = canary_goal  # a canary shrinks at once (a rollback, an abort)
    if stable_goal < stable.desired:
        spare = max(0, stable.ready + canary.ready - (budget.desired - budget.max_unavailable))
        proven = canary.ready >= canary_now
        stable_now = max(stable_goal, stable.desired - spare) if proven else stable.desired
    else:
        stable_now = min(stable_goal, max(stable.desired, budget.room - max(canary.existing, canary_now)))
    return stable_now, canary_now


def room_for_a_job(budget: Budget, stable: Held, others: int) -> int:
    """The stable's replicas while a Job of the new revision runs on one replica's GPUs (its quantize Job, its
    NCCL preflight) before the new revision has pods: as they are where the surge holds the Job, else drained as
    far as it needs and maxUnavailable allows, so the Job is not left Pending on a full pool. Counted on what the
    workloads ask for (a drained pod's GPUs come free once it has stopped), so a pass never drains twice."""
    need = stable.desired + others + 1 - budget.room
    if need <= 0:
        return stable.desired
    spare = max(0, stable.ready - (budget.desired - budget.max_unavailable))
    return stable.desired - min(need, spare)


def effective_weight(weight: int, stable_ready: int, canary_ready: int, share_by_replicas: bool) -> int:
    """The share of traffic the canary really gets: never more than the share of Ready replicas that serve it
    (an HTTPRoute's weight is exact up to that; behind one Service it is that ratio)."""
    serving = stable_ready + canary_ready
    if weight >= 100:
        return 100
    share = round(100 * canary_ready / serving) if serving else 0
    return share if share_by_replicas else min(weight, share)
