"""Does a model fit the GPUs named for it, and with which tensor/pipeline parallel layout. Pure.

Every figure here is an estimate from the model's shape (catalog.py), not a measurement: weight bytes by
precision, the KV cache of max_batch_size x max_seq_len tokens, and a flat runtime overhead per GPU.
TensorRT-LLM's real footprint moves with its version and build options; the margins below are there so that
a layout called a fit leaves room for that, and the status reports these numbers as estimates.

TensorRT-LLM gives the KV cache `kv_cache_free_gpu_mem_fraction` of the memory still free once weights and
runtime buffers are loaded. So a layout fits when, per GPU,

    kv_cache <= (usable - weights - overhead) * fraction,  i.e.  weights + kv_cache / fraction + overhead <= usable

and `need_per_gpu_gb` is the left-hand side of that second form, `budget_per_gpu_gb` the right.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from deepseek_operator.api.common import Precision
from deepseek_operator.api.status import Reason
from deepseek_operator.render.catalog import GPUS, GpuSpec, ModelSpec, bytes_per_param

# SizingResult.reason values: the FitsHardware condition's reasons.
FITS = Reason.FITS
DOES_NOT_FIT = Reason.INSUFFICIENT_GPU_MEMORY
NO_FP8 = Reason.PRECISION_UNSUPPORTED
BAD_PARALLELISM = Reason.INVALID_PARALLELISM
EXCEEDS_NODE = Reason.EXCEEDS_NODE
GPU_UNSUPPORTED = Reason.GPU_UNSUPPORTED
EXCEEDS_CONTEXT = Reason.EXCEEDS_CONTEXT
NO_SUCH_NODE = Reason.NO_SUCH_NODE
# What no other GPU type or layout mends: the message says what to change, without suggestions.
_SPEC_LIMITS = (EXCEEDS_CONTEXT, NO_SUCH_NODE)

# Share of a card's marketed memory we plan with. The marketed figure already under-states the bytes a process
# sees (an "80 GB" H100 shows 81,559 MiB = 85.5 GB), which covers the CUDA driver's own reservation; the 5%
# kept back covers allocator fragmentation, TensorRT-LLM runtime buffers our overhead figure misses, and the
# error of these estimates.
USABLE_MEMORY_FRACTION = 0.95
# Per GPU: CUDA context and cuBLAS/TensorRT workspaces (~1 GB) plus the activation buffers TensorRT-LLM sizes
# for its default max_num_tokens of 8192 (about 1 GB per GPU for the models here).
OVERHEAD_BASE_GB = 2.0
# Per other rank of the tensor-parallel group: NCCL channel buffers and TensorRT-LLM's custom all-reduce IPC
# workspace grow with the peers each rank talks to. Pipeline stages only pass activations to their
# neighbours, which is small.
OVERHEAD_PER_TP_PEER_GB = 0.25
# Pipeline depths auto-sizing and suggestions try. Deeper pipelines add a node per stage for little memory;
# beyond four nodes per replica a bigger GPU or a lower precision is the better answer.
PIPELINE_PARALLEL_CHOICES = (2, 4)
# TensorRT-LLM caches K/V in 16-bit, FP8 or INT8; 4-bit weight formats have no KV counterpart.
KV_CACHE_PRECISIONS = frozenset({Precision.BF16, Precision.FP16, Precision.FP8, Precision.INT8})
# INT4 AWQ (W4A16) runs in TensorRT-LLM's PyTorch backend on Ada and Hopper only (docs/source/features/
# quantization.md, its hardware table: W4A16 AWQ on Hopper and Ada; Blackwell runs FP4 instead; nothing on Ampere).
INT4_AWQ = frozenset({Precision.AWQ, Precision.W4A16})
INT4_AWQ_CAPABILITIES = frozenset({"8.9", "9.0"})
# Lower weight precisions suggested when a model does not fit, best quality first (AWQ is the better INT4).
_LOWER_PRECISIONS = (Precision.FP8, Precision.NVFP4, Precision.AWQ)
# What to suggest when the GPU has no FP8: the unquantized model first, then weight-only quantization.
_PRECISIONS_WITHOUT_FP8 = (Precision.BF16, Precision.AWQ)
# Enough alternatives to choose from without burying the message.
MAX_SUGGESTED_GPUS = 2
_GB = 1e9
# An HGX board's NVLink domain ends at its node; only a larger domain (multi-node NVLink) joins nodes.
MAX_GPUS_PER_BOARD = 8


@dataclass(frozen=True)
class SizingRequest:
    model: ModelSpec
    precision: Precision  # weight precision of the served checkpoint
    gpu: GpuSpec
    gpus_per_node: int  # one NVLink domain; `auto` tensor parallelism stays inside it
    max_batch_size: int
    max_seq_len: int
    kv_cache_free_gpu_mem_fraction: float
    tensor_parallel: int | None = None  # None: the smallest that fits
    pipeline_parallel: int | None = None  # None: 1, or across nodes when nothing inside one node fits
    kv_cache_precision: Precision | None = None  # None: FP8 with FP8 weights, else bf16
    attention_data_parallel: bool = False  # every GPU holds all non-expert weights (MoE models)

    def __post_init__(self) -> None:
        for field, value in (("gpus_per_node", self.gpus_per_node), ("max_batch_size", self.max_batch_size),
                             ("max_seq_len", self.max_seq_len), ("tensor_parallel", self.tensor_parallel),
                             ("pipeline_parallel", self.pipeline_parallel)):
            if value is not None and value < 1:
                raise ValueError(f"{field} must be at least 1, got {value}")
        if not 0 < self.kv_cache_free_gpu_mem_fraction <= 1:
            raise ValueError(f"kv_cache_free_gpu_mem_fraction must be in (0, 1], got "
                             f"{self.kv_cache_free_gpu_mem_fraction}")
        if self.kv_cache_precision is not None and self.kv_cache_precision not in KV_CACHE_PRECISIONS:
            raise ValueError(f"no {self.kv_cache_precision} KV cache; use one of "
                             f"{', '.join(sorted(KV_CACHE_PRECISIONS))}")

    @property
    def kv_precision(self) -> Precision:
        if self.kv_cache_precision is not None:
            return self.kv_cache_precision
        return Precision.FP8 if self.precision is Precision.FP8 else Precision.BF16


@dataclass(frozen=True)
class SizingResult:
    """The layout chosen (or the closest one tried) and its memory estimate, in GB (1e9 bytes)."""

    fits: bool
    reason: str  # FITS, DOES_NOT_FIT, NO_FP8, BAD_PARALLELISM or EXCEEDS_NODE
    tensor_parallel: int
    pipeline_parallel: int
    gpus_per_replica: int
    nodes_per_replica: int
    weights_gb: float  # the whole model at the requested precision
    kv_cache_gb: float  # max_batch_size x max_seq_len tokens, before tensor-parallel copies
    overhead_gb_per_gpu: float
    need_per_gpu_gb: float
    budget_per_gpu_gb: float
    message: str


def weights_gb(model: ModelSpec, precision: Precision) -> float:
    """Weight bytes of the whole model; the embedding and LM head stay 16-bit whatever the precision."""
    # Billions of parameters times bytes per parameter is GB.
    quantized = model.params_billion - model.embedding_params_billion
    return quantized * bytes_per_param(precision) + model.embedding_params_billion * 2.0


def kv_cache_bytes_per_token(model: ModelSpec, kv_precision: Precision, tensor_parallel: int = 1) -> float:
    """KV cache bytes of one token, over all layers, held by one rank of a tensor-parallel group."""
    if model.uses_mla:
        # MLA caches one compressed latent (plus the decoupled RoPE key) per token and layer, shared by all heads,
        # so every tensor-parallel rank holds all of it.
        per_layer = model.kv_lora_rank + model.qk_rope_head_dim
    else:
        # K and V per KV head; ranks split the KV heads, and copy them when TP exceeds the KV head count.
        per_layer = 2 * math.ceil(model.kv_heads / tensor_parallel) * model.head_dim
    return model.layers * per_layer * bytes_per_param(kv_precision)


def tensor_parallel_valid(model: ModelSpec, tensor_parallel: int) -> bool:
    """A power of two that splits the attention heads evenly and the KV heads evenly (or copies them evenly)."""
    tp, kv = tensor_parallel, model.kv_heads
    power_of_two = tp >= 1 and tp & (tp - 1) == 0
    kv_even = kv % tp == 0 if kv >= tp else tp % kv == 0
    return power_of_two and model.attention_heads % tp == 0 and kv_even


def tensor_parallel_limit(gpu: GpuSpec, gpus_per_node: int) -> int:
    """The most GPUs one tensor-parallel group may span: a node, or a whole NVLink domain that joins nodes
    (GB200 NVL72). All-reduce on every layer is only fast enough inside one of them."""
    spans_nodes = gpu.nvlink_domain > MAX_GPUS_PER_BOARD and gpu.nvlink_domain % gpus_per_node == 0
    return gpu.nvlink_domain if spans_nodes else gpus_per_node


def tensor_parallel_options(model: ModelSpec, limit: int) -> list[int]:
    """The valid tensor-parallel sizes up to `limit` GPUs, smallest first."""
    powers = (1 << i for i in range(limit.bit_length()))
    return [tp for tp in powers if tensor_parallel_valid(model, tp)]


def nodes_per_replica(tensor_parallel: int, pipeline_parallel: int, gpus_per_node: int) -> int:
    return math.ceil(tensor_parallel * pipeline_parallel / gpus_per_node)


def _fills_whole_nodes(tensor_parallel: int, pipeline_parallel: int, gpus_per_node: int) -> bool:
    # A replica across nodes runs one identical pod per node (LeaderWorkerSet): each holds whole TP groups, or
    # (inside an NVLink domain of several nodes) an equal share of one.
    gpus = tensor_parallel * pipeline_parallel
    return gpus <= gpus_per_node or (gpus % gpus_per_node == 0 and (
        gpus_per_node % tensor_parallel == 0 or tensor_parallel % gpus_per_node == 0))


@dataclass(frozen=True)
class _Estimate:
    """Memory of one GPU of the heaviest pipeline stage, for one layout."""

    tensor_parallel: int
    pipeline_parallel: int
    weights_per_gpu_gb: float
    kv_cache_per_gpu_gb: float
    overhead_gb_per_gpu: float
    need_per_gpu_gb: float
    budget_per_gpu_gb: float

    @property
    def gpus(self) -> int:
        return self.tensor_parallel * self.pipeline_parallel

    @property
    def fits(self) -> bool:
        return self.need_per_gpu_gb <= self.budget_per_gpu_gb


def _estimate(req: SizingRequest, tensor_parallel: int, pipeline_parallel: int) -> _Estimate:
    model = req.model
    # The heaviest stage holds ceil(layers / pp) layers: TensorRT-LLM splits uneven counts (R1 has 61 layers).
    stage_share = math.ceil(model.layers / pipeline_parallel) / model.layers
    experts = model.expert_params_billion * bytes_per_param(req.precision)
    others = weights_gb(model, req.precision) - experts
    weights = (experts / tensor_parallel + (others if req.attention_data_parallel else others / tensor_parallel)) \
        * stage_share
    tokens = req.max_batch_size * req.max_seq_len
    kv_cache = tokens * kv_cache_bytes_per_token(model, req.kv_precision, tensor_parallel) * stage_share / _GB
    overhead = OVERHEAD_BASE_GB + OVERHEAD_PER_TP_PEER_GB * (tensor_parallel - 1)
    return _Estimate(
        tensor_parallel=tensor_parallel, pipeline_parallel=pipeline_parallel, weights_per_gpu_gb=weights,
        kv_cache_per_gpu_gb=kv_cache, overhead_gb_per_gpu=overhead,
        need_per_gpu_gb=weights + kv_cache / req.kv_cache_free_gpu_mem_fraction + overhead,
        budget_per_gpu_gb=req.gpu.memory_gb * USABLE_MEMORY_FRACTION)


@dataclass(frozen=True)
class _Placement:
    reason: str
    estimate: _Estimate
    problem: str = ""  # why the request cannot work at all, for the reasons other than FITS and DOES_NOT_FIT


def _layout_problem(req: SizingRequest) -> tuple[str, str] | None:
    """A user-fixed layout that can never work, as (reason, why)."""
    model, tp, pp, per_node = req.model, req.tensor_parallel, req.pipeline_parallel, req.gpus_per_node
    context = model.max_position_embeddings
    if context is not None and req.max_seq_len > context:
        return EXCEEDS_CONTEXT, (f"runtime.maxSeqLen {req.max_seq_len} exceeds the {context}-token context window "
                                 f"of {model.name} (its max_position_embeddings): set maxSeqLen to at most "
                                 f"{context}")
    if per_node > req.gpu.max_per_node:
        return NO_SUCH_NODE, (f"serving.gpu.perNode {per_node}: no {req.gpu.name} node has that many GPUs (at "
                              f"most {req.gpu.max_per_node} per node): set perNode to the GPUs your nodes have")
    limit = tensor_parallel_limit(req.gpu, per_node)
    valid = ", ".join(map(str, tensor_parallel_options(model, limit)))
    if tp is not None and not tensor_parallel_valid(model, tp):
        return BAD_PARALLELISM, (f"parallelism.tensor {tp} must be a power of two that divides the "
                                 f"{model.attention_heads} "
                                 f"attention heads and the {model.kv_heads} KV heads (or is a multiple of them); "
                                 f"valid on {per_node} GPUs per node: {valid}")
    if tp is not None and tp > limit and tp % per_node:
        where = "one node" if limit == per_node else f"one NVLink domain of {req.gpu.name}"
        return EXCEEDS_NODE, (f"parallelism.tensor {tp} exceeds the {limit} GPUs of {where} without filling whole "
                              f"nodes of {per_node}: a tensor-parallel group spans nodes only whole (its "
                              f"all-reduce then crosses the fabric, as TensorRT-LLM's two-node H100 recipe does), "
                              f"or span nodes with parallelism.pipeline; valid inside {where}: {valid}")
    if pp is not None and pp > model.layers:
        return BAD_PARALLELISM, f"parallelism.pipeline {pp} exceeds the {model.layers} layers of {model.name}"
    if tp is not None and pp is not None and not _fills_whole_nodes(tp, pp, per_node):
        return BAD_PARALLELISM, (f"parallelism.tensor {tp} x parallelism.pipeline {pp} = {tp * pp} GPUs do not "
                                 f"split into "
                                 f"whole nodes of {per_node} GPUs")
    return None


def _candidate_layouts(req: SizingRequest) -> list[tuple[int, int]]:
    """The layouts to try, in order of preference: the first that fits is chosen."""
    model, per_node = req.model, req.gpus_per_node
    limit = tensor_parallel_limit(req.gpu, per_node)
    if req.tensor_parallel is not None:
        depths = [req.pipeline_parallel] if req.pipeline_parallel is not None else [1, *PIPELINE_PARALLEL_CHOICES]
        layouts = [(req.tensor_parallel, pp) for pp in depths]
    elif req.pipeline_parallel is not None:
        layouts = [(tp, req.pipeline_parallel) for tp in tensor_parallel_options(model, limit)]
    else:
        options = tensor_parallel_options(model, per_node)
        # Pipeline stages across nodes talk over the slower inter-node fabric: only when nothing in one node fits.
        layouts = [(tp, 1) for tp in options] + [(options[-1], pp) for pp in PIPELINE_PARALLEL_CHOICES]
    return [(tp, pp) for tp, pp in layouts if pp <= model.layers and _fills_whole_nodes(tp, pp, per_node)]


def _place(req: SizingRequest) -> _Placement:
    """The layout for the request and whether it fits, without a message (suggestions re-use this)."""
    layout_problem = _layout_problem(req)
    if layout_problem is not None:
        reason, problem = layout_problem
        return _Placement(reason, _estimate(req, req.tensor_parallel or 1, req.pipeline_parallel or 1), problem)
    candidates = _candidate_layouts(req)
    if not candidates:
        return _Placement(BAD_PARALLELISM, _estimate(req, 1, req.pipeline_parallel or 1),
                          f"no parallelism.tensor makes parallelism.pipeline {req.pipeline_parallel} split into whole "
                          f"nodes of {req.gpus_per_node} GPUs")
    estimates = [_estimate(req, tp, pp) for tp, pp in candidates]
    chosen = next((e for e in estimates if e.fits), estimates[-1])
    model, gpu = req.model, req.gpu
    if model.min_compute_capability and _capability(gpu) < _capability_of(model.min_compute_capability):
        return _Placement(GPU_UNSUPPORTED, chosen, f"TensorRT-LLM runs {model.name} on compute capability "
                                                   f"{model.min_compute_capability} or newer (Hopper, Blackwell); "
                                                   f"{gpu.name} is {gpu.compute_capability}")
    if req.precision is Precision.FP8 and model.native_precision is Precision.FP8 and model.moe \
            and not gpu.fp8_block_scales:
        return _Placement(NO_FP8, chosen, f"{model.name}'s FP8 checkpoint has per-block scales, which TensorRT-LLM "
                                          f"cannot run on {gpu.name} (sm_{gpu.compute_capability.replace('.', '')})")
    if req.precision in INT4_AWQ and gpu.compute_capability not in INT4_AWQ_CAPABILITIES:
        return _Placement(NO_FP8, chosen, f"TensorRT-LLM's PyTorch backend runs INT4 AWQ weights on Ada and Hopper "
                                          f"only (sm_89, sm_90); {gpu.name} is "
                                          f"sm_{gpu.compute_capability.replace('.', '')}")
    if not req.gpu.fp4 and req.precision is Precision.NVFP4:
        return _Placement(NO_FP8, chosen, f"NVFP4 weights need a Blackwell GPU (FP4 tensor cores); {req.gpu.name} "
                                          f"(sm_{req.gpu.compute_capability.replace('.', '')}) has none")
    if not req.gpu.fp8 and Precision.FP8 in (req.precision, req.kv_precision):
        what = "FP8 weights" if req.precision is Precision.FP8 else "an FP8 KV cache"
        return _Placement(NO_FP8, chosen, f"{what} needs a GPU with FP8 support (Ada, Hopper or Blackwell); "
                                          f"{req.gpu.name} has none")
    return _Placement(FITS if chosen.fits else DOES_NOT_FIT, chosen)


def _capability_of(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split("."))


def _capability(gpu: GpuSpec) -> tuple[int, ...]:
    return _capability_of(gpu.compute_capability)


def _gb(value: float) -> str:
    # Whole GB once tenths are noise next to the size of the figure.
    return f"{value:.0f}" if value >= 10 else f"{value:.1f}"


def _layout_setting(estimate: _Estimate, gpus_per_node: int) -> str:
    """The spec.runtime.parallelism settings that give this layout."""
    setting = f"tensor: {estimate.tensor_parallel}"
    if estimate.pipeline_parallel > 1:
        setting += f" with pipeline: {estimate.pipeline_parallel}"
        nodes = nodes_per_replica(estimate.tensor_parallel, estimate.pipeline_parallel, gpus_per_node)
        if nodes > 1:
            setting += f" across {nodes} nodes"
    return setting


def _layout_short(estimate: _Estimate, gpus_per_node: int) -> str:
    text = f"TP {estimate.tensor_parallel}"
    nodes = nodes_per_replica(estimate.tensor_parallel, estimate.pipeline_parallel, gpus_per_node)
    if estimate.pipeline_parallel > 1:
        text += f", PP {estimate.pipeline_parallel}"
    return text + (f" on {nodes} nodes" if nodes > 1 else "")


def _lower_and_supported(precision: Precision, req: SizingRequest) -> bool:
    fewer_bytes = bytes_per_param(precision) < bytes_per_param(req.precision)
    return fewer_bytes and (precision is not Precision.FP8 or req.gpu.fp8) and (
        precision is not Precision.NVFP4 or req.gpu.fp4)


def _suggestions(req: SizingRequest, precisions: tuple[Precision, ...], try_layouts: bool) -> list[str]:
    """What would fit instead, found by sizing the alternatives: other GPUs, a layout, a precision."""
    found: list[str] = []
    per_node = req.gpus_per_node
    other_gpus = [(gpu, _place(replace(req, gpu=gpu))) for gpu in GPUS.values() if gpu != req.gpu]
    # The least GPU memory in all first (a rough stand-in for cost), then the fewest GPUs.
    fitting_gpus = sorted(((gpu, p) for gpu, p in other_gpus if p.reason == FITS),
                          key=lambda gpu_placed: (gpu_placed[1].estimate.gpus * gpu_placed[0].memory_gb,
                                                  gpu_placed[1].estimate.gpus))
    found += [f"{gpu.name} ({_layout_short(p.estimate, per_node)})" for gpu, p in fitting_gpus[:MAX_SUGGESTED_GPUS]]
    if try_layouts and (req.tensor_parallel is not None or req.pipeline_parallel is not None):
        auto = _place(replace(req, tensor_parallel=None, pipeline_parallel=None))
        if auto.reason == FITS:
            found.append(_layout_setting(auto.estimate, per_node))
    if req.model.moe:  # the 671B is served at its published precisions only (NVIDIA's NVFP4 checkpoint besides FP8)
        precisions = tuple(p for p in precisions if p is Precision.NVFP4)
    # An FP8 KV cache the GPU cannot hold falls back to the default of the suggested precision.
    kv_cache_precision = None if req.kv_cache_precision is Precision.FP8 and not req.gpu.fp8 \
        else req.kv_cache_precision
    for precision in precisions:
        placed = _place(replace(req, precision=precision, kv_cache_precision=kv_cache_precision))
        if placed.reason == FITS:
            # The same weights fit once the KV cache is not FP8 (the default for non-FP8 weights).
            change = "a 16-bit KV cache" if precision is req.precision else f"precision: {precision}"
            found.append(f"{change} ({_layout_short(placed.estimate, per_node)})")
            break
    return found


def _message(req: SizingRequest, placed: _Placement) -> str:
    est, gpu, per_node = placed.estimate, req.gpu, req.gpus_per_node
    what = f"{req.model.name} at {req.precision}"
    hardware = f"{est.gpus}x{gpu.name} ({_layout_short(est, per_node)})"
    per_gpu = (f"~{_gb(est.need_per_gpu_gb)} GB per GPU (weights {_gb(est.weights_per_gpu_gb)} GB + KV cache "
               f"{_gb(est.kv_cache_per_gpu_gb)} GB / kvCache.freeGpuMemoryFraction "
               f"{req.kv_cache_free_gpu_mem_fraction:g} + overhead {_gb(est.overhead_gb_per_gpu)} GB) of "
               f"{_gb(est.budget_per_gpu_gb)} GB usable")
    if req.attention_data_parallel:
        per_gpu += " (attention data parallel: every GPU holds all non-expert weights)"
    if placed.reason == FITS:
        return f"{what} fits on {hardware}: {per_gpu}; estimates"
    if placed.reason in _SPEC_LIMITS:
        return placed.problem
    if placed.reason == DOES_NOT_FIT:
        problem = (f"{what} needs ~{_gb(est.need_per_gpu_gb * est.gpus)} GB on {hardware}, {per_gpu}; "
                   f"{est.gpus}x{gpu.name} has {_gb(gpu.memory_gb * est.gpus)} GB "
                   f"({_gb(est.budget_per_gpu_gb * est.gpus)} GB usable)")
        lower = tuple(p for p in _LOWER_PRECISIONS if _lower_and_supported(p, req))
        suggestions = _suggestions(req, lower, try_layouts=True)
    elif placed.reason in (NO_FP8, GPU_UNSUPPORTED):
        problem = f"{what}: {placed.problem}"
        fp4 = (Precision.NVFP4,) if gpu.fp4 and req.precision is not Precision.NVFP4 else ()
        suggestions = _suggestions(req, fp4 + _PRECISIONS_WITHOUT_FP8, try_layouts=False)
    else:
        problem = placed.problem
        suggestions = _suggestions(req, (), try_layouts=True)
    if not suggestions:
        return f"{problem}; nothing in the catalog fits with {per_node} GPUs per node; estimates"
    return f"{problem}; would fit: {', or '.join(suggestions)}; estimates"


def size(req: SizingRequest) -> SizingResult:
    """Choose the parallel layout for the request and estimate its memory; the message says what would fit.

    A user-fixed tensor_parallel / pipeline_parallel is checked, never changed. With both left to auto, the
    smallest tensor-parallel size inside one node that fits wins; pipeline stages across nodes (with the
    largest tensor-parallel size of a node) only when none does. All numbers are estimates.
    """
    placed = _place(req)
    est = placed.estimate
    kv_cache = req.max_batch_size * req.max_seq_len * kv_cache_bytes_per_token(req.model, req.kv_precision) / _GB
    return SizingResult(
        fits=placed.reason == FITS, reason=placed.reason,
        tensor_parallel=est.tensor_parallel, pipeline_parallel=est.pipeline_parallel, gpus_per_replica=est.gpus,
        nodes_per_replica=nodes_per_replica(est.tensor_parallel, est.pipeline_parallel, req.gpus_per_node),
        weights_gb=round(weights_gb(req.model, req.precision), 2), kv_cache_gb=round(kv_cache, 2),
        overhead_gb_per_gpu=round(est.overhead_gb_per_gpu, 2), need_per_gpu_gb=round(est.need_per_gpu_gb, 2),
        budget_per_gpu_gb=round(est.budget_per_gpu_gb, 2), message=_message(req, placed))
