"""A DeepSeekDeployment on the testbed: from `kubectl apply` to a stand-in Triton answering through its Service,
with a quantized checkpoint made once, scaling, new revisions, deletion, an operator crash, and what does not fit."""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from kubernetes import client

from testbed import checkpoints, cluster
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


def model_store_namespace(testbed: TestbedClient, prefix: str,
                          pod_security: str | None = "restricted") -> Iterator[str]:
    """A fresh namespace holding the examples' model-store PVC with their (tiny) checkpoints, deleted afterwards
    (for `ns` fixtures). The API server enforces the `restricted` Pod Security Standard there unless told
    otherwise: a pod of the operator's that breaks it fails the test."""
    name = testbed.namespace(prefix, pod_security=pod_security)
    assert kubectl_apply(_docs("model-store.yaml", name)).returncode == 0
    checkpoints.seed(name, api=testbed.api)
    yield name
    testbed.delete_namespace(name)


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "dsd")


def test_example_becomes_ready_and_serves_through_its_service(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    out = kubectl_apply(_docs("r1-distill-llama-70b-h100-fp8.yaml", ns))
    assert out.returncode == 0, out.stderr
    obj = res.wait_phase("r1-llama-70b", "Healthy", timeout=180)
    status = obj["status"]
    assert status["parallelism"] == {"tensor": 4, "pipeline": 1, "expert": 1, "nodesPerReplica": 1,
                                     "gpusPerReplica": 4}
    assert status["quantization"]["state"] == "Complete" and status["ready"] == "1/1"
    assert {c["type"]: c["status"] for c in status["conditions"]}.items() >= {
        "Ready": "True", "FitsHardware": "True", "CheckpointReady": "True", "Degraded": "False"}.items()

    pod = eventually("a Ready pod", lambda: testbed.ready_pods(ns, "serving.deepseek.ai/deployment=r1-llama-70b"))[0]
    container = pod.spec.containers[0]
    assert container.resources.limits["nvidia.com/gpu"] == "4"
    # Four ranks on one node, over NVLink: no HCA, no IPC_LOCK; it runs as a non-root user with a read-only root
    # (the namespace enforces `restricted`, and the testbed runs it as that user).
    assert "rdma/ib" not in container.resources.limits and container.security_context.capabilities.drop == ["ALL"]
    assert container.security_context.read_only_root_filesystem and pod.spec.security_context.run_as_user == 1000
    env = {e.name: e.value for e in container.env}
    assert env["NCCL_DEBUG"] == "WARN" and "NCCL_ALGO" not in env
    # Its NetworkPolicies, accepted by the API server and owned (the testbed enforces none: README).
    policies = client.NetworkingV1Api(testbed.api).list_namespaced_network_policy(ns).items
    assert {p.metadata.name for p in policies} >= {"r1-llama-70b-ingress"}
    assert all(p.metadata.owner_references[0].name == "r1-llama-70b" for p in policies)
    assert testbed.core.read_node(pod.spec.node_name).metadata.labels["nvidia.com/gpu.product"].startswith(
        "NVIDIA-H100")
    # The Service's endpoints lead to a real Triton.
    slices = client.DiscoveryV1Api(testbed.api).list_namespaced_endpoint_slice(
        ns, label_selector="kubernetes.io/service-name=r1-llama-70b").items
    address = slices[0].endpoints[0].addresses[0]
    reply = generate(f"http://{address}:8000", "hello deepseek")
    assert reply.status_code == 200 and reply.json()["text_output"].endswith("deepseek hello")

    # And through the gateway, which routes to the Service's endpoints like any client of the Service would.
    route = {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
             "metadata": {"name": "r1-llama-70b", "namespace": ns},
             "spec": {"parentRefs": [{"name": "llm-gateway", "namespace": "default"}], "hostnames": [f"{ns}.test"],
                      # One backend: the pods' front door takes the OpenAI API and Triton's on the http port.
                      "rules": [{"backendRefs": [{"name": "r1-llama-70b", "port": 8000}]}]}}
    assert kubectl_apply([route]).returncode == 0
    host = {"Host": f"{ns}.test"}
    via_gateway = eventually("the gateway to route to the Service", lambda: (
        r if (r := generate(testbed.gateway, "through the gateway", headers=host)).status_code
        == 200 else None), timeout=60)
    # generate() excludes the prompt from the answer, which helpers.py's default would echo (test_testbed.py).
    assert via_gateway.json()["text_output"] == f"[{ns}/{pod.metadata.name}] gateway the through"

    # The OpenAI API of the same pod (its front door over the same Triton), through the same gateway.
    models = requests.get(f"{testbed.gateway}/v1/models", headers=host, timeout=10).json()
    assert [m["id"] for m in models["data"]] == ["deepseek-r1-distill-llama-70b"]
    question = {"model": "deepseek-r1-distill-llama-70b", "messages": [
        {"role": "system", "content": "Answer briefly."}, {"role": "user", "content": "what is served here"}]}
    chat = requests.post(f"{testbed.gateway}/v1/chat/completions", json=question, headers=host, timeout=10)
    assert chat.status_code == 200, chat.text
    message = chat.json()["choices"][0]["message"]
    assert message["reasoning_content"] == "The user wrote 4 words.\n"  # R1's thought, apart from the answer
    assert message["content"] == f"[{ns}/{pod.metadata.name}] here served is what"
    streamed = requests.post(f"{testbed.gateway}/v1/chat/completions", json={**question, "stream": True},
                             headers=host, timeout=10, stream=True)
    chunks = [json.loads(line[len("data: "):]) for line in streamed.iter_lines(decode_unicode=True)
              if line.startswith("data: {")]
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert "".join(d.get("reasoning_content", "") for d in deltas) == message["reasoning_content"]
    assert "".join(d.get("content", "") for d in deltas) == message["content"]
    assert len(deltas) > 4 and chunks[-1]["choices"][0]["finish_reason"] == "stop"
    cut = requests.post(f"{testbed.gateway}/v1/completions", headers=host, timeout=10,
                        json={"prompt": "one two three", "max_tokens": 2}).json()["choices"][0]
    assert (cut["text"], cut["finish_reason"]) == (f"[{ns}/{pod.metadata.name}] three", "length")
    wrong = requests.post(f"{testbed.gateway}/v1/completions", headers=host, timeout=10,
                          json={"model": "gpt-4o", "prompt": "x"})
    assert wrong.status_code == 404 and wrong.json()["error"]["param"] == "model"

    # The rendered llmapi repository is in the revision's ConfigMap; the LLM loads the FP8 checkpoint the
    # quantize Job wrote into the cache (the BF16 distill's checkpoint has no FP8 weights).
    cm = testbed.core.read_namespaced_config_map(f"r1-llama-70b-repo-{status['revision']}", ns)
    model_yaml = yaml.safe_load(cm.data["tensorrt_llm__1__model.yaml"])
    assert model_yaml["model"] == f"/model-cache/{status['quantization']['key']}"
    assert model_yaml["tensor_parallel_size"] == 4
    assert 'backend: "python"' in cm.data["tensorrt_llm__config.pbtxt"]


@pytest.mark.parametrize(("example", "name", "gpus", "quantize_state"), [
    ("r1-distill-qwen-1.5b-l4.yaml", "r1-qwen-1-5b", 1, "Complete"),
    ("r1-distill-qwen-7b-a100.yaml", "r1-qwen-7b", 1, "NotRequired"),  # BF16, as published
])
def test_each_fitting_example_reaches_ready(testbed: TestbedClient, ns: str, example: str, name: str, gpus: int,
                                            quantize_state: str) -> None:
    res = Resources(testbed, ns)
    docs = _docs(example, ns)
    assert kubectl_apply(docs).returncode == 0
    status = res.wait_phase(name, "Healthy", timeout=180)["status"]
    replicas = docs[0]["spec"]["serving"]["replicas"]
    assert status["ready"] == f"{replicas}/{replicas}"
    assert status["parallelism"]["gpusPerReplica"] == gpus
    assert status["quantization"]["state"] == quantize_state
    pods = testbed.ready_pods(ns, f"serving.deepseek.ai/deployment={name}")
    assert len(pods) == replicas
    reply = generate(f"http://{pods[0].status.pod_ip}:8000", "one two")
    assert reply.status_code == 200 and reply.json()["text_output"].endswith("two one")


# The RoCE example needs what the testbed has no stand-in for: the RDMA shared device plugin's rdma/roce_shared
# resource and a Multus attachment (net1); tests/unit/test_multinode.py renders it.
R1_EXAMPLES = sorted(p.name for p in EXAMPLES.glob("r1-671b-*.yaml") if p.name != "r1-671b-h100-2x8-roce.yaml")


@pytest.mark.parametrize("example", R1_EXAMPLES)
def test_each_671b_example_reaches_ready_or_says_what_would_fit(testbed: TestbedClient, ns: str,
                                                                example: str) -> None:
    res = Resources(testbed, ns)
    docs = _docs(example, ns)
    name = docs[0]["metadata"]["name"]
    if any(fabric in example for fabric in ("infiniband", "roce")):  # IPC_LOCK: only `privileged` admits it
        testbed.core.patch_namespace(ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})
    assert kubectl_apply(docs).returncode == 0
    obj = eventually(f"{name} to be Healthy or not to fit", lambda: (o := res.get(name)).get("status", {}).get(
        "phase") in ("Healthy", "Degraded") and o, timeout=420)
    status = obj["status"]
    if "gb200" in example:  # trays joined by multi-node NVLink need IMEX channels: the testbed serves no DRA driver
        ready = next(c for c in status["conditions"] if c["type"] == "Ready")
        assert (status["phase"], ready["reason"]) == ("Degraded", "NoMultiNodeNVLink") and "ComputeDomain" in \
            ready["message"]
        assert not testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/deployment={name}").items
        return
    fits = next(c for c in status["conditions"] if c["type"] == "FitsHardware")
    if fits["status"] == "False":
        assert status["phase"] == "Degraded" and "would fit: " in fits["message"]
        assert not testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/deployment={name}").items
        return
    assert status["phase"] == "Healthy" and status["ready"] == "1/1", status
    assert status["runtime"]["recipe"].startswith("deepseek-r1/") and status["runtime"]["source"] in fits["message"]
    assert status["quantization"]["state"] == "NotRequired"  # FP8 and NVFP4 are served as the checkpoint holds them
    [leader] = testbed.ready_pods(ns, f"serving.deepseek.ai/deployment={name},app.kubernetes.io/component=server")
    reply = generate(f"http://{leader.status.pod_ip}:8000", "one two")
    assert reply.status_code == 200 and reply.json()["text_output"].endswith("two one")


def test_a_quantized_checkpoint_is_made_once_per_key_and_shared(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    first = _docs("r1-distill-qwen-1.5b-l4.yaml", ns)  # FP8 of a BF16 checkpoint
    assert kubectl_apply(first).returncode == 0
    key = res.wait_phase("r1-qwen-1-5b", "Healthy", timeout=180)["status"]["quantization"]["key"]
    second = _docs("r1-distill-qwen-1.5b-l4.yaml", ns)
    second[0]["metadata"]["name"] = "r1-qwen-1-5b-again"
    # On another GPU type: a quantized checkpoint depends on the weights and the precision, not on the GPU.
    second[0]["spec"]["serving"]["gpu"] = {"type": "H100-80GB", "perNode": 8}
    assert kubectl_apply(second).returncode == 0
    again = res.wait_phase("r1-qwen-1-5b-again", "Healthy", timeout=120)["status"]
    assert again["quantization"]["key"] == key and again["quantization"]["state"] == "Complete"
    jobs = res.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/component=quantize").items
    assert [j.metadata.name for j in jobs] == [f"quantize-{key}"]
    pods = testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/checkpoint-key={key},"
                                                               "app.kubernetes.io/component=quantize").items
    assert len(pods) == 1, "the second resource must not build again"


def test_the_quantize_job_calibrates_on_a_configmap_and_an_empty_one_fails(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    samples = "\n".join(json.dumps({"text": f"calibration sample {n}: what is {n} times {n}?"}) for n in range(8))
    maps = [{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": ns},
             "data": {"r1.jsonl": data}} for name, data in (("chats", samples), ("nothing", "\n"))]
    assert kubectl_apply(maps).returncode == 0
    docs = _docs("r1-distill-qwen-1.5b-l4.yaml", ns)  # FP8 of a BF16 checkpoint: a quantize Job
    docs[0]["spec"]["model"]["calibration"] = {"configMap": {"name": "chats", "key": "r1.jsonl"}, "samples": 4}
    empty = json.loads(json.dumps(docs[0]))
    empty["metadata"]["name"] = "r1-no-samples"
    empty["spec"]["serving"]["gpu"] = {"type": "H100-80GB", "perNode": 8}  # the L4s are the first one's
    empty["spec"]["model"]["calibration"]["configMap"]["name"] = "nothing"
    assert kubectl_apply([docs[0], empty]).returncode == 0
    status = res.wait_phase("r1-qwen-1-5b", "Healthy", timeout=180)["status"]
    assert status["quantization"]["state"] == "Complete"
    job = res.batch.read_namespaced_job(status["quantization"]["job"], ns)
    assert job.spec.template.spec.containers[0].command[-3:] == ["/calibration/samples.jsonl", "4", "512"]
    # The same model and precision with other calibration data is another checkpoint, and this one fails.
    failed = res.wait_phase("r1-no-samples", "Degraded", timeout=120)["status"]
    assert failed["quantization"]["key"] != status["quantization"]["key"]
    assert next(c for c in failed["conditions"] if c["type"] == "CheckpointReady")["reason"] == "QuantizeFailed"


def test_a_failed_quantize_job_degrades_and_creates_no_serving_pods(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    docs = _docs("r1-distill-qwen-1.5b-l4.yaml", ns)
    docs[0]["spec"]["serving"]["podAnnotations"] = {"testbed.deepseek.ai/quantize-exit-code": "3"}
    assert kubectl_apply(docs).returncode == 0
    status = res.wait_phase("r1-qwen-1-5b", "Degraded", timeout=120)["status"]
    checkpoint_ready = next(c for c in status["conditions"] if c["type"] == "CheckpointReady")
    assert checkpoint_ready["status"] == "False" and checkpoint_ready["reason"] == "QuantizeFailed"
    assert "BackoffLimitExceeded" in checkpoint_ready["message"]
    assert not res.apps.list_namespaced_deployment(
        ns, label_selector="serving.deepseek.ai/deployment=r1-qwen-1-5b").items
    events = testbed.core.list_namespaced_event(ns, field_selector="involvedObject.name=r1-qwen-1-5b").items
    assert any(e.type == "Warning" and e.reason == "QuantizeFailed" for e in events)


def test_scale_new_revision_and_delete(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    assert kubectl_apply(_docs("r1-distill-qwen-7b-a100.yaml", ns)).returncode == 0
    first = res.wait_phase("r1-qwen-7b", "Healthy", timeout=180)["status"]

    # Scaling keeps the revision (no new checkpoint, no pod restarts of existing replicas).
    res.patch("r1-qwen-7b", {"serving": {"replicas": 3}})
    scaled = res.wait_phase("r1-qwen-7b", "Healthy", timeout=120)["status"]
    assert scaled["revision"] == first["revision"] and scaled["ready"] == "3/3"

    # A new precision (on GPUs that run it) is a new revision with its own quantized checkpoint; it replaces the
    # stable one replica at a time.
    res.patch("r1-qwen-7b", {"model": {"precision": "fp8"}, "serving": {"gpu": {"type": "H100-80GB", "perNode": 8}}})
    rolled = eventually("the fp8 revision to be promoted", lambda: (s := res.get("r1-qwen-7b")["status"])
                        .get("stableRevision") not in (None, first["revision"]) and s.get("phase") == "Healthy"
                        and s, timeout=240)
    assert rolled["revision"] != first["revision"] and rolled["quantization"]["key"] != first["quantization"]["key"]
    assert [h["revision"] for h in rolled["history"]] == [rolled["revision"], first["revision"]]
    selector = "serving.deepseek.ai/deployment=r1-qwen-7b,app.kubernetes.io/component=server"
    eventually("only the new revision's pods", lambda: {p.metadata.labels["serving.deepseek.ai/revision"]
                                                         for p in testbed.core.list_namespaced_pod(
                                                             ns, label_selector=selector).items}
               == {rolled["revision"]}, timeout=90)
    # The old revision stays, scaled to zero, for rollback-to; a lower history limit prunes it.
    old = res.apps.read_namespaced_deployment(f"r1-qwen-7b-{first['revision']}", ns)
    assert old.spec.replicas == 0
    res.patch("r1-qwen-7b", {"rollout": {"revisionHistoryLimit": 1}})
    eventually("the old revision's ConfigMap to go", lambda: [c.metadata.name for c in
               testbed.core.list_namespaced_config_map(
                   ns, label_selector="serving.deepseek.ai/deployment=r1-qwen-7b").items]
               == [f"r1-qwen-7b-repo-{rolled['revision']}"], timeout=60)

    # Deleting the resource removes every child it owns (the shared model cache stays).
    res.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "r1-qwen-7b")
    selector = "serving.deepseek.ai/deployment=r1-qwen-7b"

    def all_gone() -> bool:
        return not (res.apps.list_namespaced_deployment(ns, label_selector=selector).items
                    or testbed.core.list_namespaced_config_map(ns, label_selector=selector).items
                    or testbed.core.list_namespaced_service(ns, label_selector=selector).items
                    or testbed.core.list_namespaced_pod(ns, label_selector=selector + ",app.kubernetes.io/component"
                                                        "=server").items)

    eventually("children to be garbage-collected", all_gone, timeout=90)
    assert testbed.core.read_namespaced_persistent_volume_claim("deepseek-model-cache", ns)


def test_operator_killed_mid_reconcile_resumes_without_duplicates(testbed: TestbedClient, ns: str,
                                                                  operator: OperatorProcess) -> None:
    res = Resources(testbed, ns)
    assert kubectl_apply(_docs("r1-distill-llama-70b-h100-fp8.yaml", ns)).returncode == 0
    # Kill it while the engine builds, i.e. between creating the Job and creating the serving objects.
    eventually("the engine build to start", lambda: (res.get("r1-llama-70b").get("status") or {}).get("phase")
               == "Preparing", timeout=60, interval=0.1)
    operator.kill()
    try:
        time.sleep(3)  # the build finishes while nobody watches
    finally:
        operator.start()
    status = res.wait_phase("r1-llama-70b", "Healthy", timeout=180)["status"]
    selector = "serving.deepseek.ai/deployment=r1-llama-70b"
    assert len(res.apps.list_namespaced_deployment(ns, label_selector=selector).items) == 1
    assert len(res.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/component=quantize").items) == 1
    assert len(testbed.ready_pods(ns, selector + ",app.kubernetes.io/component=server")) == 1
    assert status["ready"] == "1/1"


def test_operator_metrics_and_kubectl_views(testbed: TestbedClient, ns: str, operator: OperatorProcess) -> None:
    res = Resources(testbed, ns)
    assert kubectl_apply(_docs("r1-distill-qwen-1.5b-l4.yaml", ns)).returncode == 0
    res.wait_phase("r1-qwen-1-5b", "Healthy", timeout=180)
    metrics = requests.get(operator.metrics_url, timeout=5).text
    assert 'deepseek_operator_children_applied_total{kind="Deployment"}' in metrics
    assert "deepseek_operator_reconcile_duration_seconds_count" in metrics

    kubectl = [str(cluster.BIN / "kubectl"), f"--kubeconfig={cluster.KUBECONFIG}", "-n", ns]
    table = subprocess.run([*kubectl, "get", "dsd"], capture_output=True, text=True, check=True).stdout
    header, row = table.splitlines()[:2]
    assert header.split()[:6] == ["NAME", "MODEL", "PRECISION", "GPUS", "READY", "PHASE"]
    assert row.split()[:6] == ["r1-qwen-1-5b", "deepseek-r1-distill-qwen-1.5b", "fp8", "1", "1/1", "Healthy"]
    described = subprocess.run([*kubectl, "describe", "dsd", "r1-qwen-1-5b"], capture_output=True, text=True,
                               check=True).stdout
    assert "QuantizeStarted" in described and "FitsHardware" in described
    explained = subprocess.run([*kubectl, "explain", "deepseekdeployment.spec.runtime"], capture_output=True,
                               text=True, check=True).stdout
    assert "parallelism" in explained and "maxSeqLen" in explained and "Longest prompt + output" in explained
    removed = subprocess.run([*kubectl, "explain", "deepseekdeployment.spec.engine"], capture_output=True,
                             text=True, check=True).stdout
    assert "replaced by spec.runtime" in " ".join(removed.split())  # explain wraps long descriptions


def test_replicas_beyond_the_gpus_say_why_they_wait(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    docs = _docs("r1-671b-h200-fp8.yaml", ns)
    docs[0]["spec"]["serving"]["replicas"] = 3  # the testbed has two 8xH200 nodes
    assert kubectl_apply(docs).returncode == 0

    def waiting() -> dict[str, Any] | None:
        ready = res.condition("r1-671b", "Ready")
        return ready if ready and ready["reason"] == "Unschedulable" and "2/3" in ready["message"] else None

    ready = eventually("the status to name the unschedulable replica", waiting, timeout=120)
    assert "1 pod(s) cannot be scheduled" in ready["message"] and "nvidia.com/gpu" in ready["message"]
    assert res.get("r1-671b")["status"]["phase"] == "Progressing"
