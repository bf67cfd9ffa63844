"""plan(body, observed, now): the whole decision of one reconcile pass, as a user of the operator sees it.

The tests drive a fake namespace (`Cluster`) the way the operator does: plan, apply what the plan says, delete
what it says, write its status; between passes the "controllers" finish the build Job or roll the Deployment out.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.api.sources import MetricSource
from deepseek_operator.k8s import kinds as kinds_table
from deepseek_operator.plan import ChildRef, Observed, Plan, plan
from deepseek_operator.plan.pods import ready_by_revision
from deepseek_operator.plan.status import with_applied_hash
from deepseek_operator.render import catalog, naming

REPO = Path(__file__).resolve().parents[2]

T0, T1, T2, T3 = "2025-01-20T10:00:00Z", "2025-01-20T10:05:00Z", "2025-01-20T11:00:00Z", "2025-01-20T12:00:00Z"
UID = "0b6f3c1e-uid-of-the-resource"
GENERATION = 4
CACHE_PVC = "deepseek-model-cache"
OWNER_API = "serving.deepseek.ai/v1alpha1"

QWEN_7B = "r1-distill-qwen-7b-a100"  # r1-qwen-7b: 2 replicas, TP 1 on A100-80GB, BF16 from the checkpoint
QWEN_1_5B = "r1-distill-qwen-1.5b-l4"  # r1-qwen-1-5b: 1 replica on one L4, engine built
LLAMA_70B = "r1-distill-llama-70b-h100-fp8"  # r1-llama-70b: TP 4 on H100-80GB, engine built
R1_671B = "r1-671b-h200-fp8"  # r1-671b: deepseek_v3 on 8 H200, served from the checkpoint (no engine build)

# The resource's NetworkPolicy (its pods take only clients and scrapers), a revision's model repository and
# Deployment, then the Service `<name>` and the PDB (`<name>-stable` and `<name>-canary` come with a gatewayAPI
# route: test_plan_rollout.py).
SERVING_KINDS = ["NetworkPolicy", "ConfigMap", "Deployment", "Service", "PodDisruptionBudget"]


# ---------------------------------------------------------------------------------------------------- builders


def example(name: str, generation: int = GENERATION) -> dict[str, Any]:
    """An example CR as the API server hands it to the operator: the YAML plus uid and generation (the example's
    DeepSeekDeployment, where it holds other objects too)."""
    doc: dict[str, Any] = next(d for d in yaml.safe_load_all((REPO / "examples" / f"{name}.yaml").read_text())
                               if d and d.get("kind") == "DeepSeekDeployment")
    doc["metadata"].update(uid=UID, generation=generation)
    return doc


def quantized(name: str) -> dict[str, Any]:
    """An example at INT4 AWQ, which its BF16 checkpoint does not carry: served once a quantize Job made it, on
    GPUs whose PyTorch backend runs it (Ada: L40S; Hopper)."""
    body = edited(example(name), {"model.precision": "awq"})
    if body["spec"]["serving"]["gpu"]["type"].startswith("A100"):
        body["spec"]["serving"]["gpu"]["type"] = "L40S-48GB"
    return body


def edited(body: dict[str, Any], changes: dict[str, Any]) -> dict[str, Any]:
    """A copy of body with spec fields set by dotted path: {"serving.replicas": 3}."""
    out = copy.deepcopy(body)
    for path, value in changes.items():
        *parents, leaf = path.split(".")
        node = out["spec"]
        for part in parents:
            node = node.setdefault(part, {})
        node[leaf] = value
    return out


def cond(p: Plan, ctype: str) -> dict[str, Any]:
    found: list[dict[str, Any]] = [c for c in p.status["conditions"] if c["type"] == ctype]
    assert len(found) == 1, f"{ctype} in {p.status['conditions']}"
    return found[0]


def kinds(p: Plan) -> list[str]:
    return [o["kind"] for o in p.apply]


def child(p: Plan, kind: str) -> dict[str, Any]:
    [found] = [o for o in p.apply if o["kind"] == kind]
    return found


def pod_spec(deployment: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = deployment["spec"]["template"]["spec"]
    return spec


def triton_container(deployment: dict[str, Any]) -> dict[str, Any]:
    containers: list[dict[str, Any]] = [c for c in pod_spec(deployment)["containers"] if c["name"] == "triton"]
    assert len(containers) == 1
    return containers[0]


def job_done(condition: str, **extra: str) -> dict[str, Any]:
    return {"conditions": [{"type": condition, "status": "True", **extra}]}


@dataclass
class Cluster:
    """The namespace as the operator's watches see it: what the plans applied, plus what controllers did."""

    pvc_uids: dict[str, str] = field(default_factory=lambda: {"model-store": "uid-model-store"})
    jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    configmaps: set[str] = field(default_factory=set)
    deployments: dict[str, dict[str, Any]] = field(default_factory=dict)
    newest: str = ""  # the Deployment applied last
    hashes: dict[tuple[str, str], str] = field(default_factory=dict)
    # What the NCCL preflight of a multi-GPU revision finds, at once: True passes, False fails, None runs on.
    preflight_passes: bool | None = True
    preflight_jobs: dict[str, dict[str, Any]] = field(default_factory=dict)
    preflight_pods: list[dict[str, Any]] = field(default_factory=list)
    statefulsets: dict[str, dict[str, Any]] = field(default_factory=dict)
    leader_worker_sets: dict[str, dict[str, Any]] = field(default_factory=dict)
    ssh_secrets: set[str] = field(default_factory=set)
    lws_installed: bool = False
    keda_installed: bool = False
    compute_domains_installed: bool = False  # NVIDIA's DRA driver serves ComputeDomains (IMEX channels)
    scalers: dict[str, dict[str, Any]] = field(default_factory=dict)  # the ScaledObject or HPA, by kind
    pod_security: str | None = None  # the namespace's enforced Pod Security Standard
    # What the operator is configured with (--metric-sources).
    metric_sources: dict[str, MetricSource] = field(default_factory=lambda: {
        "prometheus": MetricSource(name="prometheus", provider="prometheus", address="http://prometheus:9090"),
        "traefik": MetricSource(name="traefik", provider="gateway", address="http://traefik:9100/metrics")})

    @property
    def deployment(self) -> dict[str, Any] | None:
        """The Deployment applied last (the only one until a second revision rolls out)."""
        return self.deployments.get(self.newest)

    def workloads(self) -> bool:
        return bool(self.deployments or self.statefulsets or self.leader_worker_sets)

    def pods(self) -> tuple[dict[str, Any], ...]:
        """The Deployments' pods as the pod watch sees them: as many as each's status counts, the Ready ones first,
        each with an address."""
        pods = []
        for name, deployment in sorted(self.deployments.items()):
            status = deployment.get("status") or {}
            labels = deployment["spec"]["template"]["metadata"]["labels"]
            for n in range(int(status.get("replicas", 0))):
                ready = n < int(status.get("readyReplicas", 0))
                pods.append({"metadata": {"name": f"{name}-{n}", "labels": dict(labels)}, "status": {
                    "phase": "Running", "podIP": f"10.0.{len(pods) // 250}.{len(pods) % 250 + 1}",
                    "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]}})
        return tuple(pods)

    def observed(self) -> Observed:
        return Observed(deployments=copy.deepcopy(self.deployments), pods=self.pods(),
                        model_repo_configmaps=tuple(sorted(self.configmaps)), pvc_uids=dict(self.pvc_uids),
                        quantize_jobs=copy.deepcopy(self.jobs), applied_hashes=dict(self.hashes),
                        preflight_jobs=copy.deepcopy(self.preflight_jobs), preflight_pods=tuple(self.preflight_pods),
                        statefulsets=copy.deepcopy(self.statefulsets),
                        leader_worker_sets=copy.deepcopy(self.leader_worker_sets),
                        lws_installed=self.lws_installed, metric_sources=self.metric_sources,
                        keda_installed=self.keda_installed, scalers=copy.deepcopy(self.scalers),
                        pod_security=self.pod_security, compute_domains_installed=self.compute_domains_installed)

    def reconcile(self, body: dict[str, Any], now: str) -> Plan:
        """One operator pass: plan, apply, delete, write the status into body."""
        p = plan(copy.deepcopy(body), self.observed(), now)
        # Only what the chart's RBAC grants (k8s/kinds.py): the API client refuses the rest, as the API server would.
        for secret in p.ssh_secrets:
            kinds_table.granted(secret["apiVersion"], secret["kind"], "create")
        for obj in p.apply:
            kinds_table.granted(obj["apiVersion"], obj["kind"], "patch")
        for ref in p.delete:
            kinds_table.granted(ref.api_version, ref.kind, "delete")
        self.ssh_secrets |= {s["metadata"]["name"] for s in p.ssh_secrets}
        for obj in p.apply:
            self._apply(obj)
        for ref in p.delete:
            if ref.kind == "ConfigMap":
                self.configmaps.discard(ref.name)
            elif ref.kind in ("Job", "Service"):
                self.preflight_jobs.pop(ref.name, None)
            elif ref.kind == "StatefulSet":
                self.statefulsets.pop(ref.name)
            elif ref.kind == "LeaderWorkerSet":
                self.leader_worker_sets.pop(ref.name)
            elif ref.kind == "Secret":
                self.ssh_secrets.discard(ref.name)
            elif ref.kind in ("ScaledObject", "HorizontalPodAutoscaler"):
                self.scalers.pop(ref.kind)
            else:
                assert ref.kind == "Deployment"
                self.deployments.pop(ref.name)
        body["status"] = copy.deepcopy(p.status)
        return p

    def _apply(self, obj: dict[str, Any]) -> None:
        kind, name = obj["kind"], obj["metadata"]["name"]
        self.hashes[(kind, name)] = obj["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH]
        if kind == "PersistentVolumeClaim":
            self.pvc_uids[name] = f"uid-{name}"
        elif kind == "Job" and obj["metadata"]["labels"][naming.LABEL_COMPONENT] == naming.COMPONENT_PREFLIGHT:
            if name not in self.preflight_jobs:
                meta = {**obj["metadata"], "uid": f"uid-{name}"}
                self.preflight_jobs[name] = {**copy.deepcopy(obj), "metadata": meta, "status": {}}
                if self.preflight_passes is not None:
                    self.finish_preflight(name, self.preflight_passes)
        elif kind == "Job":
            self.jobs[name] = {**copy.deepcopy(obj), "status": {}}
        elif kind == "ConfigMap":
            self.configmaps.add(name)
        elif kind in ("ScaledObject", "HorizontalPodAutoscaler"):
            old = self.scalers.get(kind)
            self.scalers[kind] = {**copy.deepcopy(obj), "status": copy.deepcopy(old["status"]) if old else {}}
        elif kind in ("StatefulSet", "LeaderWorkerSet"):
            workloads = self.statefulsets if kind == "StatefulSet" else self.leader_worker_sets
            old = workloads.get(name)
            workloads[name] = {**copy.deepcopy(obj), "status": copy.deepcopy(old["status"]) if old else {}}
        elif kind == "Deployment":
            old = self.deployments.get(name)
            generation = old["metadata"]["generation"] + 1 if old else 1
            self.deployments[name] = {**copy.deepcopy(obj), "metadata": {**obj["metadata"], "generation": generation},
                                      "status": copy.deepcopy(old["status"]) if old else {}}
            self.newest = name

    def finish_preflight(self, name: str, passed: bool, bus_bandwidth: float = 460.0) -> None:
        """The preflight Job ends; rank 0's pod holds its summary in the termination message."""
        self.preflight_jobs[name]["status"] = job_done("Complete" if passed else "Failed")
        bound = float(next(a for a in self.preflight_jobs[name]["spec"]["template"]["spec"]["containers"][0]["args"]
                           if a.startswith("--min-bus-bandwidth-gbps=")).split("=")[1])
        verdict = "PASSED" if passed else "FAILED"
        summary = {"passed": passed, "backend": "nccl", "worldSize": 8, "nodes": 1,
                   "message": f"{verdict}: peak bus bandwidth {bus_bandwidth} GB/s vs {bound} GB/s over p2p-nvlink",
                   "peakBusBandwidthGbps": bus_bandwidth, "peakAtBytes": 1 << 30, "minBusBandwidthGbps": bound,
                   "transport": "p2p-nvlink", "expectTransport": "nvlink"}
        self.preflight_pods.append({
            "metadata": {"name": f"{name}-0-x", "labels": {"batch.kubernetes.io/job-name": name,
                                                         "batch.kubernetes.io/job-completion-index": "0"}},
            "status": {"containerStatuses": [{"state": {"terminated": {"exitCode": 0 if passed else 1,
                                                                       "message": json.dumps(summary)}}}]}})

    def finish_job(self, condition: str = "Complete", **extra: str) -> None:
        for job in self.jobs.values():
            job["status"] = job_done(condition, **extra)

    def roll_out(self, ready: int | None = None) -> None:
        """The Deployment controller caught up with every applied spec: `ready` (default all) replicas Ready."""
        for workload in [*self.statefulsets.values(), *self.leader_worker_sets.values()]:
            want = workload["spec"]["replicas"]
            workload["status"] = {"replicas": want, "updatedReplicas": want,
                                  "readyReplicas": want if ready is None else min(ready, want)}
        for deployment in self.deployments.values():
            want = deployment["spec"]["replicas"]
            deployment["status"] = {
                "observedGeneration": deployment["metadata"]["generation"], "replicas": want,
                "updatedReplicas": want, "readyReplicas": want if ready is None else min(ready, want)}


def drive(body: dict[str, Any], *, job: str | None = "Complete", roll_out: bool = True,
          now: str = T0) -> Cluster:
    """Runs passes on a fresh namespace: cache PVC, build Job (finished as `job`), Deployment (rolled out)."""
    cluster = Cluster()
    for _ in range(3):  # the cache PVC, then the build Job, then the Job seen running
        cluster.reconcile(body, now)
    if job and cluster.jobs:
        cluster.finish_job(job)
        cluster.reconcile(body, now)
    if cluster.preflight_jobs and not cluster.workloads():  # the pass that sees the preflight passed
        cluster.reconcile(body, now)
    if roll_out and cluster.workloads():
        cluster.roll_out()
        cluster.reconcile(body, now)
    return cluster


def serving_pass(body: dict[str, Any]) -> Plan:
    """The first pass that applies the serving objects: once the engine is built, or at once without one."""
    cluster = Cluster()
    for _ in range(4):
        p = cluster.reconcile(body, T0)
        if "Deployment" in kinds(p):
            return p
        cluster.finish_job()
    raise AssertionError(f"never served: {body['status']}")


def lifecycle(body: dict[str, Any]) -> list[Plan]:
    """The five passes from nothing to Healthy: no cache PVC, PVC, Job running, Job complete, rolled out."""
    cluster = Cluster()
    plans = [cluster.reconcile(body, T0) for _ in range(3)]
    cluster.finish_job()
    p = cluster.reconcile(body, T0)
    if cluster.preflight_jobs and "Deployment" not in kinds(p):  # a multi-GPU revision's preflight first
        p = cluster.reconcile(body, T0)
    plans.append(p)
    cluster.roll_out()
    plans.append(cluster.reconcile(body, T0))
    return plans


# ---------------------------------------------------------------------------------------------------- lifecycle

LIFECYCLE = [
    # pass, kinds applied, phase, engine state, (CheckpointReady status, reason), (Ready status, reason), ready
    (0, ["PersistentVolumeClaim"], "Preparing", "Pending", ("False", "QuantizePending"),
     ("False", "QuantizePending"), "0/0"),
    (1, ["Job"], "Preparing", "Running", ("False", "Quantizing"), ("False", "Quantizing"), "0/0"),
    (2, [], "Preparing", "Running", ("False", "Quantizing"), ("False", "Quantizing"), "0/0"),
    (3, SERVING_KINDS, "Progressing", "Complete", ("True", "Quantized"), ("False", "ReplicasNotReady"), "0/2"),
    (4, [], "Healthy", "Complete", ("True", "Quantized"), ("True", "ReplicasReady"), "2/2"),
]


@pytest.mark.parametrize(("step", "applied", "phase", "engine", "checkpoint_ready", "ready", "ready_text"), LIFECYCLE,
                         ids=["no cache PVC", "cache PVC", "Job running", "Job complete", "rolled out"])
def test_lifecycle_of_a_built_engine(step: int, applied: list[str], phase: str, engine: str,
                                     checkpoint_ready: tuple[str, str], ready: tuple[str, str],
                                     ready_text: str) -> None:
    p = lifecycle(quantized(QWEN_7B))[step]
    assert kinds(p) == applied
    assert p.status["phase"] == phase
    assert p.status["quantization"]["state"] == engine
    assert (cond(p, "CheckpointReady")["status"], cond(p, "CheckpointReady")["reason"]) == checkpoint_ready
    assert (cond(p, "Ready")["status"], cond(p, "Ready")["reason"]) == ready
    assert p.status["ready"] == ready_text
    assert cond(p, "Degraded")["status"] == "False"
    assert cond(p, "Progressing")["status"] == ("False" if phase == "Healthy" else "True")
    assert p.delete == []
    assert all(e.type == "Normal" for e in p.events)


def test_missing_cache_pvc_is_created_shared_and_unowned() -> None:
    p = plan(quantized(QWEN_7B), Observed(pvc_uids={"model-store": "uid-model-store"}), T0)
    pvc = child(p, "PersistentVolumeClaim")
    assert pvc["metadata"]["name"] == CACHE_PVC
    assert pvc["metadata"]["namespace"] == "default"
    assert "ownerReferences" not in pvc["metadata"]  # engines outlive any one resource
    assert pvc["spec"] == {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "500Gi"}}}
    assert p.status["quantization"]["message"] == f"waiting for the model cache PVC {CACHE_PVC}"


@pytest.mark.parametrize(("name", "tp"), [("awq " + QWEN_7B, 1), (QWEN_1_5B, 1), (LLAMA_70B, 4)])
def test_quantize_job_is_owned_by_the_cache_pvc_and_gets_tp_gpus(name: str, tp: int) -> None:
    body = quantized(name.split()[1]) if name.startswith("awq ") else example(name)
    observed = Observed(pvc_uids={"model-store": "uid-model-store", CACHE_PVC: "uid-cache"})
    p = plan(body, observed, T0)
    key = p.status["quantization"]["key"]
    job = child(p, "Job")
    assert kinds(p) == ["Job"]
    assert job["metadata"]["name"] == f"quantize-{key}" == p.status["quantization"]["job"]
    assert job["metadata"]["ownerReferences"] == [{
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": CACHE_PVC, "uid": "uid-cache",
        "blockOwnerDeletion": False}]
    [container] = job["spec"]["template"]["spec"]["containers"]
    assert container["resources"]["limits"]["nvidia.com/gpu"] == str(tp)
    assert p.status["parallelism"]["tensor"] == tp
    assert p.status["phase"] == "Preparing"
    assert [(e.type, e.reason) for e in p.events if e.reason == "QuantizeStarted"] == [
        ("Normal", "QuantizeStarted")]
    assert job["metadata"]["name"] in next(e.message for e in p.events if e.reason == "QuantizeStarted")


@pytest.mark.parametrize(("calibration", "volume", "path"), [
    ({"configMap": {"name": "chats", "key": "r1.jsonl"}, "samples": 64},
     {"name": "calibration", "configMap": {"name": "chats", "items": [{"key": "r1.jsonl", "path": "samples.jsonl"}]}},
     "/calibration/samples.jsonl"),
    ({"pvc": {"claimName": "datasets", "path": "/cnn/lines.txt"}, "samples": 64},
     {"name": "calibration", "persistentVolumeClaim": {"claimName": "datasets", "readOnly": True}},
     "/calibration/cnn/lines.txt"),
])
def test_the_quantize_job_calibrates_on_data_from_the_cluster(calibration: dict[str, Any], volume: dict[str, Any],
                                                              path: str) -> None:
    body = edited(quantized(QWEN_7B), {"model.calibration": calibration})
    p = plan(body, Observed(pvc_uids={"model-store": "uid-model-store", CACHE_PVC: "uid-cache"}), T0)
    pod = child(p, "Job")["spec"]["template"]["spec"]
    assert volume in pod["volumes"]
    [container] = pod["containers"]
    assert {"name": "calibration", "mountPath": "/calibration", "readOnly": True} in container["volumeMounts"]
    assert container["command"][-3:] == [path, "64", "512"]  # file, samples, tokens per sample


JOB_STATES = [
    # Job status, phase, engine state, engine message contains, kinds applied
    (job_done("Complete"), "Progressing", "Complete", "quantized checkpoint in the cache", SERVING_KINDS),
    (job_done("Failed", reason="BackoffLimitExceeded"), "Degraded", "Failed", "BackoffLimitExceeded", []),
    ({"conditions": [{"type": "FailureTarget", "status": "True"}, {"type": "Failed", "status": "True"}]},
     "Degraded", "Failed", "quantize Job failed", []),
    ({"active": 2}, "Preparing", "Running", "2 pods active", []),
    ({"active": 1}, "Preparing", "Running", "1 pod active", []),
    ({"conditions": [{"type": "Complete", "status": "False"}]}, "Preparing", "Running", "quantize Job running", []),
]


@pytest.mark.parametrize(("job_status", "phase", "engine", "message", "applied"), JOB_STATES,
                         ids=["complete", "failed", "failure-target then failed", "running", "one pod", "not yet"])
def test_quantize_job_state_decides_the_phase(job_status: dict[str, Any], phase: str, engine: str, message: str,
                                            applied: list[str]) -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body, job=None, roll_out=False)
    [job] = cluster.jobs.values()
    job["status"] = job_status
    p = plan(body, cluster.observed(), T1)
    assert p.status["phase"] == phase
    assert p.status["quantization"]["state"] == engine
    assert message in p.status["quantization"]["message"]
    assert kinds(p) == applied


def test_failed_engine_build_degrades_without_serving_and_warns() -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body, job=None, roll_out=False)
    cluster.configmaps.add("r1-qwen-7b-repo-0123456789")  # from an earlier revision: must be left alone
    cluster.finish_job("Failed", reason="BackoffLimitExceeded", message="Job has reached the specified backoff limit")
    p = plan(body, cluster.observed(), T1)
    job_name = p.status["quantization"]["job"]
    assert p.status["phase"] == "Degraded"
    assert (cond(p, "Degraded")["status"], cond(p, "Degraded")["reason"]) == ("True", "QuantizeFailed")
    assert (cond(p, "CheckpointReady")["status"], cond(p, "CheckpointReady")["reason"]) == ("False", "QuantizeFailed")
    assert cond(p, "Ready")["status"] == "False"
    assert f"delete Job {job_name} to retry" in cond(p, "Degraded")["message"]
    assert "BackoffLimitExceeded" in cond(p, "CheckpointReady")["message"]
    assert p.apply == [] and p.delete == []
    warnings = [(e.type, e.reason, e.message.split(":")[0]) for e in p.events if e.type == "Warning"]
    assert warnings == [("Warning", "QuantizeFailed", "Degraded")]


def test_671b_needs_no_engine_build_and_serves_once_its_preflight_passed() -> None:
    cluster = Cluster(preflight_passes=None)
    body = example(R1_671B)
    first = cluster.reconcile(body, T0)
    assert first.status["quantization"] == {"key": first.status["quantization"]["key"], "state": "NotRequired",
                                            "job": "",
                                      "message": "served from the checkpoint by the PyTorch backend"}
    # Eight GPUs: the NCCL preflight comes first, and no serving pod exists until it passed.
    assert kinds(first) == ["Service", "Job", "NetworkPolicy"]
    assert (cond(first, "Preflight")["status"], cond(first, "Preflight")["reason"]) == ("Unknown", "PreflightRunning")
    assert cond(first, "Progressing")["message"] == f"revision {first.status['revision']} waits for its NCCL preflight"
    [job_name] = cluster.preflight_jobs
    cluster.finish_preflight(job_name, passed=True)
    p = cluster.reconcile(body, T0)
    assert (cond(p, "Preflight")["status"], cond(p, "Preflight")["reason"]) == ("True", "PreflightPassed")
    assert p.status["preflight"]["busBandwidthGBps"] == 460.0
    assert kinds(p) == SERVING_KINDS[1:]  # its NetworkPolicy came with the first pass, before any pod
    assert p.status["phase"] == "Progressing"
    assert cond(p, "CheckpointReady")["status"] == "True"
    assert p.status["parallelism"] == {"tensor": 8, "pipeline": 1, "expert": 8, "nodesPerReplica": 1,
                                       "gpusPerReplica": 8}
    assert p.status["runtime"]["recipe"] == "deepseek-r1/hopper-fp8-throughput"
    assert "examples/configs/curated/deepseek-r1-throughput.yaml" in cond(p, "FitsHardware")["message"]
    assert triton_container(child(p, "Deployment"))["resources"]["limits"]["nvidia.com/gpu"] == "8"
    # The LLM API loads the published FP8 checkpoint itself, not a quantized one from the cache.
    model_yaml = yaml.safe_load(child(p, "ConfigMap")["data"]["tensorrt_llm__1__model.yaml"])
    assert model_yaml["model"] == "/checkpoint/models/DeepSeek-R1"
    assert model_yaml["tensor_parallel_size"] == 8


def test_quantized_checkpoint_is_what_triton_loads() -> None:
    p = lifecycle(quantized(QWEN_7B))[3]
    model_yaml = yaml.safe_load(child(p, "ConfigMap")["data"]["tensorrt_llm__1__model.yaml"])
    assert model_yaml["model"] == f"/model-cache/{p.status['quantization']['key']}"
    job = lifecycle(quantized(QWEN_7B))[1]
    command = child(job, "Job")["spec"]["template"]["spec"]["containers"][0]["command"]
    # ModelOpt reads the source checkpoint and writes the cache folder the serving pods load.
    # No calibration data named: an empty file argument (the program's built-in prompts).
    assert command[3:] == ["/checkpoint/models/DeepSeek-R1-Distill-Qwen-7B", model_yaml["model"], "INT4_AWQ_CFG",
                           "", "0", "0"]


def test_a_precision_the_checkpoint_carries_is_served_from_it_without_a_job() -> None:
    p = plan(example(QWEN_7B), Observed(pvc_uids={"model-store": "uid-model-store"}), T0)  # BF16, as published
    assert kinds(p) == SERVING_KINDS and p.status["quantization"]["state"] == "NotRequired"
    model_yaml = yaml.safe_load(child(p, "ConfigMap")["data"]["tensorrt_llm__1__model.yaml"])
    assert model_yaml["model"] == "/checkpoint/models/DeepSeek-R1-Distill-Qwen-7B"
    assert "model-cache" not in {v["name"] for v in pod_spec(child(p, "Deployment"))["volumes"]}


# ---------------------------------------------------------------------------------------------------- rollout

ROLLOUTS = [
    # Deployment status as observed (None: keep the generation / revision label as applied), phase, ready, Ready
    ({"replicas": 2, "updatedReplicas": 2, "readyReplicas": 2}, "Healthy", "2/2", "ReplicasReady"),
    ({"replicas": 2, "updatedReplicas": 2, "readyReplicas": 1}, "Progressing", "1/2", "ReplicasNotReady"),
    ({"replicas": 3, "updatedReplicas": 2, "readyReplicas": 3}, "Healthy", "2/2", "ReplicasReady"),
    ({"replicas": 2, "updatedReplicas": 1, "readyReplicas": 2}, "Progressing", "1/2", "ReplicasNotReady"),
    ({}, "Progressing", "0/2", "ReplicasNotReady"),
]


@pytest.mark.parametrize(("status", "phase", "ready", "reason"), ROLLOUTS,
                         ids=["all ready", "one not ready", "a surplus pod terminating", "half updated", "no status"])
def test_rollout_progress(status: dict[str, Any], phase: str, ready: str, reason: str) -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body, roll_out=False)
    assert cluster.deployment is not None
    cluster.deployment["status"] = {"observedGeneration": cluster.deployment["metadata"]["generation"], **status}
    p = plan(body, cluster.observed(), T1)
    assert (p.status["phase"], p.status["ready"], cond(p, "Ready")["reason"]) == (phase, ready, reason)
    assert cond(p, "Progressing")["status"] == ("True" if phase == "Progressing" else "False")


def test_deployment_caught_mid_scale_still_counts_its_ready_pods() -> None:
    # A pass that runs right after our own scale-up sees the Deployment before its controller does: the pods it
    # counted Ready are still there. Reading that as zero made promotions shrink the canary again.
    body = quantized(QWEN_7B)
    cluster = drive(body)
    assert cluster.deployment is not None
    cluster.deployment["metadata"]["generation"] += 1
    p = plan(body, cluster.observed(), T1)
    assert (p.status["phase"], p.status["ready"]) == ("Healthy", "2/2")
    cluster.deployment["spec"]["replicas"] = 1  # caught mid scale-down: never more Ready than desired
    assert ready_by_revision(cluster.observed().deployments)[0] == {body["status"]["revision"]: 1}


def test_deployment_of_another_revision_counts_no_ready_replicas() -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body)
    assert cluster.deployment is not None
    cluster.deployment["metadata"]["labels"][naming.LABEL_REVISION] = "0123456789"
    p = plan(body, cluster.observed(), T1)
    assert (p.status["phase"], p.status["ready"], p.status["readyReplicas"]) == ("Progressing", "0/2", 0)


def test_scaled_to_zero_is_healthy() -> None:
    body = edited(quantized(QWEN_7B), {"serving.replicas": 0})
    cluster = drive(body)
    p = plan(body, cluster.observed(), T1)
    assert (p.status["phase"], p.status["ready"]) == ("Healthy", "0/0")
    assert (cond(p, "Ready")["status"], cond(p, "Ready")["reason"]) == ("True", "ScaledToZero")


@pytest.mark.parametrize("history_limit", [1, 5])
def test_new_revision_rolls_out_beside_the_stable_and_is_pruned_past_the_history_limit(history_limit: int) -> None:
    body = edited(quantized(QWEN_7B), {"rollout.revisionHistoryLimit": history_limit})
    cluster = drive(body)
    old = body["status"]["revision"]
    old_cm, old_deployment = naming.model_repo_configmap_name("r1-qwen-7b", old), f"r1-qwen-7b-{old}"
    assert cluster.configmaps == {old_cm} and set(cluster.deployments) == {old_deployment}

    body = edited(body, {"serving.podAnnotations": {"prometheus.io/scrape": "true"}})
    rolling = cluster.reconcile(body, T1)
    new = rolling.status["revision"]
    assert new != old
    # The new revision comes up beside the stable one, whose objects do not change.
    assert [(o["kind"], o["metadata"]["name"]) for o in rolling.apply if o["kind"] != "Service"] == [
        ("ConfigMap", naming.model_repo_configmap_name("r1-qwen-7b", new)), ("Deployment", f"r1-qwen-7b-{new}")]
    assert (rolling.status["phase"], rolling.status["stableRevision"], rolling.status["canaryRevision"]) == (
        "Progressing", old, new)
    assert cluster.deployments[old_deployment]["spec"]["replicas"] == 2
    assert rolling.delete == []
    assert cluster.reconcile(body, T1).delete == []

    deleted = []
    for _ in range(4):  # promotion replaces the stable replica by replica
        cluster.roll_out()
        done = cluster.reconcile(body, T2)
        deleted += done.delete
    assert (done.status["phase"], done.status["stableRevision"], done.status["canaryRevision"]) == ("Healthy", new, "")
    assert [h["revision"] for h in done.status["history"]] == [new, old][:history_limit]
    if history_limit == 1:  # past the limit: the old revision's objects go
        assert set(deleted) == {ChildRef("apps/v1", "Deployment", old_deployment),
                                ChildRef("v1", "ConfigMap", old_cm)}
    else:  # kept for rollback-to, scaled to zero
        assert deleted == []
        assert cluster.deployments[old_deployment]["spec"]["replicas"] == 0
    assert cluster.reconcile(body, T2).delete == []


def test_new_engine_is_built_while_the_old_revision_keeps_serving() -> None:
    body = edited(quantized(QWEN_7B), {"serving.gpu.type": "H100-80GB"})
    cluster = drive(body)
    old_cm = next(iter(cluster.configmaps))
    old_key = body["status"]["quantization"]["key"]
    p = cluster.reconcile(edited(body, {"model.precision": "fp8"}), T1)
    assert kinds(p) == ["Job"]
    assert child(p, "Job")["metadata"]["name"] == f"quantize-{p.status['quantization']['key']}" != f"quantize-{old_key}"
    assert p.status["phase"] == "Preparing"
    assert p.delete == []
    assert old_cm in cluster.configmaps
    assert p.status["ready"] == "2/2"  # what still serves


# ---------------------------------------------------------------------------------------------------- identity

IDENTITY = [
    # example, spec change, revision changes, quantized-checkpoint key changes
    (quantized(QWEN_7B), {"serving.replicas": 5}, False, False),
    (edited(quantized(QWEN_7B), {"serving.gpu.type": "H100-80GB"}), {"model.precision": "fp8"}, True, True),
    (LLAMA_70B, {"model.precision": "awq"}, True, True),
    (quantized(QWEN_7B), {"serving.podAnnotations": {"prometheus.io/scrape": "true"}}, True, False),
    (quantized(QWEN_7B), {"serving.podLabels": {"team": "ml"}}, True, False),
    (quantized(QWEN_7B), {"serving.startupTimeoutSeconds": 3600}, True, False),
    (quantized(QWEN_7B), {"runtime.maxNumTokens": 1024}, True, False),
    # The quantized checkpoint does not depend on runtime limits (there is no engine built for them).
    (quantized(QWEN_7B), {"runtime.maxBatchSize": 16}, True, False),
    (quantized(QWEN_7B), {"model.revision": "2025-05-28"}, True, True),
    (quantized(QWEN_7B), {"runtime.image": "nvcr.io/nvidia/tritonserver:26.08-trtllm-python-py3"}, True, True),
    (quantized(QWEN_7B), {"model.calibration": {"configMap": {"name": "chats", "key": "r1.jsonl"}}}, True, True),
]


@pytest.mark.parametrize(("base", "change", "new_revision", "new_key"), IDENTITY,
                         ids=["replicas", "bf16->fp8 on H100", "fp8->awq 70b", "podAnnotations", "podLabels",
                              "startupTimeout", "queue delay", "maxBatchSize", "model revision", "image",
                              "calibration data"])
def test_what_changes_the_revision_and_the_checkpoint_key(base: str | dict[str, Any], change: dict[str, Any],
                                                      new_revision: bool, new_key: bool) -> None:
    before_body = example(base) if isinstance(base, str) else base
    before = plan(before_body, Observed(), T0).status
    after = plan(edited(before_body, change), Observed(), T0).status
    assert before["phase"] == after["phase"] == "Preparing"  # both fit: the change is the only difference
    assert (after["revision"] != before["revision"]) is new_revision
    assert (after["quantization"]["key"] != before["quantization"]["key"]) is new_key


def test_replicas_change_re_applies_only_the_deployment() -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body)
    revision = body["status"]["revision"]
    p = cluster.reconcile(edited(body, {"serving.replicas": 3}), T1)
    assert kinds(p) == ["Deployment"]
    assert child(p, "Deployment")["spec"]["replicas"] == 3
    assert p.status["revision"] == revision
    assert p.delete == []
    # this pass still saw the Deployment at 2 replicas, all ready
    assert (p.status["phase"], p.status["ready"], p.status["replicas"]) == ("Progressing", "2/3", 3)
    cluster.roll_out()
    assert cluster.reconcile(edited(body, {"serving.replicas": 3}), T2).status["ready"] == "3/3"


# ---------------------------------------------------------------------------------------------------- resync

AWQ_ON_ADA = {"model.precision": "awq", "serving.gpu.type": "L40S-48GB"}  # INT4 AWQ runs on Ada and Hopper
RESYNC = [
    # example, spec change, how the build Job ends (None: still running), Deployment rolled out, phase
    pytest.param(QWEN_7B, AWQ_ON_ADA, None, False, "Preparing", id="quantizing"),
    pytest.param(QWEN_7B, AWQ_ON_ADA, "Failed", False, "Degraded", id="quantize failed"),
    pytest.param(QWEN_7B, {}, "Complete", False, "Progressing", id="rolling out"),
    pytest.param(QWEN_7B, {}, "Complete", True, "Healthy", id="healthy"),
    pytest.param(QWEN_7B, {"serving.replicas": 0}, "Complete", True, "Healthy", id="scaled to zero"),
    pytest.param(R1_671B, {}, None, True, "Healthy", id="671b, no engine"),
    pytest.param(QWEN_7B, {"model.name": "deepseek-r2"}, None, False, "Degraded", id="invalid spec"),
    pytest.param(R1_671B, {"serving.gpu.type": "H100-80GB", "runtime.parallelism": {"tensor": 8, "pipeline": 1}}, None,
                 False, "Degraded", id="does not fit"),
    pytest.param(R1_671B, {"serving.gpu.type": "H100-80GB"}, None, True, "Healthy", id="needs two nodes"),
]


@pytest.mark.parametrize(("name", "change", "job", "rolled_out", "phase"), RESYNC)
def test_resync_of_an_unchanged_world_changes_nothing(name: str, change: dict[str, Any], job: str | None,
                                                      rolled_out: bool, phase: str) -> None:
    body = edited(example(name), change)
    cluster = drive(body, job=job, roll_out=rolled_out)
    last = cluster.reconcile(body, T1)  # its status and applied objects are fed back below
    assert last.status["phase"] == phase
    for later in (T1, T2):
        again = plan(copy.deepcopy(body), cluster.observed(), later)
        assert again.apply == []
        assert again.delete == []
        assert again.events == []
        assert again.status == last.status  # so the operator writes no status either


def test_applied_hash_is_stable_and_follows_the_desired_state() -> None:
    deployment = child(lifecycle(quantized(QWEN_7B))[3], "Deployment")
    annotation = deployment["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH]
    assert with_applied_hash(deployment) == deployment  # hashing an already hashed object changes nothing
    scaled = copy.deepcopy(deployment)
    scaled["spec"]["replicas"] = 7
    assert with_applied_hash(scaled)["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH] != annotation


def test_last_transition_time_moves_only_when_a_condition_status_changes() -> None:
    body = quantized(QWEN_7B)
    cluster = Cluster()
    for now in (T0, T0, T1):  # PVC, Job, Job running: nothing changes status after the first pass
        p = cluster.reconcile(body, now)
    assert {c["type"]: c["lastTransitionTime"] for c in p.status["conditions"]} == {
        "FitsHardware": T0, "SpecValid": T0, "WeightsReady": T0, "CheckpointReady": T0, "Ready": T0,
        "Progressing": T0, "Degraded": T0}

    cluster.finish_job()
    p = cluster.reconcile(body, T2)
    assert {c["type"]: c["lastTransitionTime"] for c in p.status["conditions"]} == {
        "FitsHardware": T0, "SpecValid": T0, "WeightsReady": T0, "CheckpointReady": T2, "Ready": T0,
        "Progressing": T0, "Degraded": T0}
    assert cond(p, "Ready")["reason"] == "ReplicasNotReady"  # reason changed, status did not: time kept

    cluster.roll_out()
    p = cluster.reconcile(body, T3)
    assert {c["type"]: c["lastTransitionTime"] for c in p.status["conditions"]} == {
        "FitsHardware": T0, "SpecValid": T0, "WeightsReady": T0, "CheckpointReady": T2, "Ready": T3,
        "Progressing": T3, "Degraded": T0}


def test_events_say_each_change_once() -> None:
    body = quantized(QWEN_7B)
    cluster = Cluster()
    first = cluster.reconcile(body, T0)
    # The phase with the condition that explains it (a first fit is in the FitsHardware condition, not news).
    assert [(e.type, e.reason, e.message.split(":")[0]) for e in first.events] == [
        ("Normal", "QuantizePending", "Preparing"),
    ]
    fitting_again = copy.deepcopy(body)
    fitting_again["status"]["conditions"] = [
        {**c, "status": "False", "reason": "InsufficientGPUMemory"} if c["type"] == "FitsHardware" else c
        for c in body["status"]["conditions"]]
    assert [(e.type, e.reason) for e in plan(fitting_again, cluster.observed(), T0).events
            if e.reason == "Fits"] == [("Normal", "Fits")]
    cluster.reconcile(body, T0)
    cluster.reconcile(body, T0)
    cluster.finish_job()
    cluster.reconcile(body, T1)
    cluster.roll_out()
    healthy = cluster.reconcile(body, T2)
    assert [(e.type, e.reason, e.message.split(":")[0]) for e in healthy.events] == [
        ("Normal", "ReplicasReady", "Healthy")]


def test_a_new_resource_says_healthy_once_and_not_its_first_progress() -> None:
    # 500 resources applied at once are 500 events fewer; Progressing is in status and `kubectl get` meanwhile.
    body = example(QWEN_7B)
    cluster = Cluster()
    first = cluster.reconcile(body, T0)
    assert first.status["phase"] == "Progressing" and first.events == []
    cluster.roll_out()
    healthy = cluster.reconcile(body, T1)
    assert [(e.type, e.message.split(":")[0]) for e in healthy.events] == [("Normal", "Healthy")]


@pytest.mark.parametrize("name", [QWEN_7B, R1_671B])
def test_conditions_carry_the_generation_they_were_computed_for(name: str) -> None:
    body = example(name, generation=7)
    cluster = drive(body)
    body["metadata"]["generation"] = 8  # a spec edit that changes nothing the plan renders (same values)
    p = cluster.reconcile(body, T1)
    assert p.status["observedGeneration"] == 8
    assert [c["observedGeneration"] for c in p.status["conditions"]] == [8] * (8 if name == R1_671B else 7)
    assert {c["lastTransitionTime"] for c in p.status["conditions"]} == {T0}  # no status changed


# ---------------------------------------------------------------------------------------------------- bad specs

INVALID = [
    # spec change, field path the message names
    pytest.param({"model.name": "deepseek-r2"}, "spec.model.name", id="unknown model"),
    pytest.param({"serving.gpu.type": "B200"}, "spec.serving.gpu.type", id="unknown GPU"),
    pytest.param({"runtime.parallelism.tensor": 3}, "spec.runtime.parallelism.tensor", id="tp not a power of two"),
    pytest.param({"serving.replicas": -1}, "spec.serving.replicas", id="negative replicas"),
    pytest.param({"engine": {"maxBatchSize": 8}}, "spec.engine", id="the removed engine section"),
    pytest.param({"serving.gpuCount": 2}, "spec.serving.gpuCount", id="unknown field"),
    pytest.param({"model.source.hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": "a" * 40}}, "spec.model.source",
                 id="two sources"),
    pytest.param({"serving.podLabels": {"app.kubernetes.io/name": "x"}}, "spec.serving", id="reserved pod label"),
]


@pytest.mark.parametrize(("change", "path"), INVALID)
def test_invalid_spec_is_reported_and_changes_nothing(change: dict[str, Any], path: str) -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body)
    cluster.configmaps.add("r1-qwen-7b-repo-0123456789")
    serving = (body["status"]["revision"], body["status"]["ready"])
    p = plan(edited(body, change), cluster.observed(), T1)
    assert p.status["phase"] == "Degraded"
    for ctype, status in (("Ready", "False"), ("Degraded", "True")):
        assert (cond(p, ctype)["status"], cond(p, ctype)["reason"]) == (status, "InvalidSpec")
        assert cond(p, ctype)["message"].startswith(f"{path}: ")
    assert p.apply == [] and p.delete == []
    assert [(e.type, e.reason) for e in p.events if e.type == "Warning"] == [("Warning", "InvalidSpec")]
    assert (p.status["revision"], p.status["ready"]) == serving  # what still serves


def test_invalid_spec_on_a_fresh_resource() -> None:
    p = plan(edited(quantized(QWEN_7B), {"model.name": "deepseek-r2"}), Observed(), T0)
    assert p.status["phase"] == "Degraded"
    assert [c["type"] for c in p.status["conditions"]] == ["SpecValid", "Ready", "Degraded"]
    assert cond(p, "SpecValid")["status"] == "False" and cond(p, "SpecValid")["reason"] == "InvalidSpec"
    assert "deepseek-r1-distill-qwen-7b" in cond(p, "Degraded")["message"]  # lists what is allowed
    assert p.apply == [] and p.delete == []
    assert p.status["observedGeneration"] == GENERATION


NOT_FITTING = [
    # base example, spec change, FitsHardware reason, the message mentions
    (R1_671B, {"serving.gpu.type": "H100-80GB", "runtime.parallelism": {"tensor": 8, "pipeline": 1}},
     "InsufficientGPUMemory", "B200-180GB (TP 8)"),
    (QWEN_7B, {"model.precision": "fp8"}, "PrecisionUnsupported", "FP8 support"),
    (QWEN_7B, {"runtime.parallelism.tensor": 8}, "InvalidParallelism", "28 attention heads"),
    (LLAMA_70B, {"runtime.parallelism.tensor": 16, "serving.gpu.perNode": 6}, "ExceedsNode",
     "exceeds the 6 GPUs of one node without filling whole nodes"),
]


@pytest.mark.parametrize(("name", "change", "reason", "mentions"), NOT_FITTING,
                         ids=["671b fp8 on H100 tp8 pp1", "fp8 on A100", "tp 8 for 28 heads", "tp 16 on 6 GPUs"])
def test_spec_that_does_not_fit_is_reported_and_running_children_are_kept(
        name: str, change: dict[str, Any], reason: str, mentions: str) -> None:
    body = example(name)
    cluster = drive(body)
    serving = (body["status"]["revision"], body["status"]["ready"])
    assert body["status"]["phase"] == "Healthy"
    p = plan(edited(body, change), cluster.observed(), T1)
    assert p.status["phase"] == "Degraded"
    assert (cond(p, "FitsHardware")["status"], cond(p, "FitsHardware")["reason"]) == ("False", reason)
    assert mentions in cond(p, "FitsHardware")["message"]
    assert (cond(p, "Degraded")["status"], cond(p, "Degraded")["reason"]) == ("True", reason)
    assert cond(p, "Ready")["status"] == "False"
    assert p.apply == [] and p.delete == []
    assert ("Warning", reason) in [(e.type, e.reason) for e in p.events]
    assert (p.status["revision"], p.status["ready"]) == serving


# ---------------------------------------------------------------------------------------------------- children


@pytest.mark.parametrize("name", [QWEN_7B, QWEN_1_5B, LLAMA_70B, R1_671B])
def test_every_serving_child_is_owned_and_labelled(name: str) -> None:
    body = example(name)
    p = serving_pass(body)
    cr_name = body["metadata"]["name"]
    # (Where a preflight ran first, the NetworkPolicy came with its pass, before any pod.)
    assert [k for k in kinds(p) if k != "NetworkPolicy"] == SERVING_KINDS[1:]
    for obj in p.apply:
        meta = obj["metadata"]
        assert meta["namespace"] == "default"
        assert meta["ownerReferences"] == [{"apiVersion": OWNER_API, "kind": "DeepSeekDeployment", "name": cr_name,
                                            "uid": UID, "controller": True, "blockOwnerDeletion": True}]
        assert meta["labels"]["app.kubernetes.io/managed-by"] == "deepseek-operator"
        assert meta["labels"]["serving.deepseek.ai/deployment"] == cr_name
        assert meta["annotations"][naming.ANNOTATION_APPLIED_HASH]


def test_serving_objects_select_the_pods_of_the_deployment() -> None:
    gateway = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway"}]}}
    p = lifecycle(edited(quantized(QWEN_7B), {"rollout.trafficRouting": gateway}))[3]
    revision = p.status["revision"]
    pod_labels = child(p, "Deployment")["spec"]["template"]["metadata"]["labels"]
    services = {o["metadata"]["name"]: o for o in p.apply if o["kind"] == "Service"}
    every_revision = {"serving.deepseek.ai/deployment": "r1-qwen-7b", "app.kubernetes.io/component": "server"}
    one_revision = {**every_revision, "serving.deepseek.ai/revision": revision}
    for selector, expected in (
            (child(p, "Deployment")["spec"]["selector"]["matchLabels"], one_revision),
            (services["r1-qwen-7b"]["spec"]["selector"], every_revision),
            (services["r1-qwen-7b-stable"]["spec"]["selector"], one_revision),
            (services["r1-qwen-7b-canary"]["spec"]["selector"], one_revision),  # no canary: the stable's pods
            (child(p, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"], every_revision)):
        assert selector == expected
        assert selector.items() <= pod_labels.items()
    assert all({port["port"] for port in svc["spec"]["ports"]} == {8000, 8001, 8002}
               for svc in services.values())
    assert child(p, "ConfigMap")["immutable"] is True


EXTRAS = {
    "serving.podAnnotations": {"prometheus.io/scrape": "true"},
    "serving.podLabels": {"team": "ml"},
    "serving.nodeSelector": {"pool": "gpu-a"},
    "serving.tolerations": [{"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}],
    "serving.resources": {"limits": {"memory": "256Gi"}},
}


def test_the_serving_deployment() -> None:
    body = edited(example(LLAMA_70B), EXTRAS)
    p = lifecycle(body)[3]
    deployment = child(p, "Deployment")
    template = deployment["spec"]["template"]
    pod, container = pod_spec(deployment), triton_container(deployment)
    gpus = p.status["parallelism"]["gpusPerReplica"]
    assert gpus == 4
    assert deployment["spec"]["replicas"] == 1
    # One node's GPUs, over NVLink: no RDMA device, no IPC_LOCK.
    assert container["resources"]["limits"] == {"memory": "256Gi", "nvidia.com/gpu": "4"}
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    # The server is the container's main process, no launcher around it: a crash of tritonserver is a crash of
    # the container, and the kubelet's SIGTERM reaches it. It drains within the grace period, after the preStop.
    assert container["command"][:2] == ["tritonserver", "--model-repository=/srv/model-repository"]
    assert "--metrics-config=histogram_latencies=true" in container["command"]
    exit_timeout = int(next(a for a in container["command"] if a.startswith("--exit-timeout-secs="))
                       .removeprefix("--exit-timeout-secs="))
    pre_stop = container["lifecycle"]["preStop"]["sleep"]["seconds"]
    assert pre_stop + exit_timeout < pod["terminationGracePeriodSeconds"]
    # The repository is the image's whole llmapi model folder (model.py imports helpers.py beside it), then the
    # rendered files over it.
    layout = pod["initContainers"][0]["command"][-1]
    assert layout.index("cp -R /app/all_models/llmapi/tensorrt_llm/1/. ") < layout.index("model-repository-src/.")
    model_yaml = yaml.safe_load(child(p, "ConfigMap")["data"]["tensorrt_llm__1__model.yaml"])
    assert model_yaml["tensor_parallel_size"] == gpus
    assert pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"] == [
        {"matchExpressions": [
            {"key": "nvidia.com/gpu.product", "operator": "In",
             "values": list(catalog.GPUS["H100-80GB"].product_labels)},
            {"key": "pool", "operator": "In", "values": ["gpu-a"]}]}]
    assert catalog.GPUS["H100-80GB"].product_labels == ("NVIDIA-H100-80GB-HBM3",)
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"},
        {"key": "dedicated", "operator": "Equal", "value": "llm", "effect": "NoSchedule"}]
    volumes = {v["name"]: v for v in pod["volumes"]}
    shm = next(m for m in container["volumeMounts"] if m["mountPath"] == "/dev/shm")
    assert volumes[shm["name"]]["emptyDir"] == {"medium": "Memory", "sizeLimit": "32Gi"}
    assert volumes["model-repository-src"]["configMap"]["name"] == child(p, "ConfigMap")["metadata"]["name"]
    assert volumes["model-cache"]["persistentVolumeClaim"] == {"claimName": CACHE_PVC, "readOnly": True}
    assert volumes["checkpoint"]["persistentVolumeClaim"] == {"claimName": "model-store", "readOnly": True}
    assert container["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "triton-http"}
    assert container["startupProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": "triton-http"}
    assert {port["containerPort"] for port in container["ports"]} == {8080, 8001, 8002}
    # The pod's front door takes the `http` port (every HTTP API), forwarding Triton's to 8080 on localhost.
    frontend = next(c for c in pod["containers"] if c["name"] == "frontend")
    assert {port["name"]: port["containerPort"] for port in frontend["ports"]} == {"http": 8000, "fe-metrics": 8003}
    assert frontend["args"][frontend["args"].index("--triton-url") + 1] == "http://127.0.0.1:8080"
    assert frontend["args"][frontend["args"].index("--revision") + 1] == p.status["revision"]
    assert template["metadata"]["annotations"]["prometheus.io/scrape"] == "true"
    assert template["metadata"]["labels"]["team"] == "ml"
    assert template["metadata"]["labels"][naming.LABEL_REVISION] == p.status["revision"]
    assert deployment["metadata"]["labels"][naming.LABEL_REVISION] == p.status["revision"]
    assert deployment["spec"]["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}


@pytest.mark.parametrize("timeout", [
    60, 95, 600, 1800, 1805, 3600,
])
def test_startup_probe_covers_the_startup_timeout(timeout: int) -> None:
    p = lifecycle(edited(quantized(QWEN_7B), {"serving.startupTimeoutSeconds": timeout}))[3]
    probe = triton_container(child(p, "Deployment"))["startupProbe"]
    assert probe["periodSeconds"] * probe["failureThreshold"] >= timeout
    assert probe["periodSeconds"] * (probe["failureThreshold"] - 1) < timeout  # and not much longer


# ---------------------------------------------------------------------------------------------------- past bugs


@pytest.mark.parametrize(("name", "claims"), [
    (QWEN_7B, {"model-store"}),  # served from the checkpoint: the cache PVC is never created nor mounted
    (LLAMA_70B, {"model-store", CACHE_PVC}),  # FP8 of a BF16 checkpoint: quantized into the cache
    (R1_671B, {"model-store"}),
])
def test_deployment_mounts_only_pvcs_that_exist_or_are_created(name: str, claims: set[str]) -> None:
    cluster = drive(example(name), roll_out=False)
    assert cluster.deployment is not None
    mounted = {v["persistentVolumeClaim"]["claimName"] for v in pod_spec(cluster.deployment)["volumes"]
               if "persistentVolumeClaim" in v}
    assert mounted == claims
    assert mounted <= set(cluster.pvc_uids)  # else the pods stay Pending


@pytest.mark.parametrize("figures", [
    pytest.param({"hiddenSize": 4100, "attentionHeads": 32, "kvHeads": 8}, id="hidden size not a multiple of heads"),
    pytest.param({"hiddenSize": 4096, "attentionHeads": 32, "kvHeads": 5}, id="heads not grouped over kv heads"),
])
def test_custom_model_with_impossible_figures_is_reported_not_raised(figures: dict[str, int]) -> None:
    body = edited(quantized(QWEN_7B), {"model.name": "custom",
                                     "model.custom": {"paramsBillion": 7, "layers": 32, **figures}})
    p = plan(body, Observed(), T0)
    assert p.status["phase"] == "Degraded"
    assert cond(p, "Degraded")["reason"] == "InvalidSpec"
    assert cond(p, "Degraded")["message"].startswith("spec.model.custom")
    assert p.apply == []


def test_hand_scaled_deployment_is_put_back() -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body)
    assert cluster.deployment is not None
    cluster.deployment["spec"]["replicas"] = 5  # kubectl scale: the applied-hash annotation does not change
    p = cluster.reconcile(body, T0)
    assert [o["kind"] for o in p.apply] == ["Deployment"]
    assert p.apply[0]["spec"]["replicas"] == 2


def test_pods_the_scheduler_cannot_place_are_named_in_the_status() -> None:
    body = quantized(QWEN_7B)
    cluster = drive(body, roll_out=False)
    assert cluster.deployment is not None
    revision = body["status"]["revision"]
    stuck = {"metadata": {"name": "p1", "labels": {naming.LABEL_REVISION: revision}},
             "status": {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                        "message": "0/7 nodes are available: 7 Insufficient nvidia.com/gpu."}]}}
    other_revision = {**stuck, "metadata": {"name": "p0", "labels": {naming.LABEL_REVISION: "old"}}}
    observed = cluster.observed()
    p = plan(body, Observed(**{**observed.__dict__, "pods": (other_revision, stuck)}), T1)
    ready = cond(p, "Ready")
    assert (ready["status"], ready["reason"]) == ("False", "Unschedulable")
    assert ready["message"].endswith("1 pod(s) cannot be scheduled: 0/7 nodes are available: 7 Insufficient "
                                     "nvidia.com/gpu.")
    assert p.status["phase"] == "Progressing"
    assert [(e.type, e.reason) for e in p.events] == [("Normal", "Unschedulable")]
