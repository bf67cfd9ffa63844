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
from deepseek_operator.api.crd import MAX_NAME_LENGTH
from deepseek_operator.api.sources import source_problem
from deepseek_operator.api.spec import DeepSeekDeploymentSpec, SourceProviderName
from deepseek_operator.api.status import Phase, Reason
from deepseek_operator.plan import rollout_state
from deepseek_operator.plan.observed import ChildRef, Observed, Plan
from deepseek_operator.plan.pods import failing_pods, ready_by_revision
from deepseek_operator.plan.revisions import RevisionRender, model_of, render, resolve, runtime_status
from deepseek_operator.plan.status import (
    Conditions,
    carried_over,
    changed,
    decided_events,
    rendered_status,
    route_problems,
    validation_message,
)
from deepseek_operator.render import (
    autoscaling,
    catalog,
    children,
    imex,
    multinode,
    naming,
    preflight,
    security,
    sizing,
    weights,
)
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
        """The Plan: the status with this pass's conditions (and what the children say against the serving
        revision and the route), the children that changed, and the events."""
        if phase:
            self.status.phase = phase
        if (recheck := children_say(self)) is not None:
            due = plan_kw.get("requeue_after")
            plan_kw["requeue_after"] = recheck if due is None else min(due, recheck)
        return finish(self.body, self.conds, self.status, self.observed, apply=self.apply, delete=self.delete,
                      events=self.events, **plan_kw)


def said_before(ctx: PassContext, words: str) -> bool:
    """Whether the last status already carried these words in a condition (a failure is said once in an event)."""
    return any(words in str(c.get("message", "")) for c in ctx.old_status.get("conditions") or [])


def children_say(ctx: PassContext) -> float | None:
    """What Kubernetes already says against the resource, brought into its conditions: the kubelet's words for
    pods of the serving revision that do not come up (the rolling revision's are the rollout step's), and the
    Gateways' words for an HTTPRoute they do not take. Returns when to look again (a route no controller has
    answered yet)."""
    stable = ctx.status.stable_revision or ctx.old_status.get("stableRevision") or ""
    ready = ctx.conds.get(st.READY)
    if stable and ready is not None and ready["status"] == "False" \
            and (failing := failing_pods(ctx.observed.pods, stable)) and failing[0] not in ready["message"]:
        ctx.conds.set(st.READY, False, Reason.CONTAINERS_FAILING,
                      f"{ready['message']}; {len(failing)} pod(s) of revision {stable} failing: {failing[0]}")
        if not said_before(ctx, failing[0].split(" (exit code")[0]):
            ctx.events.append(Event("Warning", "PodFailing", failing[0]))
    routing = ctx.spec.rollout.traffic_routing.gateway_api
    if routing is None:
        return None
    refs = [ref.model_dump(by_alias=True, exclude_none=True) for ref in routing.parent_refs]
    recheck: float | None = None
    for name, route in sorted(ctx.observed.routes.items()):
        problems, wait = route_problems(route, refs, ctx.now)
        recheck = wait if recheck is None or (wait is not None and wait < recheck) else recheck
        degraded = ctx.conds.get(st.DEGRADED)
        if problems and (degraded is None or degraded["status"] != "True"):
            ctx.conds.set(st.DEGRADED, True, Reason.ROUTE_NOT_ACCEPTED,
                          f"HTTPRoute {name} is not taken: {'; '.join(problems)}; clients reach the model through "
                          f"Service {ctx.owner.name} only")
            ctx.status.phase = Phase.DEGRADED
    return None if recheck is None else recheck + 1.0


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
    if (too_long := name_problem(meta["name"], target.name, fit.nodes_per_replica,
                                 preflight.required(spec, target.world))) is not None:
        conds.set(st.SPEC_VALID, False, Reason.INVALID_SPEC, too_long)
        conds.set(st.READY, False, Reason.INVALID_SPEC, f"{too_long}; nothing was changed")
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, too_long)
        status.phase = Phase.DEGRADED
        return finish(body, conds, status, observed)
    ignored = [*runtimes.ignored_settings(spec, model, fit.nodes_per_replica, target.quantize),
               *ignored_scaling(spec, observed)]
    if ignored:
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


# Kubernetes' limit on a DNS label (a Service's name, a pod's hostname) and on a label value.
MAX_LABEL = 63
# ServingSpec.replicas and Autoscaling.maxReplicas are at most 1000: a revision's groups are numbered 0-999.
MOST_GROUPS = 1000
# A StatefulSet's pods carry the label controller-revision-hash `<StatefulSet>-<hash>`, the hash a decimal FNV-32 of
# up to 10 digits (kubernetes/pkg/controller/history: ControllerRevisionName, HashControllerRevision). LWS makes
# StatefulSets with the same names, so both forms of a multi-node revision have these names.
REVISION_HASH = "1" * 10


def derived_names(name: str, revision: str, nodes: int, preflight_nodes: int) -> list[tuple[str, str]]:
    """(what, the longest it can be) for every name and label value a multi-node revision derives from the
    resource's name that Kubernetes holds to MAX_LABEL characters."""
    group = MOST_GROUPS - 1
    leaders = naming.server_deployment_name(name, revision)
    workers = multinode.worker_statefulset_name(name, revision, group)
    out = [("the headless Service <name>-<revision>", leaders),
           ("the label controller-revision-hash <StatefulSet>-<hash> of the leaders' pods",
            f"{leaders}-{REVISION_HASH}"),
           ("a leader pod's name and hostname <name>-<revision>-<group>", f"{leaders}-{group}"),
           ("the label controller-revision-hash <StatefulSet>-<hash> of a group's workers (StatefulSet "
            "<name>-<revision>-<group>)", f"{workers}-{REVISION_HASH}"),
           ("a worker pod's name and hostname <name>-<revision>-<group>-<index>", f"{workers}-{nodes - 1}")]
    if preflight_nodes:
        job = preflight.job_name(name, revision)
        out.append(("a preflight pod's hostname <Job>-<index>", f"{job}-{preflight_nodes - 1}"))
    return out


def name_problem(name: str, revision: str, nodes: int, preflight_runs: bool) -> str | None:
    """A name within the CRD's cap that a layout spanning several nodes overflows: the StatefulSet controller (or
    LeaderWorkerSet's) would fail to create the pods, and the revision would wait for them in silence."""
    if nodes <= 1:
        return None
    names = derived_names(name, revision, nodes, nodes if preflight_runs else 0)
    what, longest = max(names, key=lambda n: len(n[1]))
    if len(longest) <= MAX_LABEL:
        return None
    most = MAX_LABEL - (len(longest) - len(name))
    return (f"metadata.name has {len(name)} characters, too many for a replica that spans {nodes} nodes: "
            f"{what} would be up to {len(longest)} characters (groups numbered up to {MOST_GROUPS - 1}), and "
            f"Kubernetes refuses a name or label value over {MAX_LABEL}, so those pods would never be created; use "
            f"a name of at most {most} characters for this layout (one-node layouts take up to {MAX_NAME_LENGTH})")


def ignored_scaling(spec: DeepSeekDeploymentSpec, observed: Observed) -> list[str]:
    """Autoscaling settings of one scaler that the other scaler, the one this cluster runs, ignores."""
    a = spec.serving.autoscaling
    if a is None:
        return []
    keda = observed.keda_installed and a.prometheus is not None
    if a.prometheus is not None and a.hpa_metric is not None:
        if keda:
            return ["spec.serving.autoscaling.hpaMetric is ignored: the KEDA API is served and autoscaling.prometheus "
                    "names the Prometheus it queries, so a KEDA ScaledObject scales the resource (a plain "
                    "HorizontalPodAutoscaler on hpaMetric is the scaler of clusters without KEDA)"]
        return ["spec.serving.autoscaling.prometheus is ignored: the KEDA API is not served, so a plain "
                "HorizontalPodAutoscaler scales the resource on hpaMetric (with KEDA installed, a ScaledObject on "
                "that Prometheus would)"]
    found = []
    if not keda and a.hpa_metric is not None:
        fields_set = a.model_fields_set
        if fields_set & {"metric", "query"}:
            found.append("spec.serving.autoscaling.metric is ignored: a plain HorizontalPodAutoscaler scales the "
                         f"resource on the pods' {a.hpa_metric} (hpaMetric); metric and query are the signal of a "
                         "KEDA ScaledObject (with KEDA installed and autoscaling.prometheus set)")
        if "polling_interval" in fields_set:
            found.append("spec.serving.autoscaling.pollingInterval is ignored: it is KEDA's; the "
                         "HorizontalPodAutoscaler reads its metric at the controller manager's sync period")
    return found


def _source_problems(spec: DeepSeekDeploymentSpec, observed: Observed) -> list[str]:
    """A prometheus or gateway analysis, and autoscaling's Prometheus, must name a source of that kind that the
    operator is configured with."""
    named: list[tuple[str, SourceProviderName, str]] = []
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
