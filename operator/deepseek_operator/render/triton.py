"""Triton model repository for TensorRT-LLM's PyTorch backend: the `llmapi` layout. Pure.

One model, `tensorrt_llm` (backend `python`), as in `triton_backend/all_models/llmapi/` of TensorRT-LLM (shipped
at /app/all_models/llmapi in the `tritonserver:*-trtllm-python-py3` images; TensorRT-LLM 1.2 removed the
TensorRT-engine backend, `trtllm-build` and the `inflight_batcher_llm` ensemble):

    <repo>/tensorrt_llm/config.pbtxt   a `ModelConfig` protobuf (tritonclient's model_config_pb2) printed with
                                       `protobuf.text_format`: the request and response tensors of the image's
                                       model.py; batching and decoupling come from model.yaml
    <repo>/tensorrt_llm/1/model.yaml   the arguments of `tensorrt_llm.LLM(...)` (TorchLlmArgs) plus a
                                       `triton_config` block (max_batch_size, decoupled) that model.py applies
                                       in `auto_complete_config`
    <repo>/tensorrt_llm/1/model.py     the image's own model folder (model.py and the helpers.py it imports),
                                       copied whole by the pod's init container (`IMAGE_MODEL_DIR`)

A ConfigMap holds files, not directories, so `configmap_data` flattens each repository path
(`tensorrt_llm/1/model.yaml` -> `tensorrt_llm__1__model.yaml`, see `configmap_key_for_path`) and
`repository_path_for_key` undoes it.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

import yaml
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

MODEL_NAME = "tensorrt_llm"
"""What clients call: `/v2/models/tensorrt_llm/generate`, gRPC `ModelInfer`, and what Triton labels metrics with."""
CONFIG_FILE = "config.pbtxt"
VERSION_DIR = "1"
MODEL_YAML = f"{MODEL_NAME}/{VERSION_DIR}/model.yaml"
RENDERED_PATHS = (f"{MODEL_NAME}/{CONFIG_FILE}", MODEL_YAML)
IMAGE_MODEL_DIR = f"/app/all_models/llmapi/{MODEL_NAME}/{VERSION_DIR}"
"""Where the serving image ships the `llmapi` model's folder (model.py, the helpers.py it imports, a sample
model.yaml): the TensorRT-LLM backend's Dockerfile copies triton_backend/all_models to /app/all_models."""
CONFIGMAP_KEY_SEPARATOR = "__"
"""Stands for "/" in ConfigMap keys: `tensorrt_llm/config.pbtxt` is stored under `tensorrt_llm__config.pbtxt`."""

# TensorRT-LLM's SchedulerConfig.capacity_scheduler_policy values for spec.runtime.schedulerPolicy.
CAPACITY_SCHEDULER_POLICY = {"guaranteedNoEvict": "GUARANTEED_NO_EVICT", "maxUtilization": "MAX_UTILIZATION"}
MOE_BACKENDS = ("CUTLASS", "TRTLLM", "DEEPGEMM", "WIDEEP")

_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIGMAP_KEY_MAX = 253
_PATH_SEGMENT = re.compile(r"[-.a-zA-Z0-9]+(_[-.a-zA-Z0-9]+)*")  # no "__", no leading/trailing "_"

# ------------------------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class LlmApiParams:
    """What varies between deployments: the `LLM()` arguments and the Triton settings of the `llmapi` model.

    `decoupled` turns on token streaming (responses sent as they are generated); clients then use a streaming
    API (gRPC stream or `generate_stream`). Paths are inside the pod.
    """

    checkpoint_dir: str
    tensor_parallel: int
    pipeline_parallel: int
    max_batch_size: int
    max_num_tokens: int
    max_seq_len: int
    free_gpu_memory_fraction: float
    batch_scheduler_policy: str
    decoupled: bool
    enable_block_reuse: bool = True
    expert_parallel: int | None = None  # None for dense models
    attention_dp: bool = False
    kv_fp8: bool = False
    moe_backend: str | None = None
    mtp_layers: int = 0
    cuda_graph_max_batch_size: int | None = None  # None: no CUDA graphs
    cuda_graph_padding: bool = True
    enable_chunked_prefill: bool = False
    trust_remote_code: bool = False
    stream_interval: int = 1
    moe_max_num_tokens: int | None = None
    relaxed_topk: int | None = None  # MTP relaxed acceptance while thinking, with relaxed_delta
    relaxed_delta: float | None = None
    load_balancer_slots: int | None = None
    low_precision_moe_combine: bool = False

    def __post_init__(self) -> None:
        for name in ("tensor_parallel", "pipeline_parallel", "max_batch_size", "max_num_tokens", "max_seq_len",
                     "stream_interval"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"LlmApiParams.{name} must be an integer >= 1, got {value!r}")
        for name in ("expert_parallel", "cuda_graph_max_batch_size", "moe_max_num_tokens", "load_balancer_slots",
                     "relaxed_topk"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ValueError(f"LlmApiParams.{name} must be None or an integer >= 1, got {value!r}")
        if self.expert_parallel is not None and self.tensor_parallel % self.expert_parallel:
            raise ValueError(f"LlmApiParams.expert_parallel {self.expert_parallel} must divide tensor_parallel "
                             f"{self.tensor_parallel}")
        if isinstance(self.mtp_layers, bool) or not isinstance(self.mtp_layers, int) or self.mtp_layers < 0:
            raise ValueError(f"LlmApiParams.mtp_layers must be an integer >= 0, got {self.mtp_layers!r}")
        if self.moe_backend is not None and self.moe_backend not in MOE_BACKENDS:
            raise ValueError(f"LlmApiParams.moe_backend must be one of {MOE_BACKENDS}, got {self.moe_backend!r}")
        if (self.relaxed_topk is None) != (self.relaxed_delta is None) or (self.relaxed_topk and not self.mtp_layers):
            raise ValueError("LlmApiParams.relaxed_topk and relaxed_delta go together, with mtp_layers")
        if self.load_balancer_slots is not None and self.expert_parallel \
                and self.load_balancer_slots % self.expert_parallel:
            raise ValueError(f"LlmApiParams.load_balancer_slots {self.load_balancer_slots} must be a multiple of "
                             f"expert_parallel {self.expert_parallel} (MoeLoadBalancerConfig.setup)")
        for name in ("decoupled", "enable_block_reuse", "attention_dp", "kv_fp8", "cuda_graph_padding",
                     "enable_chunked_prefill", "trust_remote_code", "low_precision_moe_combine"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"LlmApiParams.{name} must be a bool, got {getattr(self, name)!r}")
        fraction = self.free_gpu_memory_fraction
        if (isinstance(fraction, bool) or not isinstance(fraction, int | float) or math.isnan(fraction)
                or not 0 < fraction <= 1):
            raise ValueError(f"LlmApiParams.free_gpu_memory_fraction must be in (0, 1], got {fraction!r}")
        if self.batch_scheduler_policy not in CAPACITY_SCHEDULER_POLICY:
            raise ValueError(f"LlmApiParams.batch_scheduler_policy must be one of "
                             f"{sorted(CAPACITY_SCHEDULER_POLICY)}, got {self.batch_scheduler_policy!r}")
        path = self.checkpoint_dir
        if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
            raise ValueError(f"LlmApiParams.checkpoint_dir must be an absolute path inside the pod without "
                             f"whitespace, got {path!r}")


# ------------------------------------------------------------------------------------------------ tensors


@dataclass(frozen=True)
class _Tensor:
    name: str
    data_type: int
    dims: tuple[int, ...]
    optional: bool = False


_STRING, _BOOL, _INT32, _INT64, _UINT64, _FP32 = (mc.TYPE_STRING, mc.TYPE_BOOL, mc.TYPE_INT32, mc.TYPE_INT64,
                                                  mc.TYPE_UINT64, mc.TYPE_FP32)

# The tensors the image's model.py reads and writes (triton_backend/all_models/llmapi/tensorrt_llm/config.pbtxt,
# TensorRT-LLM 1.2): a prompt per request (no batch dimension: model.yaml's max_batch_size is 0), sampling
# parameters, and the optional per-response fields model.py returns when asked.
_INPUTS = (
    _Tensor("text_input", _STRING, (-1,)),
    _Tensor("streaming", _BOOL, (1,), optional=True),
    _Tensor("sampling_param_best_of", _INT32, (1,), optional=True),
    _Tensor("sampling_param_temperature", _FP32, (1,), optional=True),
    _Tensor("sampling_param_top_k", _INT32, (1,), optional=True),
    _Tensor("sampling_param_top_p", _FP32, (1,), optional=True),
    _Tensor("sampling_param_frequency_penalty", _FP32, (1,), optional=True),
    _Tensor("sampling_param_presence_penalty", _FP32, (1,), optional=True),
    _Tensor("sampling_param_max_tokens", _INT32, (1,), optional=True),
    _Tensor("sampling_param_stop", _STRING, (-1,), optional=True),
    _Tensor("sampling_param_seed", _UINT64, (1,), optional=True),
    _Tensor("sampling_param_exclude_input_from_output", _BOOL, (1,), optional=True),
    _Tensor("sampling_param_return_perf_metrics", _BOOL, (1,), optional=True),
    _Tensor("return_finish_reason", _BOOL, (1,), optional=True),
    _Tensor("return_stop_reason", _BOOL, (1,), optional=True),
    _Tensor("return_cumulative_logprob", _BOOL, (1,), optional=True),
    _Tensor("stop", _BOOL, (1,), optional=True),
)
_OUTPUTS = (
    _Tensor("text_output", _STRING, (-1,)),
    _Tensor("finish_reason", _STRING, (-1,)),
    _Tensor("stop_reason", _STRING, (-1,)),
    _Tensor("cumulative_logprob", _FP32, (-1,)),
    _Tensor("kv_cache_reused_block", _INT32, (-1,)),
    _Tensor("kv_cache_missed_block", _INT32, (-1,)),
    _Tensor("kv_cache_alloc_new_blocks", _INT32, (-1,)),
    _Tensor("kv_cache_alloc_total_blocks", _INT32, (-1,)),
    _Tensor("kv_cache_hit_rate", _FP32, (-1,)),
    _Tensor("arrival_time_ns", _INT64, (1,)),
    _Tensor("first_scheduled_time_ns", _INT64, (1,)),
    _Tensor("first_token_time_ns", _INT64, (1,)),
    _Tensor("last_token_time_ns", _INT64, (1,)),
    _Tensor("acceptance_rate", _FP32, (1,)),
    _Tensor("total_accepted_draft_tokens", _INT32, (1,)),
    _Tensor("total_draft_tokens", _INT32, (1,)),
)


def model_config() -> mc.ModelConfig:
    """`tensorrt_llm/config.pbtxt`. One KIND_CPU instance: the LLM API places its ranks on the GPUs itself."""
    config = mc.ModelConfig(name=MODEL_NAME, backend="python")
    for t in _INPUTS:
        config.input.add(name=t.name, data_type=t.data_type, dims=t.dims, optional=t.optional)
    for t in _OUTPUTS:
        config.output.add(name=t.name, data_type=t.data_type, dims=t.dims)
    config.instance_group.add(count=1, kind=mc.ModelInstanceGroup.KIND_CPU)
    return config


def model_yaml(p: LlmApiParams) -> dict[str, Any]:
    """`tensorrt_llm/1/model.yaml`: TorchLlmArgs keys (checked against TensorRT-LLM's own definitions in
    tests/unit/test_triton_render.py) and the `triton_config` block the image's model.py reads."""
    kv_cache: dict[str, Any] = {"free_gpu_memory_fraction": float(p.free_gpu_memory_fraction),
                                "enable_block_reuse": p.enable_block_reuse}
    if p.kv_fp8:
        kv_cache["dtype"] = "fp8"
    args: dict[str, Any] = {
        "model": p.checkpoint_dir,
        "backend": "pytorch",
        "tensor_parallel_size": p.tensor_parallel,
        "pipeline_parallel_size": p.pipeline_parallel,
    }
    if p.expert_parallel is not None:
        args["moe_expert_parallel_size"] = p.expert_parallel
        args["enable_attention_dp"] = p.attention_dp
    args |= {
        "max_batch_size": p.max_batch_size,
        "max_num_tokens": p.max_num_tokens,
        "max_seq_len": p.max_seq_len,
        "kv_cache_config": kv_cache,
        "scheduler_config": {"capacity_scheduler_policy": CAPACITY_SCHEDULER_POLICY[p.batch_scheduler_policy]},
        # null turns CUDA graphs off (the LLM API captures them by default).
        "cuda_graph_config": None if p.cuda_graph_max_batch_size is None else {
            "max_batch_size": p.cuda_graph_max_batch_size, "enable_padding": p.cuda_graph_padding},
    }
    moe: dict[str, Any] = {}
    if p.moe_backend is not None:
        moe["backend"] = p.moe_backend
    if p.moe_max_num_tokens is not None:
        moe["max_num_tokens"] = p.moe_max_num_tokens
    if p.low_precision_moe_combine:
        moe["use_low_precision_moe_combine"] = True
    if p.load_balancer_slots is not None:
        # MoeLoadBalancerConfig: online expert placement, one layer updated per iteration (examples/wide_ep).
        moe["load_balancer"] = {"num_slots": p.load_balancer_slots, "layer_updates_per_iter": 1}
    if moe:
        args["moe_config"] = moe
    if p.mtp_layers:
        # MTPDecodingConfig: DeepSeek-R1's multi-token-prediction module drafts this many tokens per step.
        speculative: dict[str, Any] = {"decoding_type": "MTP", "num_nextn_predict_layers": p.mtp_layers}
        if p.relaxed_topk is not None:
            speculative |= {"use_relaxed_acceptance_for_thinking": True, "relaxed_topk": p.relaxed_topk,
                            "relaxed_delta": p.relaxed_delta}
        args["speculative_config"] = speculative
    if p.enable_chunked_prefill:
        args["enable_chunked_prefill"] = True
    if p.trust_remote_code:
        args["trust_remote_code"] = True
    if p.stream_interval != 1:
        # Tokens per streamed response: a stream's first response comes this many tokens after the first one.
        args["stream_interval"] = p.stream_interval
    # Requests reach model.py one at a time (max_batch_size 0): the LLM API batches in flight itself.
    args["triton_config"] = {"max_batch_size": 0, "decoupled": p.decoupled}
    return args


# ------------------------------------------------------------------------------------------------ public API


def render_model_repository(params: LlmApiParams) -> dict[str, str]:
    """Repository path -> text, for every file the operator renders (model.py comes from the image)."""
    config, model = RENDERED_PATHS
    return {config: str(text_format.MessageToString(model_config())),
            model: yaml.safe_dump(model_yaml(params), sort_keys=False)}


def configmap_key_for_path(path: str) -> str:
    """`tensorrt_llm/config.pbtxt` -> `tensorrt_llm__config.pbtxt`; ValueError for a path that cannot round-trip."""
    segments = path.split("/")
    if (len(segments) < 2 or not all(_PATH_SEGMENT.fullmatch(s) for s in segments)
            or any(s in (".", "..") for s in segments)):
        raise ValueError(f"repository path {path!r} cannot be a ConfigMap key: use <model>/<file> relative paths "
                         f"whose segments are [-._a-zA-Z0-9], without '{CONFIGMAP_KEY_SEPARATOR}' or a "
                         f"leading/trailing '_'")
    key = CONFIGMAP_KEY_SEPARATOR.join(segments)
    if len(key) > _CONFIGMAP_KEY_MAX:
        raise ValueError(f"ConfigMap key for {path!r} is longer than {_CONFIGMAP_KEY_MAX} characters")
    return key


def repository_path_for_key(key: str) -> str:
    """Inverse of `configmap_key_for_path`: `tensorrt_llm__1__model.yaml` -> `tensorrt_llm/1/model.yaml`."""
    if not _CONFIGMAP_KEY.fullmatch(key) or CONFIGMAP_KEY_SEPARATOR not in key:
        raise ValueError(f"{key!r} is not a ConfigMap key of a rendered model repository")
    path = key.replace(CONFIGMAP_KEY_SEPARATOR, "/")
    if configmap_key_for_path(path) != key:
        raise ValueError(f"{key!r} is not a ConfigMap key of a rendered model repository")
    return path


def configmap_data(params: LlmApiParams) -> dict[str, str]:
    """The repository as ConfigMap `data`: keys are repository paths with "/" written as `__`."""
    return {configmap_key_for_path(path): text for path, text in render_model_repository(params).items()}


def configmap_volume_items() -> list[dict[str, str]]:
    """`items` for a ConfigMap volume that mounts each rendered file back at its repository path."""
    return [{"key": configmap_key_for_path(path), "path": path} for path in RENDERED_PATHS]
