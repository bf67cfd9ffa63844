"""A model split across two nodes on the testbed: leader and worker pods on two H100 nodes, the NCCL preflight run
for real over both (gloo between the pods' network namespaces, rendezvous by the rank-0 pod's DNS name), and a
canary of the two-node model that is promoted, then one that fails its analysis and is rolled back."""

from __future__ import annotations

import copy
import subprocess
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_rollout import NAME, Load, canary_cr, gateway_analysis, serve_first_revision, watch
from tests.e2e.test_serving import Resources, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    # InfiniBand: NCCL pins memory (IPC_LOCK), which only the `privileged` profile admits.
    yield from model_store_namespace(testbed, "mn", pod_security="privileged")


def two_node_cr(ns: str, testbed: TestbedClient) -> dict[str, Any]:
    """70B at BF16 as TP 2 x PP 2 on 2-GPU slices of the H100 nodes: two pods per replica, one per node; the
    stable and a canary group fit the two 8-GPU nodes side by side."""
    cr = canary_cr(ns, replicas=1, steps=[{"weight": 50}, {"pause": "30s"}],
                   analysis=gateway_analysis(testbed))
    spec = cr["spec"]
    spec["model"] = {"name": "deepseek-r1-distill-llama-70b", "revision": "2025-01-20", "precision": "bf16",
                     "source": {"pvc": {"claimName": "model-store", "path": "/models/DeepSeek-R1-Distill-Llama-70B"}}}
    spec["runtime"] = {"maxBatchSize": 8, "maxNumTokens": 1024, "maxSeqLen": 2048,
                       "parallelism": {"tensor": 2, "pipeline": 2}}
    spec["serving"]["gpu"] = {"type": "H100-80GB", "perNode": 2}
    spec["network"] = {"fabric": "infiniband", "rdmaResource": "rdma/ib"}
    return cr


def _pods(testbed: TestbedClient, ns: str, revision: str) -> list[Any]:
    return list(testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/revision={revision}",
                                                 field_selector="status.phase=Running").items)


def test_two_node_replica_preflight_and_canary(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    stable = serve_first_revision(res, two_node_cr(ns, testbed), testbed)
    status = res.get(NAME)["status"]
    assert status["parallelism"] == {"tensor": 2, "pipeline": 2, "expert": 1, "nodesPerReplica": 2,
                                     "gpusPerReplica": 4}

    # Leader and worker: two pods, two distinct H100 nodes, each with its node's share of GPUs.
    pods = _pods(testbed, ns, stable)
    roles = {p.metadata.labels["serving.deepseek.ai/role"]: p for p in pods}
    assert sorted(roles) == ["leader", "worker"] and len(pods) == 2
    nodes = {p.spec.node_name for p in pods}
    assert len(nodes) == 2
    assert {testbed.core.read_node(n).metadata.labels["nvidia.com/gpu.product"] for n in nodes} == {
        "NVIDIA-H100-80GB-HBM3"}
    assert all(p.spec.containers[0].resources.limits["nvidia.com/gpu"] == "2" for p in pods)
    assert roles["worker"].metadata.name == f"{roles['leader'].metadata.name}-1"  # `<leader>-<index>`, as LWS names
    # The leader's mpirun reached the worker's sshd and started its ranks there: had it failed, mpirun (the
    # leader's main process) would have exited and the leader would be restarting, not Ready.
    # (The leader also runs the front door beside Triton; the worker serves no client and has none.)
    assert sorted((c.name, c.restart_count) for c in roles["leader"].status.container_statuses) == [
        ("frontend", 0), ("triton", 0)]
    # Leader and worker reach each other (SSH, NCCL) through their revision's NetworkPolicy.
    policies = client.NetworkingV1Api(testbed.api).list_namespaced_network_policy(ns).items
    assert f"{NAME}-{stable}-group" in {p.metadata.name for p in policies}
    # The client Service reaches the leader only.
    endpoints = testbed.core.read_namespaced_endpoints(NAME, ns)
    assert [a.ip for s in endpoints.subsets or [] for a in s.addresses or []] == [roles["leader"].status.pod_ip]

    # The preflight ran over both nodes: 2 ranks per pod (the testbed's count), 4 in all, on 2 hosts.
    pf = status["preflight"]
    assert {k: pf[k] for k in ("state", "backend", "worldSize", "nodes", "expectedTransport")} == {
        "state": "Passed", "backend": "gloo", "worldSize": 4, "nodes": 2, "expectedTransport": "ib"}
    assert pf["minBusBandwidthGBps"] == 0.02  # the inter-node IB bound (20 GB/s), held to a thousandth here

    # A clean canary of the two-node model: a new group next to the stable one, its own preflight, promoted.
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
        seen = watch(res, "Healthy", timeout=300)
    promoted = seen[-1]["stableRevision"]
    assert promoted != stable and seen[-1]["preflight"]["revision"] == promoted
    assert 50 in {s.get("canaryWeight") for s in seen if s.get("canaryRevision") == promoted}
    assert any((s.get("analysis") or {}).get("result") == "Successful" for s in seen)
    codes = Counter(code for code, _ in load.outcomes)
    assert codes[200] > 50 and set(codes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)
    assert len(_pods(testbed, ns, promoted)) == 2

    # A canary whose leader fails 30% of requests is rolled back: its group is scaled to zero.
    with Load(testbed.gateway, f"{ns}.llm.test"):
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3"}}})
        seen = watch(res, "RolledBack", timeout=300)
    final = copy.deepcopy(seen[-1])
    bad = final["heldRevision"]
    assert bad and final["stableRevision"] == promoted and final["canaryWeight"] == 0
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
    leaders = res.apps.read_namespaced_stateful_set(f"{NAME}-{bad}", ns)
    assert leaders.spec.replicas == 0
    assert not [s for s in res.apps.list_namespaced_stateful_set(
        ns, label_selector=f"serving.deepseek.ai/revision={bad},app.kubernetes.io/component=server-worker").items]


LWS_CRDS = ["crd/leaderworkersets.leaderworkerset.x-k8s.io", "crd/disaggregatedsets.disaggregatedset.x-k8s.io"]


@pytest.fixture
def lws(testbed: TestbedClient, operator: OperatorProcess, tmp_path: Path) -> Iterator[None]:
    """The real LeaderWorkerSet controller (with its webhooks) on the testbed, and the operator restarted to see
    the LWS API; afterwards both gone again and the operator back on StatefulSets."""
    repo = Path(__file__).resolve().parents[2]
    started = subprocess.run([str(repo / "testbed" / "lws" / "run"), str(tmp_path)], capture_output=True, text=True)
    assert started.returncode == 0, started.stderr
    operator.stop()
    operator.start()
    try:
        yield
    finally:
        subprocess.run([str(repo / "testbed" / "lws" / "stop"), str(tmp_path)], capture_output=True)
        cluster.kubectl("delete", "--ignore-not-found", *LWS_CRDS)
        operator.stop()
        operator.start()


def test_with_the_lws_controller_a_replica_is_a_leader_worker_set_group_and_rolls_out(testbed: TestbedClient, ns: str,
                                                                        lws: None) -> None:
    res = Resources(testbed, ns)
    cr = two_node_cr(ns, testbed)
    cr["spec"]["rollout"] = {"trafficRouting": {"service": {}}}
    assert kubectl_apply([cr]).returncode == 0
    status = res.wait_phase(NAME, "Healthy", timeout=240)["status"]
    revision = status["stableRevision"]
    custom = client.CustomObjectsApi(testbed.api)
    lws_obj = custom.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets",
                                                  f"{NAME}-{revision}")
    assert lws_obj["spec"]["leaderWorkerTemplate"]["size"] == 2 and lws_obj["status"]["readyReplicas"] == 1
    assert res.apps.list_namespaced_stateful_set(ns).items  # LWS's own, owned by the set, not by the operator
    pods = eventually("the group's pods", lambda: (p if len(p := _pods(testbed, ns, revision)) == 2 else None))
    by_index = {p.metadata.labels["leaderworkerset.sigs.k8s.io/worker-index"]: p for p in pods}
    leader, worker = by_index["0"], by_index["1"]
    assert worker.metadata.name == f"{leader.metadata.name}-1" and leader.spec.node_name != worker.spec.node_name
    env = {e.name: e.value for e in worker.spec.containers[0].env if e.value is not None}
    assert env["LWS_LEADER_ADDRESS"] == f"{leader.metadata.name}.{NAME}-{revision}.{ns}"
    assert leader.metadata.labels["app.kubernetes.io/component"] == "server"
    assert worker.metadata.labels["app.kubernetes.io/component"] == "server-worker"
    assert status["preflight"]["state"] == "Passed" and status["preflight"]["nodes"] == 2

    # A new revision rolls out as a new set (its own preflight first); the old one stays in history at 0.
    res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
    promoted = eventually("the new revision promoted", lambda: (
        s if (s := res.get(NAME)["status"]).get("stableRevision") not in ("", revision)
        and s.get("phase") == "Healthy" else None), timeout=240)
    new = custom.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets",
                                              f"{NAME}-{promoted['stableRevision']}")
    old = custom.get_namespaced_custom_object("leaderworkerset.x-k8s.io", "v1", ns, "leaderworkersets",
                                              f"{NAME}-{revision}")
    assert new["status"]["readyReplicas"] == 1 and old["spec"]["replicas"] == 0
    assert promoted["preflight"]["revision"] == promoted["stableRevision"]
