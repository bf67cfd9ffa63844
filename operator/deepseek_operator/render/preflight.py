"""The NCCL preflight of a multi-GPU revision: its Job, and what its result means. Pure.

Before a revision of more than one GPU takes traffic, an Indexed Job with one pod per node of a replica runs
`torchrun ... -m deepseek_operator.preflight` on nodes like those the replica will get (same GPU type, same
network profile and NCCL environment, one node per pod). Rank 0 writes a summary to its termination message,
which the kubelet puts in the pod's status: the operator reads it from there and needs no log access.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.common import Fabric
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import imex, naming, nccl, security
from deepseek_operator.render.catalog import GpuSpec
from deepseek_operator.render.children import Owner, child_metadata
from deepseek_operator.render.reports import finished_condition, termination_message

RENDEZVOUS_PORT = 29500
TERMINATION_LOG = "/dev/termination-log"
COMPLETION_INDEX_LABEL = "batch.kubernetes.io/job-completion-index"
# Between nodes the bound is the fabric's, not NVLink's. Healthy 8-GPU nodes measure 40-48 GB/s of all-reduce
# bus bandwidth over 8x 400 Gb/s InfiniBand or RoCE, and a few GB/s over TCP sockets: 20 GB/s tells a working
# RDMA path from NCCL's silent fall-back to sockets. Over ethernet sockets are expected; 1 GB/s catches a
# link that is down to a fraction of 10 GbE.
INTER_NODE_MIN_BUS_BANDWIDTH_GBPS: Mapping[Fabric, float] = {Fabric.INFINIBAND: 20.0, Fabric.ROCE: 20.0,
                                                             Fabric.ETHERNET: 1.0}


@dataclass(frozen=True)
class Check:
    """What a revision's preflight asserts."""

    nodes: int
    gpus_per_node: int
    expect_transport: str
    min_bus_bandwidth_gbps: float


def required(spec: DeepSeekDeploymentSpec, gpus_per_replica: int) -> bool:
    return spec.network.preflight.enabled and gpus_per_replica > 1


def check_for(spec: DeepSeekDeploymentSpec, gpu: GpuSpec, gpus_per_replica: int, nodes: int) -> Check:
    settings, fabric = spec.network.preflight, spec.network.fabric
    over_fabric = nodes > 1 and not imex.needed(gpu, nodes)  # GB200 trays talk over multi-node NVLink
    expect = settings.expect_transport
    if expect == "auto" and over_fabric:
        expect = "socket" if fabric is Fabric.ETHERNET else "ib"
    elif expect == "auto":
        expect = "nvlink" if gpu.nvlink else "p2p"
    bound = settings.min_bus_bandwidth_gbps
    if bound is None:
        bound = INTER_NODE_MIN_BUS_BANDWIDTH_GBPS[fabric] if over_fabric else gpu.min_bus_bandwidth_gbps
    return Check(nodes=nodes, gpus_per_node=gpus_per_replica // nodes, expect_transport=expect,
                 min_bus_bandwidth_gbps=bound)


def job_name(name: str, revision: str) -> str:
    # A pod's hostname `<job>-<index>` must fit 63 characters: 47 (longest name) + 11 + 3 + 2.
    return f"{name}-{revision}-pf"


def _meta(owner: Owner, revision: str) -> dict[str, Any]:
    return child_metadata(owner, job_name(owner.name, revision), naming.COMPONENT_PREFLIGHT,
                          {naming.LABEL_REVISION: revision})


def _selector(owner: Owner, revision: str) -> dict[str, str]:
    """The pods of one revision's preflight Job."""
    return {naming.LABEL_DEPLOYMENT: owner.name, naming.LABEL_REVISION: revision,
            naming.LABEL_COMPONENT: naming.COMPONENT_PREFLIGHT}


def rendezvous_service(owner: Owner, revision: str) -> dict[str, Any]:
    """Headless: rank 0's pod gets the DNS name `<job>-0.<job>.<namespace>.svc` the other nodes rendezvous at."""
    return {"apiVersion": "v1", "kind": "Service", "metadata": _meta(owner, revision),
            "spec": {"clusterIP": "None", "publishNotReadyAddresses": True, "selector": _selector(owner, revision),
                     "ports": [{"name": "rendezvous", "port": RENDEZVOUS_PORT}]}}


def job(*, owner: Owner, spec: DeepSeekDeploymentSpec, gpu: GpuSpec, revision: str, check: Check,
        node_affinity: dict[str, Any], tolerations: list[dict[str, Any]], shm_size: str) -> dict[str, Any]:
    settings = spec.network.preflight
    net = nccl.pod_network(spec.network, spans_nodes=check.nodes > 1)
    name = job_name(owner.name, revision)
    master = naming.pod_dns_name(f"{name}-0", name, owner.namespace) if check.nodes > 1 else "127.0.0.1"
    args = [f"--nnodes={check.nodes}", f"--nproc-per-node={check.gpus_per_node}",
            "--node-rank=$(JOB_COMPLETION_INDEX)", f"--master-addr={master}", f"--master-port={RENDEZVOUS_PORT}",
            "-m", "deepseek_operator.preflight", "--backend=nccl", f"--sizes={settings.sizes}",
            f"--expect-gpu={gpu.name}", f"--expect-transport={check.expect_transport}",
            f"--min-bus-bandwidth-gbps={check.min_bus_bandwidth_gbps:g}",
            f"--timeout-s={settings.timeout_seconds}", f"--summary-file={TERMINATION_LOG}"]
    resources = {**net.resources, "nvidia.com/gpu": str(check.gpus_per_node)}
    meta = _meta(owner, revision)
    affinity: dict[str, Any] = {"nodeAffinity": node_affinity}
    if check.nodes > 1:  # one pod per node, as the replica's ranks will be
        affinity["podAntiAffinity"] = {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": _selector(owner, revision)}, "topologyKey": "kubernetes.io/hostname"}]}
    return {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": meta,
        "spec": {
            "completionMode": "Indexed", "completions": check.nodes, "parallelism": check.nodes,
            # A failed check is a verdict, not a flake to retry: the figures go to status at once.
            "backoffLimit": 0,
            "activeDeadlineSeconds": settings.timeout_seconds,
            "template": {
                "metadata": {"labels": dict(meta["labels"]), "annotations": dict(net.annotations)},
                "spec": {
                    "restartPolicy": "Never",
                    **security.pod_fields(spec, gpu=True),
                    "subdomain": name,
                    "affinity": affinity,
                    "tolerations": tolerations,
                    **({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"} if net.host_network else {}),
                    "containers": [{
                        "name": "preflight",
                        "image": settings.image,
                        "command": ["torchrun"],
                        "args": args,
                        "env": [{"name": k, "value": v} for k, v in sorted(net.env.items())] + [security.home_env()],
                        "securityContext": security.container_context(net.capabilities),
                        "ports": [{"name": "rendezvous", "containerPort": RENDEZVOUS_PORT}],
                        "resources": {"limits": resources, "requests": dict(resources)},
                        "terminationMessagePath": TERMINATION_LOG,
                        "terminationMessagePolicy": "File",
                        "volumeMounts": [{"name": "dshm", "mountPath": "/dev/shm"}, security.tmp_mount()],
                    }],
                    "volumes": [{"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size}},
                                security.tmp_volume()],
                },
            },
        },
    }


def _rank0_summary(pods: Sequence[Mapping[str, Any]], name: str) -> dict[str, Any] | None:
    for pod in pods:
        labels = pod["metadata"].get("labels") or {}
        if labels.get("batch.kubernetes.io/job-name", labels.get("job-name")) != name \
                or labels.get(COMPLETION_INDEX_LABEL) != "0":
            continue
        if text := termination_message(pod):
            try:
                parsed = json.loads(text)
            except ValueError:
                return {"passed": False, "message": f"rank 0 wrote no verdict: {text[:300]}"}
            return parsed if isinstance(parsed, dict) else None
    return None


def status(*, name: str, revision: str, check: Check, job_obj: Mapping[str, Any] | None,
           pods: Sequence[Mapping[str, Any]], previous: Mapping[str, Any] | None) -> dict[str, Any]:
    """status.preflight for the revision: Running until the Job ends, then Passed or Failed with the figures.

    A recorded verdict stands while its Job does (its pods may be gone); deleting the Job runs the check again."""
    base: dict[str, Any] = {"revision": revision, "job": name, "expectedTransport": check.expect_transport,
                            "minBusBandwidthGBps": check.min_bus_bandwidth_gbps}
    uid = job_obj["metadata"].get("uid", "") if job_obj else ""
    if previous and previous.get("revision") == revision and previous.get("state") in ("Passed", "Failed") \
            and job_obj is not None and previous.get("jobUid") == uid:
        return dict(previous)
    base["jobUid"] = uid
    if job_obj is None:
        return {**base, "state": "Running", "message": "preflight Job created"}
    ended = finished_condition(job_obj)
    if ended is None:
        active = (job_obj.get("status") or {}).get("active", 0)
        return {**base, "state": "Running",
                "message": f"{active}/{check.nodes} preflight pod(s) running on {check.nodes} node(s)"}
    found = _rank0_summary(pods, name)
    figures: dict[str, Any] = {}
    if found:
        figures = {"backend": found.get("backend") or "", "worldSize": found.get("worldSize") or 0,
                   "nodes": found.get("nodes") or 0, "busBandwidthGBps": found.get("peakBusBandwidthGbps"),
                   "atSizeBytes": found.get("peakAtBytes"), "transport": found.get("transport") or "",
                   "minBusBandwidthGBps": found.get("minBusBandwidthGbps", check.min_bus_bandwidth_gbps)}
        figures = {k: v for k, v in figures.items() if v is not None}
    passed = ended["type"] == "Complete" and bool(found and found.get("passed"))
    if found and found.get("message"):
        message = str(found["message"])
    elif ended["type"] == "Failed":
        why = f"{ended.get('reason', '')}: {ended.get('message', '')}".strip(": ")
        message = f"preflight Job failed without a verdict ({why}); see its pods' logs"
    else:
        message = "preflight Job completed without a verdict from rank 0"
    return {**base, **figures, "state": "Passed" if passed else "Failed", "message": message,
            "finishedAt": ended.get("lastTransitionTime", "")}
