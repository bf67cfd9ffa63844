"""Bad input never half-applies: the apiserver rejects what is never valid (naming the field), and what cannot
work on the named hardware is accepted, conditioned FitsHardware=False with a message, and creates nothing.
The operator survives all of it and does not loop."""

from __future__ import annotations

import copy
import time
from typing import Any

import pytest
from kubernetes import client

from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, kubectl_apply

pytestmark = pytest.mark.e2e

VALID: dict[str, Any] = {
    "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment", "metadata": {"name": "bad"},
    "spec": {"model": {"name": "deepseek-r1-distill-qwen-7b", "revision": "r1",
                       "source": {"pvc": {"claimName": "model-store", "path": "/models/q7"}}},
             "serving": {"gpu": {"type": "A100-80GB", "perNode": 4}}},
}


def _set(path: str, value: Any) -> dict[str, Any]:
    doc = copy.deepcopy(VALID)
    node = doc
    *parents, leaf = path.split(".")
    for p in parents:
        node = node.setdefault(p, {})
    if value is _DELETE:
        del node[leaf]
    else:
        node[leaf] = value
    return doc


_DELETE = object()

REJECTED = [  # (path, value, text the apiserver's answer must contain)
    ("spec.model.name", "gpt-4", "spec.model.name"),
    ("spec.model.precision", "fp4", "spec.model.precision"),
    ("spec.model.source", {}, "exactly one of pvc, hf, s3"),
    ("spec.model.source", {"pvc": {"claimName": "a"}, "hf": {"repo": "a/b", "revision": "0" * 40}},
     "exactly one of pvc, hf, s3"),
    ("spec.model.name", "custom", "`custom` figures are required"),
    ("spec.model.custom", {"paramsBillion": 7, "layers": 28, "hiddenSize": 3584, "attentionHeads": 28,
                           "kvHeads": 4}, "`custom` figures are required"),
    ("spec.model.revision", "", "spec.model.revision"),
    ("spec.model.source", {"hf": {"repo": "no-slash"}}, "spec.model.source.hf.repo"),
    ("spec.model.source", {"s3": {"uri": "https://bucket/x"}}, "spec.model.source.s3.uri"),
    ("spec.model.source", {"s3": {"uri": "s3://Bad_Bucket/x"}}, "spec.model.source.s3.uri"),
    ("spec.model.source", {"s3": {"uri": "s3://models/x", "endpointUrl": "minio:9000"}},
     "spec.model.source.s3.endpointUrl"),
    ("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1"}}, "spec.model.source.hf.revision"),
    ("spec.model.source", {"hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": "main"}},
     "spec.model.source.hf.revision"),
    ("spec.model.download", {"maxBytesPerSecond": 10}, "spec.model.download.maxBytesPerSecond"),
    ("spec.runtime", {"parallelism": {"tensor": 3}}, "power of two"),
    ("spec.runtime", {"parallelism": {"tensor": "four"}}, "power of two"),
    ("spec.runtime", {"parallelism": {"pipeline": 0}}, "power of two"),
    ("spec.runtime", {"maxBatchSize": 8, "cudaGraphs": {"maxBatchSize": 16}},
     "cudaGraphs.maxBatchSize must not exceed maxBatchSize"),
    ("spec.runtime", {"maxBatchSize": 0}, "spec.runtime.maxBatchSize"),
    ("spec.runtime", {"cache": {"size": "lots"}}, "spec.runtime.cache.size"),
    ("spec.runtime", {"kvCache": {"freeGpuMemoryFraction": 1.5}}, "freeGpuMemoryFraction"),
    ("spec.runtime", {"schedulerPolicy": "fifo"}, "schedulerPolicy"),
    ("spec.engine", {"maxBatchSize": 8}, "spec.engine was replaced by spec.runtime"),
    ("spec.serving.batching", {"kvCacheFreeGpuMemFraction": 0.9}, "spec.serving.batching was replaced"),
    ("spec.serving.gpu", {"type": "H100"}, "spec.serving.gpu.type"),
    ("spec.serving.gpu", {"type": "H100-80GB", "perNode": 0}, "spec.serving.gpu.perNode"),
    ("spec.serving.replicas", -1, "spec.serving.replicas"),
    ("spec.serving.podLabels", {"serving.deepseek.ai/revision": "x"}, "podLabels may not set"),
    ("spec.serving.resources", {"limits": {"nvidia.com/gpu": "2"}}, "nvidia.com/gpu is set from sizing"),
    ("spec.serving.startupTimeoutSeconds", 10, "spec.serving.startupTimeoutSeconds"),
    ("spec.serving.unknownField", 1, "unknownField"),
    ("spec.serving", _DELETE, "spec.serving"),
    ("metadata.name", "a-name-that-is-far-too-long-for-the-pods-it-would-make", "at most 47 characters"),
    ("spec.network", {"fabric": "infiniband"}, "fabric infiniband/roce needs rdmaResource"),
    ("spec.network", {"nccl": {"ibHca": "mlx5"}}, "nccl.ibHca applies to fabric infiniband/roce only"),
    ("spec.network", {"fabric": "infiniband", "rdmaResource": "rdma/ib", "nccl": {"ibGidIndex": 3}},
     "nccl.ibGidIndex applies to fabric roce only"),
]

CONDITIONED = [  # (spec patch, FitsHardware reason, text the message must contain)
    ({"model": {"name": "deepseek-r1", "precision": "fp8"}, "runtime": {"parallelism": {"pipeline": 1}},
      "serving": {"gpu": {"type": "H100-80GB", "perNode": 8}}}, "InsufficientGPUMemory", "H200-141GB"),
    ({"model": {"precision": "fp8"}}, "PrecisionUnsupported", "fp8"),
    ({"model": {"name": "deepseek-r1-distill-llama-70b"}, "serving": {"gpu": {"type": "L4-24GB", "perNode": 1}}},
     "InsufficientGPUMemory", "L4-24GB"),
    ({"model": {"name": "deepseek-r1-distill-qwen-14b"}, "runtime": {"parallelism": {"tensor": 8}}},
     "ExceedsNode", "4"),
    ({"model": {"name": "deepseek-r1-distill-qwen-1.5b"}, "runtime": {"parallelism": {"tensor": 64}},
      "serving": {"gpu": {"type": "H100-80GB", "perNode": 16}}}, "InvalidParallelism", "heads"),
    ({"model": {"name": "deepseek-r1", "precision": "nvfp4"}, "serving": {"gpu": {"type": "H200-141GB", "perNode": 8}}},
     "PrecisionUnsupported", "Blackwell"),
    ({"model": {"name": "deepseek-r1", "precision": "awq"}, "serving": {"gpu": {"type": "A100-80GB", "perNode": 8}}},
     "GPUUnsupported", "compute capability 9.0"),
]


@pytest.fixture(scope="module")
def bad_ns(testbed: TestbedClient, operator: OperatorProcess) -> Any:
    name = testbed.namespace("bad")
    yield name
    testbed.delete_namespace(name)


@pytest.mark.parametrize(("path", "value", "expected"), REJECTED, ids=[f"{p}={v}"[:60] for p, v, _ in REJECTED])
def test_apiserver_rejects_what_is_never_valid(bad_ns: str, path: str, value: Any, expected: str) -> None:
    doc = _set(path, value)
    doc["metadata"].setdefault("namespace", bad_ns)
    doc["metadata"]["namespace"] = bad_ns
    out = kubectl_apply([doc])
    assert out.returncode != 0, f"accepted: {doc}"
    assert expected in out.stderr, out.stderr


def _merge(base: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = copy.deepcopy(base)
    for k, v in patch.items():
        out[k] = _merge(out.get(k, {}), v) if isinstance(v, dict) else v
    return out


@pytest.mark.parametrize(("patch", "reason", "text"), CONDITIONED,
                         ids=[c[1] + str(i) for i, c in enumerate(CONDITIONED)])
def test_what_cannot_fit_is_conditioned_and_creates_nothing(testbed: TestbedClient, bad_ns: str,
                                                            operator: OperatorProcess, patch: dict[str, Any],
                                                            reason: str, text: str) -> None:
    name = f"nofit-{reason.lower()[:20]}-{CONDITIONED.index((patch, reason, text))}"
    doc = copy.deepcopy(VALID)
    doc["metadata"] = {"name": name, "namespace": bad_ns}
    doc["spec"] = _merge(doc["spec"], patch)
    out = kubectl_apply([doc])
    assert out.returncode == 0, out.stderr
    custom = client.CustomObjectsApi(testbed.api)

    def fits_condition() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)
        return next((c for c in (obj.get("status") or {}).get("conditions") or []
                     if c["type"] == "FitsHardware"), None)

    cond = eventually(f"FitsHardware on {name}", fits_condition, timeout=60)
    assert cond["status"] == "False" and cond["reason"] == reason, cond
    assert text in cond["message"], cond["message"]
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)
    assert obj["status"]["phase"] == "Degraded"
    # Nothing was created for it, and the operator is not rewriting it in a loop.
    selector = f"serving.deepseek.ai/deployment={name}"
    assert not client.AppsV1Api(testbed.api).list_namespaced_deployment(bad_ns, label_selector=selector).items
    assert not testbed.core.list_namespaced_config_map(bad_ns, label_selector=selector).items
    version = obj["metadata"]["resourceVersion"]
    time.sleep(3)
    assert custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)["metadata"][
        "resourceVersion"] == version
    assert operator.proc is not None and operator.proc.poll() is None
