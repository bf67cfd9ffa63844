"""The preflight's arithmetic and verdict: message sizes, bandwidths, the GPU check, the gate, the JSON. Pure.

Bandwidths follow nccl-tests (doc/PERFORMANCE.md): algorithm bandwidth is the bytes of one rank's buffer over
the time of one all-reduce; bus bandwidth is algbw * 2(n-1)/n, the rate each link carries in a ring
all-reduce, comparable across rank counts and with the hardware's link bandwidth. GB/s are 1e9 bytes/s.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from deepseek_operator.preflight.nccl_log import TransportSummary
from deepseek_operator.render.catalog import GPUS, GpuSpec

Expectation = Literal["any", "nvlink", "p2p", "ib", "socket"]
EXPECTATIONS: tuple[Expectation, ...] = ("any", "nvlink", "p2p", "ib", "socket")
SCHEMA = "deepseek-operator/preflight-allreduce/v1"

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30
_UNITS = {"": 1, "b": 1, "k": KIB, "kb": KIB, "kib": KIB, "m": MIB, "mb": MIB, "mib": MIB,
          "g": GIB, "gb": GIB, "gib": GIB}
_SIZE = re.compile(r"^\s*(\d+)\s*([a-zA-Z]*)\s*$")
MAX_SIZE = 16 * GIB
DEFAULT_SIZES = {"nccl": "1MiB-1GiB:x2", "gloo": "1MiB-64MiB:x4"}

# memory_gb in the catalog is the marketed figure; the cards expose about that many GiB less what the driver
# keeps (torch.cuda total_memory: H100 80GB about 79.1 GiB, H200 141GB about 139.8 GiB, 24 GB cards about
# 22 GiB). A card within 10% of it is that card; a mislabelled node is off by a whole product (80 vs 141).
MEMORY_TOLERANCE = 0.10


# ------------------------------------------------------------------------------------------- message sizes

def parse_size(text: str) -> int:
    """``1MiB``, ``64M``, ``1GiB``, ``4096`` (bytes; binary units) -> bytes."""
    m = _SIZE.match(text)
    if not m or m[2].lower() not in _UNITS:
        raise ValueError(f"not a size: {text!r} (use e.g. 1MiB, 64M, 1GiB or bytes)")
    size = int(m[1]) * _UNITS[m[2].lower()]
    if not 0 < size <= MAX_SIZE:
        raise ValueError(f"size {text!r} out of range (1 byte to 16 GiB)")
    return size


def parse_sizes(spec: str) -> list[int]:
    """Sizes in bytes, ascending, from a comma list of sizes and ranges ``MIN-MAX`` (doubling) or
    ``MIN-MAX:xF`` (times F): ``1MiB-1GiB:x4``, ``1M,16M,256M``."""
    sizes: set[int] = set()
    for part in (p.strip() for p in spec.split(",")):
        if not part:
            continue
        if "-" not in part:
            sizes.add(parse_size(part))
            continue
        bounds, _, step = part.partition(":")
        low_text, _, high_text = bounds.partition("-")
        low, high = parse_size(low_text), parse_size(high_text)
        factor = 2
        if step:
            if not re.fullmatch(r"x\d+", step.strip()) or int(step.strip()[1:]) < 2:
                raise ValueError(f"range step {step!r}: use x2, x4...")
            factor = int(step.strip()[1:])
        if low > high:
            raise ValueError(f"range {part!r} runs backwards")
        size = low
        while size <= high:
            sizes.add(size)
            size *= factor
    if not sizes:
        raise ValueError("no message sizes given")
    return sorted(sizes)


def human_size(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale}{unit}"
    return f"{size}B"


# ------------------------------------------------------------------------------------------- bandwidth

def bus_factor(world_size: int) -> float:
    """nccl-tests' all-reduce correction: 2(n-1)/n. 0 for one rank: no bytes cross any link."""
    if world_size < 1:
        raise ValueError("world size must be at least 1")
    return 2 * (world_size - 1) / world_size


@dataclass(frozen=True)
class SizeResult:
    size_bytes: int
    elements: int
    iters: int
    seconds: float  # one all-reduce, averaged over iters, the slowest rank's
    algbw_gbps: float
    busbw_gbps: float | None  # None for one rank: no inter-GPU traffic

    def to_json(self) -> dict[str, object]:
        return {"bytes": self.size_bytes, "size": human_size(self.size_bytes), "elements": self.elements,
                "iters": self.iters, "timeUs": round(self.seconds * 1e6, 2),
                "algBandwidthGbps": round(self.algbw_gbps, 3),
                "busBandwidthGbps": None if self.busbw_gbps is None else round(self.busbw_gbps, 3)}


def size_result(size_bytes: int, elements: int, iters: int, seconds: float, world_size: int) -> SizeResult:
    if seconds <= 0:
        raise ValueError("an all-reduce takes some time")
    algbw = size_bytes / seconds / 1e9
    busbw = algbw * bus_factor(world_size) if world_size > 1 else None
    return SizeResult(size_bytes, elements, iters, seconds, algbw, busbw)


def peak(results: Sequence[SizeResult]) -> SizeResult | None:
    """The result with the highest bus bandwidth; None when there is none (one rank, or no results)."""
    with_bus = [r for r in results if r.busbw_gbps is not None]
    return max(with_bus, key=lambda r: r.busbw_gbps or 0.0) if with_bus else None


def iterations(requested: int, seconds_per_op: float, budget_seconds: float, minimum: int = 3) -> int:
    """How many timed iterations fit a size's time budget (all ranks compute it from the same figure)."""
    if seconds_per_op <= 0:
        return requested
    return max(min(requested, int(budget_seconds / seconds_per_op)), min(minimum, requested))


# ------------------------------------------------------------------------------------------- GPU check

def normalize_product(name: str) -> str:
    """A GPU name as a product label: ``NVIDIA H100 80GB HBM3`` and ``NVIDIA-H100-80GB-HBM3`` both become
    ``NVIDIA-H100-80GB-HBM3`` (GPU Feature Discovery turns the NVML name's spaces into dashes)."""
    return re.sub(r"[^A-Z0-9]+", "-", name.upper()).strip("-")


def product_matches(device_name: str, gpu: GpuSpec) -> bool:
    return normalize_product(device_name) in {normalize_product(label) for label in gpu.product_labels}


@dataclass(frozen=True)
class RankGpu:
    rank: int
    host: str
    local_rank: int
    device_name: str | None  # None without CUDA
    memory_bytes: int | None

    def to_json(self) -> dict[str, object]:
        return {"rank": self.rank, "host": self.host, "localRank": self.local_rank, "device": self.device_name,
                "memoryGiB": None if self.memory_bytes is None else round(self.memory_bytes / GIB, 2)}


@dataclass(frozen=True)
class GpuCheck:
    expected: str | None  # catalog key, None when not asked
    passed: bool | None  # None: not checked
    problems: tuple[str, ...] = ()

    def to_json(self) -> dict[str, object]:
        return {"expected": self.expected, "passed": self.passed, "problems": list(self.problems)}


def check_gpu(device_name: str | None, memory_bytes: int | None, gpu: GpuSpec) -> str | None:
    """What is wrong with one rank's GPU for catalog entry `gpu`, or None when it is that GPU."""
    if device_name is None or memory_bytes is None:
        return f"no CUDA device, expected {gpu.name}"
    if not product_matches(device_name, gpu):
        return (f"device {device_name!r} is not {gpu.name} (product labels {', '.join(gpu.product_labels)})")
    gib = memory_bytes / GIB
    if abs(gib - gpu.memory_gb) > MEMORY_TOLERANCE * gpu.memory_gb:
        return f"device {device_name!r} has {gib:.1f} GiB, {gpu.name} has {gpu.memory_gb} GB"
    return None


def check_gpus(ranks: Sequence[RankGpu], expected: str | None) -> GpuCheck:
    if expected is None:
        return GpuCheck(expected=None, passed=None)
    gpu = GPUS[expected]
    problems = [f"rank {r.rank} ({r.host}): {p}" for r in ranks
                if (p := check_gpu(r.device_name, r.memory_bytes, gpu)) is not None]
    return GpuCheck(expected=expected, passed=not problems, problems=tuple(problems))


def default_min_bus_bandwidth(expected_gpu: str | None) -> float | None:
    return GPUS[expected_gpu].min_bus_bandwidth_gbps if expected_gpu else None


# ------------------------------------------------------------------------------------------- transport

_NET = ("net-ib", "net-other", "net-socket")


def transport_problem(expect: Expectation, summary: TransportSummary) -> str | None:
    """Why the detected transport is not what `expect` asks for, or None when it is acceptable.

    nvlink: every intra-node channel over P2P on NVLink; p2p: over P2P (NVLink or PCIe); both also take RDMA
    between nodes. ib: NCCL's IB transport loaded on every rank and carrying every inter-node channel, no
    intra-node channel over the network. socket (fabric ethernet): TCP between nodes is expected, intra-node
    channels must still be P2P or SHM.
    """
    if expect == "any":
        return None
    if summary.source == "none":
        return "no NCCL log to tell the transport (backend is not NCCL)"
    intra, inter = set(summary.intra_node_seen), set(summary.inter_node_seen)
    if expect in ("nvlink", "p2p"):
        allowed = {"p2p-nvlink"} if expect == "nvlink" else {"p2p-nvlink", "p2p"}
        if not intra:
            return "no intra-node channels: NCCL reported no P2P/SHM connections"
        if intra - allowed:
            return f"intra-node traffic over {'/'.join(sorted(intra - allowed))}, expected {expect}"
        if inter - {"net-ib"}:
            return f"inter-node traffic over {'/'.join(sorted(inter - {'net-ib'}))}, expected net-ib"
        return None
    if expect == "ib":
        if summary.net_plugin != "IB":
            found = "no IB device found" if summary.ib_devices_found is False else "IB not loaded"
            return f"NCCL network is {summary.net_plugin or 'unknown'} ({found}), expected IB"
        if inter - {"net-ib"}:
            return f"inter-node traffic over {'/'.join(sorted(inter - {'net-ib'}))}, expected net-ib"
        if intra & set(_NET):
            return f"intra-node traffic over {'/'.join(sorted(intra & set(_NET)))}"
        return None
    # socket
    if intra & set(_NET):
        return f"intra-node traffic over {'/'.join(sorted(intra & set(_NET)))}"
    return None


# ------------------------------------------------------------------------------------------- gate

@dataclass(frozen=True)
class Gate:
    passed: bool
    checks: Mapping[str, bool | None]  # init, correct, gpu, bandwidth, transport; None: not applicable
    reasons: tuple[str, ...]
    message: str

    def to_json(self) -> dict[str, object]:
        return {"passed": self.passed, "checks": dict(self.checks), "reasons": list(self.reasons)}


def _num(value: float) -> str:
    # One decimal, but never rounding a small bound (0.15) or figure to another value.
    return f"{value:.0f}" if value >= 1000 else f"{value:.1f}" if value >= 1 else f"{value:.2g}"


def gate(*, world_size: int, init_error: str | None, correct: bool | None, gpu: GpuCheck,
         results: Sequence[SizeResult], min_bus_bandwidth_gbps: float | None, expect: Expectation,
         transport: TransportSummary, run_error: str | None = None) -> Gate:
    """Pass iff the backend initialised and summed right, the GPUs are the promised ones, and (more than one
    rank) the peak bus bandwidth reaches the bound over an acceptable transport.

    The message leads with the figures when the bandwidth failed, then every other reason; a pass names the
    figures and the transport.
    """
    checks: dict[str, bool | None] = {"init": init_error is None, "correct": correct, "gpu": gpu.passed,
                                      "bandwidth": None, "transport": None}
    reasons: list[str] = []
    if init_error is not None:
        reasons.append(f"backend did not initialise: {init_error}")
    if correct is False:
        reasons.append("all-reduce returned a wrong sum")
    if run_error is not None:
        reasons.append(f"benchmark failed: {run_error}")
    reasons.extend(gpu.problems)

    figures = ""
    if init_error is None and world_size > 1:
        problem = transport_problem(expect, transport)
        checks["transport"] = problem is None
        if problem is not None:
            reasons.append(f"transport {transport.label}: {problem}")
        best = peak(results)
        if best is None or best.busbw_gbps is None:
            checks["bandwidth"] = False
            if run_error is None:
                reasons.append("no bandwidth measured")
        else:
            bound = min_bus_bandwidth_gbps
            ok = bound is None or best.busbw_gbps >= bound
            relation = "" if bound is None else f" {'>=' if ok else '<'} {_num(bound)} GB/s"
            figures = (f"peak bus bandwidth {_num(best.busbw_gbps)} GB/s{relation} at "
                       f"{human_size(best.size_bytes)} over transport {transport.label} "
                       f"(expected {expect}, {world_size} ranks)")
            checks["bandwidth"] = None if bound is None else ok and run_error is None
            if not ok:
                reasons.insert(0, figures)
    elif init_error is None:
        figures = "world size 1: no inter-GPU traffic, bus bandwidth not applicable; backend initialised"

    passed = not reasons
    if passed:
        gpu_text = f"; GPUs are {gpu.expected}" if gpu.passed else ""
        return Gate(True, checks, (), f"PASSED: {figures}{gpu_text}")
    parts = reasons if not figures or figures in reasons else [*reasons, figures]
    return Gate(False, checks, tuple(reasons), "FAILED: " + "; ".join(parts))


def exit_code(verdict: Gate) -> int:
    return 0 if verdict.passed else 1


# ------------------------------------------------------------------------------------------- document

def document(*, world_size: int, backend: str, dtype: str, ranks: Sequence[RankGpu], results: Sequence[SizeResult],
             transport: TransportSummary, gpu: GpuCheck, verdict: Gate, expect: Expectation,
             min_bus_bandwidth_gbps: float | None, init_error: str | None, run_error: str | None,
             correct: bool | None, environment: Mapping[str, str], nccl_version: str | None,
             torch_version: str | None, started_at: str, duration_seconds: float) -> dict[str, object]:
    """The one JSON document rank 0 prints."""
    best = peak(results)
    return {
        "schema": SCHEMA,
        "passed": verdict.passed,
        "exitCode": exit_code(verdict),
        "message": verdict.message,
        "worldSize": world_size,
        "backend": backend,
        "dtype": dtype,
        "busBandwidthApplicable": world_size > 1,
        "bandwidthNote": None if world_size > 1 else (
            "world size 1: no bytes cross any link; algBandwidthGbps is a local in-place all-reduce, not a fabric "
            "figure"),
        "peakBusBandwidthGbps": None if best is None or best.busbw_gbps is None else round(best.busbw_gbps, 3),
        "peakAtBytes": None if best is None else best.size_bytes,
        "minBusBandwidthGbps": min_bus_bandwidth_gbps,
        "expectTransport": expect,
        "transport": transport.to_json(),
        "gpuCheck": gpu.to_json(),
        "gate": verdict.to_json(),
        "init": {"ok": init_error is None, "error": init_error},
        "correct": correct,
        "runError": run_error,
        "results": [r.to_json() for r in results],
        "ranks": [r.to_json() for r in ranks],
        "versions": {"nccl": nccl_version, "torch": torch_version},
        "environment": dict(sorted(environment.items())),
        "startedAt": started_at,
        "durationSeconds": round(duration_seconds, 3),
    }


# A container's termination message holds at most 4096 bytes: the summary the operator reads stays well within.
SUMMARY_MESSAGE_CHARS = 1500


def summary(doc: Mapping[str, object]) -> dict[str, object]:
    """The part of the document the operator records in status.preflight, small enough for a termination
    message."""
    transport = doc.get("transport")
    ranks = doc.get("ranks")
    hosts = {r.get("host") for r in ranks if isinstance(r, dict)} if isinstance(ranks, list) else set()
    message = str(doc.get("message", ""))
    if len(message) > SUMMARY_MESSAGE_CHARS:
        message = message[:SUMMARY_MESSAGE_CHARS - 3] + "..."
    return {"passed": doc.get("passed"), "message": message, "backend": doc.get("backend"),
            "worldSize": doc.get("worldSize"), "nodes": len(hosts),
            "peakBusBandwidthGbps": doc.get("peakBusBandwidthGbps"), "peakAtBytes": doc.get("peakAtBytes"),
            "minBusBandwidthGbps": doc.get("minBusBandwidthGbps"),
            "transport": transport.get("label") if isinstance(transport, dict) else None,
            "expectTransport": doc.get("expectTransport")}
