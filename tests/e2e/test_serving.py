"""A DeepSeekDeployment on the testbed: from `kubectl apply` to a stand-in Triton answering through its Service,
with the engine built once, scaling, new revisions, deletion, an operator crash, and what does not fit."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually, generate
from tests.e2e.operator_proc import OperatorProcess

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples"
GROUP, VERSION, PLURAL = "serving.deepseek.ai", "v1alpha1", "deepseekdeployments"


def _docs(name: str, namespace: str) -> list[dict[str, Any]]:
    docs = [d for d in yaml.safe_load_all((EXAMPLES / name).read_text()) if d]
    for d in docs:
        d["metadata"]["namespace"] = namespace
    return docs


def kubectl_apply(docs: list[dict[str, Any]]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.BIN / "kubectl"), f"--kubeconfig={cluster.KUBECONFIG}", "apply", "-f", "-"],
                          input=yaml.safe_dump_all(docs), text=True, capture_output=True)


class Resources:
    def __init__(self, testbed: TestbedClient, namespace: str) -> None:
        self.custom = client.CustomObjectsApi(testbed.api)
        self.apps = client.AppsV1Api(testbed.api)
        self.batch = client.BatchV1Api(testbed.api)
        self.core = testbed.core
        self.ns = namespace

    def get(self, name: str) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name))

    def patch(self, name: str, spec: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object(GROUP, VERSION, self.ns, PLURAL, name, {"spec": spec})

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        status = self.get(name).get("status") or {}
        return next((c for c in status.get("conditions") or [] if c["type"] == ctype), None)

    def wait_phase(self, name: str, phase: str, timeout: float = 120) -> dict[str, Any]:
        def reached() -> dict[str, Any] | None:
            obj = self.get(name)
            status = obj.get("status") or {}
            fresh = status.get("observedGeneration") == obj["metadata"]["generation"]
            return obj if fresh and status.get("phase") == phase else None
        return eventually(f"{name} to be {phase}", reached, timeout=timeout)


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Any:
    name = testbed.namespace("dsd")
    assert kubectl_apply(_docs("model-store.yaml", name)).returncode == 0
    yield name
    testbed.delete_namespace(name)


def test_example_becomes_ready_and_serves_through_its_service(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    out = kubectl_apply(_docs("r1-distill-llama-70b-h100-fp8.yaml", ns))
    assert out.returncode == 0, out.stderr
    obj = res.wait_phase("r1-llama-70b", "Healthy", timeout=180)
    status = obj["status"]
    assert status["parallelism"] == {"tensor": 4, "pipeline": 1, "nodesPerReplica": 1, "gpusPerReplica": 4}
    assert status["engine"]["state"] == "Cached" and status["ready"] == "1/1"
    assert {c["type"]: c["status"] for c in status["conditions"]}.items() >= {
        "Ready": "True", "FitsHardware": "True", "EngineReady": "True", "Degraded": "False"}.items()

    pod = eventually("a Ready pod", lambda: testbed.ready_pods(ns, "serving.deepseek.ai/deployment=r1-llama-70b"))[0]
    assert pod.spec.containers[0].resources.limits["nvidia.com/gpu"] == "4"
    assert testbed.core.read_node(pod.spec.node_name).metadata.labels["nvidia.com/gpu.product"].startswith(
        "NVIDIA-H100")
    # The Service's endpoints lead to a real Triton.
    slices = client.DiscoveryV1Api(testbed.api).list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=r1-llama-70b").items
    address = slices[0].endpoints[0].addresses[0]
    reply = generate(f"http://{address}:8000", "hello deepseek")
    assert reply.status_code == 200 and reply.json()["text_output"].endswith("deepseek hello")

    # The rendered Triton repository is in the revision's ConfigMap.
    cm = testbed.core.read_namespaced_config_map(f"r1-llama-70b-repo-{status['revision']}", ns)
    assert "gpt_model_type" in cm.data["tensorrt_llm__config.pbtxt"]
