"""Multi-node NVLink (GB200 NVL72): the IMEX channels a replica spanning several trays needs. Pure.

GPUs of different trays of one NVL72 rack share memory over NVLink only through IMEX channels
(/dev/nvidia-caps-imex-channels, which TensorRT-LLM's wide-EP README tells to check). On Kubernetes NVIDIA's DRA
driver for GPUs hands them out: a `ComputeDomain` (resource.nvidia.com/v1beta1) names a ResourceClaimTemplate of
an IMEX channel, and every pod of the domain claims one from it (NVIDIA/k8s-dra-driver-gpu,
demo/specs/imex/channel-injection.yaml). One domain per revision; each container that drives GPUs of the replica
claims the channel.
"""

from __future__ import annotations

from typing import Any

from deepseek_operator.render import naming
from deepseek_operator.render.catalog import GpuSpec
from deepseek_operator.render.children import Owner, child_metadata
from deepseek_operator.render.sizing import MAX_GPUS_PER_BOARD

API_VERSION = "resource.nvidia.com/v1beta1"
KIND = "ComputeDomain"
PLURAL = "computedomains"
CLAIM = "imex-channel"  # the pod's name for its claim, which its GPU containers reference


def needed(gpu: GpuSpec, nodes_per_replica: int) -> bool:
    """A replica of several nodes of a GPU type whose NVLink domain joins nodes (a rack of trays)."""
    return gpu.nvlink_domain > MAX_GPUS_PER_BOARD and nodes_per_replica > 1


def domain_name(name: str, revision: str) -> str:
    return domain_name_of(naming.server_deployment_name(name, revision))


def domain_name_of(workload: str) -> str:
    """The domain of the revision whose leaders (StatefulSet or LeaderWorkerSet) have this name."""
    return f"{workload}-imex"


def claim_template_name(name: str, revision: str) -> str:
    return f"{domain_name(name, revision)}-channel"


def compute_domain(owner: Owner, revision: str, nodes: int) -> dict[str, Any]:
    """The revision's domain; the DRA driver creates the ResourceClaimTemplate it names. `numNodes` (deprecated
    in the driver's v1beta1 CRD, still required by its older releases) is one replica's nodes: the domain is
    ready once they run, and a replica's preflight and its pods need no more."""
    return {"apiVersion": API_VERSION, "kind": KIND,
            "metadata": child_metadata(owner, domain_name(owner.name, revision), naming.COMPONENT_SERVER,
                                       {naming.LABEL_REVISION: revision}),
            "spec": {"numNodes": nodes,
                     "channel": {"resourceClaimTemplate": {"name": claim_template_name(owner.name, revision)}}}}


def claim_pod(pod_spec: dict[str, Any], name: str, revision: str) -> None:
    """Adds the IMEX channel claim to a pod spec and to each of its containers that holds GPUs."""
    pod_spec["resourceClaims"] = [{"name": CLAIM, "resourceClaimTemplateName": claim_template_name(name, revision)}]
    for container in pod_spec["containers"]:
        if "nvidia.com/gpu" in (container.get("resources") or {}).get("limits", {}):
            container["resources"] = {**container["resources"], "claims": [{"name": CLAIM}]}


def unavailable_message(gpu: GpuSpec, nodes_per_replica: int) -> str:
    return (f"each replica spans {nodes_per_replica} {gpu.name} trays, whose GPUs talk over multi-node NVLink: "
            f"that needs IMEX channels, which NVIDIA's DRA driver for GPUs provides ({KIND} of {API_VERSION}), and "
            f"that API is not served. Install the driver (then restart the operator), or serve a layout that fits "
            f"one tray (parallelism.tensor and pipeline within serving.gpu.perNode)")
