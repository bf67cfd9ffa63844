"""The scaling step of a pass: the scaler the resource's autoscaling asks for (a KEDA ScaledObject or a plain
HPA), its Autoscaling condition, who set the replica count, and the event of each change of it. Pure.

The replica count itself is never the operator's: it reads spec.serving.replicas (what a person, Git or a
scaler wrote, through the scale subresource or not) and only says who wrote it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from deepseek_operator.api import status as st
from deepseek_operator.api.spec import Autoscaling
from deepseek_operator.api.status import Reason
from deepseek_operator.plan.context import PassContext
from deepseek_operator.plan.observed import ChildRef
from deepseek_operator.render import autoscaling as scalers
from deepseek_operator.render import naming
from deepseek_operator.rollout.machine import Event

SCALED_OBJECT, HPA = "ScaledObject", "HorizontalPodAutoscaler"
API_VERSIONS = {SCALED_OBJECT: scalers.KEDA_API_VERSION, HPA: scalers.HPA_API_VERSION}


def replicas_set_by(managed_fields: Sequence[Mapping[str, Any]] | None) -> str:
    """The field manager that last wrote spec.serving.replicas ("(scale)" when through the scale
    subresource); "" when nobody set it (the default)."""
    latest: tuple[str, str] | None = None
    for entry in managed_fields or ():
        serving = ((entry.get("fieldsV1") or {}).get("f:spec") or {}).get("f:serving") or {}
        if "f:replicas" not in serving:
            continue
        when = str(entry.get("time", ""))
        if latest is None or when >= latest[0]:
            who = str(entry.get("manager", "?"))
            latest = (when, f"{who} (scale)" if entry.get("subresource") == "scale" else who)
    return latest[1] if latest else ""


def _condition(summary: Mapping[str, Any] | None, ctype: str) -> Mapping[str, Any] | None:
    for c in ((summary or {}).get("status") or {}).get("conditions") or []:
        if c.get("type") == ctype:
            return dict(c)
    return None


def _signal(a: Autoscaling) -> str:
    return f"{a.min_replicas}..{a.max_replicas} replicas on {a.metric}, {a.target:g} per replica"


def scaler(ctx: PassContext) -> None:
    """Applies the scaler the spec asks for, prunes the other, and sets the Autoscaling condition."""
    a, owner, observed = ctx.spec.serving.autoscaling, ctx.owner, ctx.observed
    kept = ""
    if a is not None:
        source = observed.metric_sources.get(a.prometheus.source) if a.prometheus else None
        if observed.keda_installed and source is not None:
            kept = SCALED_OBJECT
            ctx.apply.append(scalers.scaled_object(owner, a, source.address))
            ready = _condition(observed.scalers.get(SCALED_OBJECT), "Ready")
            if ready is None:
                ctx.conds.set(st.AUTOSCALING, False, Reason.SCALER_NOT_READY,
                              f"waiting for KEDA to take ScaledObject {owner.name} ({_signal(a)})")
            elif ready.get("status") == "True":
                ctx.conds.set(st.AUTOSCALING, True, Reason.SCALER_READY,
                              f"KEDA ScaledObject {owner.name}: {_signal(a)}; query: {scalers.query(owner, a)}")
            else:
                ctx.conds.set(st.AUTOSCALING, False, Reason.SCALER_NOT_READY,
                              f"KEDA: {ready.get('reason', '')}: {ready.get('message', '')}")
        elif a.hpa_metric is not None:
            kept = HPA
            ctx.apply.append(scalers.horizontal_pod_autoscaler(owner, a))
            active = _condition(observed.scalers.get(HPA), "ScalingActive")
            if active is not None and active.get("status") == "False":
                ctx.conds.set(st.AUTOSCALING, False, Reason.SCALER_NOT_READY,
                              f"HorizontalPodAutoscaler {owner.name}: {active.get('reason', '')}: "
                              f"{active.get('message', '')}")
            else:
                ctx.conds.set(st.AUTOSCALING, True, Reason.SCALER_READY,
                              f"HorizontalPodAutoscaler {owner.name}: {_signal(a)} (pods metric {a.hpa_metric})")
        else:
            why = ("the KEDA API (keda.sh/v1alpha1) is not served" if not observed.keda_installed
                   else "KEDA needs autoscaling.prometheus.source (the Prometheus it queries)")
            ctx.conds.set(st.AUTOSCALING, False, Reason.NO_SCALER,
                          f"{why} and autoscaling.hpaMetric is unset: nothing scales the resource; install KEDA "
                          "(the operator notices at start-up), or name a per-pod custom metric for a plain "
                          "HorizontalPodAutoscaler")
    for kind in observed.scalers:
        if kind != kept:
            ctx.delete.append(ChildRef(API_VERSIONS[kind], kind, naming.autoscaler_name(owner.name)))
    _say_who_scaled(ctx, f"{kept}/{naming.autoscaler_name(owner.name)}" if kept else "")


def _say_who_scaled(ctx: PassContext, autoscaler: str) -> None:
    replicas = ctx.spec.serving.replicas
    previous = ctx.old_status.get("scaling") or {}
    who = replicas_set_by(ctx.body["metadata"].get("managedFields")) or "default"
    last, at = previous.get("lastScale", ""), previous.get("lastScaleTime", "")
    before = ctx.old_status.get("replicas")
    if ctx.old_status.get("revision") and before is not None and before != replicas:
        last, at = f"{before} -> {replicas}", ctx.now
        ctx.events.append(Event("Normal", Reason.SCALED, f"replicas {before} -> {replicas} (set by {who})"))
    ctx.status.scaling = st.ScalingStatus(replicas_set_by=who, autoscaler=autoscaler, last_scale=last,
                                          last_scale_time=at)
