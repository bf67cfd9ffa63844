"""What every pod the operator makes runs as, and a namespace whose Pod Security level refuses a layout's pods:
reported with what would work, nothing applied (tests/e2e/test_pod_security.py holds the rendered pods to the
API server's own Pod Security admission)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.unit.test_plan import QWEN_1_5B, QWEN_7B, T0, Cluster, cond, drive, edited, example, pod_spec

TWO_NODES = "r1-671b-h100-2x8-infiniband"  # 2 x 8 H100 over InfiniBand: IPC_LOCK on every pod
PODS = {"serviceAccountName": "llm-serving", "imagePullSecrets": ["ngc"], "priorityClassName": "inference",
        "runtimeClassName": "nvidia", "runAsUser": 2000, "runAsGroup": 2000, "fsGroup": 2000}


def test_spec_pods_reach_every_pod_and_none_gets_an_api_token() -> None:
    body = edited(example(QWEN_1_5B), {"pods": PODS})  # quantized for its L4: a quantize Job too
    cluster = drive(body)
    pod = pod_spec(cluster.deployments[cluster.newest])
    [job] = cluster.jobs.values()
    for spec in (pod, job["spec"]["template"]["spec"]):
        assert spec["serviceAccountName"] == "llm-serving" and spec["automountServiceAccountToken"] is False
        assert spec["imagePullSecrets"] == [{"name": "ngc"}] and spec["priorityClassName"] == "inference"
        assert spec["runtimeClassName"] == "nvidia"  # both hold GPUs
        assert spec["securityContext"] == {"runAsNonRoot": True, "runAsUser": 2000, "runAsGroup": 2000,
                                           "fsGroup": 2000, "fsGroupChangePolicy": "OnRootMismatch",
                                           "seccompProfile": {"type": "RuntimeDefault"}}
        for c in [*spec.get("initContainers", []), *spec["containers"]]:
            assert c["securityContext"] == {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
                                            "capabilities": {"drop": ["ALL"]}}, c["name"]
    # Under a read-only root, what writes gets /tmp: Triton's caches (HOME) and the quantize program's.
    triton = pod["containers"][0]
    assert {"name": "HOME", "value": "/tmp"} in triton["env"]
    assert {"name": "tmp", "mountPath": "/tmp"} in triton["volumeMounts"]


def test_a_download_job_holds_no_gpu_and_gets_no_gpu_runtime() -> None:
    from deepseek_operator.api.spec import DeepSeekDeploymentSpec
    from deepseek_operator.render import weights

    doc = example("r1-distill-qwen-7b-s3")
    spec = DeepSeekDeploymentSpec.model_validate(edited(doc, {"pods": PODS})["spec"])
    job = weights.job(spec=spec, download_key="k", namespace="llm", cr_name="r1", cache_pvc_uid="u")
    pod = job["spec"]["template"]["spec"]
    assert "runtimeClassName" not in pod and pod["serviceAccountName"] == "llm-serving"  # its S3 identity


@pytest.mark.parametrize(("enforced", "served"), [(None, True), ("privileged", True), ("baseline", False),
                                                  ("restricted", False)])
def test_a_layout_the_namespace_refuses_is_reported_and_nothing_applied(enforced: str | None, served: bool) -> None:
    cluster = Cluster(pod_security=enforced)
    p = cluster.reconcile(example(TWO_NODES), T0)
    if served:
        assert p.apply and cond(p, "Ready")["reason"] != "PodSecurityForbids"
        return
    assert p.apply == [] and p.status["phase"] == "Degraded"
    degraded = cond(p, "Degraded")
    assert degraded["reason"] == "PodSecurityForbids"
    assert f"enforces the '{enforced}' Pod Security Standard" in degraded["message"]
    assert "IPC_LOCK" in degraded["message"] and "pod-security.kubernetes.io/enforce=privileged" in degraded["message"]
    assert p.requeue_after == 30  # a label changes without an event: looked at again


def test_a_one_node_replica_needs_no_rdma_and_serves_under_restricted() -> None:
    ib = {"network": {"fabric": "infiniband", "rdmaResource": "rdma/ib"}}
    body: dict[str, Any] = edited(example(QWEN_7B), ib)
    cluster = Cluster(pod_security="restricted")
    p = cluster.reconcile(body, T0)
    assert p.apply, p.status
    valid = cond(p, "SpecValid")
    assert valid["reason"] == "IgnoredSetting" and "spec.network.fabric infiniband is ignored" in valid["message"]


def test_pods_a_quota_refuses_are_said_in_the_conditions_with_the_quota_words() -> None:
    cluster = Cluster()
    body = example(QWEN_7B)  # two replicas, one GPU each
    for _ in range(2):
        cluster.reconcile(body, T0)
    deployment = cluster.deployments[cluster.newest]
    words = ('pods "r1-qwen-7b-x" is forbidden: exceeded quota: gpus, requested: requests.nvidia.com/gpu=1, '
             'used: requests.nvidia.com/gpu=1, limited: requests.nvidia.com/gpu=1')
    deployment["status"] = {"replicas": 1, "readyReplicas": 0, "conditions": [
        {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate", "message": words}]}
    p = cluster.reconcile(body, T0)
    progressing = cond(p, "Progressing")
    assert progressing["reason"] == "QuotaExceeded" and words in progressing["message"]
    assert cond(p, "Ready")["reason"] == "QuotaExceeded"


@pytest.mark.parametrize("mutual", [False, True])
def test_grpc_tls_mounts_the_secret_and_turns_on_tritons_flags(mutual: bool) -> None:
    body = edited(example(QWEN_7B), {"serving.grpcTls": {"secretName": "triton-grpc", "mutual": mutual}})
    cluster = drive(body)
    pod = pod_spec(cluster.deployments[cluster.newest])
    triton = pod["containers"][0]
    flags = [a for a in triton["command"] if a.startswith("--grpc-")]
    assert flags[:3] == ["--grpc-port=8001", "--grpc-use-ssl=true", "--grpc-server-cert=/etc/triton/grpc-tls/tls.crt"]
    assert ("--grpc-root-cert=/etc/triton/grpc-tls/ca.crt" in flags) is mutual
    assert {"name": "grpc-tls", "secret": {"secretName": "triton-grpc", "defaultMode": 0o440}} in pod["volumes"]
    assert {"name": "grpc-tls", "mountPath": "/etc/triton/grpc-tls", "readOnly": True} in triton["volumeMounts"]
