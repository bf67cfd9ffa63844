"""NCCL and network settings of a serving pod, by fabric. Pure.

The commonest silent failure of multi-GPU serving is NCCL falling back to TCP sockets on a fabric that has
RDMA: the model runs, ten times slower, and nothing says why. The profiles below make the intended transport
explicit: InfiniBand and RoCE keep NCCL's IB transport on, name the HCAs and let GPUDirect RDMA work when GPU
and NIC share a PCIe host bridge; ethernet turns the IB transport off so NCCL never probes for it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from deepseek_operator.api.common import Fabric
from deepseek_operator.api.spec import NetworkSpec

MULTUS_ANNOTATION = "k8s.v1.cni.cncf.io/networks"
DEFAULT_IB_HCA = "mlx5"  # Mellanox/NVIDIA ConnectX devices, the usual HCAs of GPU nodes
DEFAULT_ROCE_GID_INDEX = "3"  # RoCE v2 over IPv4 on a default-configured ConnectX port
GPU_DIRECT_RDMA_LEVEL = "PHB"  # GPUDirect RDMA when GPU and NIC share a PCIe host bridge


@dataclass(frozen=True)
class PodNetwork:
    """What the network spec adds to a serving pod."""

    env: dict[str, str]
    annotations: dict[str, str] = field(default_factory=dict)
    resources: dict[str, str] = field(default_factory=dict)  # extended resources, limits = requests
    capabilities: tuple[str, ...] = ()
    host_network: bool = False


def nccl_env(network: NetworkSpec) -> dict[str, str]:
    nccl = network.nccl
    env = {"NCCL_DEBUG": nccl.debug, "NCCL_SOCKET_IFNAME": nccl.socket_ifname}
    if nccl.algo is not None:
        env["NCCL_ALGO"] = nccl.algo
    if network.fabric is Fabric.ETHERNET:
        env["NCCL_IB_DISABLE"] = "1"
    else:
        env |= {"NCCL_IB_DISABLE": "0", "NCCL_IB_HCA": nccl.ib_hca or DEFAULT_IB_HCA,
                "NCCL_NET_GDR_LEVEL": GPU_DIRECT_RDMA_LEVEL}
        if network.fabric is Fabric.ROCE:
            env["NCCL_IB_GID_INDEX"] = str(nccl.ib_gid_index if nccl.ib_gid_index is not None
                                           else DEFAULT_ROCE_GID_INDEX)
    return {**env, **nccl.extra_env}


def uses_rdma(network: NetworkSpec, *, spans_nodes: bool) -> bool:
    """Whether the replica's pods use the fabric. It joins nodes: ranks on one node talk over NVLink or PCIe."""
    return spans_nodes and network.fabric is not Fabric.ETHERNET


def pod_network(network: NetworkSpec, *, spans_nodes: bool) -> PodNetwork:
    """What a pod of a replica (or of its preflight) gets of the network spec: a one-node replica gets no HCA,
    no secondary network and no IPC_LOCK (and its pods stay within the `restricted` Pod Security Standard)."""
    rdma = uses_rdma(network, spans_nodes=spans_nodes)
    return PodNetwork(
        env=nccl_env(network),
        annotations={MULTUS_ANNOTATION: ",".join(network.networks)} if rdma and network.networks else {},
        resources={network.rdma_resource: "1"} if rdma and network.rdma_resource else {},
        # Registering GPU memory with the HCA pins pages: RDMA needs IPC_LOCK (memlock).
        capabilities=("IPC_LOCK",) if rdma else (),
        host_network=network.host_network,
    )
