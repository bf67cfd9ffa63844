"""Runtime recipes: the `LLM()` settings TensorRT-LLM publishes for DeepSeek-R1 per GPU, and dense defaults. Pure.

A recipe fills every runtime setting the spec leaves unset (spec.runtime wins field by field). For the 671B
MoE each recipe is one of TensorRT-LLM's own published configurations, cited by path in NVIDIA/TensorRT-LLM
(`examples/configs/curated/` with its `lookup.yaml`, which maps each curated file to GPU types;
`examples/configs/database/deepseek-ai/DeepSeek-R1-0528/<GPU>/`, the per-GPU tables the deployment guide's
config table lists; `docs/source/deployment-guide/deployment-guide-for-deepseek-r1-on-trtllm.md` for the MoE
backend per GPU and checkpoint). Published batch sizes are benchmark concurrencies (1024 requests of 1K/1K
tokens); the fit check halves `max_batch_size` until the KV cache holds that many requests of the spec's
maxSeqLen, and says so.

The distilled dense models have no DeepSeek-specific guidance upstream; their defaults follow the curated
Llama-3.3-70B file (`examples/configs/curated/llama-3.3-70b.yaml`: CUDA graphs with padding, block reuse, KV
cache fraction 0.9) with this operator's long-standing max_batch_size of 64 and the LLM API's max_num_tokens of
8192.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Literal

from deepseek_operator.api.common import Precision
from deepseek_operator.render.catalog import GpuSpec, ModelSpec

Objective = Literal["throughput", "latency"]
MoeBackend = Literal["CUTLASS", "TRTLLM", "DEEPGEMM", "WIDEEP"]


@dataclass(frozen=True)
class Recipe:
    """One published configuration: the LLM() arguments it sets."""

    name: str
    source: str  # where TensorRT-LLM publishes it
    objective: Objective
    tensor: int | None  # None: the fit check picks the smallest that fits
    pipeline: int | None
    expert: int | None  # moe_expert_parallel_size; None for dense models
    attention_dp: bool
    max_batch_size: int
    max_num_tokens: int
    free_gpu_memory_fraction: float
    enable_block_reuse: bool
    kv_fp8: bool  # kv_cache_config.dtype fp8
    moe_backend: MoeBackend | None
    mtp_layers: int  # speculative_config MTP draft tokens; 0: none
    cuda_graph_max_batch_size: int | None  # None: max_batch_size


@dataclass(frozen=True)
class _Entry:
    gpus: frozenset[str]
    precisions: frozenset[Precision]
    recipe: Recipe


_HOPPER_FP8 = frozenset({"H200-141GB", "H20-96GB"})
_BLACKWELL = frozenset({"B200-180GB", "B300-288GB", "GB200-186GB"})
_FP8, _NVFP4 = frozenset({Precision.FP8}), frozenset({Precision.NVFP4})
_CURATED = "NVIDIA/TensorRT-LLM examples/configs/curated/"
_DATABASE = "NVIDIA/TensorRT-LLM examples/configs/database/deepseek-ai/DeepSeek-R1-0528/"

# curated/deepseek-r1-throughput.yaml (lookup.yaml: B200 and GB200 for nvidia/DeepSeek-R1-FP4; H100 and H200
# for deepseek-ai/DeepSeek-R1-0528): TP8 EP8, attention DP, max_num_tokens 3200, KV fraction 0.8, CUDA graphs
# to 128, MTP 1, the default CUTLASS MoE. The recipes below that follow it differ in name and MoE backend only.
_CURATED_THROUGHPUT = Recipe(
    "deepseek-r1/blackwell-nvfp4-throughput", _CURATED + "deepseek-r1-throughput.yaml", "throughput",
    tensor=8, pipeline=1, expert=8, attention_dp=True, max_batch_size=1024, max_num_tokens=3200,
    free_gpu_memory_fraction=0.8, enable_block_reuse=True, kv_fp8=True, moe_backend="CUTLASS", mtp_layers=1,
    cuda_graph_max_batch_size=128)

# DeepSeek-R1 671B, most specific first. Every recipe puts the KV cache in FP8 and pads CUDA graphs, as every
# published one does.
_R1 = (
    # Wide expert parallelism over a GB200 NVL72 domain: the decode worker of examples/wide_ep/slurm_scripts/
    # config.yaml (TP32 EP32, attention DP, WIDEEP with its load balancer, KV fraction 0.6 without block reuse,
    # MTP 3). Served aggregated, the ranks prefill too, so max_num_tokens is that file's context worker's 8448.
    _Entry(frozenset({"GB200-186GB"}), _NVFP4 | _FP8, Recipe(
        "deepseek-r1/gb200-nvl72-wide-ep", "NVIDIA/TensorRT-LLM examples/wide_ep/slurm_scripts/config.yaml",
        "throughput", tensor=32, pipeline=1, expert=32, attention_dp=True, max_batch_size=128,
        max_num_tokens=8448, free_gpu_memory_fraction=0.6, enable_block_reuse=False, kv_fp8=True,
        moe_backend="WIDEEP", mtp_layers=3, cuda_graph_max_batch_size=None)),
    # curated/deepseek-r1-throughput.yaml, for the NVFP4 checkpoint on Blackwell.
    _Entry(_BLACKWELL, _NVFP4, _CURATED_THROUGHPUT),
    # curated/deepseek-r1-deepgemm.yaml (lookup.yaml: B200 and GB200 with the FP8 checkpoint): the throughput
    # recipe with the DEEPGEMM MoE backend the deployment guide requires for FP8 on Blackwell at EP <= 8.
    _Entry(_BLACKWELL, _FP8, replace(_CURATED_THROUGHPUT, name="deepseek-r1/blackwell-fp8-throughput",
                                     source=_CURATED + "deepseek-r1-deepgemm.yaml", moe_backend="DEEPGEMM")),
    # curated/deepseek-r1-latency.yaml (lookup.yaml: B200 and GB200, FP8 and FP4-v2 checkpoints): TP8 EP2,
    # no attention DP, max_batch_size 4, max_num_tokens 32768, KV fraction 0.75, TRTLLM MoE, MTP 3.
    _Entry(_BLACKWELL, _NVFP4 | _FP8, Recipe(
        "deepseek-r1/blackwell-latency", _CURATED + "deepseek-r1-latency.yaml", "latency",
        tensor=8, pipeline=1, expert=2, attention_dp=False, max_batch_size=4, max_num_tokens=32768,
        free_gpu_memory_fraction=0.75, enable_block_reuse=True, kv_fp8=True, moe_backend="TRTLLM", mtp_layers=3,
        cuda_graph_max_batch_size=None)),
    # curated/deepseek-r1-throughput.yaml on the Hopper GPUs that hold the FP8 checkpoint on one node (the
    # deepseek_v3 README: 8 H200 or 8 H20).
    _Entry(_HOPPER_FP8, _FP8, replace(_CURATED_THROUGHPUT, name="deepseek-r1/hopper-fp8-throughput")),
    # database H200/1k1k_tp8_conc1.yaml (profile Min Latency): TP8 EP8, no attention DP, max_num_tokens 3136,
    # KV fraction 0.8, CUTLASS (the only MoE backend the guide lists for Hopper), MTP 3, CUDA graph batch 1.
    _Entry(_HOPPER_FP8, _FP8, Recipe(
        "deepseek-r1/hopper-fp8-latency", _DATABASE + "H200/1k1k_tp8_conc1.yaml", "latency",
        tensor=8, pipeline=1, expert=8, attention_dp=False, max_batch_size=512, max_num_tokens=3136,
        free_gpu_memory_fraction=0.8, enable_block_reuse=True, kv_fp8=True, moe_backend="CUTLASS", mtp_layers=3,
        cuda_graph_max_batch_size=1)),
    # H100 80 GB: the deepseek_v3 README needs 16 for FP8 and shows TP16 only with trtllm-bench/trtllm-serve;
    # the Triton LLM API backend's docs/llmapi.md says inter-node tensor parallelism is not supported yet. So
    # TP8 inside each node, pipeline parallel 2 across two, experts over each stage's 8 GPUs; no attention DP
    # or MTP, which no published configuration combines with pipeline stages. Derived, not published.
    _Entry(frozenset({"H100-80GB"}), _FP8, Recipe(
        "deepseek-r1/h100-fp8-two-nodes",
        "NVIDIA/TensorRT-LLM examples/models/core/deepseek_v3/README.md; triton_backend docs/llmapi.md",
        "throughput", tensor=8, pipeline=2, expert=8, attention_dp=False, max_batch_size=64, max_num_tokens=8192,
        free_gpu_memory_fraction=0.9, enable_block_reuse=True, kv_fp8=True, moe_backend="CUTLASS", mtp_layers=0,
        cuda_graph_max_batch_size=None)),
)

# A MoE model on a GPU no recipe names: the LLM API's own defaults, experts over all tensor-parallel ranks.
_MOE_DEFAULT = Recipe(
    "moe-default", "TensorRT-LLM LLM API defaults (tensorrt_llm/llmapi/llm_args.py)", "throughput",
    tensor=None, pipeline=None, expert=None, attention_dp=False, max_batch_size=64, max_num_tokens=8192,
    free_gpu_memory_fraction=0.9, enable_block_reuse=True, kv_fp8=False, moe_backend=None, mtp_layers=0,
    cuda_graph_max_batch_size=None)
DENSE_DEFAULT = Recipe(
    "dense-default", _CURATED + "llama-3.3-70b.yaml (pattern; no DeepSeek-R1-Distill recipe is published)",
    "throughput", tensor=None, pipeline=None, expert=None, attention_dp=False, max_batch_size=64,
    max_num_tokens=8192, free_gpu_memory_fraction=0.9, enable_block_reuse=True, kv_fp8=False, moe_backend=None,
    mtp_layers=0, cuda_graph_max_batch_size=None)


def candidates(model: ModelSpec, gpu: GpuSpec, precision: Precision, objective: Objective) -> Sequence[Recipe]:
    """The recipes that apply, best first: those of the objective asked for, then the others; then the
    generic default, which always comes last."""
    if not model.moe:
        return (DENSE_DEFAULT,)
    matching = [e.recipe for e in _R1 if gpu.name in e.gpus and precision in e.precisions]
    ordered = [r for r in matching if r.objective == objective] + [r for r in matching if r.objective != objective]
    return (*ordered, _MOE_DEFAULT)
