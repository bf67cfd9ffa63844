"""NCCL profiles by fabric, and what they put into a serving pod."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from deepseek_operator.api.spec import NetworkSpec
from deepseek_operator.render import nccl


@pytest.mark.parametrize(("network", "expected", "absent"), [
    # No NCCL_ALGO by default: NCCL's own tuning picks NVLS on NVSwitch nodes.
    ({}, {"NCCL_IB_DISABLE": "1", "NCCL_SOCKET_IFNAME": "eth0", "NCCL_DEBUG": "WARN"},
     {"NCCL_IB_HCA", "NCCL_NET_GDR_LEVEL", "NCCL_IB_GID_INDEX", "NCCL_ALGO"}),
    ({"fabric": "infiniband", "rdmaResource": "rdma/ib"},
     {"NCCL_IB_DISABLE": "0", "NCCL_IB_HCA": "mlx5", "NCCL_NET_GDR_LEVEL": "PHB"}, {"NCCL_IB_GID_INDEX"}),
    ({"fabric": "infiniband", "rdmaResource": "rdma/ib", "nccl": {"ibHca": "=mlx5_0,mlx5_1", "debug": "INFO"}},
     {"NCCL_IB_HCA": "=mlx5_0,mlx5_1", "NCCL_DEBUG": "INFO"}, set()),
    ({"fabric": "roce", "rdmaResource": "rdma/roce"}, {"NCCL_IB_DISABLE": "0", "NCCL_IB_GID_INDEX": "3"}, set()),
    ({"fabric": "roce", "rdmaResource": "rdma/roce", "nccl": {"ibGidIndex": 1}}, {"NCCL_IB_GID_INDEX": "1"}, set()),
    ({"nccl": {"socketIfname": "bond0", "algo": "Ring", "extraEnv": {"NCCL_P2P_LEVEL": "NVL",
                                                                       "NCCL_ALGO": "Tree"}}},
     {"NCCL_SOCKET_IFNAME": "bond0", "NCCL_P2P_LEVEL": "NVL", "NCCL_ALGO": "Tree"}, set()),
])
def test_profiles(network: dict[str, Any], expected: dict[str, str], absent: set[str]) -> None:
    env = nccl.nccl_env(NetworkSpec.model_validate(network))
    assert env.items() >= expected.items()
    assert not absent & env.keys()


def test_rdma_fabrics_add_the_device_ipc_lock_and_multus_to_replicas_that_span_nodes() -> None:
    ib = NetworkSpec.model_validate({"fabric": "infiniband", "rdmaResource": "rdma/ib",
                                     "networks": ["ib-net", "ib-net-2"]})
    pod = nccl.pod_network(ib, spans_nodes=True)
    assert pod.resources == {"rdma/ib": "1"}
    assert pod.capabilities == ("IPC_LOCK",)
    assert pod.annotations == {"k8s.v1.cni.cncf.io/networks": "ib-net,ib-net-2"}
    # Within one node the ranks use NVLink: none of it, so the pod stays `restricted`.
    one_node = nccl.pod_network(ib, spans_nodes=False)
    assert (one_node.resources, one_node.capabilities, one_node.annotations) == ({}, (), {})
    plain = nccl.pod_network(NetworkSpec(), spans_nodes=True)
    assert (plain.resources, plain.capabilities, plain.annotations, plain.host_network) == ({}, (), {}, False)


@pytest.mark.parametrize(("network", "message"), [
    ({"fabric": "infiniband"}, "needs rdmaResource"),
    ({"fabric": "roce"}, "needs rdmaResource"),
    ({"nccl": {"ibHca": "mlx5"}}, "ibHca applies to fabric infiniband/roce only"),
    ({"fabric": "infiniband", "rdmaResource": "rdma/ib", "nccl": {"ibGidIndex": 3}}, "ibGidIndex applies"),
    ({"nccl": {"extraEnv": {"NOT VALID": "1"}}}, "valid environment variable names"),
    ({"nccl": {"debug": "LOUD"}}, "debug"),
    ({"fabric": "carrier-pigeon"}, "fabric"),
])
def test_combinations_that_cannot_work_are_rejected(network: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError) as err:
        NetworkSpec.model_validate(network)
    assert message in str(err.value)
