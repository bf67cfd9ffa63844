"""How a pass ends: conditions with their transition times, the events that say each decision once, and the
children worth sending (unchanged ones are not). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import status as st
from deepseek_operator.api.status import Phase, Reason
from deepseek_operator.plan.observed import Observed
from deepseek_operator.render import naming
from deepseek_operator.rollout.clock import epoch
from deepseek_operator.rollout.machine import Event


@dataclass
class Conditions:
    """Builds the condition list, keeping lastTransitionTime of conditions whose status did not change."""

    generation: int
    now: str
    previous: dict[str, dict[str, Any]]
    items: list[dict[str, Any]] = field(default_factory=list)

    def set(self, ctype: str, value: bool | None, reason: str, message: str = "") -> None:
        """Sets a condition; a later set of the same type replaces the earlier one (in its place)."""
        status = "Unknown" if value is None else ("True" if value else "False")
        prev = self.previous.get(ctype)
        since = prev["lastTransitionTime"] if prev and prev.get("status") == status else self.now
        item = {"type": ctype, "status": status, "observedGeneration": self.generation,
                "lastTransitionTime": since, "reason": reason, "message": message}
        for i, existing in enumerate(self.items):
            if existing["type"] == ctype:
                self.items[i] = item
                return
        self.items.append(item)

    def get(self, ctype: str) -> dict[str, Any] | None:
        return next((c for c in self.items if c["type"] == ctype), None)


def validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        parts.append(f"spec.{path}: {e['msg']}" if path else f"spec: {e['msg']}")
    return "; ".join(parts)


# The condition whose reason and message explain each phase, in its event.
_PHASE_CONDITION = {Phase.DEGRADED: st.DEGRADED, Phase.PREPARING: st.CHECKPOINT_READY, Phase.PROGRESSING: st.READY,
                    Phase.HEALTHY: st.READY, Phase.PENDING: st.READY, Phase.PAUSED: st.PROGRESSING,
                    Phase.ROLLED_BACK: st.DEGRADED}


def decided_events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """What was decided, said once: the hardware verdict when it changes, and every change of phase with the
    condition that explains it (a Warning when the resource is Degraded)."""
    out = []
    before = {c["type"]: c for c in old.get("conditions") or []}
    after = {c["type"]: c for c in new.get("conditions") or []}
    fits, fitted = after.get(st.FITS_HARDWARE), before.get(st.FITS_HARDWARE)
    # A fit is said when it is news: a model that does not fit, or one that fits again. A first fit is in the
    # FitsHardware condition; an event per new resource only loads the API server (500 resources: 500 writes).
    first_fit = fitted is None and fits is not None and fits["status"] == "True"
    if fits and not first_fit and (fitted is None or (fitted["status"], fitted["reason"]) !=
                                   (fits["status"], fits["reason"])):
        out.append(Event("Normal" if fits["status"] == "True" else "Warning", fits["reason"], fits["message"]))
    phase = new["phase"]
    explained = after.get(_PHASE_CONDITION[phase])
    said_by_verdict = fits is not None and fits["status"] == "False" and explained is not None \
        and explained["reason"] == fits["reason"]
    # A new resource's first rollout is news when it ends (Healthy) or goes wrong, as with the first fit.
    first_rollout = old.get("phase") is None and phase == Phase.PROGRESSING
    if explained and (old.get("phase") != phase or _reason_changed(before, explained)) and not said_by_verdict \
            and explained["reason"] != Reason.AS_EXPECTED and not first_rollout:
        message = f"{phase}: {explained['message']}" if explained["message"] else phase
        degraded = explained["type"] == st.DEGRADED and explained["status"] == "True"
        out.append(Event("Warning" if degraded else "Normal", explained["reason"], message))
    return out


def _reason_changed(before: dict[str, dict[str, Any]], condition: dict[str, Any]) -> bool:
    prev = before.get(condition["type"])
    return prev is None or prev["reason"] != condition["reason"]


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with an annotation hashing its desired state, so an unchanged child is never re-sent."""
    meta = obj["metadata"]
    hashed = {**obj, "metadata": {k: v for k, v in meta.items() if k != "annotations"}}
    annotations = {**meta.get("annotations", {}), naming.ANNOTATION_APPLIED_HASH: naming.digest(hashed, 16)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def changed(objects: list[dict[str, Any]], observed: Observed) -> list[dict[str, Any]]:
    out = []
    for obj in map(with_applied_hash, objects):
        key = (obj["kind"], obj["metadata"]["name"])
        if observed.applied_hashes.get(key) != obj["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH] \
                or _drifted(obj, observed):
            out.append(obj)
    return out


def _drifted(obj: dict[str, Any], observed: Observed) -> bool:
    """A hand edit the hash cannot see: `kubectl scale` of a serving workload is put back."""
    workloads = {"Deployment": observed.deployments, "StatefulSet": observed.statefulsets,
                 "LeaderWorkerSet": observed.leader_worker_sets}
    live = workloads.get(obj["kind"], {}).get(obj["metadata"]["name"])
    if live is None:
        return False
    return bool((live.get("spec") or {}).get("replicas") != obj["spec"]["replicas"])


def carried_over(old: dict[str, Any]) -> st.DeepSeekDeploymentStatus:
    """The status a pass starts from: the fields it carries over from the last one (see `st.CARRIED`)."""
    return st.DeepSeekDeploymentStatus.model_validate({k: old[k] for k in st.carried_keys() if k in old})


def rendered_status(status: st.DeepSeekDeploymentStatus, conds: Conditions) -> dict[str, Any]:
    """The status as written: with the pass's generation and conditions."""
    status.observed_generation = conds.generation
    status.conditions = conds.items  # type: ignore[assignment]  # validated into Conditions on assignment
    return status.model_dump(by_alias=True, exclude_none=True)


# After a child refused by the API server, or a pass that raised: the next try after as long as the trouble has
# lasted (10 s, 10 s, 20 s, 40 s, ... up to 5 minutes), so a lasting error costs a few requests an hour.
RETRY_MIN_S, RETRY_MAX_S = 10.0, 300.0


def _degraded(status: dict[str, Any]) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or [] if c["type"] == st.DEGRADED), None)


def retry_after(old_status: dict[str, Any], reason: str, now: str) -> float:
    """Back-off for a trouble of `reason` that old_status's Degraded condition may already report."""
    degraded = _degraded(old_status)
    if not degraded or degraded.get("status") != "True" or degraded.get("reason") != reason:
        return RETRY_MIN_S
    lasted = epoch(now) - epoch(degraded["lastTransitionTime"])
    return min(RETRY_MAX_S, max(RETRY_MIN_S, lasted))


def with_trouble(status: dict[str, Any], old_status: dict[str, Any], reason: str, message: str, generation: int,
                 now: str) -> tuple[dict[str, Any], Event | None]:
    """`status` with Degraded=True for `reason` (ChildRejected, ReconcileError) and its message, phase Degraded,
    and the Warning event to post when this message is news (an error said once, not every retry)."""
    before = _degraded(old_status)
    since = before["lastTransitionTime"] if before and before.get("status") == "True" else now
    degraded = {"type": st.DEGRADED, "status": "True", "observedGeneration": generation, "lastTransitionTime": since,
                "reason": reason, "message": message}
    conditions = [c for c in status.get("conditions") or [] if c["type"] != st.DEGRADED] + [degraded]
    said = before is not None and before.get("reason") == reason and before.get("message") == message
    return ({**status, "conditions": conditions, "phase": Phase.DEGRADED.value},
            None if said else Event("Warning", reason, message))


def rejected_children_message(rejected: list[tuple[str, str]]) -> str:
    """One line per refused child: `<Kind> <name>: <the API server's message>`."""
    return "the API server refused " + "; ".join(f"{child}: {why}" for child, why in rejected)


# A NetworkPolicy the API server refused: no new pod of the resource starts without it (see `fail_closed`).
POLICY_HOLD = ("; no new pod of the resource is started while its NetworkPolicy is refused (they would run "
               "unprotected): pods already running keep the policy they had")
POD_MAKERS = ("Deployment", "StatefulSet", "LeaderWorkerSet", "Job")


def fail_closed(objects: list[dict[str, Any]], observed: Observed) -> tuple[list[dict[str, Any]], list[str]]:
    """What may still be applied while the resource's NetworkPolicy is refused: nothing that starts a pod the
    policy should guard. A workload that does not exist yet is held back; one that does is applied with no more
    replicas than it has now (a scale-down, a rollback's drain go ahead); a Job (a preflight) is held back unless
    it exists. The other children go ahead. Returns (to apply, the names held back or capped)."""
    live = {"Deployment": observed.deployments, "StatefulSet": observed.statefulsets,
            "LeaderWorkerSet": observed.leader_worker_sets, "Job": observed.preflight_jobs}
    out, held = [], []
    for obj in objects:
        kind, name = obj["kind"], obj["metadata"]["name"]
        if kind not in POD_MAKERS or (kind == "Job" and obj["metadata"].get("labels", {}).get(
                naming.LABEL_COMPONENT) != naming.COMPONENT_PREFLIGHT):
            out.append(obj)
            continue
        current = live[kind].get(name)
        if current is None:
            held.append(f"{kind} {name}")
            continue
        if kind == "Job":
            out.append(obj)
            continue
        now = int((current.get("spec") or {}).get("replicas", 0))
        wanted = int(obj["spec"].get("replicas", 1))
        if wanted > now:
            held.append(f"{kind} {name} (kept at {now} of {wanted} replicas)")
            obj = {**obj, "spec": {**obj["spec"], "replicas": now}}
        out.append(obj)
    return out, held


# ------------------------------------------------------------------------------------------------ the routes

# How long a new HTTPRoute may go without any Gateway controller reporting on one of its parentRefs before the
# resource says so (an implementation writes status only for the Gateways it runs: a Gateway that does not exist
# gets no word from anyone).
ROUTE_ANSWER_S = 30.0
# Gateway API's route condition reasons (gateway-api/apis/v1/shared_types.go), glossed for a message without one.
_ROUTE_REASONS = {
    "NoMatchingParent": "no listener of that Gateway matches the parentRef: no Gateway of that name, or no listener "
                        "of that sectionName or port",
    "NotAllowedByListeners": "the Gateway's listeners do not admit routes from this namespace (allowedRoutes)",
    "NoMatchingListenerHostname": "no listener hostname matches the route's hostnames",
    "UnsupportedValue": "the route uses a value the Gateway does not support",
    "RefNotPermitted": "a backend in another namespace needs a ReferenceGrant",
    "BackendNotFound": "a backend Service does not exist",
    "InvalidKind": "a backend is of a kind the Gateway does not support",
}


def _same_parent(ref: Mapping[str, Any], parent: Mapping[str, Any], namespace: str) -> bool:
    return (parent.get("name") == ref.get("name")
            and (parent.get("namespace") or namespace) == (ref.get("namespace") or namespace)
            and (parent.get("sectionName") or "") == (ref.get("sectionName") or ""))


def route_problems(route: Mapping[str, Any], refs: list[dict[str, Any]], now: str) -> tuple[list[str], float | None]:
    """What the Gateways say against an HTTPRoute, for each of its parentRefs (`refs`, as on the wire): its
    status.parents' Accepted conditions that are False, in their reason and message; its ResolvedRefs that are
    False once the route is ROUTE_ANSWER_S old (a new route's backends may have no endpoints for a moment); and a
    parentRef no controller has answered for ROUTE_ANSWER_S since the route was made. With the seconds until such a
    wait is up, for a parentRef still within it."""
    meta = route.get("metadata") or {}
    namespace, generation = meta.get("namespace") or "", int(meta.get("generation") or 0)
    parents = (route.get("status") or {}).get("parents") or []
    made = meta.get("creationTimestamp")
    waited = epoch(now) - epoch(made) if made else ROUTE_ANSWER_S
    problems: list[str] = []
    recheck: float | None = None
    for ref in refs:
        where = f"Gateway {ref.get('namespace') or namespace}/{ref.get('name')}" + (
            f" (listener {ref['sectionName']})" if ref.get("sectionName") else "")
        answers = [p for p in parents if _same_parent(ref, p.get("parentRef") or {}, namespace)]
        waiting = False
        for answer in answers:
            for c in answer.get("conditions") or []:
                stale = int(c.get("observedGeneration") or generation) < generation
                if c.get("type") not in ("Accepted", "ResolvedRefs") or c.get("status") != "False" or stale:
                    continue
                if c["type"] == "ResolvedRefs" and waited < ROUTE_ANSWER_S:
                    waiting = True  # the backend Services of a new route may not have their endpoints yet
                    continue
                words = str(c.get("message") or "").strip() or _ROUTE_REASONS.get(str(c.get("reason")), "")
                problems.append(f"{where}: {c['type']}=False ({c.get('reason', '')})" + (f": {words}" if words else ""))
        if not answers and waited >= ROUTE_ANSWER_S:
            problems.append(f"{where}: no Gateway controller has taken or refused the route in {waited:.0f} s (no "
                            "Gateway of that name exists, or no controller runs its GatewayClass)")
        elif not answers or waiting:
            recheck = min(recheck or ROUTE_ANSWER_S, ROUTE_ANSWER_S - waited)
    return problems, recheck
