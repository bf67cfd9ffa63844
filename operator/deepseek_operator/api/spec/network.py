"""spec.network: the NCCL fabric between a replica's ranks, and its preflight check."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.common import Fabric
from deepseek_operator.api.spec.base import (
    DEFAULT_PREFLIGHT_IMAGE,
    IMAGE,
    MAX_MAP_ENTRIES,
    Rule,
    Schema,
)

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
NetworkName = Annotated[str, Field(pattern=rf"^({k8s.DNS1123_LABEL}/)?{k8s.DNS1123_LABEL}$", max_length=253)]


class NcclSettings(Schema):
    """NCCL settings rendered into every serving pod's environment (render/nccl.py)."""

    rules = (Rule(f"!has(self.extraEnv) || self.extraEnv.all(k, k.matches('{ENV_NAME}'))",
                  "extraEnv names must be valid environment variable names (C identifiers: letters, digits, _, "
                  "not starting with a digit)", lambda n: all(re.match(ENV_NAME, k) for k in n.extra_env),
                  ".extraEnv"),)

    algo: str | None = Field(default=None, pattern=r"^[A-Za-z]+(,[A-Za-z]+)*$",
                             description="NCCL_ALGO: collective algorithms NCCL may use; unset: NCCL's own "
                                         "tuning (which picks NVLS on NVSwitch nodes, and Ring or Tree "
                                         "elsewhere).")
    debug: Literal["VERSION", "WARN", "INFO", "TRACE"] = Field(
        default="WARN", description="NCCL_DEBUG; INFO logs the transport NCCL chose (NET/IB or NET/Socket).")
    socket_ifname: str = Field(default="eth0", pattern=r"^[\^=]?[A-Za-z0-9_.,:-]+$",
                               description="NCCL_SOCKET_IFNAME: the interface for bootstrap and socket traffic.")
    ib_hca: str | None = Field(default=None, pattern=r"^[\^=]?[A-Za-z0-9_:,-]+$",
                               description="NCCL_IB_HCA: which RDMA devices to use (infiniband/roce only).")
    ib_gid_index: int | None = Field(default=None, ge=0, le=255,
                                     description="NCCL_IB_GID_INDEX for RoCE (default 3: RoCE v2 over IPv4).")
    extra_env: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES,
                                      description="Any other variables (e.g. NCCL_P2P_LEVEL); they win over the "
                                                  "rendered ones.")


class PreflightSpec(Schema):
    """The NCCL all-reduce check a multi-GPU revision must pass before it gets traffic."""

    enabled: bool = Field(default=True, description="Run the preflight for revisions of more than one GPU.")
    image: str = Field(default=DEFAULT_PREFLIGHT_IMAGE, pattern=IMAGE, max_length=512,
                       description="Image with deepseek-operator and PyTorch (the operator image's preflight "
                                   "variant).")
    min_bus_bandwidth_gbps: float | None = Field(
        default=None, ge=0, alias="minBusBandwidthGBps",
        description="Peak all-reduce bus bandwidth to pass, GB/s. Default: the GPU type's NVLink bound for one "
                    "node, the fabric's bound between nodes.")
    expect_transport: Literal["auto", "nvlink", "p2p", "ib", "socket", "any"] = Field(
        default="auto", description="The NCCL transport that must carry the traffic. auto: nvlink (p2p without "
                                   "NVLink) inside one node; ib (infiniband, roce) or socket (ethernet) across "
                                   "nodes.")
    sizes: str = Field(default="1MiB-1GiB", pattern=r"^[0-9A-Za-z.,:x-]+$",
                       description="Message sizes per rank, e.g. 1MiB-1GiB (doubling) or 1M,64M.")
    timeout_seconds: int = Field(default=900, ge=60, le=86400,
                                 description="Longest the check may take, scheduling included.")


class NetworkSpec(Schema):
    """How the ranks of a replica talk to each other (tensor/pipeline parallelism over NCCL)."""

    rules = (
        Rule("self.fabric == 'ethernet' || has(self.rdmaResource)",
             "fabric infiniband/roce needs rdmaResource (the RDMA device the pods request, e.g. rdma/ib)",
             lambda n: n.fabric is Fabric.ETHERNET or bool(n.rdma_resource)),
        Rule("self.fabric != 'ethernet' || !has(self.nccl) || !has(self.nccl.ibHca)",
             "nccl.ibHca applies to fabric infiniband/roce only; ethernet disables NCCL's IB transport",
             lambda n: n.fabric is not Fabric.ETHERNET or n.nccl.ib_hca is None),
        Rule("self.fabric == 'roce' || !has(self.nccl) || !has(self.nccl.ibGidIndex)",
             "nccl.ibGidIndex applies to fabric roce only",
             lambda n: n.fabric is Fabric.ROCE or n.nccl.ib_gid_index is None),
    )

    fabric: Fabric = Field(default=Fabric.ETHERNET, description="infiniband, roce or ethernet (TCP sockets).")
    nccl: NcclSettings = Field(default_factory=NcclSettings, description="NCCL settings.")
    rdma_resource: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+/[A-Za-z0-9_.-]+$",
                                      description="Extended resource for the RDMA device, one per pod "
                                                  "(e.g. rdma/ib); required with infiniband/roce.")
    networks: list[NetworkName] = Field(default_factory=list, max_length=16, description="Multus "
                                        "NetworkAttachmentDefinitions to attach (secondary NICs): [namespace/]name.")
    host_network: bool = Field(default=False, description="Run serving pods in the node's network namespace.")
    preflight: PreflightSpec = Field(default_factory=PreflightSpec,
                                     description="NCCL check run before a multi-GPU revision takes traffic.")
