"""Triton model repository for TensorRT-LLM's `inflight_batcher_llm` layout, built as `ModelConfig` protobufs.

Four models, the same names and wiring as `all_models/inflight_batcher_llm` of the TensorRT-LLM backend:

- `preprocessing` (backend `python`): tokenizes `QUERY`, turns bad/stop word strings into id lists;
- `tensorrt_llm` (backend `tensorrtllm`, the C++ in-flight batcher): runs the engine at `gpt_model_path`;
- `postprocessing` (backend `python`): detokenizes `TOKENS_BATCH` into `OUTPUT`;
- `ensemble` (platform `ensemble`): the public entry point, `text_input` ... -> `text_output`, chaining the
  three above through internal tensors named with a leading underscore (`_INPUT_ID`, `_TOKENS_BATCH`, ...).

Every config is a `tritonclient.grpc.model_config_pb2.ModelConfig` message printed with
`google.protobuf.text_format`, never a string template, so each `config.pbtxt` parses as a Triton config.
Only the tensors this operator's clients use are declared (the upstream configs also carry LoRA, multimodal,
speculative-decoding and perf-metric tensors); the exceptions are tensors the upstream `model.py` files look up
in `initialize()` (e.g. `EMBEDDING_BIAS_WEIGHTS`, `PIXEL_VALUES`), which must be declared or the model fails to
load, and parameters the C++ backend reads without a default (`tokenizer_dir`, `xgrammar_tokenizer_info_path`,
`guided_decoding_backend` on `tensorrt_llm`, `multimodal_model_path` on `preprocessing`).

Pod layout. A ConfigMap holds files, not directories, so `configmap_data` flattens each repository path
(`ensemble/config.pbtxt` -> `ensemble__config.pbtxt`, see `configmap_key_for_path`) and
`repository_path_for_key` undoes it; `configmap_volume_items` gives the `items` of a ConfigMap volume that
restores the paths. The pod then assembles the repository in a writable directory (an emptyDir):

    <repo>/ensemble/config.pbtxt        + an empty <repo>/ensemble/1/       (Triton needs a version directory)
    <repo>/tensorrt_llm/config.pbtxt    + an empty <repo>/tensorrt_llm/1/   (the engine lives at engine_dir)
    <repo>/preprocessing/config.pbtxt   + <repo>/preprocessing/1/model.py   (copied from the serving image)
    <repo>/postprocessing/config.pbtxt  + <repo>/postprocessing/1/model.py  (copied from the serving image)

and starts `tritonserver --model-repository=<repo>`. `VERSION_DIR` and `PYTHON_MODELS` name those pieces.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from dataclasses import dataclass

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

# ------------------------------------------------------------------------------------------------ names

ENSEMBLE = "ensemble"
PREPROCESSING = "preprocessing"
TENSORRT_LLM = "tensorrt_llm"
POSTPROCESSING = "postprocessing"
MODEL_NAMES: tuple[str, ...] = (ENSEMBLE, PREPROCESSING, TENSORRT_LLM, POSTPROCESSING)
PYTHON_MODELS: tuple[str, ...] = (PREPROCESSING, POSTPROCESSING)
"""Models whose `1/model.py` the pod copies from the serving image's `inflight_batcher_llm` templates."""

CONFIG_FILE = "config.pbtxt"
VERSION_DIR = "1"
CONFIGMAP_KEY_SEPARATOR = "__"
"""Stands for "/" in ConfigMap keys: `ensemble/config.pbtxt` is stored under `ensemble__config.pbtxt`."""

TENSORRT_LLM_BACKEND = "tensorrtllm"
PYTHON_BACKEND = "python"
GPT_MODEL_TYPE = "inflight_fused_batching"
BATCH_SCHEDULER_POLICIES: frozenset[str] = frozenset({"guaranteed_no_evict", "max_utilization"})

_CONFIGMAP_KEY = re.compile(r"[-._a-zA-Z0-9]+")
_CONFIGMAP_KEY_MAX = 253
_PATH_SEGMENT = re.compile(r"[-.a-zA-Z0-9]+(_[-.a-zA-Z0-9]+)*")  # no "__", no leading/trailing "_"

# ------------------------------------------------------------------------------------------------ params


@dataclass(frozen=True)
class TritonRepoParams:
    """What varies between deployments; everything else is fixed by the `inflight_batcher_llm` layout.

    `decoupled` turns on token streaming (`model_transaction_policy { decoupled: true }` on `tensorrt_llm`);
    clients must then use a streaming API (gRPC stream or `generate_stream`). Paths are inside the pod.
    """

    max_batch_size: int
    decoupled: bool
    kv_cache_free_gpu_mem_fraction: float
    batch_scheduler_policy: str
    engine_dir: str
    tokenizer_dir: str
    max_beam_width: int = 1
    enable_chunked_context: bool = False
    exclude_input_in_output: bool = True
    max_queue_delay_microseconds: int = 0
    preprocessing_instances: int = 1
    postprocessing_instances: int = 1

    def __post_init__(self) -> None:
        _check_int("max_batch_size", self.max_batch_size, minimum=1)
        _check_int("max_beam_width", self.max_beam_width, minimum=1)
        _check_int("max_queue_delay_microseconds", self.max_queue_delay_microseconds, minimum=0)
        _check_int("preprocessing_instances", self.preprocessing_instances, minimum=1)
        _check_int("postprocessing_instances", self.postprocessing_instances, minimum=1)
        for name in ("decoupled", "enable_chunked_context", "exclude_input_in_output"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TritonRepoParams.{name} must be a bool, got {getattr(self, name)!r}")
        fraction = self.kv_cache_free_gpu_mem_fraction
        if (isinstance(fraction, bool) or not isinstance(fraction, int | float) or math.isnan(fraction)
                or not 0 < fraction <= 1):
            raise ValueError(f"TritonRepoParams.kv_cache_free_gpu_mem_fraction must be in (0, 1], got {fraction!r}")
        if self.batch_scheduler_policy not in BATCH_SCHEDULER_POLICIES:
            raise ValueError(f"TritonRepoParams.batch_scheduler_policy must be one of "
                             f"{sorted(BATCH_SCHEDULER_POLICIES)}, got {self.batch_scheduler_policy!r}")
        for name in ("engine_dir", "tokenizer_dir"):
            path = getattr(self, name)
            if not isinstance(path, str) or not path.startswith("/") or any(c.isspace() for c in path):
                raise ValueError(f"TritonRepoParams.{name} must be an absolute path inside the pod without "
                                 f"whitespace, got {path!r}")


def _check_int(name: str, value: object, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"TritonRepoParams.{name} must be an integer >= {minimum}, got {value!r}")


# ------------------------------------------------------------------------------------------------ tensors


@dataclass(frozen=True)
class _Tensor:
    name: str
    data_type: int
    dims: tuple[int, ...]
    optional: bool = False
    scalar: bool = False  # `reshape: { shape: [ ] }`: the C++ backend reads a [1] tensor as a scalar
    ragged: bool = False  # `allow_ragged_batch`: requests of different lengths batch without padding


_STRING = mc.TYPE_STRING
_BOOL = mc.TYPE_BOOL
_INT32 = mc.TYPE_INT32
_INT64 = mc.TYPE_INT64
_UINT64 = mc.TYPE_UINT64
_FP16 = mc.TYPE_FP16
_FP32 = mc.TYPE_FP32

_ENSEMBLE_INPUTS = (
    _Tensor("text_input", _STRING, (1,)),
    _Tensor("max_tokens", _INT32, (1,)),
    _Tensor("bad_words", _STRING, (-1,), optional=True),
    _Tensor("stop_words", _STRING, (-1,), optional=True),
    _Tensor("end_id", _INT32, (1,), optional=True),
    _Tensor("pad_id", _INT32, (1,), optional=True),
    _Tensor("top_k", _INT32, (1,), optional=True),
    _Tensor("top_p", _FP32, (1,), optional=True),
    _Tensor("temperature", _FP32, (1,), optional=True),
    _Tensor("repetition_penalty", _FP32, (1,), optional=True),
    _Tensor("presence_penalty", _FP32, (1,), optional=True),
    _Tensor("frequency_penalty", _FP32, (1,), optional=True),
    _Tensor("seed", _UINT64, (1,), optional=True),
    _Tensor("stream", _BOOL, (1,), optional=True),
)
_ENSEMBLE_OUTPUTS = (_Tensor("text_output", _STRING, (-1,)),)

_PREPROCESSING_INPUTS = (
    _Tensor("QUERY", _STRING, (1,)),
    _Tensor("REQUEST_OUTPUT_LEN", _INT32, (1,)),
    _Tensor("BAD_WORDS_DICT", _STRING, (-1,), optional=True),
    _Tensor("STOP_WORDS_DICT", _STRING, (-1,), optional=True),
    _Tensor("EMBEDDING_BIAS_WORDS", _STRING, (-1,), optional=True),
    _Tensor("EMBEDDING_BIAS_WEIGHTS", _FP32, (-1,), optional=True),
    _Tensor("END_ID", _INT32, (1,), optional=True),
    _Tensor("PAD_ID", _INT32, (1,), optional=True),
)
# Every output upstream model.py returns or looks up the dtype of in initialize(); the ensemble maps a subset.
_PREPROCESSING_OUTPUTS = (
    _Tensor("INPUT_ID", _INT32, (-1,)),
    _Tensor("REQUEST_INPUT_LEN", _INT32, (1,)),
    _Tensor("DECODER_INPUT_ID", _INT32, (-1,)),
    _Tensor("REQUEST_DECODER_INPUT_LEN", _INT32, (1,)),
    _Tensor("BAD_WORDS_IDS", _INT32, (2, -1)),
    _Tensor("STOP_WORDS_IDS", _INT32, (2, -1)),
    _Tensor("EMBEDDING_BIAS", _FP32, (-1,)),
    _Tensor("REQUEST_OUTPUT_LEN", _INT32, (-1,)),
    _Tensor("OUT_END_ID", _INT32, (1,)),
    _Tensor("OUT_PAD_ID", _INT32, (1,)),
    _Tensor("OUT_PROMPT_TABLE_EXTRA_IDS", _UINT64, (-1,)),
    _Tensor("PIXEL_VALUES", _FP16, (-1, -1, -1, -1)),
    _Tensor("IMAGE_SIZES", _INT64, (2,)),
)

_TENSORRT_LLM_INPUTS = (
    _Tensor("input_ids", _INT32, (-1,), optional=True, ragged=True),
    _Tensor("input_lengths", _INT32, (1,), scalar=True),
    _Tensor("request_output_len", _INT32, (1,), scalar=True),
    _Tensor("end_id", _INT32, (1,), optional=True, scalar=True),
    _Tensor("pad_id", _INT32, (1,), optional=True, scalar=True),
    _Tensor("stop_words_list", _INT32, (2, -1), optional=True, ragged=True),
    _Tensor("bad_words_list", _INT32, (2, -1), optional=True, ragged=True),
    _Tensor("beam_width", _INT32, (1,), optional=True, scalar=True),
    _Tensor("temperature", _FP32, (1,), optional=True, scalar=True),
    _Tensor("runtime_top_k", _INT32, (1,), optional=True, scalar=True),
    _Tensor("runtime_top_p", _FP32, (1,), optional=True, scalar=True),
    _Tensor("repetition_penalty", _FP32, (1,), optional=True, scalar=True),
    _Tensor("presence_penalty", _FP32, (1,), optional=True, scalar=True),
    _Tensor("frequency_penalty", _FP32, (1,), optional=True, scalar=True),
    _Tensor("seed", _UINT64, (1,), optional=True, scalar=True),
    _Tensor("exclude_input_in_output", _BOOL, (1,), optional=True, scalar=True),
    _Tensor("stop", _BOOL, (1,), optional=True, scalar=True),
    _Tensor("streaming", _BOOL, (1,), optional=True, scalar=True),
)
_TENSORRT_LLM_OUTPUTS = (
    _Tensor("output_ids", _INT32, (-1, -1)),
    _Tensor("sequence_length", _INT32, (-1,)),
    _Tensor("cum_log_probs", _FP32, (-1,)),
    _Tensor("output_log_probs", _FP32, (-1, -1)),
)

_POSTPROCESSING_INPUTS = (
    _Tensor("TOKENS_BATCH", _INT32, (-1, -1)),
    _Tensor("SEQUENCE_LENGTH", _INT32, (-1,)),
)
_POSTPROCESSING_OUTPUTS = (_Tensor("OUTPUT", _STRING, (-1,)),)

# ensemble_scheduling: (model, {model input: ensemble tensor}, {model output: ensemble tensor}).
_STEPS: tuple[tuple[str, dict[str, str], dict[str, str]], ...] = (
    (PREPROCESSING,
     {"QUERY": "text_input", "REQUEST_OUTPUT_LEN": "max_tokens", "BAD_WORDS_DICT": "bad_words",
      "STOP_WORDS_DICT": "stop_words", "END_ID": "end_id", "PAD_ID": "pad_id"},
     {"INPUT_ID": "_INPUT_ID", "REQUEST_INPUT_LEN": "_REQUEST_INPUT_LEN", "REQUEST_OUTPUT_LEN": "_REQUEST_OUTPUT_LEN",
      "BAD_WORDS_IDS": "_BAD_WORDS_IDS", "STOP_WORDS_IDS": "_STOP_WORDS_IDS",
      "OUT_END_ID": "_PREPROCESSOR_END_ID", "OUT_PAD_ID": "_PREPROCESSOR_PAD_ID"}),
    (TENSORRT_LLM,
     {"input_ids": "_INPUT_ID", "input_lengths": "_REQUEST_INPUT_LEN", "request_output_len": "_REQUEST_OUTPUT_LEN",
      "bad_words_list": "_BAD_WORDS_IDS", "stop_words_list": "_STOP_WORDS_IDS",
      "end_id": "_PREPROCESSOR_END_ID", "pad_id": "_PREPROCESSOR_PAD_ID",
      "runtime_top_k": "top_k", "runtime_top_p": "top_p", "temperature": "temperature",
      "repetition_penalty": "repetition_penalty", "presence_penalty": "presence_penalty",
      "frequency_penalty": "frequency_penalty", "seed": "seed", "streaming": "stream"},
     {"output_ids": "_TOKENS_BATCH", "sequence_length": "_SEQUENCE_LENGTH"}),
    (POSTPROCESSING,
     {"TOKENS_BATCH": "_TOKENS_BATCH", "SEQUENCE_LENGTH": "_SEQUENCE_LENGTH"},
     {"OUTPUT": "text_output"}),
)

# ------------------------------------------------------------------------------------------------ builders


def _add_tensors(config: mc.ModelConfig, ins: tuple[_Tensor, ...], outs: tuple[_Tensor, ...]) -> None:
    for spec in ins:
        model_input = config.input.add(name=spec.name, data_type=spec.data_type, dims=spec.dims,
                                       optional=spec.optional, allow_ragged_batch=spec.ragged)
        if spec.scalar:
            model_input.reshape.SetInParent()  # an empty shape: a scalar per request
    for spec in outs:
        config.output.add(name=spec.name, data_type=spec.data_type, dims=spec.dims)


def _set_parameters(config: mc.ModelConfig, parameters: Mapping[str, str]) -> None:
    for key, value in parameters.items():
        config.parameters[key].string_value = value


def _flag(value: bool) -> str:
    return "true" if value else "false"


def _base(name: str, max_batch_size: int, ins: tuple[_Tensor, ...], outs: tuple[_Tensor, ...]) -> mc.ModelConfig:
    config = mc.ModelConfig(name=name, max_batch_size=max_batch_size)
    _add_tensors(config, ins, outs)
    return config


def _cpu_instances(config: mc.ModelConfig, count: int) -> None:
    config.instance_group.add(count=count, kind=mc.ModelInstanceGroup.KIND_CPU)


def _ensemble(p: TritonRepoParams) -> mc.ModelConfig:
    config = _base(ENSEMBLE, p.max_batch_size, _ENSEMBLE_INPUTS, _ENSEMBLE_OUTPUTS)
    config.platform = "ensemble"
    for model_name, input_map, output_map in _STEPS:
        step = config.ensemble_scheduling.step.add(model_name=model_name, model_version=-1)
        step.input_map.update(input_map)
        step.output_map.update(output_map)
    return config


def _preprocessing(p: TritonRepoParams) -> mc.ModelConfig:
    config = _base(PREPROCESSING, p.max_batch_size, _PREPROCESSING_INPUTS, _PREPROCESSING_OUTPUTS)
    config.backend = PYTHON_BACKEND
    config.dynamic_batching.preferred_batch_size.append(p.max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = p.max_queue_delay_microseconds
    _set_parameters(config, {"tokenizer_dir": p.tokenizer_dir, "multimodal_model_path": ""})
    _cpu_instances(config, p.preprocessing_instances)
    return config


def _tensorrt_llm(p: TritonRepoParams) -> mc.ModelConfig:
    config = _base(TENSORRT_LLM, p.max_batch_size, _TENSORRT_LLM_INPUTS, _TENSORRT_LLM_OUTPUTS)
    config.backend = TENSORRT_LLM_BACKEND
    if p.decoupled:
        config.model_transaction_policy.decoupled = True
    config.dynamic_batching.preferred_batch_size.append(p.max_batch_size)
    config.dynamic_batching.max_queue_delay_microseconds = p.max_queue_delay_microseconds
    # One KIND_CPU instance: the backend's executor places itself on the GPUs (and MPI ranks) on its own.
    _cpu_instances(config, 1)
    _set_parameters(config, {
        "gpt_model_type": GPT_MODEL_TYPE,
        "gpt_model_path": p.engine_dir,
        "max_beam_width": str(p.max_beam_width),
        "batch_scheduler_policy": p.batch_scheduler_policy,
        "kv_cache_free_gpu_mem_fraction": repr(float(p.kv_cache_free_gpu_mem_fraction)),
        "enable_chunked_context": _flag(p.enable_chunked_context),
        "exclude_input_in_output": _flag(p.exclude_input_in_output),
        "FORCE_CPU_ONLY_INPUT_TENSORS": "no",
        # Read without a default by the C++ backend's guided-decoding setup; empty means "off".
        "tokenizer_dir": "",
        "xgrammar_tokenizer_info_path": "",
        "guided_decoding_backend": "",
    })
    return config


def _postprocessing(p: TritonRepoParams) -> mc.ModelConfig:
    config = _base(POSTPROCESSING, p.max_batch_size, _POSTPROCESSING_INPUTS, _POSTPROCESSING_OUTPUTS)
    config.backend = PYTHON_BACKEND
    config.dynamic_batching.SetInParent()
    _set_parameters(config, {"tokenizer_dir": p.tokenizer_dir, "skip_special_tokens": "true"})
    _cpu_instances(config, p.postprocessing_instances)
    return config


# ------------------------------------------------------------------------------------------------ public API


def render_model_configs(params: TritonRepoParams) -> dict[str, mc.ModelConfig]:
    """The four `ModelConfig` messages, keyed by model name in `MODEL_NAMES` order."""
    return {
        ENSEMBLE: _ensemble(params),
        PREPROCESSING: _preprocessing(params),
        TENSORRT_LLM: _tensorrt_llm(params),
        POSTPROCESSING: _postprocessing(params),
    }


def render_model_repository(params: TritonRepoParams) -> dict[str, str]:
    """`<model>/config.pbtxt` -> text, for every model; the pod adds the version directories (module docstring)."""
    return {f"{name}/{CONFIG_FILE}": str(text_format.MessageToString(config))
            for name, config in render_model_configs(params).items()}


def configmap_key_for_path(path: str) -> str:
    """`ensemble/config.pbtxt` -> `ensemble__config.pbtxt`; raises ValueError for a path that cannot round-trip."""
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
    """Inverse of `configmap_key_for_path`: `ensemble__config.pbtxt` -> `ensemble/config.pbtxt`."""
    if not _CONFIGMAP_KEY.fullmatch(key) or CONFIGMAP_KEY_SEPARATOR not in key:
        raise ValueError(f"{key!r} is not a ConfigMap key of a rendered model repository")
    path = key.replace(CONFIGMAP_KEY_SEPARATOR, "/")
    if configmap_key_for_path(path) != key:
        raise ValueError(f"{key!r} is not a ConfigMap key of a rendered model repository")
    return path


def configmap_data(params: TritonRepoParams) -> dict[str, str]:
    """The repository as ConfigMap `data`: keys are repository paths with "/" written as `__`."""
    return {configmap_key_for_path(path): text for path, text in render_model_repository(params).items()}


def configmap_volume_items(data: Mapping[str, str]) -> list[dict[str, str]]:
    """`items` for a ConfigMap volume that mounts each key back at its repository path."""
    return [{"key": key, "path": repository_path_for_key(key)} for key in sorted(data)]
