"""The testbed's own configuration: the fake node pools and the launcher table other issues extend."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import yaml

from testbed import cluster


def test_default_node_pools_match_the_documented_cluster() -> None:
    nodes = cluster.node_objects()
    gpus = Counter((n["metadata"]["labels"].get("nvidia.com/gpu.product"),  # type: ignore[index]
                    n["status"]["capacity"].get("nvidia.com/gpu")) for n in nodes)  # type: ignore[index]
    assert gpus == {
        ("NVIDIA-H100-80GB-HBM3", "8"): 2,
        ("NVIDIA-H200", "8"): 2,
        ("NVIDIA-H20", "8"): 1,
        ("NVIDIA-B200", "8"): 1,
        ("NVIDIA-GB200", "4"): 8,  # one GB200 NVL72 domain's worth of trays for the wide-EP example
        ("NVIDIA-A100-SXM4-80GB", "4"): 1,
        ("NVIDIA-L4", "1"): 1,  # for the small-model example
        (None, None): 1,  # a CPU node for the operator and other non-GPU pods
    }
    for node in nodes:
        labels = node["metadata"]["labels"]  # type: ignore[index]
        if labels.get("nvidia.com/gpu.count", "1") != "1" and labels["nvidia.com/gpu.product"] != "NVIDIA-GB200":
            assert node["status"]["capacity"]["rdma/ib"] == labels["nvidia.com/gpu.count"]  # type: ignore[index]
        if "nvidia.com/gpu.product" in labels:
            assert {"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"} in \
                node["spec"]["taints"]  # type: ignore[index]
        assert node["metadata"]["annotations"]["kwok.x-k8s.io/node"] == "fake"  # type: ignore[index]


def test_kwok_stages_never_touch_a_pod_that_already_has_an_ip() -> None:
    # The pod runner owns readiness once kwok gave the pod an IP; a stage matching such a pod would fight it.
    stages = yaml.safe_load_all((Path(cluster.TESTBED) / "kwok" / "stages-pod.yaml").read_text())
    for stage in stages:
        exprs = stage["spec"]["selector"]["matchExpressions"]
        keys = {(e["key"], e["operator"]) for e in exprs}
        assert (".status.podIP", "DoesNotExist") in keys or (".metadata.deletionTimestamp", "Exists") in keys


