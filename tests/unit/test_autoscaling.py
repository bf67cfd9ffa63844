"""Autoscaling: the scaler the operator keeps (KEDA ScaledObject, or a plain HPA), its Autoscaling condition, who
set the replica count, and how a rollout shares a scaler's count between the stable and the canary."""

from __future__ import annotations

from typing import Any

import pytest

from deepseek_operator.api.spec import Autoscaling
from deepseek_operator.plan.scaling import replicas_set_by
from deepseek_operator.render import autoscaling
from deepseek_operator.render.children import Owner
from deepseek_operator.rollout.machine import Rollout, State, Step, World, decide
from tests.unit.test_plan import QWEN_7B, T0, Cluster, cond, drive, edited, example
from tests.unit.test_plan_rollout import at

OWNER = Owner("r1", "team-a", "uid")
SCALING = {"minReplicas": 1, "maxReplicas": 6, "metric": "queuedRequests", "target": 4,
           "prometheus": {"source": "prometheus"}, "scaleDown": {"stabilizationWindow": "30s"}}


def scaled(**changes: Any) -> dict[str, Any]:
    return edited(example(QWEN_7B), {"serving.autoscaling": {**SCALING, **changes}})


def scaler(p: Any, kind: str) -> dict[str, Any]:
    [obj] = [o for o in p.apply if o["kind"] == kind]
    return obj


@pytest.mark.parametrize(("metric", "query"), [
    ("queuedRequests",
     'sum(deepseek_frontend_requests_waiting_first_token{namespace="team-a",serving_deepseek_ai_deployment="r1"})'),
    ("inFlightRequests",
     'sum(deepseek_frontend_requests_in_flight{namespace="team-a",serving_deepseek_ai_deployment="r1"})'),
])
def test_the_signals_are_the_resources_total_load(metric: str, query: str) -> None:
    a = Autoscaling.model_validate({"maxReplicas": 4, "target": 2, "metric": metric})
    assert autoscaling.query(OWNER, a) == query


def test_the_scaled_object_targets_the_resource_and_divides_the_load_by_the_target() -> None:
    a = Autoscaling.model_validate({**SCALING, "target": 2.5})
    obj = autoscaling.scaled_object(OWNER, a, "http://prometheus:9090")
    assert obj["spec"]["scaleTargetRef"] == {"apiVersion": "serving.deepseek.ai/v1alpha1",
                                             "kind": "DeepSeekDeployment", "name": "r1"}
    assert (obj["spec"]["minReplicaCount"], obj["spec"]["maxReplicaCount"], obj["spec"]["pollingInterval"]) == (
        1, 6, 15)
    [trigger] = obj["spec"]["triggers"]
    assert trigger["metricType"] == "AverageValue"  # replicas = ceil(total / target)
    assert trigger["metadata"]["threshold"] == "2500m"
    assert trigger["metadata"]["serverAddress"] == "http://prometheus:9090"
    hpa = obj["spec"]["advanced"]["horizontalPodAutoscalerConfig"]
    assert hpa["behavior"] == {"scaleUp": {"stabilizationWindowSeconds": 0},
                               "scaleDown": {"stabilizationWindowSeconds": 30}}
    # By default scale-up is at once, scale-down after 5 minutes and one replica a minute: a GPU replica takes
    # minutes to come back.
    default = Autoscaling.model_validate({"maxReplicas": 4, "target": 2})
    assert autoscaling.behavior(default) == {
        "scaleUp": {"stabilizationWindowSeconds": 0},
        "scaleDown": {"stabilizationWindowSeconds": 300,
                      "policies": [{"type": "Pods", "value": 1, "periodSeconds": 60}]}}


def test_without_keda_a_named_pod_metric_makes_a_plain_hpa_on_the_scale_subresource() -> None:
    body = scaled(hpaMetric="triton_queue_per_pod", prometheus=None)
    cluster = drive(body)
    hpa = cluster.scalers["HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["kind"] == "DeepSeekDeployment"
    assert hpa["spec"]["metrics"] == [{"type": "Pods", "pods": {
        "metric": {"name": "triton_queue_per_pod"}, "target": {"type": "AverageValue", "averageValue": "4"}}}]
    assert body["status"]["scaling"]["autoscaler"] == "HorizontalPodAutoscaler/r1-qwen-7b"
    # The HPA finds the pods through the scale subresource's selector.
    assert body["status"]["selector"] == ("app.kubernetes.io/component=server,"
                                          "serving.deepseek.ai/deployment=r1-qwen-7b")


def test_keda_gets_a_scaled_object_whose_readiness_is_the_autoscaling_condition() -> None:
    body = scaled()
    cluster = Cluster(keda_installed=True)
    for _ in range(3):
        cluster.reconcile(body, T0)
    cluster.roll_out()
    p = cluster.reconcile(body, T0)
    assert "ScaledObject" in cluster.scalers
    assert cond(p, "Autoscaling")["reason"] == "ScalerNotReady"  # KEDA has not taken it yet
    cluster.scalers["ScaledObject"]["status"] = {"conditions": [
        {"type": "Ready", "status": "False", "reason": "ScaledObjectCheckFailed",
         "message": "prometheus query failed: connection refused"}]}
    p = cluster.reconcile(body, at(1))
    assert (cond(p, "Autoscaling")["status"], cond(p, "Autoscaling")["reason"]) == ("False", "ScalerNotReady")
    assert "connection refused" in cond(p, "Autoscaling")["message"]
    cluster.scalers["ScaledObject"]["status"] = {"conditions": [{"type": "Ready", "status": "True"}]}
    p = cluster.reconcile(body, at(2))
    assert (cond(p, "Autoscaling")["status"], cond(p, "Autoscaling")["reason"]) == ("True", "ScalerReady")
    assert "deepseek_frontend_requests_waiting_first_token" in cond(p, "Autoscaling")["message"]
    # Autoscaling removed: the ScaledObject goes, and so does the condition.
    body = edited(body, {"serving.autoscaling": None})
    p = cluster.reconcile(body, at(3))
    assert [r.kind for r in p.delete] == ["ScaledObject"] and not cluster.scalers
    assert all(c["type"] != "Autoscaling" for c in p.status["conditions"])


def test_nothing_to_scale_with_says_what_would_work() -> None:
    body = scaled(prometheus=None)
    drive(body)
    [c] = [c for c in body["status"]["conditions"] if c["type"] == "Autoscaling"]
    assert (c["status"], c["reason"]) == ("False", "NoScaler")
    assert "install KEDA" in c["message"] and "hpaMetric" in c["message"]
    assert body["status"]["phase"] == "Healthy"  # serving goes on at spec.serving.replicas


@pytest.mark.parametrize(("managed", "who"), [
    ([], ""),
    ([{"manager": "kubectl-client-side-apply", "operation": "Update", "time": "2025-01-20T10:00:00Z",
       "fieldsV1": {"f:spec": {"f:serving": {"f:replicas": {}, "f:gpu": {}}}}}], "kubectl-client-side-apply"),
    ([{"manager": "argocd-controller", "operation": "Apply", "time": "2025-01-20T10:00:00Z",
       "fieldsV1": {"f:spec": {"f:serving": {"f:replicas": {}}}}},
      {"manager": "keda-operator", "operation": "Update", "subresource": "scale", "time": "2025-01-20T10:05:00Z",
       "fieldsV1": {"f:spec": {"f:serving": {"f:replicas": {}}}}},
      {"manager": "deepseek-operator", "operation": "Update", "subresource": "status",
       "time": "2025-01-20T10:06:00Z", "fieldsV1": {"f:status": {"f:replicas": {}}}}], "keda-operator (scale)"),
])
def test_who_set_the_replicas_is_the_newest_writer_of_the_field(managed: list[dict[str, Any]], who: str) -> None:
    assert replicas_set_by(managed) == who


def test_a_change_of_replicas_is_an_event_and_the_last_scale_in_status() -> None:
    body = scaled()
    cluster = drive(body)
    body["metadata"]["managedFields"] = [
        {"manager": "kube-controller-manager", "operation": "Update", "subresource": "scale",
         "time": "2025-01-20T10:01:00Z", "fieldsV1": {"f:spec": {"f:serving": {"f:replicas": {}}}}}]
    body = edited(body, {"serving.replicas": 5})
    p = cluster.reconcile(body, at(60))
    assert [(e.reason, e.message) for e in p.events if e.reason == "Scaled"] == [
        ("Scaled", "replicas 2 -> 5 (set by kube-controller-manager (scale))")]
    assert p.status["scaling"] == {"replicasSetBy": "kube-controller-manager (scale)", "autoscaler": "",
                                   "lastScale": "2 -> 5", "lastScaleTime": at(60)}
    assert cluster.deployment is not None and cluster.deployment["spec"]["replicas"] == 5
    again = cluster.reconcile(body, at(61))
    assert not [e for e in again.events if e.reason == "Scaled"]
    assert again.status["scaling"]["lastScale"] == "2 -> 5"


ROLLOUT = Rollout(strategy="canary", steps=(Step(weight=25), Step(pause_seconds=None)), router="gatewayAPI")


def _canary(replicas: int, stable_now: int) -> dict[str, int]:
    """The replicas a canary at 25% settles on once the count changed, pass after pass (pods Ready at once)."""
    state = State(stable="a", canary="b", weight=25, step=1, canary_replicas=1, history=("a",))
    live = {"a": stable_now, "b": 1}
    for _ in range(10):
        decision = decide(ROLLOUT, state, World(target="b", target_servable=True, replicas=replicas, now=100.0,
                                                ready=dict(live), desired=dict(live), pods=dict(live)))
        state, live = decision.state, dict(decision.replicas)
    return live


@pytest.mark.parametrize(("replicas", "stable_now", "expected"), [
    (4, 4, {"a": 3, "b": 2}),  # 25% of 4 + 1 surge needs 2 canary replicas (1 of 5 would carry 20%)
    # A scaler adds replicas mid-rollout: the canary keeps its 25% and the stable follows, both together within
    # the count the scaler set plus maxSurge (1).
    (8, 4, {"a": 6, "b": 3}),
    (2, 4, {"a": 2, "b": 1}),  # and removes them
    (0, 4, {"a": 0, "b": 0}),  # scaled to zero by hand: nothing serves, the rollout holds where it was
])
def test_during_a_canary_the_stable_follows_the_scaler_and_the_canary_keeps_its_share(
        replicas: int, stable_now: int, expected: dict[str, int]) -> None:
    assert _canary(replicas, stable_now) == expected


def test_a_multi_node_replica_scales_as_a_whole_group() -> None:
    from tests.unit.test_multinode import TWO_NODES

    cluster = Cluster(lws_installed=True, keda_installed=True)
    body = edited(example(TWO_NODES), {"serving.autoscaling": SCALING})
    for _ in range(3):  # the preflight, then the group
        cluster.reconcile(body, T0)
    cluster.roll_out()
    assert cluster.reconcile(body, T0).status["phase"] == "Healthy"
    body = edited(body, {"serving.replicas": 3})  # what KEDA's HPA writes through the scale subresource
    cluster.reconcile(body, at(30))
    [lws] = cluster.leader_worker_sets.values()
    assert (lws["spec"]["replicas"], lws["spec"]["leaderWorkerTemplate"]["size"]) == (3, 2)  # 3 groups of 2 nodes
