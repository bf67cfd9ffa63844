"""The runtime a revision is served with: spec.runtime over the recipe the fit check picks. Pure.

`resolve` tries the recipes that apply (recipes.candidates) in order and takes the first whose layout fits;
a field the spec sets always wins over the recipe. With maxBatchSize unset, the recipe's batch is halved until
the KV cache of that many requests of maxSeqLen fits (the fit check sizes the worst case: every request at
full length).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from deepseek_operator.api.common import Fabric, Precision
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import nccl, quantize, recipes, sizing
from deepseek_operator.render.catalog import GPUS, GpuSpec, ModelSpec

# What DeepSeek-R1's checkpoint carries for speculative decoding: one MTP module (num_nextn_predict_layers 1
# in its config.json), which the runtime applies repeatedly for more draft tokens.
MTP_MODELS = frozenset({"deepseek-r1"})
# Chunked prefill splits a prompt longer than max_num_tokens over several scheduler iterations; without it the
# LLM API refuses every such prompt ("The sum of prompt length ... should not exceed max_num_tokens",
# tensorrt_llm/llmapi/llm.py _check_arguments). For multi-head latent attention (DeepSeek-R1) TensorRT-LLM 1.2
# runs it on SM90 and SM100 only, silently turning it off elsewhere (_torch/pyexecutor/py_executor_creator.py),
# and needs max_num_tokens to be a multiple of the KV cache's tokens_per_block (examples/models/core/deepseek_v3/
# README.md; tokens_per_block defaults to 32).
MLA_CHUNKED_PREFILL_CAPABILITIES = frozenset({"9.0", "10.0"})
KV_TOKENS_PER_BLOCK = 32


@dataclass(frozen=True)
class Runtime:
    recipe: recipes.Recipe
    reason: str  # which recipe and why, for status and the FitsHardware message
    fit: sizing.SizingResult
    expert: int  # 1 for dense models
    attention_dp: bool
    max_batch_size: int
    max_num_tokens: int
    max_seq_len: int
    free_gpu_memory_fraction: float
    enable_block_reuse: bool
    kv_fp8: bool
    moe_backend: str | None
    mtp_layers: int
    cuda_graphs: bool
    cuda_graph_max_batch_size: int
    cuda_graph_padding: bool
    scheduler_policy: str
    chunked_prefill: bool


@dataclass(frozen=True)
class PromptLimit:
    """How prompts up to maxSeqLen get through one scheduler iteration's max_num_tokens."""

    chunked_prefill: bool
    max_num_tokens: int
    note: str  # what was chosen and why, for status.runtime.reason ("" when nothing needed choosing)
    problem: str = ""  # a maxNumTokens of the spec's own that refuses prompts no setting here can let through


def prompt_limit(model: ModelSpec, gpu: GpuSpec, max_num_tokens: int, max_seq_len: int,
                 set_in_spec: bool) -> PromptLimit:
    """Chunked prefill where the model and GPU run it and a prompt can exceed max_num_tokens; else
    max_num_tokens raised to maxSeqLen (or, when the spec set it, a problem saying so)."""
    if max_num_tokens >= max_seq_len:
        return PromptLimit(False, max_num_tokens, "")
    if not model.uses_mla or gpu.compute_capability in MLA_CHUNKED_PREFILL_CAPABILITIES:
        tokens = max_num_tokens
        if model.uses_mla and tokens % KV_TOKENS_PER_BLOCK:
            tokens += KV_TOKENS_PER_BLOCK - tokens % KV_TOKENS_PER_BLOCK
        return PromptLimit(True, tokens, f"chunked prefill on: prompts longer than maxNumTokens {tokens} (up to "
                                         f"maxSeqLen {max_seq_len}) are prefilled over several iterations")
    why = (f"TensorRT-LLM runs chunked prefill for {model.name}'s latent attention on SM90 and SM100 only, and "
           f"{gpu.name} is sm_{gpu.compute_capability.replace('.', '')}")
    if set_in_spec:
        return PromptLimit(False, max_num_tokens, "", problem=(
            f"spec.runtime.maxNumTokens {max_num_tokens} is below maxSeqLen {max_seq_len}: every prompt longer "
            f"than {max_num_tokens} tokens would be refused, and {why}; set maxNumTokens to at least {max_seq_len} "
            f"or leave it unset"))
    return PromptLimit(False, max_seq_len, f"maxNumTokens {max_seq_len} (= maxSeqLen): {why}, so every prompt "
                                           f"must fit one iteration")


# NVIDIA's quantized DeepSeek-R1 checkpoints on Hugging Face (ModelOpt NVFP4, Blackwell only), as TensorRT-LLM's
# deployment guide and curated lookup.yaml name them (the Hub now lists them as nvidia/DeepSeek-R1-0528-NVFP4-v2).
PUBLISHED_R1_CHECKPOINTS = {Precision.NVFP4: "nvidia/DeepSeek-R1-0528-FP4-v2"}


# ModelOpt 0.37 (the version TensorRT-LLM 1.2 pins) exports INT8 weights only as W8A8 SmoothQuant, for which the
# PyTorch backend has no linear method; it loads INT8 from no checkpoint ModelOpt makes (benchmarks/quantize).
INT8_UNSERVABLE = ("spec.model.precision int8: TensorRT-LLM's PyTorch backend loads no INT8 checkpoint (ModelOpt "
                   "exports INT8 as W8A8 SmoothQuant, a format of the removed TensorRT-engine backend): serve fp8 "
                   "(Ada, Hopper, Blackwell; the same bytes per weight) or w4a16/awq (INT4 AWQ, on Ada and "
                   "Hopper)")


def moe_quantize_problem(spec: DeepSeekDeploymentSpec, model: ModelSpec) -> str:
    """Why the quantize Job cannot make the MoE model's precision, and the checkpoint that serves it. ModelOpt
    quantizes DeepSeek-R1 with its own flow (examples/deepseek: DeepSeek's convert.py over the FP8 checkpoint, a
    sharded ptq.py on 8 H200 or 16 H100, then quantize_fp8_to_nvfp4.sh), not with the generic
    mtq.quantize/export_hf_checkpoint the Job runs, and only to NVFP4."""
    precision, carried = spec.model.precision, spec.model.checkpoint_precision or model.native_precision
    published = PUBLISHED_R1_CHECKPOINTS.get(precision)
    where = (f"serve NVIDIA's {precision.value} checkpoint instead: spec.model.source hf repo {published} with "
             f"spec.model.checkpointPrecision: {precision.value}" if published
             else f"no {precision.value} checkpoint of {model.name} is published")
    return (f"spec.model.precision {precision.value}: the quantize Job cannot make {model.name} at "
            f"{precision.value} from its {carried.value} checkpoint (ModelOpt quantizes this model with its own "
            f"multi-GPU DeepSeek flow); {where}; or serve {carried.value} as published")


def problems(spec: DeepSeekDeploymentSpec, model: ModelSpec) -> list[str]:
    """Runtime settings that cannot apply to this model, each with its field path and what would work."""
    rt, found = spec.runtime, []
    if not model.moe:
        for name, value in (("parallelism.expert", rt.parallelism.expert if rt.parallelism.expert != "auto"
                             else None), ("parallelism.attentionDataParallel", rt.parallelism.attention_data_parallel),
                            ("moeBackend", rt.moe_backend)):
            if value is not None:
                found.append(f"spec.runtime.{name} applies to mixture-of-experts models only; {model.name} is "
                             "dense: leave it unset")
    if rt.mtp_layers and model.name not in MTP_MODELS:
        found.append(f"spec.runtime.mtpLayers: {model.name} has no multi-token-prediction module "
                     f"(only {', '.join(sorted(MTP_MODELS))}); set 0 or leave it unset")
    tp, ep = rt.parallelism.tensor, rt.parallelism.expert
    if isinstance(tp, int) and isinstance(ep, int) and tp % ep:
        found.append(f"spec.runtime.parallelism.expert {ep} must divide parallelism.tensor {tp} (experts are "
                     f"split over the tensor-parallel ranks)")
    if Precision.INT8 in (spec.model.precision, spec.model.checkpoint_precision):
        found.append(INT8_UNSERVABLE)
    elif model.moe and quantize.needs_quantize(spec, model.native_precision):
        found.append(moe_quantize_problem(spec, model))
    elif (unreachable := quantize.unreachable_precision(spec, model)) is not None:
        found.append(unreachable)
    if rt.max_num_tokens is not None and rt.max_num_tokens < rt.max_seq_len:
        limit = prompt_limit(model, GPUS[spec.serving.gpu.type], rt.max_num_tokens, rt.max_seq_len,
                             set_in_spec=True)
        found += [limit.problem] if limit.problem else []
    return found


def ignored_settings(spec: DeepSeekDeploymentSpec, model: ModelSpec, nodes_per_replica: int,
                     quantizes: bool) -> list[str]:
    """Settings that are valid but do nothing for this spec, each with its field path and why."""
    found = []
    if spec.serving.group_topology_key and nodes_per_replica == 1:
        found.append("spec.serving.groupTopologyKey is ignored: each replica of this layout runs on one node "
                     "(it groups the nodes of replicas that span nodes)")
    if spec.network.fabric is not Fabric.ETHERNET and not nccl.uses_rdma(spec.network,
                                                                         spans_nodes=nodes_per_replica > 1):
        found.append(f"spec.network.fabric {spec.network.fabric.value} is ignored: each replica of this layout runs "
                     "on one node, whose GPUs talk over NVLink or PCIe (the HCA, IPC_LOCK and secondary networks "
                     "are for replicas that span nodes)")
    if spec.model.calibration is not None and not quantizes:
        found.append(f"spec.model.calibration is ignored: {model.name} at {spec.model.precision.value} is served "
                     "from the checkpoint as it is (calibration data is for quantize Jobs)")
    return found


def _size(spec: DeepSeekDeploymentSpec, model: ModelSpec, gpu: GpuSpec, recipe: recipes.Recipe,
          max_batch_size: int, attention_dp: bool, kv_fp8: bool, fraction: float) -> sizing.SizingResult:
    p = spec.runtime.parallelism
    tensor = p.tensor if isinstance(p.tensor, int) else recipe.tensor
    pipeline = p.pipeline if isinstance(p.pipeline, int) else recipe.pipeline
    if isinstance(p.tensor, int) and not isinstance(p.pipeline, int):
        pipeline = None  # a tensor size of the user's own: the fit check picks the stages for it
    return sizing.size(sizing.SizingRequest(
        model=model, precision=spec.model.precision, gpu=gpu, gpus_per_node=spec.serving.gpu.per_node,
        max_batch_size=max_batch_size, max_seq_len=spec.runtime.max_seq_len,
        kv_cache_free_gpu_mem_fraction=fraction, tensor_parallel=tensor, pipeline_parallel=pipeline,
        kv_cache_precision=Precision.FP8 if kv_fp8 else None, attention_data_parallel=attention_dp))


def _with_recipe(spec: DeepSeekDeploymentSpec, model: ModelSpec, gpu: GpuSpec,
                 recipe: recipes.Recipe) -> tuple[Runtime, str]:
    """The runtime of one recipe, and a note when its batch had to shrink to fit."""
    rt = spec.runtime
    attention_dp = model.moe and (rt.parallelism.attention_data_parallel
                                  if rt.parallelism.attention_data_parallel is not None else recipe.attention_dp)
    kv_fp8 = rt.kv_cache.dtype == "fp8" or (gpu.fp8 and (recipe.kv_fp8 or spec.model.precision is Precision.FP8))
    fraction = rt.kv_cache.free_gpu_memory_fraction or recipe.free_gpu_memory_fraction
    batch, note = rt.max_batch_size or recipe.max_batch_size, ""
    fit = _size(spec, model, gpu, recipe, batch, attention_dp, kv_fp8, fraction)
    if rt.max_batch_size is None and fit.reason == sizing.DOES_NOT_FIT:
        smaller_batch, smaller = batch, fit
        while not smaller.fits and smaller_batch > 1:
            smaller_batch //= 2
            smaller = _size(spec, model, gpu, recipe, smaller_batch, attention_dp, kv_fp8, fraction)
        if smaller.fits:  # else the weights alone do not fit: report the recipe's batch
            note = (f"maxBatchSize {smaller_batch}: the recipe's {batch} requests of maxSeqLen "
                    f"{rt.max_seq_len} do not fit the KV cache")
            batch, fit = smaller_batch, smaller
    expert = 1
    if model.moe:
        ep = rt.parallelism.expert
        expert = ep if isinstance(ep, int) else (recipe.expert or fit.tensor_parallel)
        if fit.tensor_parallel % expert:
            expert = fit.tensor_parallel  # the recipe's split does not divide a tensor size set in the spec
    graphs = min(rt.cuda_graphs.max_batch_size or recipe.cuda_graph_max_batch_size or batch, batch)
    limit = prompt_limit(model, gpu, rt.max_num_tokens or recipe.max_num_tokens, rt.max_seq_len,
                         set_in_spec=rt.max_num_tokens is not None)
    note = "; ".join(n for n in (note, limit.note) if n)
    runtime = Runtime(
        recipe=recipe, reason="", fit=fit, expert=expert, attention_dp=attention_dp, max_batch_size=batch,
        max_num_tokens=limit.max_num_tokens, max_seq_len=rt.max_seq_len,
        free_gpu_memory_fraction=fraction,
        enable_block_reuse=(rt.kv_cache.enable_block_reuse if rt.kv_cache.enable_block_reuse is not None
                            else recipe.enable_block_reuse),
        kv_fp8=kv_fp8, moe_backend=(rt.moe_backend or recipe.moe_backend) if model.moe else None,
        mtp_layers=rt.mtp_layers if rt.mtp_layers is not None else recipe.mtp_layers,
        cuda_graphs=rt.cuda_graphs.enabled, cuda_graph_max_batch_size=graphs,
        cuda_graph_padding=rt.cuda_graphs.padding, scheduler_policy=rt.scheduler_policy,
        chunked_prefill=limit.chunked_prefill)
    return runtime, note


def resolve(spec: DeepSeekDeploymentSpec, model: ModelSpec, gpu: GpuSpec) -> Runtime:
    """The first applicable recipe that fits, with the spec's own settings over it; when none fits, the first
    one (its fit says why and what would)."""
    tried: list[str] = []
    first: Runtime | None = None
    for recipe in recipes.candidates(model, gpu, spec.model.precision, spec.runtime.objective):
        runtime, note = _with_recipe(spec, model, gpu, recipe)
        first = first or runtime
        if runtime.fit.fits:
            why = [f"recipe {recipe.name} ({recipe.source})"]
            if recipe.objective != spec.runtime.objective and recipe.tensor is not None:
                why.append(f"no {spec.runtime.objective} recipe fits")
            why += [f"{name} does not fit" for name in tried]
            why += [note] if note else []
            return replace(runtime, reason="; ".join(why))
        tried.append(recipe.name)
    assert first is not None  # candidates() always ends with a default
    return replace(first, reason=f"recipe {first.recipe.name} ({first.recipe.source}); none of "
                                 f"{', '.join(tried)} fits")
