"""spec.runtime: the LLM() arguments of TensorRT-LLM's PyTorch backend, and the fields of the API before it."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.spec.base import (
    DEFAULT_IMAGE,
    DEFAULT_MODEL_CACHE_PVC,
    IMAGE,
    K8S_NAME,
    Rule,
    Schema,
)


def _power_of_two_or_auto(value: int | str) -> int | str:
    if isinstance(value, int) and (value < 1 or value & (value - 1)):
        raise ValueError(f"must be `auto` or a power of two, got {value}")
    return value


Parallelism = Annotated[
    int | Literal["auto"],
    AfterValidator(_power_of_two_or_auto),
    Field(description="A power of two, or `auto` for the smallest that fits."),
]


class ModelCache(Schema):
    pvc: str = Field(default=DEFAULT_MODEL_CACHE_PVC, pattern=K8S_NAME, max_length=253,
                     description="PVC that holds downloaded and quantized checkpoints under their keys; created "
                                 "when missing (ReadWriteMany) and kept when a DeepSeekDeployment is deleted: "
                                 "downloads and quantizing cost hours, and other resources may use them.")
    size: str = Field(default="500Gi", pattern=r"^[1-9][0-9]*(Ki|Mi|Gi|Ti)$",
                      description="Size of a created cache PVC (above 0: Kubernetes refuses an empty claim).")
    storage_class_name: str | None = Field(default=None, max_length=253, pattern=k8s.DNS1123_SUBDOMAIN.join("^$"),
                                           description="StorageClass of a created cache PVC.")


class RuntimeParallelism(Schema):
    """How one replica is split over its GPUs: TorchLlmArgs' *_parallel_size and enable_attention_dp."""

    tensor: Parallelism = Field(default="auto", description="tensor_parallel_size; `auto`: the recipe's, or the "
                                                            "smallest that fits.")
    pipeline: Parallelism = Field(default="auto", description="pipeline_parallel_size (stages, across nodes when "
                                                              "a replica spans them).")
    expert: Parallelism = Field(default="auto", description="moe_expert_parallel_size (MoE models only): experts "
                                                            "are split over this many of the tensor-parallel ranks.")
    attention_data_parallel: bool | None = Field(
        default=None, description="enable_attention_dp (MoE models only): each rank runs attention for its own "
                                  "requests (more throughput, more latency); unset: the recipe's choice.")


class KvCacheSettings(Schema):
    free_gpu_memory_fraction: float | None = Field(
        default=None, gt=0, le=1, description="Share of GPU memory left after the weights that goes to the KV "
                                              "cache (kv_cache_config.free_gpu_memory_fraction); unset: the recipe's.")
    enable_block_reuse: bool | None = Field(default=None, description="Reuse cached blocks of a shared prompt "
                                                                      "prefix; unset: the recipe's (on for dense).")
    dtype: Literal["auto", "fp8"] = Field(default="auto", description="KV cache element type: `auto` (the "
                                                                     "model's, or the recipe's) or `fp8`.")


class CudaGraphSettings(Schema):
    enabled: bool = Field(default=True, description="Capture CUDA graphs for decode batches (cuda_graph_config).")
    max_batch_size: int | None = Field(default=None, ge=1, le=4096,
                                       description="Largest batch captured; unset: the runtime's maxBatchSize.")
    padding: bool = Field(default=True, description="Pad a batch up to the next captured size (enable_padding).")


class RuntimeSpec(Schema):
    """What TensorRT-LLM's PyTorch backend is started with: the `LLM()` arguments of the `llmapi` model.

    Unset fields come from the recipe the fit check picks for the model, GPU type and objective
    (status.runtime.recipe says which); a field set here always wins over the recipe."""

    rules = (Rule("!has(self.maxBatchSize) || !has(self.cudaGraphs) || !has(self.cudaGraphs.maxBatchSize) || "
                  "self.cudaGraphs.maxBatchSize <= self.maxBatchSize",
                  "cudaGraphs.maxBatchSize must not exceed maxBatchSize: no batch that large is ever scheduled",
                  lambda r: None in (r.cuda_graphs.max_batch_size, r.max_batch_size)
                  or r.cuda_graphs.max_batch_size <= r.max_batch_size),)

    image: str = Field(default=DEFAULT_IMAGE, pattern=IMAGE, max_length=512,
                       description="Triton + TensorRT-LLM image: NVIDIA's tritonserver:*-trtllm-python-py3 with an "
                                   "`llmapi` model that loads (default: the project's image of 26.07 with the openai "
                                   "package its model needs, and sshd); its version is part of the quantized "
                                   "checkpoint's key.")
    objective: Literal["throughput", "latency"] = Field(
        default="throughput", description="What the recipe optimises: throughput (attention data parallelism, "
                                          "large batches) or latency (per-user speed, multi-token prediction).")
    parallelism: RuntimeParallelism = Field(default_factory=RuntimeParallelism,
                                            description="Tensor, pipeline and expert parallelism.")
    max_batch_size: int | None = Field(default=None, ge=1, le=4096,
                                       description="Most requests scheduled together (max_batch_size); unset: the "
                                                   "recipe's.")
    max_num_tokens: int | None = Field(default=None, ge=16, le=1048576,
                                       description="Most tokens of one scheduler iteration, prompts included "
                                                   "(max_num_tokens); unset: the recipe's.")
    max_seq_len: int = Field(default=8192, ge=2, le=1048576,
                             description="Longest prompt + output of one request, in tokens (max_seq_len).")
    scheduler_policy: Literal["guaranteedNoEvict", "maxUtilization"] = Field(
        default="guaranteedNoEvict", description="scheduler_config.capacity_scheduler_policy: admit a request "
                                                 "only when its whole KV cache fits, or pack and evict.")
    kv_cache: KvCacheSettings = Field(default_factory=KvCacheSettings, description="The KV cache.")
    cuda_graphs: CudaGraphSettings = Field(default_factory=CudaGraphSettings, description="CUDA graphs.")
    moe_backend: Literal["CUTLASS", "TRTLLM", "DEEPGEMM", "WIDEEP"] | None = Field(
        default=None, description="moe_config.backend (MoE models only); unset: the recipe's.")
    mtp_layers: int | None = Field(
        default=None, ge=0, le=4, description="Multi-token prediction (speculative decoding with DeepSeek-R1's "
                                               "MTP module): draft tokens per step, 0 turns it off; unset: the "
                                               "recipe's. deepseek-r1 only.")
    cache: ModelCache = Field(default_factory=ModelCache, description="The cache PVC of quantized checkpoints.")


# Fields of the API before the PyTorch backend, and what replaced each: a CR that still sets one is rejected
# with this text rather than having the field pruned in silence.
REMOVED_ENGINE = (
    "spec.engine was replaced by spec.runtime (TensorRT-LLM's PyTorch backend builds no engine): "
    "engine.maxBatchSize -> runtime.maxBatchSize, engine.maxInputLen -> runtime.maxNumTokens, "
    "engine.maxSeqLen -> runtime.maxSeqLen, engine.tensorParallel -> runtime.parallelism.tensor, "
    "engine.pipelineParallel -> runtime.parallelism.pipeline, engine.image -> runtime.image, "
    "engine.cache -> runtime.cache")
REMOVED_BATCHING = (
    "spec.serving.batching was replaced: kvCacheFreeGpuMemFraction -> spec.runtime.kvCache.freeGpuMemoryFraction, "
    "batchSchedulerPolicy -> spec.runtime.schedulerPolicy (guaranteedNoEvict or maxUtilization); policy and "
    "maxQueueDelayMicroseconds are gone (the LLM API batches in flight; Triton hands it one request at a time)")


def removed_field(message: str) -> Any:
    return Field(default=None, description=f"Removed. {message}.",
                 json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True})
