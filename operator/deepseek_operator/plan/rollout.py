"""The rollout steps of a pass: what the rollout machine decides, the workloads of every live revision, the
routing, what is pruned, the promoted history, and the status and conditions that say it; and the analysis
request the metric provider answers before the pass. Pure."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepseek_operator.api import status as st
from deepseek_operator.api.status import AnalysisResult, Phase, Reason
from deepseek_operator.plan import mirror, rollout_state, scaling
from deepseek_operator.plan.context import PassContext
from deepseek_operator.plan.gates import stale_preflights
from deepseek_operator.plan.observed import AnalysisRequest, ChildRef, Plan
from deepseek_operator.plan.pods import failing_pods, pods_holding_gpus, ready_pod_ips, refused_pods, unschedulable_pods
from deepseek_operator.plan.revisions import RevisionRender, render_snapshot, snapshot, workload
from deepseek_operator.render import children, imex, multinode, naming, network_policy, routing
from deepseek_operator.rollout import machine
from deepseek_operator.rollout.clock import epoch
from deepseek_operator.rollout.machine import Event


@dataclass(frozen=True)
class Decided:
    """The machine's decision this pass, and the action annotation it was given (parsed, or why refused)."""

    decision: machine.Decision
    action: machine.Action | None
    refused: str  # why the action annotation was refused; "" when there was none or it was taken


def decide(ctx: PassContext) -> Decided:
    annotations = ctx.body["metadata"].get("annotations") or {}
    handled = (ctx.old_status.get("lastAction") or {}).get("nonce", "")
    parsed = machine.parse_action(annotations, naming.ANNOTATION_ACTION, naming.ANNOTATION_ACTION_NONCE, handled)
    action = parsed if isinstance(parsed, machine.Action) else None
    decision = machine.decide(ctx.rollout, ctx.state, machine.World(
        target=ctx.target.name, target_servable=ctx.servable, replicas=ctx.spec.serving.replicas,
        now=epoch(ctx.now), ready=ctx.ready, desired=ctx.desired, pods=pods_holding_gpus(ctx.observed.pods),
        measurement=ctx.observed.measurement, action=action, **ctx.waiting))
    ctx.events += decision.events
    return Decided(decision, action, parsed if isinstance(parsed, str) else "")


def _live(ctx: PassContext, decision: machine.Decision) -> list[str]:
    new = decision.state
    held = [ctx.target.name] if ctx.servable and new.held == ctx.target.name else []
    return list(dict.fromkeys([*decision.replicas, *new.history, *held]))


def workloads(ctx: PassContext, decision: machine.Decision) -> set[str]:
    """The model repository and workload of every live revision (the target's own spec, the others' from their
    history entries); the names of the workloads, which pruning keeps."""
    old_history = {h["revision"]: h for h in ctx.old_status.get("history") or []}
    renders: dict[str, RevisionRender | None] = {r: render_snapshot(h) for r, h in old_history.items()}
    renders[ctx.target.name] = ctx.target
    kept: set[str] = set()
    policies = ctx.spec.serving.network_policy.enabled
    if policies:  # before the pods they guard
        ctx.apply += network_policy.resource_policies(ctx.owner, ctx.spec, ctx.observed.operator_namespace)
    for revision in _live(ctx, decision):
        rendered = renders.get(revision)
        if rendered is None:
            continue
        objects = workload(ctx.owner, rendered, decision.replicas.get(revision, 0), ctx.observed.lws_installed)
        ctx.apply += [children.model_repo_configmap(ctx.owner, revision, rendered.repo_data), *objects]
        kept |= {o["metadata"]["name"] for o in objects}
        if rendered.parallelism["nodesPerReplica"] > 1:
            ctx.ssh_secrets.append(multinode.ssh_secret(ctx.owner, revision))
            if policies:
                ctx.apply.append(network_policy.group_policy(ctx.owner, revision))
    return kept


def route(ctx: PassContext, decided: Decided) -> None:
    """The Service, the disruption budget and the router's objects, once a revision serves."""
    decision, new, owner, rollout = decided.decision, decided.decision.state, ctx.owner, ctx.spec.rollout
    serving_revision = new.stable or next(iter(decision.replicas), "")
    if not serving_revision:
        return
    router = routing.router_for(rollout.traffic_routing)
    split = routing.Split(canary_active=(bool(new.canary) and new.weight > 0) or decision.ab_routing,
                          canary_weight=new.weight, ab_matches=tuple(rollout.match) if decision.ab_routing else ())
    ctx.apply += [children.service(owner), children.disruption_budget(owner)]
    if rollout.traffic_routing.gateway_api is not None:  # the HTTPRoute's two backends
        ctx.apply += [
            children.revision_service(owner, naming.stable_service_name(owner.name), serving_revision),
            children.revision_service(owner, naming.canary_service_name(owner.name), new.canary or serving_revision),
        ]
    ctx.apply += router.objects(owner, split)


def prune(ctx: PassContext, decision: machine.Decision, kept: set[str]) -> None:
    """What no live revision uses any more: workloads, their headless Services and keys, model repositories,
    HTTPRoutes of a rollout that no longer routes through the Gateway API, stale preflights."""
    observed = ctx.observed
    delete = [ChildRef("apps/v1", "Deployment", n) for n in sorted(observed.deployments) if n not in kept]
    delete += [ChildRef("apps/v1", "StatefulSet", n) for n in sorted(observed.statefulsets) if n not in kept]
    delete += [ChildRef(multinode.LWS_API_VERSION, "LeaderWorkerSet", n) for n in sorted(observed.leader_worker_sets)
               if n not in kept]
    # A multi-node revision that goes takes its headless Service (the fallback's; LWS makes its own) and its keys.
    gone = [n for n, s in sorted(observed.statefulsets.items()) if n not in kept
            and s["metadata"]["labels"].get(naming.LABEL_COMPONENT) == naming.COMPONENT_SERVER]
    delete += [ChildRef("v1", "Service", n) for n in gone]
    gone += [n for n in sorted(observed.leader_worker_sets) if n not in kept]
    delete += [ChildRef("v1", "Secret", multinode.ssh_secret_name_of(n)) for n in gone]
    if observed.compute_domains_installed:  # a GB200 revision's IMEX domain goes with it (404 for the others)
        delete += [ChildRef(imex.API_VERSION, imex.KIND, imex.domain_name_of(n)) for n in gone]
    live = {naming.model_repo_configmap_name(ctx.owner.name, r) for r in _live(ctx, decision)}
    delete += [ChildRef("v1", "ConfigMap", cm) for cm in observed.model_repo_configmaps if cm not in live]
    if ctx.spec.rollout.traffic_routing.gateway_api is None:
        delete += [ChildRef(routing.GATEWAY_API_VERSION, "HTTPRoute", r) for r in observed.http_routes]
    # The policies of this pass are those of the live revisions and of a preflight under way (its gate's).
    policies = {o["metadata"]["name"] for o in ctx.apply if o["kind"] == "NetworkPolicy"}
    delete += [ChildRef(network_policy.API_VERSION, "NetworkPolicy", p) for p in observed.network_policies
               if p not in policies]
    ctx.delete += delete + stale_preflights(ctx)


def history(ctx: PassContext, new: machine.State) -> list[dict[str, Any]]:
    """The promoted revisions with the spec that made each; a revision promoted this pass gets its entry."""
    old_history = {h["revision"]: h for h in ctx.old_status.get("history") or []}
    out = []
    for revision in new.history:
        entry = old_history.get(revision)
        if entry is None or (revision == new.stable and revision != ctx.state.stable):  # promoted in this pass
            target = ctx.target
            source = {"model": target.label, "spec": snapshot(target.spec)} if revision == target.name else entry
            entry = {"revision": revision, "model": (source or {}).get("model", ""), "promotedAt": ctx.now,
                     "spec": (source or {}).get("spec", {})}
        out.append(entry)
    return out


def rollout_status(ctx: PassContext, decided: Decided) -> None:
    decision, new, replicas = decided.decision, decided.decision.state, ctx.spec.serving.replicas
    n_ready = min(ctx.ready.get(new.stable or ctx.target.name, 0), replicas)
    provider = ctx.spec.rollout.analysis.provider if ctx.spec.rollout.analysis else ""
    status = ctx.status
    status.phase, status.replicas, status.ready_replicas = Phase(decision.phase), replicas, n_ready
    status.ready = f"{n_ready}/{replicas}"
    for name, value in new.to_status().items():
        setattr(status, name, value)
    status.analysis = rollout_state.analysis_status(  # type: ignore[assignment]  # validated on assignment
        ctx.old_status.get("analysis"), new, ctx.observed, provider, ctx.now, ctx.rollout.policy)
    status.history = history(ctx, new)  # type: ignore[assignment]
    if decided.refused or decided.action is not None:
        annotations = ctx.body["metadata"].get("annotations") or {}
        name = annotations.get(naming.ANNOTATION_ACTION, "")
        result = decision.action_result if decided.action is not None else f"refused: {decided.refused}"
        status.last_action = st.HandledAction(nonce=annotations.get(naming.ANNOTATION_ACTION_NONCE, ""),
                                              action=name, at=ctx.now, result=result)
        if decided.refused:
            ctx.events.append(Event("Warning", "ActionRefused", f"action {name!r}: {decided.refused}"))


def _pods_in_trouble(ctx: PassContext, decision: machine.Decision) -> tuple[str, str]:
    """The decision's reason and message, with what the scheduler or the kubelet says of the rolling revision's
    pods: the truth a user needs when GPUs run out or a container crash-loops, not "waiting for pods"."""
    new = decision.state
    message, reason = decision.message, decision.reason
    rolling = new.canary or (ctx.target.name if not new.stable else "")
    if not rolling or decision.phase != Phase.PROGRESSING:
        return reason, message
    if refused := refused_pods(ctx.observed.deployments, rolling):
        message += f"; the API server refuses its pods: {refused}"
        reason = Reason.QUOTA_EXCEEDED if "exceeded quota" in refused else Reason.PODS_REFUSED
    if stuck := unschedulable_pods(ctx.observed.pods, rolling):
        message += f"; {len(stuck)} pod(s) cannot be scheduled: {stuck[0]}"
        reason = Reason.CANARY_UNSCHEDULABLE if new.stable else Reason.UNSCHEDULABLE
    if failing := failing_pods(ctx.observed.pods, rolling):
        message += f"; {len(failing)} pod(s) failing: {failing[0]}"
        reason = Reason.CANARY_CONTAINERS_FAILING if new.stable else Reason.CONTAINERS_FAILING
        which = failing[0].split(" (exit code")[0]  # the pod, container and reason: not the restart count
        if not any(which in str(c.get("message", "")) for c in ctx.old_status.get("conditions") or []):
            ctx.events.append(Event("Warning", "PodFailing", failing[0]))  # once per distinct failure
    return reason, message


def conditions(ctx: PassContext, decision: machine.Decision, mirroring: tuple[mirror.MirrorOrder, ...] = ()) -> None:
    new, replicas, conds = decision.state, ctx.spec.serving.replicas, ctx.conds
    reason, message = _pods_in_trouble(ctx, decision)
    if mirroring and mirroring[0].fraction > 0:
        message += (f"; the stable mirrors {100 * mirroring[0].fraction:.1f}% of its requests to the canary "
                    "(analysis evidence, answers discarded)")
    n_ready = min(ctx.ready.get(new.stable or ctx.target.name, 0), replicas)
    if new.stable and ctx.ready.get(new.stable, 0) >= replicas:
        conds.set(st.READY, True, Reason.SCALED_TO_ZERO if replicas == 0 else Reason.REPLICAS_READY,
                  f"{n_ready}/{replicas} replicas of revision {new.stable} ready")
    else:
        why = reason if decision.phase == Phase.PROGRESSING else Reason.REPLICAS_NOT_READY
        conds.set(st.READY, False, why, message)
    if decision.phase in (Phase.PROGRESSING, Phase.PAUSED, Phase.PREPARING):
        conds.set(st.PROGRESSING, True, reason, message)
    else:
        conds.set(st.PROGRESSING, False, Reason.AS_EXPECTED, "")
    if decision.degraded:
        conds.set(st.DEGRADED, True, decision.reason, _with_figures(message, ctx.status.analysis))
    else:
        conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)


def _with_figures(message: str, analysis_status: st.Analysis | None) -> str:
    if analysis_status is None or analysis_status.result != AnalysisResult.FAILED.value:
        return message
    return f"{message}; last analysis: {analysis_status.message}"


def roll(ctx: PassContext) -> Plan:
    """The rollout pass: decide, render the live revisions, route, prune, and say it in status."""
    decided = decide(ctx)
    decision = decided.decision
    kept = workloads(ctx, decision)
    route(ctx, decided)
    scaling.scaler(ctx)
    prune(ctx, decision, kept)
    rollout_status(ctx, decided)
    mirroring = mirror_orders(ctx, decision)
    conditions(ctx, decision, mirroring)
    return ctx.finish(ssh_secrets=ctx.ssh_secrets, requeue_after=decision.requeue_after, outcome=decision.outcome,
                      verdict=decision.verdict.result if decision.verdict else "", mirror=mirroring)


def mirror_orders(ctx: PassContext, decision: machine.Decision) -> tuple[mirror.MirrorOrder, ...]:
    """While a canary with an analysis takes traffic: the share of the stable's requests its pods mirror to the
    canary (analysis.mirror fill); once the rollout ended this pass, an order to stop."""
    a, new, pods = ctx.spec.rollout.analysis, decision.state, ctx.observed.pods
    interval = float(ctx.rollout.interval_seconds)
    if a is None or a.mirror != "fill" or ctx.rollout.strategy != "canary":
        return ()
    was_canary = ctx.old_status.get("canaryRevision", "")
    if not new.canary or new.kind in machine.FAST or new.weight <= 0:
        stop = bool(was_canary) and not new.canary
        return mirror.orders(fraction=0.0, stable_ips=ready_pod_ips(pods, new.stable), canary_ips=(),
                             interval_s=interval, stop=stop)
    stable_ips, canary_ips = ready_pod_ips(pods, new.stable), ready_pod_ips(pods, new.canary)
    fraction = mirror.fill_fraction(new.weight, len(canary_ips), len(stable_ips))
    return mirror.orders(fraction=fraction, stable_ips=stable_ips, canary_ips=canary_ips, interval_s=interval,
                         stop=False)


def analysis_request(ctx: PassContext) -> AnalysisRequest | None:
    """What the provider must measure this pass, if the rollout's analysis is due; None otherwise."""
    a, state, status = ctx.spec.rollout.analysis, ctx.state, ctx.old_status
    if not status.get("canaryRevision") or a is None:
        return None
    name, pods = ctx.owner.name, ctx.observed.pods
    canary_pods = ready_pod_ips(pods, state.canary)
    # Ready by its workload's count and by a pod seen Ready with an address (two watches, either may lag): a
    # measurement of a canary with no pod to scrape would be Inconclusive, and pause the rollout for nothing.
    canary_ready = ctx.ready.get(state.canary, 0) >= 1 and bool(canary_pods)
    if not machine.analysis_due(ctx.rollout, state, epoch(ctx.now), canary_ready):
        return None
    last = state.analysis
    previous = (status.get("analysis") or {}).get("counters", {}) if last and last.revision == state.canary else {}
    named = a.named_source()
    return AnalysisRequest(
        provider=a.provider, namespace=ctx.owner.namespace, name=name, canary_revision=state.canary,
        stable_revision=state.stable, window_seconds=max(1.0, epoch(ctx.now) - machine.window_start(state)),
        previous_counters=dict(previous), canary_pod_ips=canary_pods,
        stable_pod_ips=ready_pod_ips(pods, state.stable), canary_service=naming.canary_service_name(name),
        stable_service=naming.stable_service_name(name), prometheus=a.prometheus, gateway=a.gateway,
        source=ctx.observed.metric_sources.get(named[1]) if named is not None else None,
        streaming=ctx.spec.serving.streaming)
