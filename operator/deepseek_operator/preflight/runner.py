"""The all-reduce run itself: the only preflight module that touches torch (imported inside run()).

Every rank: pin its GPU, join the process group (NCCL initialises eagerly, so a failure shows here, not in the
middle of the benchmark), check one all-reduce sums right, time all_reduce per message size, gather to every
rank the GPUs, the timings and the relevant NCCL log lines. Rank 0 judges with the pure report module and gets
the document; every rank gets the same exit code (rank 0's, broadcast), so torchrun's status is the verdict.
"""

from __future__ import annotations

import os
import socket
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from deepseek_operator.preflight import nccl_log
from deepseek_operator.preflight.options import EXIT_FAIL, Options, Rendezvous, nccl_environment
from deepseek_operator.preflight.report import (
    DEFAULT_SIZES,
    RankGpu,
    SizeResult,
    check_gpus,
    default_min_bus_bandwidth,
    document,
    exit_code,
    gate,
    human_size,
    iterations,
    parse_sizes,
    size_result,
)

_DTYPES = {"bf16": "bfloat16", "fp16": "float16", "fp32": "float32"}


def _say(rank: int, text: str) -> None:
    if rank == 0:
        print(f"preflight: {text}", file=sys.stderr, flush=True)


def error_text(exc: BaseException, limit: int = 600) -> str:
    """An exception in one line: type, message, whitespace folded, cut at `limit` characters."""
    text = " ".join(f"{type(exc).__name__}: {exc}".split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def read_log(path: str) -> list[str]:
    """The relevant lines of one rank's NCCL log (missing file: none)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return [line.rstrip("\n") for line in f if nccl_log.is_relevant(line)]
    except FileNotFoundError:
        return []


class _Collectives:
    """The handful of torch.distributed calls the benchmark makes, on one device."""

    def __init__(self, torch: Any, dist: Any, device: Any) -> None:
        self.torch, self.dist, self.device = torch, dist, device
        self.cuda = device.type == "cuda"

    def sync(self) -> None:
        """All ranks here, all queued work done: a tiny all-reduce, then wait for the device."""
        flag = self.torch.ones(1, dtype=self.torch.float32, device=self.device)
        self.dist.all_reduce(flag)
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def max_over_ranks(self, value: float) -> float:
        t = self.torch.tensor([value], dtype=self.torch.float64, device=self.device)
        self.dist.all_reduce(t, op=self.dist.ReduceOp.MAX)
        return float(t.item())

    def sums_right(self, rank: int, world_size: int) -> bool:
        t = self.torch.full((4096,), float(rank + 1), dtype=self.torch.float32, device=self.device)
        self.dist.all_reduce(t)
        if self.cuda:
            self.torch.cuda.synchronize(self.device)
        return bool(self.torch.all(t == world_size * (world_size + 1) / 2).item())

    def timed(self, buf: Any, n: int) -> float:
        """Seconds for `n` back-to-back all-reduces of `buf`, the slowest rank's.

        On CUDA, events on the current stream: a synchronous all_reduce makes that stream wait for NCCL's, so
        the end event completes with the last collective; the host's launch overhead is not counted.
        """
        self.sync()
        if self.cuda:
            start = self.torch.cuda.Event(enable_timing=True)
            end = self.torch.cuda.Event(enable_timing=True)
            start.record()
            for _ in range(n):
                self.dist.all_reduce(buf)
            end.record()
            end.synchronize()
            seconds = float(start.elapsed_time(end)) / 1e3
        else:
            began = time.perf_counter()
            for _ in range(n):
                self.dist.all_reduce(buf)
            seconds = time.perf_counter() - began
        return self.max_over_ranks(seconds)


def _benchmark(c: _Collectives, options: Options, sizes: tuple[int, ...], dtype_name: str, rank: int,
               world_size: int) -> tuple[list[SizeResult], str | None]:
    torch = c.torch
    dtype = getattr(torch, _DTYPES[dtype_name])
    element = int(torch.tensor([], dtype=dtype).element_size())
    results: list[SizeResult] = []
    for size in sizes:
        elements = max(1, size // element)
        try:
            buf = torch.zeros(elements, dtype=dtype, device=c.device)
            if options.warmup:
                c.dist.all_reduce(buf)  # the first one also connects the channels this size uses
            probe = c.timed(buf, 1)
            # The rest of the warm-up and the timed loop fit the size's budget (a slow fabric at 1 GiB would
            # otherwise take minutes); every rank derives the same counts from the same slowest-rank figure.
            for _ in range(min(options.warmup - 1, iterations(options.warmup, probe, options.size_budget_s / 2))):
                c.dist.all_reduce(buf)
            n = iterations(options.iters, probe, options.size_budget_s)
            result = size_result(elements * element, elements, n, c.timed(buf, n) / n, world_size)
            del buf
        except Exception as exc:  # out of memory, a collective that failed: report what was measured
            return results, f"at {human_size(size)}: {error_text(exc)}"
        results.append(result)
        bus = "n/a" if result.busbw_gbps is None else f"{result.busbw_gbps:8.2f}"
        _say(rank, f"{human_size(size):>7} x{n:<3} {result.seconds * 1e6:11.1f} us  algbw {result.algbw_gbps:8.2f}"
                   f"  busbw {bus} GB/s")
    if c.cuda:
        torch.cuda.empty_cache()
    return results, None


def run(options: Options, rdv: Rendezvous, log_dir: str) -> tuple[dict[str, object] | None, int]:
    """Run the preflight on this rank: (the JSON document on rank 0, else None; the exit code)."""
    import torch
    import torch.distributed as dist

    began = time.monotonic()
    started_at = datetime.now(UTC).isoformat(timespec="seconds")
    host = socket.gethostname()
    cuda = bool(torch.cuda.is_available())
    backend = options.backend if options.backend != "auto" else ("nccl" if cuda else "gloo")
    dtype_name = options.dtype if options.dtype != "auto" else ("bf16" if backend == "nccl" else "fp32")
    sizes = options.sizes or tuple(parse_sizes(DEFAULT_SIZES[backend]))
    min_bw = (options.min_bus_bandwidth_gbps if options.min_bus_bandwidth_gbps is not None
              else default_min_bus_bandwidth(options.expect_gpu))
    log_path = os.environ.get("NCCL_DEBUG_FILE", os.path.join(log_dir, f"nccl.rank{rdv.rank}.log"))

    device_name: str | None = None
    memory: int | None = None
    if cuda and rdv.local_rank < torch.cuda.device_count():
        device_name = str(torch.cuda.get_device_name(rdv.local_rank))
        memory = int(torch.cuda.get_device_properties(rdv.local_rank).total_memory)
    me = RankGpu(rdv.rank, host, rdv.local_rank, device_name, memory)
    nccl_version = None
    if cuda:
        try:
            nccl_version = ".".join(str(part) for part in torch.cuda.nccl.version())
        except Exception:  # a torch built without NCCL
            nccl_version = None
    _say(rdv.rank, f"world size {rdv.world_size}, backend {backend}, {dtype_name}, {len(sizes)} sizes "
                   f"{human_size(sizes[0])}..{human_size(sizes[-1])}, rendezvous {rdv.master_addr}:{rdv.master_port}")

    init_error: str | None = None
    correct: bool | None = None
    c: _Collectives | None = None
    try:
        timeout = timedelta(seconds=options.timeout_s)
        if backend == "nccl":
            if not cuda:
                raise RuntimeError("CUDA is not available: the nccl backend needs a GPU")
            if rdv.local_rank >= torch.cuda.device_count():
                raise RuntimeError(f"LOCAL_RANK {rdv.local_rank} but {torch.cuda.device_count()} CUDA devices")
            device = torch.device("cuda", rdv.local_rank)
            torch.cuda.set_device(device)
            # device_id: NCCL's communicator is made now, so an NCCL that cannot start fails here.
            dist.init_process_group("nccl", init_method="env://", rank=rdv.rank, world_size=rdv.world_size,
                                    timeout=timeout, device_id=device)
        else:
            device = torch.device("cpu")
            dist.init_process_group("gloo", init_method="env://", rank=rdv.rank, world_size=rdv.world_size,
                                    timeout=timeout)
        c = _Collectives(torch, dist, device)
        correct = c.sums_right(rdv.rank, rdv.world_size)
    except Exception as exc:
        init_error = error_text(exc)
        print(f"preflight: rank {rdv.rank}: {init_error}", file=sys.stderr, flush=True)

    if c is None or init_error is not None:
        # No group to gather over: rank 0 reports what it alone knows, with its own NCCL log's warnings.
        logs = {rdv.rank: read_log(log_path)} if backend == "nccl" else {}
        transport = nccl_log.summarize(logs, hosts=None) if logs else nccl_log.NO_TRANSPORT
        gpu = check_gpus([me], options.expect_gpu)
        verdict = gate(world_size=rdv.world_size, init_error=init_error or "no process group", correct=correct,
                       gpu=gpu, results=[], min_bus_bandwidth_gbps=min_bw, expect=options.expect_transport,
                       transport=transport)
        early = document(world_size=rdv.world_size, backend=backend, dtype=dtype_name, ranks=[me], results=[],
                       transport=transport, gpu=gpu, verdict=verdict, expect=options.expect_transport,
                       min_bus_bandwidth_gbps=min_bw, init_error=init_error, run_error=None, correct=correct,
                       environment=nccl_environment(os.environ), nccl_version=nccl_version,
                       torch_version=str(torch.__version__), started_at=started_at,
                       duration_seconds=time.monotonic() - began)
        return (early if rdv.rank == 0 else None), EXIT_FAIL

    ranks: list[Any] = [None] * rdv.world_size
    dist.all_gather_object(ranks, me)
    results, run_error = _benchmark(c, options, sizes, dtype_name, rdv.rank, rdv.world_size)

    gathered: list[Any] = [None] * rdv.world_size
    dist.all_gather_object(gathered, read_log(log_path) if backend == "nccl" else [])
    code_box: list[Any] = [EXIT_FAIL]
    doc: dict[str, object] | None = None
    if rdv.rank == 0:
        rank_gpus: list[RankGpu] = [r for r in ranks if isinstance(r, RankGpu)]
        if backend == "nccl":
            transport = nccl_log.summarize({r: lines for r, lines in enumerate(gathered)},
                                           hosts=[r.host for r in rank_gpus])
        else:
            transport = nccl_log.NO_TRANSPORT
        gpu = check_gpus(rank_gpus, options.expect_gpu)
        verdict = gate(world_size=rdv.world_size, init_error=None, correct=correct, gpu=gpu, results=results,
                       min_bus_bandwidth_gbps=min_bw, expect=options.expect_transport, transport=transport,
                       run_error=run_error)
        doc = document(world_size=rdv.world_size, backend=backend, dtype=dtype_name, ranks=rank_gpus,
                       results=results, transport=transport, gpu=gpu, verdict=verdict,
                       expect=options.expect_transport, min_bus_bandwidth_gbps=min_bw, init_error=None,
                       run_error=run_error, correct=correct, environment=nccl_environment(os.environ),
                       nccl_version=transport.nccl_version or nccl_version, torch_version=str(torch.__version__),
                       started_at=started_at, duration_seconds=time.monotonic() - began)
        code_box = [exit_code(verdict)]
    dist.broadcast_object_list(code_box, src=0)
    dist.destroy_process_group()
    return doc, int(code_box[0])
