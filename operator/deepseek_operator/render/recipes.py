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
class RelaxedAcceptance:
    """MTPDecodingConfig's relaxed acceptance of draft tokens while DeepSeek-R1 thinks
    (use_relaxed_acceptance_for_thinking, relaxed_topk, relaxed_delta)."""

    topk: int
    delta: float


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
    moe_backend: MoeBackend | None  # None: the LLM API's AUTO (CUTLASS for DeepSeek-R1)
    mtp_layers: int  # speculative_config MTP draft tokens; 0: none
    cuda_graph_max_batch_size: int | None  # None: max_batch_size
    trust_remote_code: bool = False  # every published DeepSeek-R1 file sets it (the checkpoint's auto_map)
    stream_interval: int = 1  # tokens per streamed response (the LLM API's default is 1)
    moe_max_num_tokens: int | None = None  # moe_config.max_num_tokens: tokens per fused MoE call
    relaxed_acceptance: RelaxedAcceptance | None = None
    load_balancer_slots: int | None = None  # moe_config.load_balancer num_slots (online EPLB, 1 update/iter)
    low_precision_moe_combine: bool = False  # moe_config.use_low_precision_moe_combine


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
# for deepseek-ai/DeepSeek-R1-0528), whole: max_batch_size 1024, max_num_tokens 3200, KV fraction 0.8, TP8 EP8,
# trust_remote_code, attention DP, CUDA graphs with padding to 128, KV cache fp8, stream_interval 10, MTP 1; no
# moe_config, so the LLM API's AUTO backend (CUTLASS for DeepSeek-R1: _torch/model_config.py
# resolve_moe_backend). The recipes below that follow it differ where each says.
_CURATED_THROUGHPUT = Recipe(
    "deepseek-r1/blackwell-nvfp4-throughput", _CURATED + "deepseek-r1-throughput.yaml", "throughput",
    tensor=8, pipeline=1, expert=8, attention_dp=True, max_batch_size=1024, max_num_tokens=3200,
    free_gpu_memory_fraction=0.8, enable_block_reuse=True, kv_fp8=True, moe_backend=None, mtp_layers=1,
    cuda_graph_max_batch_size=128, trust_remote_code=True, stream_interval=10)

# DeepSeek-R1 671B, most specific first. Every recipe pads CUDA graphs, as every published one does.
_R1 = (
    # Wide expert parallelism over a GB200 NVL72 domain: the generation worker of examples/wide_ep/slurm_scripts/
    # config.yaml (TP32 EP32 over eight 4-GPU trays, attention DP, WIDEEP (a valid moe_config.backend up to
    # TensorRT-LLM 1.2; removed in 1.3, NVIDIA/TensorRT-LLM#17797) with low-precision combine and its online load
    # balancer of 288 slots, KV fp8 at 0.6 without block reuse, stream_interval 20, MTP 3). Served aggregated, the
    # ranks prefill too, so max_num_tokens is that file's context worker's 8448. Its trays talk over multi-node
    # NVLink: the pods need IMEX channels (render/imex.py). The FP8 checkpoint runs WIDEEP without the load
    # balancer (deployment-guide-for-deepseek-r1-on-trtllm.md: "WIDEEP without EPLB").
    _Entry(frozenset({"GB200-186GB"}), _NVFP4, Recipe(
        "deepseek-r1/gb200-nvl72-wide-ep", "NVIDIA/TensorRT-LLM examples/wide_ep/slurm_scripts/config.yaml",
        "throughput", tensor=32, pipeline=1, expert=32, attention_dp=True, max_batch_size=128,
        max_num_tokens=8448, free_gpu_memory_fraction=0.6, enable_block_reuse=False, kv_fp8=True,
        moe_backend="WIDEEP", mtp_layers=3, cuda_graph_max_batch_size=None, trust_remote_code=True,
        stream_interval=20, load_balancer_slots=288, low_precision_moe_combine=True)),
    _Entry(frozenset({"GB200-186GB"}), _FP8, Recipe(
        "deepseek-r1/gb200-nvl72-wide-ep-fp8",
        "NVIDIA/TensorRT-LLM examples/wide_ep/slurm_scripts/config.yaml; deployment-guide-for-deepseek-r1-on-trtllm.md",
        "throughput", tensor=32, pipeline=1, expert=32, attention_dp=True, max_batch_size=128,
        max_num_tokens=8448, free_gpu_memory_fraction=0.6, enable_block_reuse=False, kv_fp8=True,
        moe_backend="WIDEEP", mtp_layers=3, cuda_graph_max_batch_size=None, trust_remote_code=True,
        stream_interval=20)),
    # curated/deepseek-r1-throughput.yaml, for the NVFP4 checkpoint on Blackwell.
    _Entry(_BLACKWELL, _NVFP4, _CURATED_THROUGHPUT),
    # curated/deepseek-r1-deepgemm.yaml (lookup.yaml: B200 and GB200 with the FP8 checkpoint): the throughput
    # file plus moe_config {backend: DEEPGEMM, max_num_tokens: 3200}, the backend the deployment guide requires
    # for FP8 on Blackwell at EP <= 8.
    _Entry(_BLACKWELL, _FP8, replace(_CURATED_THROUGHPUT, name="deepseek-r1/blackwell-fp8-throughput",
                                     source=_CURATED + "deepseek-r1-deepgemm.yaml", moe_backend="DEEPGEMM",
                                     moe_max_num_tokens=3200)),
    # curated/deepseek-r1-latency.yaml (lookup.yaml: B200 and GB200, FP8 and FP4-v2 checkpoints), whole:
    # max_batch_size 4, TP8 EP2, max_num_tokens 32768, trust_remote_code, KV fraction 0.75 (dtype auto: the
    # checkpoint's), TRTLLM MoE, MTP 3 with relaxed acceptance while thinking (topk 10, delta 0.6). The file
    # writes `max_draft_len: 3`; the LLM API of 1.2 sets max_draft_len from num_nextn_predict_layers (default 1),
    # so the operator writes num_nextn_predict_layers: 3 (MTPDecodingConfig in llmapi/llm_args.py).
    _Entry(_BLACKWELL, _NVFP4 | _FP8, Recipe(
        "deepseek-r1/blackwell-latency", _CURATED + "deepseek-r1-latency.yaml", "latency",
        tensor=8, pipeline=1, expert=2, attention_dp=False, max_batch_size=4, max_num_tokens=32768,
        free_gpu_memory_fraction=0.75, enable_block_reuse=True, kv_fp8=False, moe_backend="TRTLLM", mtp_layers=3,
        cuda_graph_max_batch_size=None, trust_remote_code=True,
        relaxed_acceptance=RelaxedAcceptance(topk=10, delta=0.6))),
    # curated/deepseek-r1-throughput.yaml on the Hopper GPUs that hold the FP8 checkpoint on one node (the
    # deepseek_v3 README: 8 H200 or 8 H20).
    _Entry(_HOPPER_FP8, _FP8, replace(_CURATED_THROUGHPUT, name="deepseek-r1/hopper-fp8-throughput")),
    # database H200/1k1k_tp8_conc1.yaml (profile Min Latency): TP8 EP8, no attention DP, max_num_tokens 3136,
    # KV fp8 at 0.8, CUTLASS (the only MoE backend the guide lists for Hopper), MTP 3 (its max_draft_len: 3, as
    # num_nextn_predict_layers for the reason above), CUDA graph batch 1, stream_interval 10, trust_remote_code.
    _Entry(_HOPPER_FP8, _FP8, Recipe(
        "deepseek-r1/hopper-fp8-latency", _DATABASE + "H200/1k1k_tp8_conc1.yaml", "latency",
        tensor=8, pipeline=1, expert=8, attention_dp=False, max_batch_size=512, max_num_tokens=3136,
        free_gpu_memory_fraction=0.8, enable_block_reuse=True, kv_fp8=True, moe_backend="CUTLASS", mtp_layers=3,
        cuda_graph_max_batch_size=1, trust_remote_code=True, stream_interval=10)),
    # H100 80 GB: two nodes of eight, as the deepseek_v3 README publishes them (its multi-node mpirun example,
    # `--tp 16 --ep 8` with attention DP on, max_batch_size 161, max_num_tokens 1160, KV fraction 0.95; its
    # Triton section: "tensor_parallel_size ... 16 on H100"). The tensor-parallel group spans both nodes, its
    # all-reduce crossing the fabric; no pipeline stages.
    _Entry(frozenset({"H100-80GB"}), _FP8, Recipe(
        "deepseek-r1/h100-fp8-two-nodes", "NVIDIA/TensorRT-LLM examples/models/core/deepseek_v3/README.md",
        "throughput", tensor=16, pipeline=1, expert=8, attention_dp=True, max_batch_size=161, max_num_tokens=1160,
        free_gpu_memory_fraction=0.95, enable_block_reuse=True, kv_fp8=False, moe_backend=None, mtp_layers=0,
        cuda_graph_max_batch_size=None, trust_remote_code=True)),
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
