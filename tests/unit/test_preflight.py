"""The fabric preflight's pure parts: NCCL log parsing, sizes and bandwidth, the GPU check, the gate, the JSON.

torch is not installed here (nor a dependency): the runner is exercised on GPU machines (benchmarks/preflight/).
The NCCL log fixtures are shaped on NCCL 2.2x's format strings (src/transport/{p2p,shm,net}.cc, src/init.cc,
src/graph/search.cc) and on logs posted in NVIDIA/nccl issues (#952, #1189, #1538, #1817).
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from deepseek_operator.preflight import cli, nccl_log, report
from deepseek_operator.preflight.nccl_log import TransportSummary, summarize
from deepseek_operator.preflight.report import GIB, MIB, GpuCheck, RankGpu
from deepseek_operator.render.catalog import GPUS

ROOT = Path(__file__).resolve().parents[2]


def lines(text: str) -> list[str]:
    return [line for line in text.strip("\n").splitlines() if line]


# --------------------------------------------------------------------------------------- NCCL log fixtures

# One node, two H200s over NVLink, NCCL 2.28, a pod with no RDMA device: IB finds nothing, NCCL loads the socket
# transport (which single-node traffic never uses) and connects the GPUs over P2P through cuMem.
HEALTHY_RANK0 = lines("""
n:11:01 [0] NCCL INFO Bootstrap: Using eth0:10.0.0.5<0>
n:11:01 [0] NCCL INFO cudaDriverVersion 13000
n:11:01 [0] NCCL INFO NCCL version 2.28.3+cuda13.0
n:11:20 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 0.
n:11:20 [0] NCCL INFO NET/Plugin: Could not find: libnccl-net.so.
n:11:20 [0] NCCL INFO NET/IB : No device found.
n:11:20 [0] NCCL INFO NET/Socket : Using [0]eth0:10.0.0.5<0>
n:11:20 [0] NCCL INFO Using network Socket
n:11:20 [0] NCCL INFO comm 0x55d3c1b0 rank 0 nRanks 2 nNodes 1 localRanks 2 localRank 0 MNNVL 0
n:11:20 [0] NCCL INFO Pattern 4, crossNic 0, nChannels 24, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1
n:11:20 [0] NCCL INFO Pattern 1, crossNic 0, nChannels 24, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1
n:11:20 [0] NCCL INFO Pattern 3, crossNic 0, nChannels 0, bw 0.000000/0.000000, type NVL/PIX, sameChannels 0
n:11:20 [0] NCCL INFO 24 coll channels, 24 collnet channels, 0 nvls channels, 32 p2p channels, 32 p2p channels per peer
n:11:31 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read
n:11:31 [0] NCCL INFO Channel 01/0 : 0[0] -> 1[1] via P2P/CUMEM/read
n:11:31 [0] NCCL INFO Connected all rings, use ring PXN 0 GDR 1
""")
HEALTHY_RANK1 = lines("""
n:12:02 [1] NCCL INFO NET/IB : No device found.
n:12:21 [1] NCCL INFO Using network Socket
n:12:21 [1] NCCL INFO comm 0x5612aa00 rank 1 nRanks 2 nNodes 1 localRanks 2 localRank 1 MNNVL 0
n:12:21 [1] NCCL INFO Pattern 4, crossNic 0, nChannels 24, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1
n:12:32 [1] NCCL INFO Channel 00/0 : 1[1] -> 0[0] via P2P/CUMEM/read
n:12:32 [1] NCCL INFO Channel 01/0 : 1[1] -> 0[0] via P2P/CUMEM/read
""")

# Real: NCCL 2.28.9 (torch 2.11.0+cu130) on one H100 with no RDMA device, world size 1, under the env rendered
# for examples/r1-671b-h200-fp8.yaml (benchmarks/preflight/h100x1-world1.json; the lines is_relevant keeps).
# IB finds no device, yet logs "Using [RO]" (flags, no device); NCCL runs on the socket transport.
REAL_H100_WORLD1 = [*lines("""
vm:505:505 [0] NCCL INFO NCCL_SOCKET_IFNAME set by environment to eth0
vm:505:505 [0] NCCL INFO NCCL version 2.28.9+cuda13.0
vm:505:505 [0] NCCL INFO NCCL_IB_DISABLE set by environment to 0.
vm:505:505 [0] NCCL INFO NET/IB : No device found.
vm:505:505 [0] NCCL INFO NET/IB : Using [RO]; OOB eth0:192.0.2.2<0>
vm:505:505 [0] NCCL INFO NET/Socket : Using [0]eth0:192.0.2.2<0>
vm:505:505 [0] NCCL INFO Using network Socket
vm:505:505 [0] NCCL INFO NET/Socket : GPU Direct RDMA Disabled for HCA 0 'eth0'
vm:505:505 [0] NCCL INFO NCCL_NVLS_ENABLE set by environment to 0.
vm:505:505 [0] NCCL INFO Pattern 4, crossNic 0, nChannels 32, bw 60.000000/60.000000, type LOC/PIX, sameChannels 1
vm:505:505 [0] NCCL INFO Pattern 3, crossNic 0, nChannels 32, bw 60.000000/60.000000, type LOC/PIX, sameChannels 1
vm:505:505 [0] NCCL INFO comm 0x1109b250 rank 0 nRanks 1 nNodes 1 localRanks 1 localRank 0 MNNVL 0
"""), ("vm:505:505 [0] NCCL INFO 64 coll channels, 64 collnet channels, 0 nvls channels, 64 p2p channels, "
       "64 p2p channels per peer")]

# The same node with NCCL_P2P_DISABLE=1 NCCL_SHM_DISABLE=1: the GPUs talk through the network transport, which
# is TCP sockets -- the silent-slowness trap.
DEGRADED = {
    0: lines("""
n:21:20 [0] NCCL INFO NCCL_P2P_DISABLE set by environment to 1
n:21:20 [0] NCCL INFO NCCL_SHM_DISABLE set by environment to 1
n:21:20 [0] NCCL INFO NET/IB : No device found.
n:21:20 [0] NCCL INFO Using network Socket
n:21:20 [0] NCCL INFO comm 0x55d3c1b0 rank 0 nRanks 2 nNodes 1 localRanks 2 localRank 0 MNNVL 0
n:21:20 [0] NCCL INFO Pattern 4, crossNic 0, nChannels 2, bw 10.000000/10.000000, type SYS/PIX, sameChannels 1
n:21:31 [0] NCCL INFO Channel 00/0 : 1[1] -> 0[0] [receive] via NET/Socket/0
n:21:31 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] [send] via NET/Socket/0
"""),
    1: lines("""
n:22:32 [1] NCCL INFO Channel 00/0 : 0[0] -> 1[1] [receive] via NET/Socket/0
n:22:32 [1] NCCL INFO Channel 00/0 : 1[1] -> 0[0] [send] via NET/Socket/0
"""),
}

# Two nodes of two GPUs each on InfiniBand with GPUDirect RDMA (as in NVIDIA/nccl#1189).
IB_TWO_NODES = {
    0: lines("""
node-a:11:20 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.1.0.1<0>
node-a:11:20 [0] NCCL INFO Using network IB
node-a:11:20 [0] NCCL INFO comm 0x5b0bc60 rank 0 nRanks 4 nNodes 2 localRanks 2 localRank 0 MNNVL 0
node-a:11:20 [0] NCCL INFO Pattern 4, crossNic 0, nChannels 8, bw 24.000000/24.000000, type NVL/PIX, sameChannels 1
node-a:11:31 [0] NCCL INFO Channel 00/0 : 2[0] -> 0[0] [receive] via NET/IB/0/GDRDMA
node-a:11:31 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM
"""),
    2: lines("""
node-b:12:21 [0] NCCL INFO Using network IB
node-b:12:32 [0] NCCL INFO Channel 07/0 : 1[1] -> 2[0] [receive] via NET/IB/3/GDRDMA
node-b:12:32 [0] NCCL INFO Channel 00/0 : 2[0] -> 3[1] via P2P/CUMEM
"""),
}
HOSTS_TWO_NODES = ["node-a", "node-a", "node-b", "node-b"]


def test_healthy_nvlink_node() -> None:
    s = summarize({0: HEALTHY_RANK0, 1: HEALTHY_RANK1}, hosts=["n", "n"])
    assert (s.source, s.intra_node, s.inter_node, s.label) == ("nccl-log", "p2p-nvlink", "none", "p2p-nvlink")
    assert (s.net_plugin, s.ib_devices_found, s.socket_interfaces) == ("Socket", False, "[0]eth0:10.0.0.5<0>")
    assert (s.nccl_version, s.n_nodes, s.graph_intra_types, s.nvls_channels, s.channels) == (
        "2.28.3+cuda13.0", 1, ("NVL",), 0, 4)
    assert "rank 0: NET/IB : No device found." in s.lines
    assert "rank 0: Using network Socket" in s.lines
    assert any("via P2P/CUMEM/read" in line for line in s.lines)
    assert len(s.lines) <= nccl_log.MAX_EVIDENCE_LINES


def test_real_single_h100_without_infiniband() -> None:
    s = summarize({0: REAL_H100_WORLD1}, hosts=["vm"])
    assert (s.net_plugin, s.ib_devices_found, s.ib_devices, s.socket_interfaces) == (
        "Socket", False, None, "[0]eth0:192.0.2.2<0>")
    assert (s.intra_node, s.inter_node, s.label, s.channels, s.n_nodes) == ("none", "none", "none", 0, 1)
    assert (s.nccl_version, s.graph_intra_types, s.nvls_channels) == ("2.28.9+cuda13.0", ("LOC",), 0)
    assert s.lines[:4] == ("rank 0: NCCL version 2.28.9+cuda13.0", "rank 0: NET/IB : No device found.",
                           "rank 0: NET/Socket : Using [0]eth0:192.0.2.2<0>", "rank 0: Using network Socket")
    assert report.transport_problem("ib", s) == "NCCL network is Socket (no IB device found), expected IB"


def test_p2p_without_an_nvlink_graph_is_plain_p2p() -> None:
    pcie = [line.replace("type NVL/PIX", "type PIX/PIX") for line in HEALTHY_RANK0]
    assert summarize({0: pcie}).intra_node == "p2p"
    no_graph = [line for line in HEALTHY_RANK0 if "Pattern" not in line]  # NCCL_DEBUG_SUBSYS without GRAPH
    assert summarize({0: no_graph}).intra_node == "p2p"


def test_degraded_node_goes_over_sockets() -> None:
    s = summarize(DEGRADED, hosts=["n", "n"])
    assert (s.intra_node, s.inter_node, s.intra_node_seen, s.label) == (
        "net-socket", "none", ("net-socket",), "net-socket")
    assert s.graph_intra_types == ("SYS",)
    # Without the host map, nNodes 1 still places the NET channels inside the node.
    assert summarize(DEGRADED).intra_node == "net-socket"


def test_two_nodes_over_infiniband() -> None:
    s = summarize(IB_TWO_NODES, hosts=HOSTS_TWO_NODES)
    assert (s.intra_node, s.inter_node, s.net_plugin, s.ib_devices_found) == ("p2p-nvlink", "net-ib", "IB", True)
    assert s.ib_devices == "[0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.1.0.1<0>"
    assert s.label == "p2p-nvlink/net-ib"
    # Without hosts, nNodes 2 makes the NET channels inter-node.
    assert summarize(IB_TWO_NODES).inter_node == "net-ib"


def test_two_nodes_falling_back_to_sockets() -> None:
    fallback = {rank: [line.replace("NET/IB/0/GDRDMA", "NET/Socket/0").replace("NET/IB/3/GDRDMA", "NET/Socket/1")
                       .replace("Using network IB", "Using network Socket")
                       .replace("NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0:10.1.0.1<0>",
                                "NET/IB : No device found.")
                       for line in log] for rank, log in IB_TWO_NODES.items()}
    s = summarize(fallback, hosts=HOSTS_TWO_NODES)
    assert (s.intra_node, s.inter_node, s.net_plugin, s.ib_devices_found) == (
        "p2p-nvlink", "net-socket", "Socket", False)


@pytest.mark.parametrize(("via", "nvlink", "expected"), [
    ("P2P/CUMEM/read", True, "p2p-nvlink"),
    ("P2P/CUMEM", False, "p2p"),
    ("P2P/IPC/read", True, "p2p-nvlink"),
    ("P2P/IPC", False, "p2p"),
    ("P2P/direct pointer/read", True, "p2p-nvlink"),
    ("P2P/indirect/2[2]/read", False, "p2p"),
    ("SHM/direct", True, "shm"),  # NCCL 2.2x
    ("SHM/direct/direct", False, "shm"),  # older NCCL
    ("SHM/CE/direct", False, "shm"),
    ("NET/IB/0/GDRDMA", False, "net-ib"),
    ("NET/IB/3", False, "net-ib"),
    ("NET/IBext_v8/0/GDRDMA", False, "net-ib"),
    ("NET/Socket/1", True, "net-socket"),
    ("NET/AWS Libfabric/0/GDRDMA", False, "net-other"),
])
def test_channel_transports(via: str, nvlink: bool, expected: str) -> None:
    assert nccl_log.channel_transport(via, nvlink) == expected


@pytest.mark.parametrize("line", [
    "host:1:2 [0] NCCL INFO Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read",
    "host:1:2 [0] NCCL INFO Channel 00 : 0[25000] -> 1[2b000] via P2P/direct pointer/read",  # NCCL 2.10 era
    "host:1:2 [0] NCCL INFO Channel 03 : 0[0] -> 1[1] via SHM/direct/direct",
    "host:1:2 [1] NCCL INFO Channel 07/0 : 3[1] -> 1[1] [send] via NET/IB/2/GDRDMA",
])
def test_channel_line_formats(line: str) -> None:
    s = summarize({0: [line]})
    assert s.channels == 1


def test_warnings_and_prefixes() -> None:
    warn = ("[2026-11-24 10:00:00] n:11:1020 [0] misc/socket.cc:480 (ncclFindInterfaces) NCCL WARN "
            "Bootstrap : no socket interface found")
    assert nccl_log.strip_prefix(warn) == "Bootstrap : no socket interface found"
    assert nccl_log.strip_prefix(HEALTHY_RANK0[2]) == "NCCL version 2.28.3+cuda13.0"
    assert nccl_log.strip_prefix("NCCL version 2.28.3+cuda13.0") == "NCCL version 2.28.3+cuda13.0"
    s = summarize({0: [warn]})
    assert s.warnings == ("rank 0: Bootstrap : no socket interface found",)
    # Real, NCCL 2.28.9 with NCCL_SOCKET_IFNAME=nosuchif0 (benchmarks/preflight/logs/h100x1-noiface.nccl.rank0.log)
    real = "[2026-11-24 22:46:56] vm:504:504 [0] bootstrap.cc:114 NCCL WARN Bootstrap : no socket interface found"
    assert summarize({0: [real]}).warnings == ("rank 0: Bootstrap : no socket interface found",)
    assert (s.intra_node, s.channels) == ("none", 0)


def test_relevant_lines_are_the_ones_the_summary_reads() -> None:
    kept = [line for line in HEALTHY_RANK0 if nccl_log.is_relevant(line)]
    assert "n:11:1001 [0] NCCL INFO cudaDriverVersion 13000" not in kept
    assert "n:11:1031 [0] NCCL INFO Connected all rings, use ring PXN 0 GDR 1" not in kept
    assert summarize({0: kept}) == summarize({0: HEALTHY_RANK0})


def test_no_log_and_single_rank() -> None:
    assert summarize({}) == nccl_log.NO_TRANSPORT
    assert summarize({0: []}).source == "none"
    single = summarize({0: [line for line in HEALTHY_RANK0 if "Channel" not in line]})
    assert (single.intra_node, single.inter_node, single.net_plugin, single.ib_devices_found, single.label) == (
        "none", "none", "Socket", False, "none")


def test_one_rank_on_sockets_is_the_summary() -> None:
    mixed = {0: ["h:1:1 [0] NCCL INFO Using network IB", "h:1:1 [0] NCCL INFO NET/IB : Using [0]mlx5_0:1/RoCE"],
             1: ["g:1:1 [0] NCCL INFO NET/IB : No device found.", "g:1:1 [0] NCCL INFO Using network Socket"]}
    s = summarize(mixed, hosts=["h", "g"])
    assert (s.net_plugin, s.net_plugin_names, s.ib_devices_found) == ("Socket", ("IB", "Socket"), False)


# --------------------------------------------------------------------------------------- sizes and bandwidth

@pytest.mark.parametrize(("text", "expected"), [
    ("1MiB", MIB), ("1M", MIB), ("64mb", 64 * MIB), ("1GiB", GIB), ("4096", 4096), ("8K", 8192), (" 2 G ", 2 * GIB),
])
def test_parse_size(text: str, expected: int) -> None:
    assert report.parse_size(text) == expected


@pytest.mark.parametrize("text", ["", "1Q", "-1M", "0", "1.5M", "32GiB"])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError):
        report.parse_size(text)


def test_parse_sizes() -> None:
    assert report.parse_sizes("1MiB-1GiB") == [MIB << i for i in range(11)]
    assert report.parse_sizes("1MiB-1GiB:x4") == [MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB, GIB]
    assert report.parse_sizes("64M,1M,1M-4M") == [MIB, 2 * MIB, 4 * MIB, 64 * MIB]
    assert report.parse_sizes(report.DEFAULT_SIZES["gloo"])[-1] == 64 * MIB
    for bad in ("1G-1M", "1M-1G:x1", "1M-1G:y2", ",", "1M-"):
        with pytest.raises(ValueError):
            report.parse_sizes(bad)


def test_human_size() -> None:
    assert [report.human_size(s) for s in (GIB, 512 * MIB, 8192, 1000)] == ["1GiB", "512MiB", "8KiB", "1000B"]


def test_bus_bandwidth_is_nccl_tests_definition() -> None:
    assert [report.bus_factor(n) for n in (1, 2, 4, 8)] == [0.0, 1.0, 1.5, 1.75]
    r = report.size_result(GIB, GIB // 2, 20, 3.0e-3, world_size=2)
    assert r.algbw_gbps == pytest.approx(GIB / 3.0e-3 / 1e9)  # 357.9 GB/s, 1e9 bytes
    assert r.busbw_gbps == pytest.approx(r.algbw_gbps)
    r8 = report.size_result(GIB, GIB // 2, 20, 3.0e-3, world_size=8)
    assert r8.busbw_gbps == pytest.approx(r8.algbw_gbps * 1.75)
    one = report.size_result(GIB, GIB // 2, 20, 1e-3, world_size=1)
    assert one.busbw_gbps is None and one.to_json()["busBandwidthGbps"] is None
    with pytest.raises(ValueError):
        report.size_result(GIB, 1, 1, 0.0, world_size=2)
    with pytest.raises(ValueError):
        report.bus_factor(0)


def test_peak_and_iterations() -> None:
    results = [report.size_result(s, s // 2, 20, s / 300e9 + 20e-6, 2) for s in (MIB, 64 * MIB, GIB)]
    best = report.peak(results)
    assert best is not None and best.size_bytes == GIB
    assert report.peak([]) is None
    assert report.peak([report.size_result(MIB, 1, 1, 1e-3, 1)]) is None
    assert report.iterations(20, 0.001, 5.0) == 20
    assert report.iterations(20, 0.5, 5.0) == 10
    assert report.iterations(20, 10.0, 5.0) == 3
    assert report.iterations(2, 10.0, 5.0) == 2
    assert report.iterations(20, 0.0, 5.0) == 20


# --------------------------------------------------------------------------------------- GPU check

@pytest.mark.parametrize(("device", "gpu", "matches"), [
    ("NVIDIA H100 80GB HBM3", "H100-80GB", True),
    ("NVIDIA H200", "H200-141GB", True),
    ("NVIDIA H100 80GB HBM3", "H200-141GB", False),
    ("NVIDIA H100 PCIe", "H100-80GB", False),
    ("NVIDIA A100-SXM4-80GB", "A100-80GB", True),
    ("NVIDIA A100 80GB PCIe", "A100-80GB", True),
    ("NVIDIA A100-SXM4-40GB", "A100-80GB", False),
    ("NVIDIA A10", "A10-24GB", True),
    ("NVIDIA A100-SXM4-40GB", "A10-24GB", False),
    ("NVIDIA L4", "L4-24GB", True),
    ("NVIDIA L40S", "L4-24GB", False),
])
def test_product_matching(device: str, gpu: str, matches: bool) -> None:
    assert report.product_matches(device, GPUS[gpu]) is matches


# total_memory as torch.cuda.get_device_properties reports it (bytes)
H100_BYTES = 85_017_493_504  # 79.18 GiB, as read on the lent H100 (h100x1-world1.json)
H200_BYTES = 150_119_989_248  # 139.8 GiB


def test_gpu_memory_within_ten_percent_of_the_catalog() -> None:
    assert report.check_gpu("NVIDIA H100 80GB HBM3", H100_BYTES, GPUS["H100-80GB"]) is None
    assert report.check_gpu("NVIDIA H200", H200_BYTES, GPUS["H200-141GB"]) is None
    assert report.check_gpu("NVIDIA L4", 23_034 * MIB, GPUS["L4-24GB"]) is None
    # A node labelled H200 whose card says H200 but holds 80 GiB (a mislabel, or a partitioned GPU).
    problem = report.check_gpu("NVIDIA H200", H100_BYTES, GPUS["H200-141GB"])
    assert problem is not None and "79.2 GiB" in problem
    problem = report.check_gpu("NVIDIA H100 80GB HBM3", H100_BYTES, GPUS["H200-141GB"])
    assert problem is not None and "is not H200-141GB" in problem
    assert report.check_gpu(None, None, GPUS["H100-80GB"]) == "no CUDA device, expected H100-80GB"


def test_check_gpus_over_ranks() -> None:
    ranks = [RankGpu(0, "a", 0, "NVIDIA H200", H200_BYTES), RankGpu(1, "a", 1, "NVIDIA H100 80GB HBM3", H100_BYTES)]
    check = report.check_gpus(ranks, "H200-141GB")
    assert check.passed is False and len(check.problems) == 1 and check.problems[0].startswith("rank 1 (a): ")
    assert report.check_gpus(ranks, None) == GpuCheck(expected=None, passed=None)
    assert report.check_gpus(ranks[:1], "H200-141GB").passed is True
    assert report.default_min_bus_bandwidth("H200-141GB") == GPUS["H200-141GB"].min_bus_bandwidth_gbps
    assert report.default_min_bus_bandwidth(None) is None


# --------------------------------------------------------------------------------------- transport and gate

HEALTHY = summarize({0: HEALTHY_RANK0, 1: HEALTHY_RANK1}, hosts=["n", "n"])
SOCKETS = summarize(DEGRADED, hosts=["n", "n"])
IB = summarize(IB_TWO_NODES, hosts=HOSTS_TWO_NODES)
SHM = TransportSummary(source="nccl-log", intra_node="shm", intra_node_seen=("shm",), net_plugin="Socket")
PCIE = TransportSummary(source="nccl-log", intra_node="p2p", intra_node_seen=("p2p",), net_plugin="Socket")
NO_CHANNELS = TransportSummary(source="nccl-log", net_plugin="IB")


@pytest.mark.parametrize(("expect", "summary", "problem"), [
    ("any", SOCKETS, None),
    ("any", nccl_log.NO_TRANSPORT, None),
    ("nvlink", HEALTHY, None),
    ("nvlink", PCIE, "intra-node traffic over p2p, expected nvlink"),
    ("nvlink", SOCKETS, "intra-node traffic over net-socket, expected nvlink"),
    ("nvlink", SHM, "intra-node traffic over shm"),
    ("nvlink", IB, None),
    ("nvlink", NO_CHANNELS, "no intra-node channels"),
    ("p2p", PCIE, None),
    ("p2p", HEALTHY, None),
    ("p2p", SHM, "intra-node traffic over shm, expected p2p"),
    ("ib", IB, None),
    ("ib", NO_CHANNELS, None),
    ("ib", HEALTHY, "NCCL network is Socket (no IB device found), expected IB"),
    ("ib", SOCKETS, "NCCL network is Socket"),
    ("socket", SOCKETS, "intra-node traffic over net-socket"),
    ("socket", SHM, None),
    ("nvlink", nccl_log.NO_TRANSPORT, "no NCCL log"),
])
def test_transport_expectations(expect: report.Expectation, summary: TransportSummary, problem: str | None) -> None:
    found = report.transport_problem(expect, summary)
    assert (found is None) if problem is None else (found is not None and problem in found)


def results(busbw_at_1gib: float, world_size: int = 2) -> list[report.SizeResult]:
    factor = report.bus_factor(world_size) or 1.0
    return [report.size_result(s, s // 2, 20, s * factor / (busbw_at_1gib * 1e9) * (1 + MIB / s), world_size)
            for s in (MIB, 64 * MIB, GIB)]


def gpu_ok(name: str = "H200-141GB") -> GpuCheck:
    return GpuCheck(expected=name, passed=True)


def test_gate_passes_a_healthy_nvlink_node() -> None:
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu_ok(), results=results(350.0),
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=HEALTHY)
    assert v.passed and not v.reasons
    assert v.checks == {"init": True, "correct": True, "gpu": True, "bandwidth": True, "transport": True}
    assert v.message.startswith("PASSED: peak bus bandwidth 349.")
    assert v.message.endswith(">= 150.0 GB/s at 1GiB over transport p2p-nvlink (expected nvlink, 2 ranks); "
                              "GPUs are H200-141GB")


def test_gate_fails_sockets_naming_transport_and_figures() -> None:
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu_ok(), results=results(11.2),
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=SOCKETS)
    assert not v.passed
    assert (v.checks["bandwidth"], v.checks["transport"]) == (False, False)
    assert v.message.startswith("FAILED: peak bus bandwidth 11.2 GB/s < 150.0 GB/s at 1GiB over transport "
                                "net-socket (expected nvlink, 2 ranks); transport net-socket: intra-node traffic "
                                "over net-socket, expected nvlink")


def test_gate_fails_on_transport_alone_and_says_the_figures() -> None:
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu_ok(), results=results(180.0),
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=PCIE)
    assert not v.passed and v.checks["bandwidth"] is True and v.checks["transport"] is False
    assert v.message.startswith("FAILED: transport p2p: intra-node traffic over p2p, expected nvlink; peak bus")


def test_gate_without_a_bound_or_expectation() -> None:
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=GpuCheck(None, None), results=results(5.0),
                    min_bus_bandwidth_gbps=None, expect="any", transport=SOCKETS)
    assert v.passed and v.checks["bandwidth"] is None
    assert v.message.startswith("PASSED: peak bus bandwidth 5.0 GB/s at 1GiB over transport net-socket")


def test_gate_world_size_one_ignores_bandwidth_and_transport() -> None:
    single = results(20.0, world_size=1)
    v = report.gate(world_size=1, init_error=None, correct=True, gpu=gpu_ok("H100-80GB"), results=single,
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=NO_CHANNELS)
    assert v.passed and v.checks["bandwidth"] is None and v.checks["transport"] is None
    assert "bus bandwidth not applicable" in v.message and "GPUs are H100-80GB" in v.message
    bad = GpuCheck("H200-141GB", False, ("rank 0 (h): device 'NVIDIA H100 80GB HBM3' is not H200-141GB",))
    v = report.gate(world_size=1, init_error=None, correct=True, gpu=bad, results=single,
                    min_bus_bandwidth_gbps=150, expect="any", transport=NO_CHANNELS)
    assert not v.passed and v.checks["gpu"] is False
    assert v.message.startswith("FAILED: rank 0 (h): device 'NVIDIA H100 80GB HBM3' is not H200-141GB")


def test_gate_fails_init_wrong_sums_and_broken_runs() -> None:
    v = report.gate(world_size=2, init_error="DistBackendError: NCCL error", correct=None, gpu=gpu_ok(), results=[],
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=nccl_log.NO_TRANSPORT)
    assert not v.passed and v.checks["init"] is False
    assert v.message == "FAILED: backend did not initialise: DistBackendError: NCCL error"
    v = report.gate(world_size=2, init_error=None, correct=False, gpu=gpu_ok(), results=results(350.0),
                    min_bus_bandwidth_gbps=150, expect="nvlink", transport=HEALTHY)
    assert not v.passed and "wrong sum" in v.message
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu_ok(), results=[],
                    min_bus_bandwidth_gbps=150, expect="any", transport=HEALTHY, run_error="at 1MiB: OOM")
    assert not v.passed and v.checks["bandwidth"] is False and "benchmark failed: at 1MiB: OOM" in v.message
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu_ok(), results=[],
                    min_bus_bandwidth_gbps=150, expect="any", transport=HEALTHY)
    assert not v.passed and "no bandwidth measured" in v.message


def test_document_shape() -> None:
    res = results(350.0)
    ranks = [RankGpu(0, "n", 0, "NVIDIA H200", H200_BYTES), RankGpu(1, "n", 1, "NVIDIA H200", H200_BYTES)]
    gpu = report.check_gpus(ranks, "H200-141GB")
    v = report.gate(world_size=2, init_error=None, correct=True, gpu=gpu, results=res, min_bus_bandwidth_gbps=150,
                    expect="nvlink", transport=HEALTHY)
    doc = report.document(world_size=2, backend="nccl", dtype="bf16", ranks=ranks, results=res, transport=HEALTHY,
                          gpu=gpu, verdict=v, expect="nvlink", min_bus_bandwidth_gbps=150, init_error=None,
                          run_error=None, correct=True, environment={"NCCL_DEBUG": "INFO", "NCCL_ALGO": "Ring,Tree"},
                          nccl_version="2.28.3", torch_version="2.11.0", started_at="2026-11-24T10:00:00+00:00",
                          duration_seconds=12.3456)
    back: dict[str, Any] = json.loads(json.dumps(doc))
    assert back["schema"] == report.SCHEMA
    assert (back["passed"], back["exitCode"], back["worldSize"], back["backend"]) == (True, 0, 2, "nccl")
    assert back["peakBusBandwidthGbps"] == pytest.approx(349.6, abs=0.5) and back["peakAtBytes"] == GIB
    assert back["bandwidthNote"] is None and back["busBandwidthApplicable"] is True
    assert back["transport"]["intraNode"] == "p2p-nvlink" and back["transport"]["netPlugin"] == "Socket"
    assert back["gate"]["checks"]["transport"] is True and back["gpuCheck"]["passed"] is True
    assert [r["size"] for r in back["results"]] == ["1MiB", "64MiB", "1GiB"]
    assert set(back["results"][0]) == {"bytes", "size", "elements", "iters", "timeUs", "algBandwidthGbps",
                                       "busBandwidthGbps"}
    assert back["ranks"][1] == {"rank": 1, "host": "n", "localRank": 1, "device": "NVIDIA H200", "memoryGiB": 139.81}
    assert list(back["environment"]) == ["NCCL_ALGO", "NCCL_DEBUG"] and back["durationSeconds"] == 12.346
    assert report.exit_code(v) == 0


# --------------------------------------------------------------------------------------- command line

def test_rendezvous_from_env() -> None:
    env = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "MASTER_ADDR": "10.0.0.1", "MASTER_PORT": "29500"}
    assert cli.rendezvous_from_env(env) == cli.Rendezvous(1, 2, 1, "10.0.0.1", 29500, launched=True)
    per_pod = {k: v for k, v in env.items() if k != "LOCAL_RANK"}
    assert cli.rendezvous_from_env(per_pod).local_rank == 0
    assert cli.rendezvous_from_env({}, free_port=4242) == cli.Rendezvous(0, 1, 0, "127.0.0.1", 4242, launched=False)
    for bad in ({**env, "RANK": "2"}, {**env, "WORLD_SIZE": "x"}, {"RANK": "0"}, {**env, "MASTER_ADDR": ""},
                {**env, "MASTER_PORT": "70000"}):
        with pytest.raises(cli.UsageError):
            cli.rendezvous_from_env(bad)


def test_nccl_debug_env_and_environment_report() -> None:
    env = cli.nccl_debug_env("/tmp/x", 3)
    assert env == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET,GRAPH,ENV",
                   "NCCL_DEBUG_FILE": "/tmp/x/nccl.rank3.log"}
    seen = cli.nccl_environment({**env, "NCCL_ALGO": "Ring", "NCCL_NVLS_ENABLE": "0", "HOME": "/root",
                                 "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "CUDA_VISIBLE_DEVICES": "0,1"})
    assert seen == {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": "INIT,NET,GRAPH,ENV", "NCCL_ALGO": "Ring",
                    "NCCL_NVLS_ENABLE": "0", "TORCH_SYMM_MEM_DISABLE_MULTICAST": "1", "CUDA_VISIBLE_DEVICES": "0,1"}


def test_options() -> None:
    o = cli.parse_options(["--expect-gpu", "H200-141GB", "--expect-transport", "nvlink", "--sizes", "1M-1G:x4"])
    assert (o.expect_gpu, o.expect_transport, o.sizes, o.backend, o.dtype) == (
        "H200-141GB", "nvlink", (MIB, 4 * MIB, 16 * MIB, 64 * MIB, 256 * MIB, GIB), "auto", "auto")
    assert (o.min_bus_bandwidth_gbps, o.warmup, o.iters) == (None, 5, 20)
    for bad in (["--sizes", "1Q"], ["--iters", "0"], ["--min-bus-bandwidth-gbps", "-1"], ["--timeout-s", "0"]):
        with pytest.raises(cli.UsageError):
            cli.parse_options(bad)
    for bad in (["--expect-gpu", "B200"], ["--backend", "mpi"], ["--expect-transport", "carrier-pigeon"]):
        with pytest.raises(SystemExit) as exc:
            cli.parse_options(bad)
        assert exc.value.code == 2


def test_usage_errors_exit_2_before_torch(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["--sizes", "nonsense"]) == cli.EXIT_USAGE
    monkeypatch.setenv("RANK", "0")
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert cli.main([]) == cli.EXIT_USAGE
    captured = capsys.readouterr()
    assert captured.out == "" and "WORLD_SIZE is not set" in captured.err


def test_pure_modules_do_not_import_torch() -> None:
    code = ("import sys; import deepseek_operator.preflight.cli, deepseek_operator.preflight.report, "
            "deepseek_operator.preflight.nccl_log, deepseek_operator.preflight.runner; "
            "assert 'torch' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT)


def test_runner_error_text_is_one_line() -> None:
    from deepseek_operator.preflight.runner import error_text

    text = error_text(RuntimeError("NCCL error in: ProcessGroupNCCL.cpp:1\nncclInternalError\n" + "x" * 900))
    assert "\n" not in text and text.startswith("RuntimeError: NCCL error in:") and len(text) == 600


# --------------------------------------------------------------------------------------- the rendered env file

def test_env_file_is_what_the_operator_renders(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("render_env", ROOT / "benchmarks/preflight/render_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    target = tmp_path / "h200-nvlink.env"
    assert module.main(["render_env.py", "examples/r1-671b-h200-fp8.yaml", str(target)]) == 0
    committed = ROOT / "benchmarks/preflight/h200-nvlink.env"
    assert target.read_text() == committed.read_text()
    assert "export NCCL_IB_HCA=mlx5" in target.read_text() and "NCCL_NVLS_ENABLE" not in target.read_text()
