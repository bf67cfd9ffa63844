"""The preflight's options and environment: command line, torchrun's rendezvous variables, the NCCL settings
it passes on and the NCCL debug logging it asks for; exit codes. Shared by the CLI and the runner (which
imports torch), so neither imports the other's module."""

from __future__ import annotations

import argparse
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from deepseek_operator.preflight.report import DEFAULT_SIZES, EXPECTATIONS, Expectation, parse_sizes
from deepseek_operator.render.catalog import GPUS

Backend = Literal["auto", "nccl", "gloo"]
DType = Literal["auto", "bf16", "fp16", "fp32"]
EXIT_PASS, EXIT_FAIL, EXIT_USAGE = 0, 1, 2

# NCCL_DEBUG=INFO names the transport of every channel; NCCL_DEBUG_FILE keeps those lines out of stdout (the
# JSON) and apart per rank, so rank 0 can gather and parse them. NCCL_DEBUG_SUBSYS: INIT carries the version,
# "Using network ..." and every channel line (those are INIT|P2P, INIT|SHM, INIT|NET); NET carries the IB and
# socket device discovery ("NET/IB : No device found", "NET/IB : Using [0]mlx5_0:1/IB"); GRAPH carries the
# topology search's "Pattern 4, ..., type NVL/PIX" line, the only one that tells NVLink from PCIe (a P2P
# channel line reads the same over both); ENV echoes the NCCL_* settings NCCL took from the environment.
# P2P and SHM alone add only per-buffer chatter, so they are left out.
NCCL_DEBUG_SUBSYS = "INIT,NET,GRAPH,ENV"


class UsageError(Exception):
    """A bad option or rendezvous environment: exit code 2."""


@dataclass(frozen=True)
class Rendezvous:
    rank: int
    world_size: int
    local_rank: int
    master_addr: str
    master_port: int
    launched: bool  # False: no torchrun environment, a lone process (world size 1 on 127.0.0.1)


@dataclass(frozen=True)
class Options:
    backend: Backend
    sizes: tuple[int, ...] | None  # None: the backend's default range
    dtype: DType
    warmup: int
    iters: int
    size_budget_s: float
    expect_gpu: str | None
    expect_transport: Expectation
    min_bus_bandwidth_gbps: float | None
    nccl_log_dir: str | None
    timeout_s: float
    output: str | None
    summary_file: str | None


def _int(env: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = env.get(name)
    if value is None or value == "":
        if default is None:
            raise UsageError(f"{name} is not set (launch with torchrun, or set RANK, WORLD_SIZE, LOCAL_RANK, "
                             "MASTER_ADDR and MASTER_PORT)")
        return default
    try:
        return int(value)
    except ValueError:
        raise UsageError(f"{name}={value!r} is not an integer") from None


def rendezvous_from_env(env: Mapping[str, str], free_port: int = 29500) -> Rendezvous:
    """torchrun's variables: RANK, WORLD_SIZE, LOCAL_RANK (default 0: one process per pod), MASTER_ADDR,
    MASTER_PORT. With none of them set, a lone process: rank 0 of 1 on 127.0.0.1:`free_port`."""
    names = ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")
    if not any(env.get(n) for n in (*names, "LOCAL_RANK")):
        return Rendezvous(0, 1, 0, "127.0.0.1", free_port, launched=False)
    rank, world_size = _int(env, "RANK"), _int(env, "WORLD_SIZE")
    local_rank = _int(env, "LOCAL_RANK", 0)
    port = _int(env, "MASTER_PORT")
    addr = env.get("MASTER_ADDR") or ""
    if not addr:
        raise UsageError("MASTER_ADDR is not set")
    if world_size < 1 or not 0 <= rank < world_size:
        raise UsageError(f"RANK {rank} is not within WORLD_SIZE {world_size}")
    if local_rank < 0 or not 0 < port < 65536:
        raise UsageError(f"LOCAL_RANK {local_rank} or MASTER_PORT {port} out of range")
    return Rendezvous(rank, world_size, local_rank, addr, port, launched=True)


def nccl_debug_env(log_dir: str, rank: int) -> dict[str, str]:
    """What the preflight adds to the (operator-rendered) NCCL environment, and nothing else."""
    return {"NCCL_DEBUG": "INFO", "NCCL_DEBUG_SUBSYS": NCCL_DEBUG_SUBSYS,
            "NCCL_DEBUG_FILE": os.path.join(log_dir, f"nccl.rank{rank}.log")}


def nccl_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The NCCL-related settings of a process, for the JSON (what the fabric was tested with)."""
    keep = ("NCCL_", "TORCH_NCCL_", "TORCH_SYMM_MEM_", "NVSHMEM_", "CUDA_VISIBLE_DEVICES")
    # NCCL_VERSION is a container image's label (NVIDIA's images set it), not a setting, and need not be the
    # NCCL that torch loads: the JSON's versions.nccl comes from NCCL's own log.
    skip = ("NCCL_DEBUG_FILE", "NCCL_VERSION")
    return {k: v for k, v in env.items() if k.startswith(keep) and k not in skip}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m deepseek_operator.preflight",
        description="All-reduce over every rank of a replica (torch.distributed; launch with torchrun or one "
                    "process per pod) and tell whether the GPU fabric is healthy: bus bandwidth, the transport "
                    "NCCL chose, the GPUs. Rank 0 prints one JSON document. Exit 0 pass, 1 fail, 2 usage.")
    parser.add_argument("--backend", choices=("auto", "nccl", "gloo"), default="auto",
                        help="auto: nccl when CUDA is available, else gloo")
    parser.add_argument("--sizes", default=None,
                        help="message sizes per rank: sizes and ranges, e.g. 1MiB-1GiB (doubling), 1MiB-1GiB:x4, "
                             f"1M,64M. Default {DEFAULT_SIZES['nccl']} (nccl), {DEFAULT_SIZES['gloo']} (gloo)")
    parser.add_argument("--dtype", choices=("auto", "bf16", "fp16", "fp32"), default="auto",
                        help="buffer type; auto: bf16 on nccl, fp32 on gloo")
    parser.add_argument("--warmup", type=int, default=5, help="untimed all-reduces per size (default 5)")
    parser.add_argument("--iters", type=int, default=20, help="timed all-reduces per size (default 20)")
    parser.add_argument("--size-budget-s", type=float, default=5.0,
                        help="fewer warm-up and timed iterations (at least 3) where a size would take longer "
                             "(default 5 s)")
    parser.add_argument("--expect-gpu", choices=sorted(GPUS), default=None,
                        help="the catalog GPU the pod was promised: device name and memory must match")
    parser.add_argument("--expect-transport", choices=EXPECTATIONS, default="any",
                        help="nvlink / p2p: one node's GPUs over P2P (NVLink); ib: NCCL's IB transport "
                             "(InfiniBand, RoCE); socket: TCP between nodes (fabric ethernet); any (default)")
    parser.add_argument("--min-bus-bandwidth-gbps", type=float, default=None,
                        help="peak bus bandwidth to pass, GB/s (default: the catalog's bound for --expect-gpu)")
    parser.add_argument("--nccl-log-dir", default=None,
                        help="keep each rank's NCCL INFO log here (default: a temporary directory, removed)")
    parser.add_argument("--timeout-s", type=float, default=300.0,
                        help="torch.distributed timeout for rendezvous and collectives (default 300 s)")
    parser.add_argument("--output", default=None, help="also write the JSON document to this file (rank 0)")
    parser.add_argument("--summary-file", default=None,
                        help="write a summary of the verdict (under 4 KiB) to this file (rank 0); the operator "
                             "renders /dev/termination-log, which the kubelet puts in the pod's status")
    return parser


def parse_options(argv: Sequence[str] | None = None) -> Options:
    """Parse the command line; argparse exits 2 on a bad option, a bad value raises UsageError."""
    args = build_parser().parse_args(argv)
    sizes: tuple[int, ...] | None = None
    if args.sizes is not None:
        try:
            sizes = tuple(parse_sizes(args.sizes))
        except ValueError as exc:
            raise UsageError(f"--sizes: {exc}") from None
    if args.warmup < 0 or args.iters < 1:
        raise UsageError("--warmup must be >= 0 and --iters >= 1")
    if args.size_budget_s <= 0 or args.timeout_s <= 0:
        raise UsageError("--size-budget-s and --timeout-s must be positive")
    if args.min_bus_bandwidth_gbps is not None and args.min_bus_bandwidth_gbps < 0:
        raise UsageError("--min-bus-bandwidth-gbps must be >= 0")
    return Options(backend=cast(Backend, args.backend), sizes=sizes, dtype=cast(DType, args.dtype),
                   warmup=args.warmup, iters=args.iters, size_budget_s=args.size_budget_s,
                   expect_gpu=args.expect_gpu, expect_transport=cast(Expectation, args.expect_transport),
                   min_bus_bandwidth_gbps=args.min_bus_bandwidth_gbps, nccl_log_dir=args.nccl_log_dir,
                   timeout_s=args.timeout_s, output=args.output, summary_file=args.summary_file)


