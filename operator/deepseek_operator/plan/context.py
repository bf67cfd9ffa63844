"""The pass context: what one reconcile pass knows, built once (the parsed spec, the runtime it resolves to,
the revision it renders, the rollout's settings and state, ready counts) and read by every step, including the
analysis request the provider answers before the pass goes on. Pure.

`start` is the first two steps: a spec that does not parse, or a model that does not fit its GPUs, ends the
pass there (reported in conditions, nothing changed).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import status as st
from deepseek_operator.api.sources import SourceKind, source_problem
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.api.status import Phase, Reason
from deepseek_operator.plan import rollout_state
from deepseek_operator.plan.observed import ChildRef, Observed, Plan
from deepseek_operator.plan.pods import ready_by_revision
from deepseek_operator.plan.revisions import RevisionRender, model_of, render, resolve, runtime_status
from deepseek_operator.plan.status import (
    Conditions,
    carried_over,
    changed,
    decided_events,
    rendered_status,
    validation_message,
)
from deepseek_operator.render import autoscaling, catalog, children, imex, security, sizing, weights
from deepseek_operator.render import runtime as runtimes
from deepseek_operator.rollout import machine
from deepseek_operator.rollout.machine import Event


@dataclass
class PassContext:
    body: dict[str, Any]
    observed: Observed
    now: str
    conds: Conditions
    old_status: dict[str, Any]
    spec: DeepSeekDeploymentSpec
    model: catalog.ModelSpec
    runtime: runtimes.Runtime
    target: RevisionRender
    owner: children.Owner
    affinity: dict[str, Any]
    rollout: machine.Rollout
    state: machine.State
    ready: dict[str, int]  # ready replicas per revision
    desired: dict[str, int]  # desired replicas per revision
    status: st.DeepSeekDeploymentStatus  # the status this pass writes, filled in by the steps
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    servable: bool = True  # the target revision may get pods (its weights and checkpoint are there)
    waiting: dict[str, Any] = field(default_factory=dict)  # what the target waits for, for the rollout machine
    ssh_secrets: list[dict[str, Any]] = field(default_factory=list)  # of live multi-node revisions

    @property
    def fit(self) -> sizing.SizingResult:
        return self.runtime.fit

    @property
    def serving(self) -> bool:
        """A promoted revision serves: a gate that holds the new revision leaves it serving."""
        return bool(self.old_status.get("stableRevision"))

    def with_observed(self, observed: Observed) -> PassContext:
        """The context with what the k8s layer read for it (the canary's figures, a download's progress)."""
        return replace(self, observed=observed)

    def finish(self, phase: Phase | None = None, **plan_kw: Any) -> Plan:
        """The Plan: the status with this pass's conditions, the children that changed, and the events."""
        if phase:
            self.status.phase = phase
        return finish(self.body, self.conds, self.status, self.observed, apply=self.apply, delete=self.delete,
                      events=self.events, **plan_kw)


def finish(body: dict[str, Any], conds: Conditions, status: st.DeepSeekDeploymentStatus, observed: Observed,
           apply: list[dict[str, Any]] | None = None, events: list[Event] | None = None, **plan_kw: Any) -> Plan:
    rendered = rendered_status(status, conds)
    return Plan(status=rendered, typed=status, apply=changed(apply or [], observed),
                events=[*(events or []), *decided_events(body.get("status") or {}, rendered)], **plan_kw)


POD_SECURITY_RECHECK_S = 30.0


def start(body: dict[str, Any], observed: Observed, now: str) -> PassContext | Plan:
    """The context of a spec that parses and fits; otherwise the Plan that reports why, changing nothing."""
    meta = body["metadata"]
    old_status = body.get("status") or {}
    conds = Conditions(int(meta.get("generation", 1)), now,
                       {c["type"]: c for c in old_status.get("conditions") or []})
    parsed = _parse(body, conds, old_status, observed)
    if isinstance(parsed, Plan):
        return parsed
    spec, model = parsed
    rt = resolve(spec, model)
    fit = rt.fit
    status = carried_over(old_status)
    status.model = st.ModelStatus(name=f"{spec.model.name}@{spec.model.precision.value}",
                                  source=weights.location(spec))
    status.sizing = st.Sizing(weights_gb=round(fit.weights_gb, 1), kv_cache_gb=round(fit.kv_cache_gb, 1),
                              need_per_gpu_gb=round(fit.need_per_gpu_gb, 1),
                              budget_per_gpu_gb=round(fit.budget_per_gpu_gb, 1))
    if not fit.fits:
        conds.set(st.SPEC_VALID, True, Reason.VALID_SPEC, "")  # valid as written; the hardware is the trouble
        conds.set(st.FITS_HARDWARE, False, fit.reason, fit.message)
        conds.set(st.READY, False, fit.reason, "the model does not fit the requested GPUs; nothing was changed")
        conds.set(st.DEGRADED, True, fit.reason, fit.message)
        status.phase = Phase.DEGRADED
        return finish(body, conds, status, observed)
    conds.set(st.FITS_HARDWARE, True, Reason.FITS, f"{fit.message}; {rt.reason}")
    if (forbidden := security.pod_security_problem(spec, fit.nodes_per_replica, observed.pod_security)) is not None:
        conds.set(st.SPEC_VALID, True, Reason.VALID_SPEC, "")  # valid as written; the namespace is the trouble
        conds.set(st.READY, False, Reason.POD_SECURITY_FORBIDS, f"{forbidden}; nothing was changed")
        conds.set(st.DEGRADED, True, Reason.POD_SECURITY_FORBIDS, forbidden)
        status.phase = Phase.DEGRADED
        # A namespace's label changes without an event of ours: look again a while later.
        return finish(body, conds, status, observed, requeue_after=POD_SECURITY_RECHECK_S)
    if imex.needed(catalog.GPUS[spec.serving.gpu.type], fit.nodes_per_replica) \
            and not observed.compute_domains_installed:
        missing = imex.unavailable_message(catalog.GPUS[spec.serving.gpu.type], fit.nodes_per_replica)
        conds.set(st.SPEC_VALID, True, Reason.VALID_SPEC, "")  # valid as written; the cluster lacks an API
        conds.set(st.READY, False, Reason.NO_MULTI_NODE_NVLINK, f"{missing}; nothing was changed")
        conds.set(st.DEGRADED, True, Reason.NO_MULTI_NODE_NVLINK, missing)
        status.phase = Phase.DEGRADED
        return finish(body, conds, status, observed)
    target = render(spec, model, rt)
    if ignored := runtimes.ignored_settings(spec, model, fit.nodes_per_replica, target.quantize):
        conds.set(st.SPEC_VALID, True, Reason.IGNORED_SETTING, "; ".join(ignored))
    else:
        conds.set(st.SPEC_VALID, True, Reason.VALID_SPEC, "")
    status.parallelism = target.parallelism  # type: ignore[assignment]  # validated on assignment
    status.runtime = runtime_status(rt)  # type: ignore[assignment]
    status.revision = target.name
    status.selector = autoscaling.selector(meta["name"])
    ready, desired = ready_by_revision(observed.deployments, observed.statefulsets, observed.leader_worker_sets)
    return PassContext(
        body=body, observed=observed, now=now, conds=conds, old_status=old_status, spec=spec, model=model,
        runtime=rt, target=target, owner=children.Owner(meta["name"], meta["namespace"], meta["uid"]),
        affinity=children.gpu_node_affinity(target.gpu, spec.serving.node_selector),
        rollout=rollout_state.settings(spec), state=machine.State.from_status(old_status), ready=ready, desired=desired,
        status=status)


def _source_problems(spec: DeepSeekDeploymentSpec, observed: Observed) -> list[str]:
    """A prometheus or gateway analysis, and autoscaling's Prometheus, must name a source of that kind that the
    operator is configured with."""
    named: list[tuple[str, SourceKind, str]] = []
    analysis = spec.rollout.analysis
    if analysis is not None and (source := analysis.named_source()) is not None:
        named.append((f"rollout.analysis.{source[0]}.source", *source))
    if (scaling := spec.serving.autoscaling) is not None and scaling.prometheus is not None:
        named.append(("serving.autoscaling.prometheus.source", "prometheus", scaling.prometheus.source))
    problems = (source_problem(path, kind, name, observed.metric_sources) for path, kind, name in named)
    return [p for p in problems if p]


def _parse(body: dict[str, Any], conds: Conditions, old_status: dict[str, Any],
           observed: Observed) -> tuple[DeepSeekDeploymentSpec, catalog.ModelSpec] | Plan:
    try:
        spec = DeepSeekDeploymentSpec.model_validate(body.get("spec") or {})
        model = model_of(spec)
    except ValidationError as err:
        message = validation_message(err)
    except ValueError as err:  # custom figures that no model can have
        message = f"spec.model.custom: {err}"
    else:
        problems = [*runtimes.problems(spec, model), *_source_problems(spec, observed)]
        if not problems:
            return spec, model
        message = "; ".join(problems)
    conds.set(st.SPEC_VALID, False, Reason.INVALID_SPEC, message)
    conds.set(st.READY, False, Reason.INVALID_SPEC, message)
    conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
    status = carried_over(old_status)
    status.phase = Phase.DEGRADED
    return finish(body, conds, status, observed)
