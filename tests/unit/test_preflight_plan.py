"""The NCCL preflight as the operator runs it: the Job it renders, what each outcome does to the revision.

The rendered Jobs are golden files (tests/golden/preflight/<case>.yaml); after an intended change regenerate them
with `DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_preflight_plan.py` and read the diff.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import catalog, preflight
from deepseek_operator.render.children import Owner
from tests import golden
from tests.unit.test_plan import LLAMA_70B, R1_671B, T0, T1, T2, Cluster, cond, drive, edited, example, kinds

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "preflight"
OWNER = Owner("r1", "serving", "uid-r1")
IB = {"fabric": "infiniband", "rdmaResource": "rdma/ib"}


def spec_of(network: dict[str, Any]) -> DeepSeekDeploymentSpec:
    return DeepSeekDeploymentSpec.model_validate({
        "model": {"name": "deepseek-r1", "precision": "fp8", "revision": "2025-01-20",
                  "source": {"pvc": {"claimName": "model-store", "path": "/models/DeepSeek-R1"}}},
        "serving": {"gpu": {"type": "H100-80GB"}},
        "network": network})


CHECKS = [
    # network, GPUs per replica, nodes, expected (transport, bound GB/s, GPUs per node)
    ({}, 8, 1, ("nvlink", 150.0, 8)),
    (IB, 16, 2, ("ib", 20.0, 8)),
    ({"fabric": "roce", "rdmaResource": "rdma/roce"}, 16, 2, ("ib", 20.0, 8)),
    ({}, 16, 2, ("socket", 1.0, 8)),
    ({"preflight": {"minBusBandwidthGBps": 300, "expectTransport": "p2p"}}, 4, 1, ("p2p", 300.0, 4)),
]


@pytest.mark.parametrize(("network", "gpus", "nodes", "expected"), CHECKS,
                         ids=["one node", "infiniband", "roce", "ethernet", "set in spec"])
def test_what_the_preflight_asserts(network: dict[str, Any], gpus: int, nodes: int,
                                    expected: tuple[str, float, int]) -> None:
    check = preflight.check_for(spec_of(network), catalog.GPUS["H100-80GB"], gpus, nodes)
    assert (check.expect_transport, check.min_bus_bandwidth_gbps, check.gpus_per_node) == expected


def test_a_gpu_without_nvlink_expects_p2p_inside_a_node() -> None:
    check = preflight.check_for(spec_of({}), catalog.GPUS["L40S-48GB"], 2, 1)
    assert (check.expect_transport, check.min_bus_bandwidth_gbps) == ("p2p", 10)


def test_the_longest_name_leaves_pod_hostnames_within_63_characters() -> None:
    from deepseek_operator.api.crd import MAX_NAME_LENGTH

    name = preflight.job_name("n" * MAX_NAME_LENGTH, "0123456789")
    assert len(f"{name}-9") <= 63


def test_one_gpu_or_turned_off_needs_no_preflight() -> None:
    assert not preflight.required(spec_of({}), 1)
    assert not preflight.required(spec_of({"preflight": {"enabled": False}}), 8)
    assert preflight.required(spec_of({}), 2)


def _job(network: dict[str, Any], gpus: int, nodes: int) -> dict[str, Any]:
    spec = spec_of(network)
    gpu = catalog.GPUS["H100-80GB"]
    return preflight.job(owner=OWNER, spec=spec, gpu=gpu, revision="abc1234567",
                         check=preflight.check_for(spec, gpu, gpus, nodes),
                         node_affinity={"required": "gpu nodes"}, tolerations=[], shm_size=f"{gpus // nodes * 8}Gi")


@pytest.mark.parametrize(("case", "network", "gpus", "nodes"),
                         [("one-node-nvlink", {}, 8, 1), ("two-nodes-infiniband", IB, 16, 2)])
def test_rendered_job_matches_golden(case: str, network: dict[str, Any], gpus: int, nodes: int) -> None:
    rendered = yaml.safe_dump(_job(network, gpus, nodes), sort_keys=False, width=120)
    golden.check_file(GOLDEN / f"{case}.yaml", rendered)


def test_two_node_job_puts_one_pod_on_each_node_and_rendezvous_at_rank_0() -> None:
    job = _job(IB, 16, 2)
    pod = job["spec"]["template"]["spec"]
    assert (job["spec"]["completionMode"], job["spec"]["completions"], job["spec"]["parallelism"]) == ("Indexed", 2, 2)
    [term] = pod["affinity"]["podAntiAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]
    assert term["topologyKey"] == "kubernetes.io/hostname"
    args = pod["containers"][0]["args"]
    assert "--master-addr=r1-abc1234567-pf-0.r1-abc1234567-pf.serving.svc.cluster.local" in args
    assert pod["subdomain"] == job["metadata"]["name"]
    assert "--node-rank=$(JOB_COMPLETION_INDEX)" in args
    assert pod["containers"][0]["resources"]["limits"] == {"rdma/ib": "1", "nvidia.com/gpu": "8"}
    # RDMA pins memory: exactly IPC_LOCK on top of `restricted` (which then only a privileged namespace admits).
    assert pod["containers"][0]["securityContext"] == {"allowPrivilegeEscalation": False,
                                                       "readOnlyRootFilesystem": True,
                                                       "capabilities": {"drop": ["ALL"], "add": ["IPC_LOCK"]}}
    env = {e["name"]: e["value"] for e in pod["containers"][0]["env"]}
    assert env["NCCL_IB_HCA"] == "mlx5" and env["NCCL_IB_DISABLE"] == "0"
    service = preflight.rendezvous_service(OWNER, "abc1234567")
    assert service["spec"]["clusterIP"] == "None" and service["metadata"]["name"] == job["metadata"]["name"]


# ------------------------------------------------------------------------------------- what a verdict does


def test_failed_preflight_blocks_the_new_revision_with_its_figures() -> None:
    cluster = Cluster(preflight_passes=False)
    body = example(R1_671B)
    for _ in range(3):
        p = cluster.reconcile(body, T0)
    assert p.status["phase"] == "Degraded"
    assert cluster.deployments == {}  # no serving pod for a revision whose fabric failed
    assert (cond(p, "Preflight")["status"], cond(p, "Preflight")["reason"]) == ("False", "PreflightFailed")
    degraded = cond(p, "Degraded")
    assert degraded["reason"] == "PreflightFailed"
    assert "FAILED: peak bus bandwidth 460.0 GB/s vs 150.0 GB/s over p2p-nvlink" in degraded["message"]
    assert f"delete Job {p.status['preflight']['job']} to run it again" in degraded["message"]
    assert {k: p.status["preflight"][k] for k in ("state", "backend", "transport", "minBusBandwidthGBps")} == {
        "state": "Failed", "backend": "nccl", "transport": "p2p-nvlink", "minBusBandwidthGBps": 150.0}
    assert [e.reason for e in p.events] == []  # said once, in the pass that saw it fail
    again = cluster.reconcile(body, T1)
    assert again.apply == [] and again.status == {**p.status}


def test_a_failed_preflight_of_an_update_keeps_the_stable_revision_serving() -> None:
    body = example(LLAMA_70B)
    cluster = drive(body)
    stable = body["status"]["stableRevision"]
    assert body["status"]["phase"] == "Healthy" and body["status"]["preflight"]["state"] == "Passed"
    cluster.preflight_passes = False
    body = edited(body, {"runtime.maxNumTokens": 1024})
    for _ in range(3):
        p = cluster.reconcile(body, T1)
    assert p.status["revision"] != stable and p.status["stableRevision"] == stable
    assert cond(p, "Ready")["status"] == "True" and "keeps serving" in cond(p, "Ready")["message"]
    assert cond(p, "Degraded")["reason"] == "PreflightFailed"
    assert list(cluster.deployments) == [f"{body['metadata']['name']}-{stable}"]
    # The earlier revision's preflight Job is gone; the failed one stays for its logs.
    assert list(cluster.preflight_jobs) == [p.status["preflight"]["job"]]


def test_deleting_the_failed_job_runs_the_check_again() -> None:
    cluster = Cluster(preflight_passes=False)
    body = example(R1_671B)
    for _ in range(3):
        cluster.reconcile(body, T0)
    [job_name] = cluster.preflight_jobs
    del cluster.preflight_jobs[job_name]  # kubectl delete job: it leaves the watch, with its applied hash
    del cluster.hashes[("Job", job_name)]
    cluster.preflight_pods.clear()
    cluster.preflight_passes = True
    p = cluster.reconcile(body, T2)
    assert kinds(p) == ["Job"] and p.status["preflight"]["state"] == "Running"
    p = cluster.reconcile(body, T2)
    assert p.status["preflight"]["state"] == "Passed" and "Deployment" in kinds(p)


def test_a_verdict_stands_when_the_pods_are_gone() -> None:
    cluster = Cluster()
    body = example(R1_671B)
    cluster.reconcile(body, T0)
    cluster.reconcile(body, T0)
    passed = copy.deepcopy(body["status"]["preflight"])
    assert passed["state"] == "Passed"
    cluster.preflight_pods.clear()
    p = cluster.reconcile(body, T1)
    assert p.status["preflight"] == passed


def test_a_job_that_fails_without_a_verdict_says_so() -> None:
    job = {"metadata": {"name": "r1-x-pf", "uid": "u1"},
           "status": {"conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded",
                                      "message": "Job was active longer than specified deadline"}]}}
    check = preflight.Check(nodes=2, gpus_per_node=8, expect_transport="ib", min_bus_bandwidth_gbps=20)
    got = preflight.status(name="r1-x-pf", revision="x", check=check, job_obj=job, pods=[], previous=None)
    assert got["state"] == "Failed"
    assert got["message"] == ("preflight Job failed without a verdict (DeadlineExceeded: Job was active longer "
                              "than specified deadline); see its pods' logs")


def test_rank_0_summary_is_read_from_its_termination_message() -> None:
    summary = {"passed": True, "message": "PASSED", "backend": "gloo", "worldSize": 4, "nodes": 2,
               "peakBusBandwidthGbps": 1.2, "peakAtBytes": 4194304, "minBusBandwidthGbps": 0.02,
               "transport": "unknown", "expectTransport": "any"}
    index = "batch.kubernetes.io/job-completion-index"
    pods = [{"metadata": {"labels": {"batch.kubernetes.io/job-name": "j", index: i}},
             "status": {"containerStatuses": [{"state": {"terminated": {"message": json.dumps(
                 summary if i == "0" else {"passed": False})}}}]}} for i in ("1", "0")]
    job = {"metadata": {"name": "j", "uid": "u"}, "status": {"conditions": [
        {"type": "Complete", "status": "True", "lastTransitionTime": T1}]}}
    check = preflight.Check(nodes=2, gpus_per_node=2, expect_transport="ib", min_bus_bandwidth_gbps=20)
    got = preflight.status(name="j", revision="x", check=check, job_obj=job, pods=pods, previous=None)
    assert got == {"revision": "x", "job": "j", "jobUid": "u", "expectedTransport": "ib", "minBusBandwidthGBps": 0.02,
                   "state": "Passed", "message": "PASSED", "backend": "gloo", "worldSize": 4, "nodes": 2,
                   "busBandwidthGBps": 1.2, "atSizeBytes": 4194304, "transport": "unknown", "finishedAt": T1}


def test_preflight_turned_off_serves_at_once() -> None:
    cluster = Cluster(preflight_passes=None)
    body = edited(example(R1_671B), {"network.preflight.enabled": False})
    p = cluster.reconcile(body, T0)
    assert "Deployment" in kinds(p) and "preflight" not in p.status
    assert not [c for c in p.status["conditions"] if c["type"] == "Preflight"]


def test_on_a_full_pool_the_preflight_runs_in_the_gpus_a_drained_stable_replica_gave_back() -> None:
    body = edited(example(LLAMA_70B), {"serving.replicas": 2, "rollout.maxSurge": 0})
    cluster = drive(body)
    stable = body["status"]["stableRevision"]
    assert body["status"]["phase"] == "Healthy"
    body = edited(body, {"runtime.maxNumTokens": 1024})

    def stable_replicas() -> int:
        return int(cluster.deployments[f"{body['metadata']['name']}-{stable}"]["spec"]["replicas"])

    for _ in range(2):  # the replica drains (its pod still holds its GPUs): no Job yet, and no second drain
        p = cluster.reconcile(body, T1)
        assert "Job" not in kinds(p) and stable_replicas() == 1
        assert p.status["phase"] == "Preparing" and p.status["preflight"]["state"] == "Running"
        assert "waiting for one replica's GPUs" in p.status["preflight"]["message"]
        assert "keeps serving on 1 of 2 replicas" in cond(p, "Progressing")["message"]
    cluster.roll_out()  # the drained pod is gone: its GPUs are free
    p = cluster.reconcile(body, T1)
    assert "Job" in kinds(p) and p.status["preflight"]["revision"] == p.status["revision"]
    p = cluster.reconcile(body, T2)  # passed: the canary's first replica takes the GPUs the Job gave back
    canary = p.status["canaryRevision"]
    assert {n.rsplit("-", 1)[1]: d["spec"]["replicas"] for n, d in cluster.deployments.items()} == {
        stable: 1, canary: 1}


def test_a_preflight_pod_the_scheduler_cannot_place_is_said_in_its_words() -> None:
    """maxSurge 1 on a pool with no spare GPU: the surge holds the Job on paper only; the status must not say
    "running" while its pod waits Pending."""
    cluster = Cluster(preflight_passes=None)  # the Job runs on: its pod stays unscheduled
    body = example(R1_671B)
    cluster.reconcile(body, T0)
    [name] = cluster.preflight_jobs
    revision = cluster.preflight_jobs[name]["metadata"]["labels"]["serving.deepseek.ai/revision"]
    words = "0/4 nodes are available: 4 Insufficient nvidia.com/gpu."
    cluster.preflight_pods.append({
        "metadata": {"name": f"{name}-0-x", "labels": {"batch.kubernetes.io/job-name": name,
                                                     "serving.deepseek.ai/revision": revision}},
        "status": {"phase": "Pending", "conditions": [{"type": "PodScheduled", "status": "False",
                                                      "reason": "Unschedulable", "message": words}]}})
    p = cluster.reconcile(body, T1)
    assert (cond(p, "Preflight")["status"], cond(p, "Preflight")["reason"]) == ("Unknown", "Unschedulable")
    assert words in cond(p, "Preflight")["message"] and words in cond(p, "Progressing")["message"]
