"""Autoscaling on the testbed: KEDA (operator and metrics API server, built from its Go module and registered
with the API server through the aggregation layer) reads the front door's load gauges from the testbed's
Prometheus, the real HPA controller of kube-controller-manager scales the DeepSeekDeployment through its scale
subresource, and the operator turns the count into pods. A rollout shares a scaler's count between the stable
and the canary."""

from __future__ import annotations

import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_rollout import NAME, Load, canary_cr, serve_first_revision, status, watch
from tests.e2e.test_serving import Resources, model_store_namespace

pytestmark = pytest.mark.e2e
LATENCY_MS = "400"  # each request holds the stand-in Triton's one model instance this long: the rest queue


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    state = cluster.State.load()
    if state is None or "keda-operator" not in state.pids:
        pytest.fail("KEDA is not running: this testbed was started before it had KEDA; restart it (down, up)")
    yield from model_store_namespace(testbed, "as")


def autoscaled_cr(namespace: str, metric: str) -> dict[str, Any]:
    cr = canary_cr(namespace, replicas=1)
    cr["spec"]["serving"]["podAnnotations"] = {"testbed.deepseek.ai/latency-ms": LATENCY_MS}
    cr["spec"]["serving"]["autoscaling"] = {
        "minReplicas": 1, "maxReplicas": 3, "metric": metric, "target": 1,
        "prometheus": {"source": cluster.PROMETHEUS_SOURCE}, "pollingInterval": "2s",
        "scaleUp": {"stabilizationWindow": "0s"},
        "scaleDown": {"stabilizationWindow": "10s", "maxReplicasPerPeriod": 1, "period": "5s"},
    }
    return cr


def ready_replicas(res: Resources) -> int:
    return int(status(res).get("readyReplicas", 0))


# The requests still waiting for their first token (TensorRT-LLM's queue and prefill: 400 ms each here), and all
# the requests the front door is answering.
@pytest.mark.parametrize(("metric", "series"), [("queuedRequests", "deepseek_frontend_requests_waiting_first_token"),
                                                ("inFlightRequests", "deepseek_frontend_requests_in_flight")])
def test_load_scales_up_then_down_with_no_failed_request(testbed: TestbedClient, ns: str, metric: str,
                                                         series: str) -> None:
    res = Resources(testbed, ns)
    serve_first_revision(res, autoscaled_cr(ns, metric), testbed)
    ready = eventually("KEDA to take the ScaledObject", lambda: (c := res.condition(NAME, "Autoscaling"))
                       and c["status"] == "True" and c, timeout=90)
    assert ready["reason"] == "ScalerReady" and series in ready["message"]
    scaled_object = client.CustomObjectsApi(testbed.api).get_namespaced_custom_object(
        "keda.sh", "v1alpha1", ns, "scaledobjects", NAME)
    assert scaled_object["metadata"]["ownerReferences"][0]["kind"] == "DeepSeekDeployment"
    hpa = client.AutoscalingV2Api(testbed.api).read_namespaced_horizontal_pod_autoscaler(NAME, ns)
    assert (hpa.spec.scale_target_ref.kind, hpa.spec.scale_target_ref.name) == ("DeepSeekDeployment", NAME)

    with Load(testbed.gateway, f"{ns}.llm.test", threads=6) as heavy:
        began = time.monotonic()
        eventually("a scale-up to 3 replicas", lambda: res.get(NAME)["spec"]["serving"]["replicas"] == 3,
                   timeout=120)
        scaled_up = time.monotonic() - began
        eventually("3 Ready replicas", lambda: ready_replicas(res) == 3, timeout=120)
        serving_three = time.monotonic() - began
        time.sleep(5)  # load spread over the three
    with Load(testbed.gateway, f"{ns}.llm.test", threads=1) as light:  # steady load while replicas go
        began = time.monotonic()
        eventually("a scale-down to 1 replica", lambda: res.get(NAME)["spec"]["serving"]["replicas"] == 1,
                   timeout=150)
        scaled_down = time.monotonic() - began
        eventually("the removed pods to be gone", lambda: len(testbed.core.list_namespaced_pod(
            ns, label_selector=f"serving.deepseek.ai/deployment={NAME}").items) == 1, timeout=120)
        time.sleep(2)
    print(f"\nautoscaling on {metric}: load -> replicas 3 in {scaled_up:.1f}s (3 Ready in {serving_three:.1f}s); "
          f"load gone -> replicas 1 in {scaled_down:.1f}s (scale-down window 10s, one replica per 5s)")
    for load in (heavy, light):
        codes = Counter(code for code, _ in load.outcomes)
        assert codes[200] > 20 and set(codes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)
    final = status(res)
    assert final["scaling"]["autoscaler"] == f"ScaledObject/{NAME}"
    assert final["scaling"]["replicasSetBy"].endswith("(scale)"), final["scaling"]
    assert final["scaling"]["lastScale"].endswith("-> 1") and final["phase"] == "Healthy"
    scaled = [e.message for e in testbed.core.list_namespaced_event(
        ns, field_selector=f"involvedObject.name={NAME}").items if e.reason == "Scaled"]
    assert any("-> 3" in m for m in scaled) and any("-> 1" in m for m in scaled), scaled


def kubectl_scale(ns: str, replicas: int) -> None:
    out = subprocess.run([str(cluster.BIN / "kubectl"), f"--kubeconfig={cluster.KUBECONFIG}", "-n", ns, "scale",
                          f"deepseekdeployment/{NAME}", f"--replicas={replicas}"], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr


def replicas_by_revision(res: Resources, ns: str) -> dict[str, int]:
    return {d.metadata.labels["serving.deepseek.ai/revision"]: d.spec.replicas
            for d in res.apps.list_namespaced_deployment(ns, label_selector=f"serving.deepseek.ai/deployment={NAME}")
            .items}


def test_a_rollout_shares_the_scalers_count_and_promotes_at_it(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    cr = canary_cr(ns, replicas=2, steps=[{"weight": 50}, {"pause": "indefinite"}])
    old = serve_first_revision(res, cr, testbed)
    with Load(testbed.gateway, f"{ns}.llm.test", threads=2) as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"version": "2"}}})
        paused = eventually("the canary at 50%", lambda: (s := status(res)).get("phase") == "Paused" and s,
                            timeout=120)
        new = paused["canaryRevision"]
        # 50% needs as many canary replicas as stable ones beside them, within 2 + maxSurge 1 (rollout/capacity.py)
        eventually("2 canary replicas beside 1 stable", lambda: replicas_by_revision(res, ns) == {old: 1, new: 2},
                   timeout=60)
        kubectl_scale(ns, 4)  # what an HPA or KEDA does: the scale subresource
        eventually("the canary at its 50% of 4: 3 beside 2 stable", lambda: replicas_by_revision(res, ns) ==
                   {old: 2, new: 3}, timeout=60)
        assert status(res)["canaryWeight"] == 50 and status(res)["replicas"] == 4
        assert status(res)["scaling"]["replicasSetBy"].endswith("(scale)")
        res.custom.patch_namespaced_custom_object(
            "serving.deepseek.ai", "v1alpha1", ns, "deepseekdeployments", NAME,
            {"metadata": {"annotations": {"serving.deepseek.ai/action": "promote",
                                          "serving.deepseek.ai/action-nonce": "scaled-promote"}}})
        final = watch(res, "Healthy", timeout=180)[-1]
    assert final["stableRevision"] == new and final["ready"] == "4/4"
    eventually("the old revision pruned, the new at 4", lambda: replicas_by_revision(res, ns) == {new: 4},
               timeout=60)
    codes = Counter(code for code, _ in load.outcomes)
    assert codes[200] > 20 and set(codes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)
