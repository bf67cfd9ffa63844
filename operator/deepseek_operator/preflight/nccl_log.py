"""Which transports NCCL chose, read from its NCCL_DEBUG=INFO log. Pure: no torch, no I/O.

The lines this understands, as NCCL 2.2x writes them (src/transport/*.cc, src/init.cc, src/graph/search.cc),
each after a ``host:pid:tid [cudaDev] NCCL INFO `` prefix:

- ``NCCL version 2.28.3+cuda13.0``
- ``NET/IB : No device found.`` -- no usable RDMA device (no HCA, no rdma device in the pod, IB disabled...);
  NCCL 2.28 then still logs ``NET/IB : Using [RO]; OOB eth0:192.0.2.2<0>``, with no device in it
- ``NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/RoCE ; OOB eth0:10.0.0.1<0>``
- ``NET/Socket : Using [0]eth0:10.0.0.1<0>``
- ``Using network Socket`` / ``Using network IB`` (or a plugin's name, e.g. ``IBext_v8``, ``AWS Libfabric``)
- ``comm 0x55d0 rank 0 nRanks 2 nNodes 1 localRanks 2 localRank 0 MNNVL 0``
- ``Pattern 4, crossNic 0, nChannels 24, bw 40.000000/40.000000, type NVL/PIX, sameChannels 1``
  (NCCL_DEBUG_SUBSYS=GRAPH): ``type NVL`` (or NVB, NVLink through a GPU) is what tells NVLink from PCIe,
  since a P2P channel line reads the same over both
- channel lines, one per channel and peer:
  ``Channel 00/0 : 0[0] -> 1[1] via P2P/CUMEM/read`` (also ``P2P/IPC/read``, ``P2P/direct pointer``,
  ``P2P/indirect/2[2]``), ``Channel 00 : 0[0] -> 1[1] via SHM/direct`` (older: ``SHM/direct/direct``),
  ``Channel 00/0 : 1[1] -> 0[0] [send] via NET/Socket/0``, ``... [receive] via NET/IB/3/GDRDMA``
- ``12 coll channels, 0 collnet channels, 0 nvls channels, 16 p2p channels, 16 p2p channels per peer``
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

Transport = Literal["p2p-nvlink", "p2p", "shm", "net-ib", "net-other", "net-socket"]
TransportOrNone = Literal["p2p-nvlink", "p2p", "shm", "net-ib", "net-other", "net-socket", "none"]

# Best first. A ring runs at the pace of its slowest hop, so a summary reports the worst transport it saw.
TRANSPORT_ORDER: tuple[Transport, ...] = ("p2p-nvlink", "p2p", "shm", "net-ib", "net-other", "net-socket")
NVLINK_PATH_TYPES = frozenset({"NVL", "NVB"})  # NCCL's topoPathTypeStr: NVLink, NVLink bounced through a GPU

# [timestamp] host:pid:tid [dev] file.cc:123 (func) NCCL WARN ... -- the timestamp (WARN by default) and the
# source position (WARN only) are optional.
_PREFIX = re.compile(r"^(?:\[[^\]]*\]\s+)?(?:\S+?:\d+:\d+\s+)?(?:\[[^\]]*\]\s+)?(?:\S+:\d+(?: \([^)]*\))?\s+)?"
                     r"NCCL (?P<level>INFO|WARN|TRACE|CALL) ")
_WARN = re.compile(r"\bNCCL WARN\b")
_VERSION = re.compile(r"NCCL version (?P<version>\S+)")
_USING_NETWORK = re.compile(r"Using network (?P<name>.+?)\s*$")
_IB_NONE = re.compile(r"NET/IB ?: ?No device found")
_IB_USING = re.compile(r"NET/IB ?: ?Using (?P<devices>.*?)\s*$")
_IB_DEVICE = re.compile(r"\[\d+\][^\s\[;]+")
_SOCKET_USING = re.compile(r"NET/Socket ?: ?Using (?P<ifaces>.*?)\s*$")
_COMM = re.compile(r"comm 0x[0-9a-fA-F]+ rank (?P<rank>\d+) nRanks (?P<nranks>\d+) nNodes (?P<nnodes>\d+) "
                   r"localRanks (?P<localranks>\d+)")
_PATTERN = re.compile(r"Pattern (?P<pattern>\d+), crossNic \d+, nChannels (?P<nchannels>\d+), "
                      r"bw [\d.]+/[\d.]+, type (?P<intra>[A-Z0-9]+)/(?P<inter>[A-Z0-9]+)")
_CHANNEL = re.compile(r"Channel (?P<channel>\d+)(?:/(?P<conn>\d+))? : (?P<src>\d+)\[[^\]]*\] -> "
                      r"(?P<dst>\d+)\[[^\]]*\](?: \[(?P<dir>send|receive)\])? via (?P<via>.+?)\s*$")
_NVLS_CHANNELS = re.compile(r"(?P<coll>\d+) coll channels, (?P<collnet>\d+) collnet channels, "
                            r"(?P<nvls>\d+) nvls channels")

# What rank 0 needs from every rank's log: the rest (topology dumps, tuning tables) is left behind.
_RELEVANT = re.compile(r"NCCL version|Using network|NET/IB|NET/Socket|nRanks|Pattern \d|Channel \d+.* via |"
                       r"nvls channels|NCCL WARN|set by environment to")
MAX_EVIDENCE_LINES = 10
MAX_WARNINGS = 5


def is_relevant(line: str) -> bool:
    """Whether a log line is one the summary may use (to gather few lines from every rank)."""
    return _RELEVANT.search(line) is not None


def strip_prefix(line: str) -> str:
    """The message of a log line, without NCCL's ``host:pid:tid [dev] NCCL INFO`` prefix."""
    return _PREFIX.sub("", line.rstrip("\n"), count=1)


def channel_transport(via: str, nvlink: bool) -> Transport:
    """The transport of one channel line's ``via ...`` part; `nvlink`: the topology search found NVLink paths."""
    if via.startswith("P2P/"):
        return "p2p-nvlink" if nvlink else "p2p"
    if via.startswith("SHM"):
        return "shm"
    if via.startswith("NET/"):
        name = via[len("NET/"):].split("/", 1)[0]
        if name.startswith("IB"):  # NCCL's own IB verbs transport, also the IBext (SHARP plugin) one
            return "net-ib"
        if name == "Socket":
            return "net-socket"
    return "net-other"


def net_plugin(name: str) -> str:
    """``Using network X`` as IB, Socket or the plugin's own name."""
    return "IB" if name.startswith("IB") else name


def worst(transports: Iterable[Transport]) -> TransportOrNone:
    seen = set(transports)
    for transport in reversed(TRANSPORT_ORDER):
        if transport in seen:
            return transport
    return "none"


def ordered(transports: Iterable[Transport]) -> list[Transport]:
    seen = set(transports)
    return [t for t in TRANSPORT_ORDER if t in seen]


@dataclass(frozen=True)
class TransportSummary:
    """What NCCL used between the ranks of one run, intra-node and inter-node."""

    source: Literal["nccl-log", "none"]  # none: no NCCL log to read (gloo backend, or NCCL never started)
    intra_node: TransportOrNone = "none"  # the worst transport between ranks of one host
    inter_node: TransportOrNone = "none"  # the worst transport between hosts
    intra_node_seen: tuple[Transport, ...] = ()
    inter_node_seen: tuple[Transport, ...] = ()
    net_plugin: str | None = None  # IB, Socket, or a plugin's name (``Using network``); Socket if any rank
    net_plugin_names: tuple[str, ...] = ()  # as NCCL logged them, every distinct one
    ib_devices_found: bool | None = None  # False when any rank logged ``NET/IB : No device found``
    ib_devices: str | None = None
    socket_interfaces: str | None = None
    nccl_version: str | None = None
    n_nodes: int | None = None
    graph_intra_types: tuple[str, ...] = ()  # the topology search's intra-node path types (NVL, PIX, SYS...)
    nvls_channels: int | None = None
    channels: int = 0  # channel lines seen, all ranks together
    lines: tuple[str, ...] = ()  # a few evidence lines, ``rank N: message``
    warnings: tuple[str, ...] = ()

    @property
    def label(self) -> str:
        """The transport in one word for messages: ``p2p-nvlink``, ``net-socket``, ``shm/net-ib``, ``none``."""
        if self.source == "none":
            return "unknown"
        if self.inter_node == "none":
            return self.intra_node
        if self.intra_node == "none":
            return self.inter_node
        return f"{self.intra_node}/{self.inter_node}"

    def to_json(self) -> dict[str, object]:
        return {
            "source": self.source, "label": self.label,
            "intraNode": self.intra_node, "interNode": self.inter_node,
            "intraNodeSeen": list(self.intra_node_seen), "interNodeSeen": list(self.inter_node_seen),
            "netPlugin": self.net_plugin, "netPluginNames": list(self.net_plugin_names),
            "ibDevicesFound": self.ib_devices_found, "ibDevices": self.ib_devices,
            "socketInterfaces": self.socket_interfaces, "ncclVersion": self.nccl_version, "nNodes": self.n_nodes,
            "graphIntraTypes": list(self.graph_intra_types), "nvlsChannels": self.nvls_channels,
            "channels": self.channels, "lines": list(self.lines), "warnings": list(self.warnings),
        }


NO_TRANSPORT = TransportSummary(source="none")


@dataclass
class _Evidence:
    lines: list[str] = field(default_factory=list)
    keys: set[str] = field(default_factory=set)

    def add(self, key: str, rank: int, message: str) -> None:
        if key not in self.keys and len(self.lines) < MAX_EVIDENCE_LINES:
            self.keys.add(key)
            self.lines.append(f"rank {rank}: {message[:240]}")


def summarize(logs: Mapping[int, Sequence[str]], hosts: Sequence[str] | None = None) -> TransportSummary:
    """Summarize the NCCL INFO logs of all ranks (rank -> its lines).

    `hosts` (rank -> hostname) tells intra-node channels from inter-node ones; without it a NET channel counts
    as inter-node when NCCL reported more than one node, and P2P and SHM channels (same-host only) as intra-node.
    """
    evidence = _Evidence()
    warnings: list[str] = []
    version = ib_devices = socket_ifaces = None
    plugins: dict[str, None] = {}  # ordered set
    ib_none_ranks: set[int] = set()
    ib_using_ranks: set[int] = set()
    n_nodes: int | None = None
    nvls: int | None = None
    graph_types: list[str] = []
    channels: list[tuple[int, int, str]] = []  # (src, dst, via)
    any_line = False

    for rank in sorted(logs):
        for raw in logs[rank]:
            message = strip_prefix(raw)
            if not message:
                continue
            any_line = True
            if _WARN.search(raw):
                if len(warnings) < MAX_WARNINGS:
                    warnings.append(f"rank {rank}: {message[:240]}")
                continue
            if m := _CHANNEL.search(message):
                channels.append((int(m["src"]), int(m["dst"]), m["via"]))
                continue
            if m := _VERSION.search(message):
                version = version or m["version"]
                evidence.add("version", rank, message)
            elif _IB_NONE.search(message):
                ib_none_ranks.add(rank)
                evidence.add("ib-none", rank, message)
            elif m := _IB_USING.search(message):
                # NCCL 2.28 follows "No device found." with "NET/IB : Using [RO]; OOB eth0:..." (flags, no
                # device): only a "[0]mlx5_0:1/IB" entry is a device.
                if _IB_DEVICE.search(m["devices"]):
                    ib_using_ranks.add(rank)
                    ib_devices = ib_devices or m["devices"]
                    evidence.add("ib-using", rank, message)
            elif m := _SOCKET_USING.search(message):
                socket_ifaces = socket_ifaces or m["ifaces"]
                evidence.add("socket-using", rank, message)
            elif m := _USING_NETWORK.search(message):
                plugins[m["name"]] = None
                evidence.add("using-network", rank, message)
            elif m := _COMM.search(message):
                n_nodes = max(n_nodes or 0, int(m["nnodes"]))
            elif m := _PATTERN.search(message):
                if int(m["nchannels"]) > 0:
                    graph_types.append(m["intra"])
                    evidence.add(f"pattern-{m['intra']}", rank, message)
            elif m := _NVLS_CHANNELS.search(message):
                nvls = max(nvls or 0, int(m["nvls"]))

    if not any_line:
        return NO_TRANSPORT

    ib_found = False if ib_none_ranks else (True if ib_using_ranks else None)
    plugin = None
    if plugins:
        plugin = "Socket" if "Socket" in plugins else net_plugin(next(iter(plugins)))
    nvlink = bool(graph_types) and all(t in NVLINK_PATH_TYPES for t in graph_types)
    intra: list[Transport] = []
    inter: list[Transport] = []
    for src, dst, via in channels:
        transport = channel_transport(via, nvlink)
        if hosts is not None and src < len(hosts) and dst < len(hosts):
            same_host = hosts[src] == hosts[dst]
        else:
            same_host = not transport.startswith("net-") or (n_nodes or 1) == 1
        (intra if same_host else inter).append(transport)
        evidence.add(f"channel-{transport}-{'intra' if same_host else 'inter'}", src,
                     f"Channel {src} -> {dst} via {via}")

    return TransportSummary(
        source="nccl-log", intra_node=worst(intra), inter_node=worst(inter),
        intra_node_seen=tuple(ordered(intra)), inter_node_seen=tuple(ordered(inter)),
        net_plugin=plugin, net_plugin_names=tuple(plugins),
        ib_devices_found=ib_found, ib_devices=ib_devices, socket_interfaces=socket_ifaces, nccl_version=version,
        n_nodes=n_nodes, graph_intra_types=tuple(dict.fromkeys(graph_types)), nvls_channels=nvls,
        channels=len(channels), lines=tuple(evidence.lines), warnings=tuple(warnings))
