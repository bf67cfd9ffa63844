"""The NCCL preflight run for real on the testbed: the operator's Job, PyTorch's torchrun and an all-reduce over
gloo between processes in the pods' network namespaces (the preflight image in testbed/images.yaml says what the
testbed changes in the rendered args: it has no GPUs)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import Resources, _docs, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "pf")


def _with_preflight(example: str, ns: str, **preflight: Any) -> list[dict[str, Any]]:
    docs = _docs(example, ns)
    for d in docs:
        if d["kind"] == "DeepSeekDeployment":
            d["spec"].setdefault("network", {})["preflight"] = preflight
    return docs


def test_an_impossible_bound_blocks_the_revision_with_the_figures(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    docs = _with_preflight("r1-distill-llama-70b-h100-fp8.yaml", ns, minBusBandwidthGBps=1000000)
    assert kubectl_apply(docs).returncode == 0
    obj = res.wait_phase("r1-llama-70b", "Degraded", timeout=240)
    pf = obj["status"]["preflight"]
    assert pf["state"] == "Failed" and pf["backend"] == "gloo" and pf["worldSize"] == 2
    assert pf["busBandwidthGBps"] > 0
    # The testbed holds the bound to a thousandth (CPU, not NVLink): 1000000 GB/s became 1000.
    assert pf["minBusBandwidthGBps"] == 1000
    degraded = res.condition("r1-llama-70b", "Degraded")
    assert degraded is not None and degraded["reason"] == "PreflightFailed"
    assert "FAILED: peak bus bandwidth" in degraded["message"] and "< 1000 GB/s" in degraded["message"]
    assert f"delete Job {pf['job']} to run it again" in degraded["message"]
    # No serving pod was ever made for it.
    assert client.AppsV1Api(testbed.api).list_namespaced_deployment(ns).items == []
    events = testbed.core.list_namespaced_event(ns, field_selector="involvedObject.name=r1-llama-70b").items
    assert any(e.type == "Warning" and e.reason == "PreflightFailed" for e in events)

    # Lowering the bound is a new revision; its preflight passes and it serves.
    res.patch("r1-llama-70b", {"network": {"preflight": {"minBusBandwidthGBps": 10}}})
    obj = res.wait_phase("r1-llama-70b", "Healthy", timeout=240)
    assert obj["status"]["preflight"]["state"] == "Passed"
    # The failed revision's Job is gone with it.
    jobs = client.BatchV1Api(testbed.api).list_namespaced_job(
        ns, label_selector="app.kubernetes.io/component=preflight").items
    assert [j.metadata.name for j in jobs] == [obj["status"]["preflight"]["job"]]


def test_the_default_bound_passes_and_the_figures_land_in_status(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    assert kubectl_apply(_docs("r1-distill-llama-70b-h100-fp8.yaml", ns)).returncode == 0
    obj = res.wait_phase("r1-llama-70b", "Healthy", timeout=240)
    pf = obj["status"]["preflight"]
    assert {k: pf[k] for k in ("state", "backend", "worldSize", "nodes", "expectedTransport")} == {
        "state": "Passed", "backend": "gloo", "worldSize": 2, "nodes": 1, "expectedTransport": "nvlink"}
    assert pf["minBusBandwidthGBps"] == 0.15  # H100's 150 GB/s, held to a thousandth on the testbed
    assert pf["busBandwidthGBps"] >= 0.15 and pf["atSizeBytes"] >= 1 << 20
    condition = res.condition("r1-llama-70b", "Preflight")
    assert condition is not None and (condition["status"], condition["reason"]) == ("True", "PreflightPassed")
    # The Job ran on a node of the GPU type, asked for the revision's GPUs, and rank 0's pod holds the summary.
    pods = eventually("the preflight pod", lambda: testbed.core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=preflight").items or None)
    node = testbed.core.read_node(pods[0].spec.node_name)
    assert node.metadata.labels["nvidia.com/gpu.product"] == "NVIDIA-H100-80GB-HBM3"
    assert pods[0].spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"
    assert '"passed":true' in pods[0].status.container_statuses[0].state.terminated.message
