"""The scaler of a resource: a KEDA ScaledObject (Prometheus over the pods' own metrics) or a plain
HorizontalPodAutoscaler (a per-pod custom metric), both aimed at the resource's scale subresource. Pure.

The scaler writes spec.serving.replicas through that subresource; the operator turns the number into the
revisions' workloads (during a rollout, the stable gets it and the canary its share), so the two never fight.
"""

from __future__ import annotations

import math
from typing import Any

from deepseek_operator.api.spec import GROUP, KIND, VERSION, Autoscaling, ScalingBehaviour, duration_seconds
from deepseek_operator.render import naming
from deepseek_operator.render.children import Owner, child_metadata

KEDA_API_VERSION = "keda.sh/v1alpha1"
HPA_API_VERSION = "autoscaling/v2"
# KEDA copies a ScaledObject's labels (ours among them) onto the HPA it makes, and adds this one: that HPA is
# KEDA's, not a plain HPA of the operator's.
KEDA_HPA_LABEL = "scaledobject.keda.sh/name"
SCALE_TARGET = {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND}
# Gauges of the serving pods (the OpenAI frontend's, Triton's): summed over the resource's pods, the load to
# spread over `target`-sized replicas.
IN_FLIGHT = "deepseek_frontend_requests_in_flight"
# Not Triton's nv_inference_pending_request_count: the llmapi model's execute() hands every request to the LLM API
# at once, so Triton's queue stays empty and TensorRT-LLM's own queue is seen only by the front door.
WAITING = "deepseek_frontend_requests_waiting_first_token"


def query(owner: Owner, autoscaling: Autoscaling) -> str:
    """The PromQL of the resource's total load on the chosen signal."""
    if autoscaling.metric == "custom":
        assert autoscaling.query is not None  # a spec rule
        return autoscaling.query
    label = autoscaling.prometheus.name_label if autoscaling.prometheus else "serving_deepseek_ai_deployment"
    selector = f'namespace="{owner.namespace}",{label}="{owner.name}"'
    if autoscaling.metric == "queuedRequests":
        return f"sum({WAITING}{{{selector}}})"
    return f"sum({IN_FLIGHT}{{{selector}}})"


def _behaviour(b: ScalingBehaviour) -> dict[str, Any]:
    out: dict[str, Any] = {"stabilizationWindowSeconds": duration_seconds(b.stabilization_window)}
    if b.max_replicas_per_period is not None:
        out["policies"] = [{"type": "Pods", "value": b.max_replicas_per_period,
                            "periodSeconds": max(1, duration_seconds(b.period))}]
    return out


def behavior(autoscaling: Autoscaling) -> dict[str, Any]:
    return {"scaleUp": _behaviour(autoscaling.scale_up), "scaleDown": _behaviour(autoscaling.scale_down)}


def _target(value: float) -> str:
    """A quantity for a target: integers as they are, fractions in milli-units (what the HPA compares)."""
    return str(int(value)) if float(value).is_integer() else f"{math.ceil(value * 1000)}m"


def scaled_object(owner: Owner, autoscaling: Autoscaling, prometheus_address: str) -> dict[str, Any]:
    """KEDA's ScaledObject: its HPA reads the query's value through KEDA's external metrics API, averaged
    over the replicas (AverageValue): replicas = ceil(load / target)."""
    trigger: dict[str, Any] = {
        "type": "prometheus", "metricType": "AverageValue",
        "metadata": {"serverAddress": prometheus_address, "query": query(owner, autoscaling),
                     "threshold": _target(autoscaling.target)},
    }
    if autoscaling.prometheus and autoscaling.prometheus.authentication_ref:
        trigger["authenticationRef"] = {"name": autoscaling.prometheus.authentication_ref}
    return _aimed_at(owner, KEDA_API_VERSION, "ScaledObject", {
        "minReplicaCount": autoscaling.min_replicas, "maxReplicaCount": autoscaling.max_replicas,
        "pollingInterval": max(1, duration_seconds(autoscaling.polling_interval)),
        "advanced": {"horizontalPodAutoscalerConfig": {"name": naming.autoscaler_name(owner.name),
                                                       "behavior": behavior(autoscaling)}},
        "triggers": [trigger],
    })


def horizontal_pod_autoscaler(owner: Owner, autoscaling: Autoscaling) -> dict[str, Any]:
    """A plain HPA on the scale subresource: the per-pod metric `hpaMetric`, averaged over the serving pods
    (the subresource's selector), against `target`."""
    assert autoscaling.hpa_metric is not None  # the caller's choice of scaler
    return _aimed_at(owner, HPA_API_VERSION, "HorizontalPodAutoscaler", {
        "minReplicas": autoscaling.min_replicas, "maxReplicas": autoscaling.max_replicas,
        "metrics": [{"type": "Pods", "pods": {
            "metric": {"name": autoscaling.hpa_metric},
            "target": {"type": "AverageValue", "averageValue": _target(autoscaling.target)}}}],
        "behavior": behavior(autoscaling),
    })


def _aimed_at(owner: Owner, api_version: str, kind: str, spec: dict[str, Any]) -> dict[str, Any]:
    """A scaler of the resource: named after it, owned by it, aimed at its scale subresource."""
    return {"apiVersion": api_version, "kind": kind,
            "metadata": child_metadata(owner, naming.autoscaler_name(owner.name), naming.COMPONENT_AUTOSCALER),
            "spec": {"scaleTargetRef": {**SCALE_TARGET, "name": owner.name}, **spec}}


def selector(name: str) -> str:
    """The scale subresource's label selector: the resource's serving pods (every revision's)."""
    return ",".join(f"{k}={v}" for k, v in sorted(naming.selector_labels(name).items()))
