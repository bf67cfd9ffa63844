"""The DeepSeekDeployment spec: pydantic v2 models, camelCase on the wire, unknown fields rejected.

These models are the single source of truth: the CRD's OpenAPI schema (crds/) is generated from them by
`python -m deepseek_operator.api.crd`, and the operator parses every object through them.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, ClassVar, Literal, Self, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic.alias_generators import to_camel

from deepseek_operator.api import images
from deepseek_operator.api import names as k8s
from deepseek_operator.api.common import Fabric, Precision

GROUP = "serving.deepseek.ai"
VERSION = "v1alpha1"
KIND = "DeepSeekDeployment"
PLURAL = "deepseekdeployments"
SINGULAR = "deepseekdeployment"
SHORT_NAMES = ["dsd"]

DEFAULT_MODEL_CACHE_PVC = "deepseek-model-cache"
# NVIDIA's 26.07 Triton + TensorRT-LLM 1.2.1 image with what its `llmapi` model needs to load (Dockerfile target
# `tritonserver`).
DEFAULT_IMAGE = images.TRITON_IMAGE
# The operator image built with the `preflight` extra (Dockerfile target `preflight`): PyTorch and NCCL.
DEFAULT_PREFLIGHT_IMAGE = images.PREFLIGHT_IMAGE
# The weights downloader (Dockerfile target `downloader`): huggingface_hub and boto3, nothing of the operator's.
DEFAULT_DOWNLOADER_IMAGE = images.DOWNLOADER_IMAGE
# The serving pod's front door (Dockerfile target `frontend`): the OpenAI API and Triton's HTTP API, counted.
DEFAULT_FRONTEND_IMAGE = images.FRONTEND_IMAGE
# The catalog keys of render/catalog.py; the CRD enumerates them so `kubectl apply` rejects a typo.
MODEL_NAMES = (
    "deepseek-r1-distill-qwen-1.5b", "deepseek-r1-distill-qwen-7b", "deepseek-r1-distill-qwen-14b",
    "deepseek-r1-distill-qwen-32b", "deepseek-r1-distill-llama-8b", "deepseek-r1-distill-llama-70b",
    "deepseek-r1", "custom",
)
GPU_TYPES = ("A10-24GB", "L4-24GB", "L40S-48GB", "A100-40GB", "A100-80GB", "H100-80GB", "H100-PCIe-80GB",
             "H100-NVL-94GB", "H200-141GB", "H20-96GB", "B200-180GB", "B300-288GB", "GB200-186GB",
             "RTX-PRO-6000-96GB")

K8S_NAME = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
# An image reference as the container runtime parses it (distribution/reference's grammar: [domain[:port]/]path
# of lowercase components, :tag, @digest). A reference outside it (an upper-case path, an empty tag) passes the
# API server and then fails on the node with InvalidImageName.
_DOMAIN_PART = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_PATH_PART = r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*"
IMAGE = (rf"^(?:{_DOMAIN_PART}(?:\.{_DOMAIN_PART})*(?::[0-9]+)?/)?{_PATH_PART}(?:/{_PATH_PART})*"
         r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*"
         r":[0-9a-fA-F]{32,})?$")
NO_SPACE_PATH = r"^/[^\s]*$"
# Map-valued fields are bounded so that the API server can price their CEL rules.
MAX_MAP_ENTRIES = 64

DURATION = r"^([0-9]+(s|m|h))+$"


def duration_seconds(text: str) -> int:
    """`90s`, `5m`, `1h30m` as seconds (the format the CRD's pattern admits)."""
    units = {"s": 1, "m": 60, "h": 3600}
    return sum(int(n) * units[u] for n, u in re.findall(r"([0-9]+)([smh])", text))


@dataclass(frozen=True)
class Rule:
    """A rule across fields, declared once: the CEL rule the API server checks at `kubectl apply`, the same
    check in Python for every object the operator parses (one written before the rule existed, or a revision's
    spec from history), and one message for both."""

    cel: str
    message: str
    holds: Callable[[Any], bool]
    field_path: str | None = None  # where the API server reports it (`.podLabels`), when it is one field's


def map_keys(field: str, attr: str, cel_check: str, check: Callable[[str], bool], what: str) -> Rule:
    """Every key of the map `field` (wire name; `attr` in Python; it may be unset) passes one of Kubernetes'
    checks (api/names.py)."""
    return Rule(f"!has(self.{field}) || self.{field}.all(k, {k8s.cel(cel_check, 'k')})",
                f"{field}: every key must be {what}", lambda o: all(check(k) for k in getattr(o, attr) or {}),
                f".{field}")


def map_values(field: str, attr: str, cel_check: str, check: Callable[[str], bool], what: str) -> Rule:
    return Rule(f"!has(self.{field}) || self.{field}.all(k, {k8s.cel(cel_check, f'self.{field}[k]')})",
                f"{field}: every value must be {what}",
                lambda o: all(check(v) for v in (getattr(o, attr) or {}).values()), f".{field}")


LABEL_KEY = "a label key: [prefix/]name, name of at most 63 of [A-Za-z0-9-_.] starting and ending alphanumeric"
LABEL_VALUE = "a label value: at most 63 of [A-Za-z0-9-_.], starting and ending alphanumeric"
QUANTITY = "a quantity, e.g. 500m, 2, 16Gi"


def exactly_one(names: tuple[str, ...], message: str) -> Rule:
    """Exactly one of the fields named (as on the wire) is set."""
    has = ", ".join(f"has(self.{n})" for n in names)

    def holds(obj: BaseModel) -> bool:
        attribute = {field.alias or name: name for name, field in type(obj).model_fields.items()}
        return sum(getattr(obj, attribute[n]) is not None for n in names) == 1

    return Rule(f"[{has}].filter(x, x).size() == 1", message, holds)


def _with_rules(schema: dict[str, Any], cls: type[Any]) -> None:
    if rules := getattr(cls, "rules", ()):
        schema["x-kubernetes-validations"] = [
            {"rule": r.cel, "message": r.message, **({"fieldPath": r.field_path} if r.field_path else {})}
            for r in rules]


def positive_duration(cel_field: str, attr: str, message: str, also: str = "") -> Rule:
    """A duration field (DURATION's format) longer than 0s; `also` is a CEL value that passes as it is."""
    passes = f"self.{cel_field} == '{also}' || " if also else ""
    return Rule(f"!has(self.{cel_field}) || {passes}duration(self.{cel_field}) > duration('0s')", message,
                lambda o: getattr(o, attr) is None or getattr(o, attr) == also
                or duration_seconds(getattr(o, attr)) > 0, f".{cel_field}")


class Schema(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid",
                              use_enum_values=False, frozen=True, json_schema_extra=_with_rules)
    rules: ClassVar[tuple[Rule, ...]] = ()

    @model_validator(mode="after")
    def _rules_hold(self) -> Self:
        for rule in type(self).rules:
            if not rule.holds(self):
                raise ValueError(rule.message)
        return self


# -------------------------------------------------------------------- model


class PvcSource(Schema):
    claim_name: str = Field(pattern=K8S_NAME, max_length=253,
                            description="PersistentVolumeClaim in the same namespace that holds the checkpoint.")
    path: str = Field(default="/", pattern=NO_SPACE_PATH, max_length=4096,
                      description="Directory of the Hugging Face checkpoint in the PVC (no whitespace).")


class SecretKeyRef(Schema):
    rules = (Rule(k8s.cel(k8s.CEL_DNS1123_SUBDOMAIN, "self.name"), "name must be a DNS subdomain (a Secret's name)",
                  lambda r: k8s.is_dns1123_subdomain(r.name)),)

    name: str = Field(max_length=253, description="Secret in the same namespace.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key in the Secret.")


def http_url(cel_field: str, attr: str) -> Rule:
    """An address field (unset, or an http(s) URL with a host that is a DNS name or an IP address): Kubernetes' URL
    library at admission, api/names.py's twin in the operator."""
    return Rule(f"!has(self.{cel_field}) || {k8s.cel(k8s.CEL_HTTP_URL, f'self.{cel_field}')}",
                f"{cel_field} must be an http(s) URL whose host is a DNS name or an IP address (no spaces, a port "
                "in 1-65535)", lambda o: getattr(o, attr) is None or k8s.is_http_url(getattr(o, attr)),
                f".{cel_field}")


class HuggingFaceSource(Schema):
    rules = (http_url("endpoint", "endpoint"),)

    repo: str = Field(pattern=r"^[\w.-]+/[\w.-]+$", description="Repository id, e.g. deepseek-ai/DeepSeek-R1.")
    revision: str = Field(pattern=r"^[0-9a-f]{40}$", description="The commit to download (40 hex digits): a "
                          "branch or tag moves, and a checkpoint in the cache must be the one its key names.")
    endpoint: str | None = Field(default=None, pattern=r"^https?://", max_length=512,
                                 description="A Hub mirror or an in-cluster Hub-compatible server (HF_ENDPOINT); "
                                             "default https://huggingface.co.")
    token_secret_ref: SecretKeyRef | None = Field(
        default=None, description="Secret key holding a Hub token; only the download Job's environment reads it.")


class S3Source(Schema):
    rules = (http_url("endpointUrl", "endpoint_url"),)

    uri: str = Field(pattern=r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/.*)?$",
                     description="s3://bucket/prefix of the checkpoint: every object under the prefix is fetched.")
    endpoint_url: str | None = Field(default=None, pattern=r"^https?://", max_length=512,
                                     description="Endpoint of an S3-compatible store (in-cluster MinIO, Ceph RGW, "
                                                 "SeaweedFS, ...); default AWS.")
    region: str | None = Field(default=None, pattern=r"^[a-z0-9-]+$", description="Region; default us-east-1.")
    path_style: bool = Field(default=False, description="Path-style addressing (endpoint/bucket/key), which most "
                             "S3-compatible stores need; AWS uses virtual-hosted style.")
    credentials_secret_ref: str | None = Field(
        default=None, pattern=K8S_NAME, max_length=253, description="Secret with AWS_ACCESS_KEY_ID and "
        "AWS_SECRET_ACCESS_KEY (and optionally AWS_SESSION_TOKEN); only the download Job's environment reads it. "
        "Unset: anonymous.")


class ModelDownload(Schema):
    image: str = Field(default=DEFAULT_DOWNLOADER_IMAGE, pattern=IMAGE, max_length=512,
                       description="The downloader image (huggingface_hub and boto3).")
    max_bytes_per_second: int | None = Field(default=None, ge=1024, description="Cap on the download rate, "
                                             "so a 700 GB checkpoint does not saturate the storage network.")


class ConfigMapKeyRef(Schema):
    name: str = Field(pattern=K8S_NAME, max_length=253, description="ConfigMap in the same namespace.")
    key: str = Field(pattern=r"^[-._a-zA-Z0-9]+$", max_length=253, description="Key in the ConfigMap.")


class CalibrationFile(Schema):
    claim_name: str = Field(pattern=K8S_NAME, max_length=253,
                            description="PersistentVolumeClaim in the same namespace that holds the file.")
    path: str = Field(pattern=r"^/[^\s]*[^/\s]$", max_length=4096, description="The file in the PVC.")


class Calibration(Schema):
    """Calibration text for the quantize Job (ModelOpt's activation statistics), from the cluster: never fetched
    from the Hub at run time. A file of one sample per line, or JSON Lines with a `text` field (`.jsonl`)."""

    rules = (exactly_one(("configMap", "pvc"), "set exactly one of configMap, pvc"),)

    config_map: ConfigMapKeyRef | None = Field(default=None, description="A key of a ConfigMap (up to 1 MiB).")
    pvc: CalibrationFile | None = Field(default=None, description="A file on a PersistentVolumeClaim.")
    samples: int = Field(default=512, ge=1, le=100000, description="At most this many samples are used.")
    max_length: int = Field(default=512, ge=16, le=131072, description="Tokens per sample; longer ones are cut.")


class ModelSource(Schema):
    """Where the checkpoint comes from: exactly one of pvc, hf, s3."""

    rules = (exactly_one(("pvc", "hf", "s3"), "set exactly one of pvc, hf, s3"),)

    pvc: PvcSource | None = Field(default=None, description="A PersistentVolumeClaim that holds the checkpoint.")
    hf: HuggingFaceSource | None = Field(default=None, description="Download from the Hugging Face Hub.")
    s3: S3Source | None = Field(default=None, description="Download from S3.")


class CustomModel(Schema):
    """Figures for a model outside the catalog (from its config.json), so it can be sized."""

    rules = (
        Rule("self.attentionHeads % self.kvHeads == 0",
             "kvHeads must divide attentionHeads (grouped-query attention shares each KV head among a whole "
             "number of attention heads)", lambda m: m.attention_heads % m.kv_heads == 0),
        Rule("has(self.headDim) || self.hiddenSize % self.attentionHeads == 0",
             "hiddenSize must be a multiple of attentionHeads, or headDim must be given",
             lambda m: m.head_dim is not None or m.hidden_size % m.attention_heads == 0),
    )

    params_billion: float = Field(gt=0, le=5000, description="Total parameters, in billions.")
    layers: int = Field(ge=1, le=1000, description="num_hidden_layers.")
    hidden_size: int = Field(ge=64, description="hidden_size.")
    attention_heads: int = Field(ge=1, description="num_attention_heads.")
    kv_heads: int = Field(ge=1, description="num_key_value_heads (equal to attention_heads without GQA).")
    head_dim: int | None = Field(default=None, ge=1, description="head_dim; default hidden_size / attention_heads.")
    architecture: Literal["llama", "qwen2"] = Field(default="llama", description="TensorRT-LLM model family.")


class ModelRef(Schema):
    rules = (Rule("self.name == 'custom' ? has(self.custom) : !has(self.custom)",
                  "`custom` figures are required with name: custom, and only then",
                  lambda m: (m.name == "custom") == (m.custom is not None)),)

    name: Literal[MODEL_NAMES] = Field(  # type: ignore[valid-type]
        description="A model of the built-in catalog, or `custom` with `custom` figures.")
    revision: str = Field(min_length=1, max_length=63, pattern=r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
                          description="Checkpoint revision (letters, digits, - _ .); part of the version identity.")
    source: ModelSource = Field(description="Where the checkpoint is read from.")
    precision: Precision = Field(default=Precision.BF16, description="Weight precision served: the checkpoint's "
                                 "own, or quantized once by a ModelOpt Job into the cache.")
    checkpoint_precision: Precision | None = Field(
        default=None, description="Precision the checkpoint at `source` already carries, e.g. nvfp4 for "
                                  "nvidia/DeepSeek-R1-0528-FP4; unset: that of the model's published checkpoint "
                                  "(bf16 for the distills, block-scaled fp8 for deepseek-r1). A precision the "
                                  "checkpoint carries is served as it is; any other is made once by a quantize "
                                  "Job.")
    custom: CustomModel | None = Field(default=None, description="Figures of a `custom` model.")
    calibration: Calibration | None = Field(
        default=None, description="Calibration data of the quantize Job; unset: a few built-in prompts (enough "
        "for FP8's max calibration, too few for AWQ or NVFP4 to be accurate). Part of the quantized checkpoint's "
        "key.")
    download: ModelDownload = Field(default_factory=ModelDownload, description="How hf: and s3: checkpoints are "
                                    "downloaded, once per (source, revision), into the model cache PVC.")


# -------------------------------------------------------------------- runtime

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


def _removed(message: str) -> Any:
    return Field(default=None, description=f"Removed. {message}.",
                 json_schema_extra={"type": "object", "x-kubernetes-preserve-unknown-fields": True})


# -------------------------------------------------------------------- serving


class GpuRequest(Schema):
    type: Literal[GPU_TYPES] = Field(description="GPU type from the catalog: drives nodeSelector and the fit check.")  # type: ignore[valid-type]
    per_node: int = Field(default=8, ge=1, le=16, description="GPUs per node (one NVLink domain).")


class Toleration(Schema):
    """A toleration added to the serving and build pods (core/v1 Toleration)."""

    rules = (
        Rule("!has(self.operator) || self.operator != 'Exists' || !has(self.value) || self.value == ''",
             "a toleration with operator Exists has no value", lambda t: t.operator != "Exists" or not t.value),
        Rule("!has(self.tolerationSeconds) || (has(self.effect) && self.effect == 'NoExecute')",
             "tolerationSeconds applies to effect NoExecute only",
             lambda t: t.toleration_seconds is None or t.effect == "NoExecute"),
        Rule(f"!has(self.key) || self.key == '' || {k8s.cel(k8s.CEL_QUALIFIED_NAME, 'self.key')}",
             f"key must be {LABEL_KEY}", lambda t: not t.key or k8s.is_qualified_name(t.key), ".key"),
        Rule(f"!has(self.value) || {k8s.cel(k8s.CEL_LABEL_VALUE, 'self.value')}", f"value must be {LABEL_VALUE}",
             lambda t: not t.value or k8s.is_label_value(t.value), ".value"),
    )

    key: str | None = Field(default=None, max_length=317, description="Taint key.")
    operator: Literal["Exists", "Equal"] | None = Field(default=None, description="Exists or Equal.")
    value: str | None = Field(default=None, max_length=63, description="Taint value.")
    effect: Literal["NoSchedule", "PreferNoSchedule", "NoExecute"] | None = Field(default=None, description="Effect.")
    toleration_seconds: int | None = Field(default=None, description="For NoExecute.")


def _requests_within_limits(requests: dict[str, str], limits: dict[str, str]) -> bool:
    for name, request in requests.items():
        wanted, most = k8s.quantity_value(request), k8s.quantity_value(limits.get(name, ""))
        if wanted is not None and most is not None and wanted > most:
            return False
    return True


class Resources(Schema):
    rules = (
        Rule("(!has(self.requests) || !('nvidia.com/gpu' in self.requests)) && "
             "(!has(self.limits) || !('nvidia.com/gpu' in self.limits))",
             "nvidia.com/gpu is set from sizing (status.parallelism); do not set it here",
             lambda r: "nvidia.com/gpu" not in r.requests and "nvidia.com/gpu" not in r.limits),
        map_keys("requests", "requests", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, "a resource name"),
        map_values("requests", "requests", k8s.CEL_QUANTITY, k8s.is_quantity, QUANTITY),
        map_keys("limits", "limits", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, "a resource name"),
        map_values("limits", "limits", k8s.CEL_QUANTITY, k8s.is_quantity, QUANTITY),
        # The API server refuses a container whose request exceeds its limit (core/v1 ResourceRequirements).
        Rule("!has(self.requests) || !has(self.limits) || self.requests.all(k, !(k in self.limits) || "
             "!isQuantity(self.requests[k]) || !isQuantity(self.limits[k]) || "
             "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0)",
             "every request must be at most its limit (Kubernetes refuses a container that requests more than "
             "its limit)", lambda r: _requests_within_limits(r.requests, r.limits), ".requests"),
    )

    requests: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=16, description="cpu, memory, ...; GPUs are set by sizing.")
    limits: dict[str, Annotated[str, Field(max_length=64)]] = Field(
        default_factory=dict, max_length=16, description="cpu, memory, ...; GPUs are set by sizing.")


class OpenAiFrontend(Schema):
    """The OpenAI-compatible API of each serving pod, served by the pod's front door (a sidecar in front of
    Triton that takes every HTTP API and counts what clients got): it renders the checkpoint's chat template and
    keeps DeepSeek-R1's reasoning apart from its answer."""

    enabled: bool = Field(default=True, description="Serve /v1/chat/completions, /v1/completions and /v1/models "
                          "beside Triton's HTTP API on the Services' `http` port; false: /v1 answers 404.")
    image: str = Field(default=DEFAULT_FRONTEND_IMAGE, pattern=IMAGE, max_length=512,
                       description="The front door's image (the Dockerfile's `frontend` target).")
    served_model_name: str | None = Field(default=None, min_length=1, max_length=256, pattern=r"^[^\s]+$",
                                          description="The `model` clients send; default spec.model.name.")
    reasoning_parser: Literal["deepseek-r1", "none"] = Field(
        default="deepseek-r1", description="deepseek-r1: the text before `</think>` is returned as "
        "`reasoning_content`, the rest as `content`; none: all of it is `content`.")
    default_max_tokens: int = Field(default=4096, ge=1, le=1048576, description="max_tokens of a request that "
                                    "sets none (R1 thinks at length: a small default cuts answers off).")


LabelMap = dict[Annotated[str, Field(max_length=317)], Annotated[str, Field(max_length=63)]]


class NetworkPeer(Schema):
    """Pods allowed in, as a NetworkPolicy peer: pods of the namespaces matching `namespaceSelector` (this
    namespace when unset) that match `podSelector` (all when unset); label maps, as `matchLabels`."""

    rules = (Rule("has(self.namespaceSelector) || has(self.podSelector)",
                  "a peer needs a namespaceSelector or a podSelector",
                  lambda p: p.namespace_selector is not None or p.pod_selector is not None),
             map_keys("namespaceSelector", "namespace_selector", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name,
                      LABEL_KEY),
             map_keys("podSelector", "pod_selector", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, LABEL_KEY),
             # matchLabels of a NetworkPolicy the API server would refuse: the resource's pods would wait for it.
             map_values("namespaceSelector", "namespace_selector", k8s.CEL_LABEL_VALUE, k8s.is_label_value,
                        LABEL_VALUE),
             map_values("podSelector", "pod_selector", k8s.CEL_LABEL_VALUE, k8s.is_label_value, LABEL_VALUE))

    namespace_selector: LabelMap | None = Field(default=None, max_length=16,
                                                description="Labels of the namespaces ({}: every namespace).")
    pod_selector: LabelMap | None = Field(default=None, max_length=16,
                                          description="Labels of the pods ({}: every pod).")


class NetworkPolicySettings(Schema):
    """The NetworkPolicies the operator keeps for the resource: its pods take no connection but those named."""

    enabled: bool = Field(default=True, description="Keep the NetworkPolicies (they need a CNI that enforces "
                                                    "them; without one they change nothing).")
    clients: list[NetworkPeer] = Field(
        default_factory=list, max_length=32,
        description="Who may call the serving ports (Triton's HTTP and gRPC, the OpenAI API) besides the Gateways' "
                    "namespaces of trafficRouting; empty: the pods of this namespace.")
    monitoring: list[NetworkPeer] = Field(
        default_factory=lambda: [NetworkPeer(namespace_selector={"kubernetes.io/metadata.name": "monitoring"})],
        max_length=16, description="Who may scrape the metrics ports (Triton's 8002, the frontend's /metrics); "
                                   "empty: nobody but the operator (a NetworkPolicy rule with no peers would admit "
                                   "everyone, so none is rendered).")


class GrpcTls(Schema):
    """TLS on Triton's gRPC endpoint, from a Secret of the namespace (kubernetes.io/tls: tls.crt and tls.key;
    ca.crt as well for mutual TLS)."""

    rules = (Rule(k8s.cel(k8s.CEL_DNS1123_SUBDOMAIN, "self.secretName"),
                  "secretName must be a DNS subdomain (a Secret's name)",
                  lambda t: k8s.is_dns1123_subdomain(t.secret_name), ".secretName"),)

    secret_name: str = Field(max_length=253, description="The Secret with tls.crt and tls.key (and ca.crt).")
    mutual: bool = Field(default=False, description="Clients must present a certificate that ca.crt signed.")


# The bounds of autoscaling/v2's HPAScalingRules, which the API server holds every HorizontalPodAutoscaler to (KEDA's
# too): kubernetes/pkg/apis/autoscaling/validation/validation.go, MaxStabilizationWindowSeconds = 3600 and
# MaxPeriodSeconds = 1800 (stabilizationWindowSeconds 0-3600, a policy's periodSeconds 1-1800).
MAX_STABILIZATION_WINDOW_S, MAX_PERIOD_S = 3600, 1800


class ScalingBehaviour(Schema):
    """How fast one direction of scaling may go (the HorizontalPodAutoscaler's `behavior` for it)."""

    rules = (
        Rule(f"duration(self.stabilizationWindow) <= duration('{MAX_STABILIZATION_WINDOW_S}s')",
             f"stabilizationWindow must be at most 1h ({MAX_STABILIZATION_WINDOW_S}s): the HorizontalPodAutoscaler "
             "(autoscaling/v2 behavior.stabilizationWindowSeconds) takes 0-3600 s",
             lambda b: duration_seconds(b.stabilization_window) <= MAX_STABILIZATION_WINDOW_S, ".stabilizationWindow"),
        Rule(f"duration(self.period) >= duration('1s') && duration(self.period) <= duration('{MAX_PERIOD_S}s')",
             f"period must be 1s-30m ({MAX_PERIOD_S}s): the HorizontalPodAutoscaler (autoscaling/v2 "
             "behavior policies' periodSeconds) takes 1-1800 s",
             lambda b: 1 <= duration_seconds(b.period) <= MAX_PERIOD_S, ".period"),
    )

    stabilization_window: str = Field(
        pattern=DURATION, description="The scaler acts on the most cautious recommendation of this window "
                                      "(the highest when scaling down, the lowest when scaling up).")
    max_replicas_per_period: int | None = Field(default=None, ge=1, le=1000,
                                                description="At most this many replicas added (or removed) per "
                                                            "period; unset: the HPA's default.")
    period: str = Field(default="60s", pattern=DURATION, description="The period of maxReplicasPerPeriod.")


def _scale_up() -> ScalingBehaviour:
    return ScalingBehaviour(stabilization_window="0s")


def _scale_down() -> ScalingBehaviour:
    # A replica holds GPUs that take minutes to load a model: give them back slowly, one at a time.
    return ScalingBehaviour(stabilization_window="300s", max_replicas_per_period=1)


class AutoscalingPrometheus(Schema):
    """The Prometheus KEDA queries: one of the operator's metric sources, and how the pods are labelled there."""

    source: str = Field(pattern=K8S_NAME, max_length=63,
                        description="The name of a prometheus metric source of the operator's configuration (the "
                                    "chart's metricSources); KEDA queries its address.")
    name_label: str = Field(default="serving_deepseek_ai_deployment", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                            description="The metric label that carries the pods' serving.deepseek.ai/deployment "
                                        "label (what your scrape config's labelmap makes of it).")
    authentication_ref: str | None = Field(
        default=None, pattern=K8S_NAME, max_length=253,
        description="A KEDA TriggerAuthentication of the namespace for a Prometheus that needs credentials "
                    "(the operator's own are files in its pod, which KEDA cannot read).")


class Autoscaling(Schema):
    """Scaling on LLM load. The operator keeps a KEDA ScaledObject on the resource's scale subresource when
    the KEDA API is served, else a HorizontalPodAutoscaler on a custom metric you name (hpaMetric). Either
    writes spec.serving.replicas; a multi-node replica is one group, so groups scale whole."""

    rules = (
        Rule("self.minReplicas <= self.maxReplicas", "autoscaling.minReplicas must not exceed maxReplicas",
             lambda a: a.min_replicas <= a.max_replicas),
        Rule("self.metric != 'custom' || has(self.query)", "autoscaling.metric custom needs `query` (PromQL)",
             lambda a: a.metric != "custom" or a.query is not None),
        Rule("self.metric == 'custom' || !has(self.query)",
             "autoscaling.query is for metric custom; the other metrics' queries are the operator's",
             lambda a: a.metric == "custom" or a.query is None),
        positive_duration("pollingInterval", "polling_interval", "autoscaling.pollingInterval must be longer than 0s"),
    )

    min_replicas: int = Field(default=1, ge=1, le=1000,
                              description="Fewest replicas (scale to zero is not offered: a model takes minutes "
                                          "to load, and the first requests would fail meanwhile).")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    metric: Literal["inFlightRequests", "queuedRequests", "custom"] = Field(
        default="inFlightRequests",
        description="The load signal, per replica: inFlightRequests (requests the pod's front door is answering, "
                    "every HTTP API: waiting in TensorRT-LLM's queue or generating), queuedRequests (Triton's "
                    "nv_inference_pending_request_count: requests not yet handed to the model), or custom "
                    "(`query`). GPU utilisation is no signal: it stays near 100% at any load.")
    target: float = Field(gt=0, description="The signal's value per replica to scale to (replicas = "
                                            "ceil(total / target)).")
    query: str | None = Field(default=None, max_length=2048,
                              description="metric custom: a PromQL query of the resource's total load.")
    prometheus: AutoscalingPrometheus | None = Field(default=None,
                                                     description="Where KEDA reads the signal (KEDA only).")
    hpa_metric: str | None = Field(
        default=None, max_length=253, pattern=r"^[a-zA-Z_:][a-zA-Z0-9_:]*$",
        description="Without KEDA: a per-pod custom metric (custom.metrics.k8s.io, e.g. from prometheus-adapter) "
                    "that a plain HorizontalPodAutoscaler averages over the serving pods against `target`.")
    polling_interval: str = Field(default="15s", pattern=DURATION, description="How often KEDA reads the signal.")
    scale_up: ScalingBehaviour = Field(default_factory=_scale_up, description="How fast replicas are added.")
    scale_down: ScalingBehaviour = Field(default_factory=_scale_down, description="How fast replicas go.")


# apimachinery's TotalAnnotationSizeLimitB (256 KiB) holds all of a pod's annotations (the operator adds its own) and
# all of the resource's: `kubectl apply` copies the whole resource, podAnnotations included, into its
# last-applied-configuration annotation. Half of it for podAnnotations leaves room for both.
MAX_POD_ANNOTATION_BYTES = 128 * 1024


class ServingSpec(Schema):
    rules = (
        Rule("!has(self.podLabels) || self.podLabels.all(k, !k.startsWith('serving.deepseek.ai/') && "
             "!k.startsWith('app.kubernetes.io/'))",
             "podLabels may not set the operator's own labels (serving.deepseek.ai/*, app.kubernetes.io/*)",
             lambda s: not any(k.startswith((GROUP + "/", "app.kubernetes.io/")) for k in s.pod_labels)),
        # The removed field's own validator names it (spec.serving.batching) before this rule runs.
        Rule("!has(self.batching)", REMOVED_BATCHING, lambda s: s.batching is None),
        map_keys("podLabels", "pod_labels", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, LABEL_KEY),
        map_values("podLabels", "pod_labels", k8s.CEL_LABEL_VALUE, k8s.is_label_value, LABEL_VALUE),
        map_keys("podAnnotations", "pod_annotations", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name,
                 "an annotation key ([prefix/]name, as a label key)"),
        Rule(f"!has(self.podAnnotations) || self.podAnnotations.map(k, size(k) + size(self.podAnnotations[k]))"
             f".sum() <= {MAX_POD_ANNOTATION_BYTES}",
             f"podAnnotations: keys and values together must stay within {MAX_POD_ANNOTATION_BYTES // 1024} KiB "
             "(Kubernetes refuses a pod, or a resource applied with kubectl, whose annotations exceed 256 KiB)",
             lambda s: sum(len(k.encode()) + len(v.encode()) for k, v in s.pod_annotations.items())
             <= MAX_POD_ANNOTATION_BYTES, ".podAnnotations"),
        map_keys("nodeSelector", "node_selector", k8s.CEL_QUALIFIED_NAME, k8s.is_qualified_name, LABEL_KEY),
        map_values("nodeSelector", "node_selector", k8s.CEL_LABEL_VALUE, k8s.is_label_value, LABEL_VALUE),
    )

    replicas: int = Field(default=1, ge=0, le=1000,
                          description="Model replicas; each gets its own GPUs. The scale subresource's count: "
                                      "with autoscaling, the scaler sets it (leave it out of Git).")
    autoscaling: Autoscaling | None = Field(default=None, description="Scale replicas on LLM load.")
    gpu: GpuRequest = Field(description="The GPUs to serve on.")
    batching: dict[str, Any] | None = _removed(REMOVED_BATCHING)
    streaming: bool = Field(default=True, description="Decoupled (token streaming) Triton models.")
    openai: OpenAiFrontend = Field(default_factory=OpenAiFrontend, description="The OpenAI-compatible API.")
    resources: Resources = Field(default_factory=Resources, description="Extra container resources.")
    node_selector: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=MAX_MAP_ENTRIES, description="Added to the GPU-type selector.")
    tolerations: list[Toleration] = Field(default_factory=list, max_length=32,
                                          description="Added to the GPU taint toleration.")
    pod_annotations: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES,
                                            description="Annotations on every pod.")
    pod_labels: dict[str, Annotated[str, Field(max_length=63)]] = Field(
        default_factory=dict, max_length=MAX_MAP_ENTRIES, description="Labels on every pod.")
    startup_timeout_seconds: int = Field(default=1800, ge=60, le=86400,
                                         description="How long an engine may take to load before the pod restarts.")
    network_policy: NetworkPolicySettings = Field(default_factory=NetworkPolicySettings,
                                                  description="Who may connect to the pods.")
    grpc_tls: GrpcTls | None = Field(default=None, description="TLS on Triton's gRPC port (HTTP stays in the "
                                                               "pod's network: TLS for it is the Gateway's).")
    group_topology_key: str | None = Field(
        default=None, pattern=r"^([a-z0-9]([-a-z0-9.]*[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$",
        description="Node label naming a node group (an InfiniBand or NVLink domain, a rack): each replica that "
                    "spans nodes gets one group to itself (LeaderWorkerSet exclusive topology).")

    @field_validator("batching")
    @classmethod
    def _no_batching(cls, value: Any) -> Any:
        raise ValueError(REMOVED_BATCHING)


class PodSettings(Schema):
    """What every pod the operator makes gets (serving, multi-node workers, download, quantize and preflight
    Jobs). They run as a non-root user under the Pod Security Standard `restricted` profile, except where RDMA
    needs IPC_LOCK (then the namespace must allow `privileged`)."""

    rules = (Rule(f"!has(self.serviceAccountName) || "
                  f"{k8s.cel(k8s.CEL_DNS1123_SUBDOMAIN, 'self.serviceAccountName')}",
                  "serviceAccountName must be a DNS subdomain (a ServiceAccount's name)",
                  lambda p: p.service_account_name is None or k8s.is_dns1123_subdomain(p.service_account_name),
                  ".serviceAccountName"),)

    service_account_name: str | None = Field(
        default=None, max_length=253,
        description="The pods' ServiceAccount (e.g. one bound to a cloud identity for S3 downloads); default: the "
                    "namespace's `default`.")
    automount_service_account_token: bool = Field(
        default=False, description="Mount an API token into the pods. None of them talks to the Kubernetes API, "
                                   "so none gets one unless asked.")
    image_pull_secrets: list[Annotated[str, Field(pattern=K8S_NAME, max_length=253)]] = Field(
        default_factory=list, max_length=16, description="Secrets (by name) for pulling the images.")
    priority_class_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                            description="PriorityClass of the pods.")
    runtime_class_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                           description="RuntimeClass of the GPU pods (e.g. `nvidia`).")
    run_as_user: int = Field(default=1000, ge=1, le=2147483647,
                             description="The non-root user the containers run as (1000: `triton-server` of "
                                         "NVIDIA's Triton images; the operator's own images accept any).")
    run_as_group: int = Field(default=1000, ge=1, le=2147483647, description="Its group.")
    fs_group: int = Field(default=1000, ge=1, le=2147483647,
                          description="The group that owns the pods' volumes (the model cache is written by one "
                                      "Job's user and read by another's).")


# -------------------------------------------------------------------- network

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
NetworkName = Annotated[str, Field(pattern=rf"^({k8s.DNS1123_LABEL}/)?{k8s.DNS1123_LABEL}$", max_length=253)]


class NcclSettings(Schema):
    """NCCL settings rendered into every serving pod's environment (render/nccl.py)."""

    rules = (Rule(f"!has(self.extraEnv) || self.extraEnv.all(k, k.matches('{ENV_NAME}'))",
                  "extraEnv names must be valid environment variable names (C identifiers: letters, digits, _, "
                  "not starting with a digit)", lambda n: all(re.match(ENV_NAME, k) for k in n.extra_env),
                  ".extraEnv"),)

    algo: str | None = Field(default=None, pattern=r"^[A-Za-z]+(,[A-Za-z]+)*$",
                             description="NCCL_ALGO: collective algorithms NCCL may use; unset: NCCL's own "
                                         "tuning (which picks NVLS on NVSwitch nodes, and Ring or Tree "
                                         "elsewhere).")
    debug: Literal["VERSION", "WARN", "INFO", "TRACE"] = Field(
        default="WARN", description="NCCL_DEBUG; INFO logs the transport NCCL chose (NET/IB or NET/Socket).")
    socket_ifname: str = Field(default="eth0", pattern=r"^[\^=]?[A-Za-z0-9_.,:-]+$",
                               description="NCCL_SOCKET_IFNAME: the interface for bootstrap and socket traffic.")
    ib_hca: str | None = Field(default=None, pattern=r"^[\^=]?[A-Za-z0-9_:,-]+$",
                               description="NCCL_IB_HCA: which RDMA devices to use (infiniband/roce only).")
    ib_gid_index: int | None = Field(default=None, ge=0, le=255,
                                     description="NCCL_IB_GID_INDEX for RoCE (default 3: RoCE v2 over IPv4).")
    extra_env: dict[str, str] = Field(default_factory=dict, max_length=MAX_MAP_ENTRIES,
                                      description="Any other variables (e.g. NCCL_P2P_LEVEL); they win over the "
                                                  "rendered ones.")


class PreflightSpec(Schema):
    """The NCCL all-reduce check a multi-GPU revision must pass before it gets traffic."""

    enabled: bool = Field(default=True, description="Run the preflight for revisions of more than one GPU.")
    image: str = Field(default=DEFAULT_PREFLIGHT_IMAGE, pattern=IMAGE, max_length=512,
                       description="Image with deepseek-operator and PyTorch (the operator image's preflight "
                                   "variant).")
    min_bus_bandwidth_gbps: float | None = Field(
        default=None, ge=0, alias="minBusBandwidthGBps",
        description="Peak all-reduce bus bandwidth to pass, GB/s. Default: the GPU type's NVLink bound for one "
                    "node, the fabric's bound between nodes.")
    expect_transport: Literal["auto", "nvlink", "p2p", "ib", "socket", "any"] = Field(
        default="auto", description="The NCCL transport that must carry the traffic. auto: nvlink (p2p without "
                                   "NVLink) inside one node; ib (infiniband, roce) or socket (ethernet) across "
                                   "nodes.")
    sizes: str = Field(default="1MiB-1GiB", pattern=r"^[0-9A-Za-z.,:x-]+$",
                       description="Message sizes per rank, e.g. 1MiB-1GiB (doubling) or 1M,64M.")
    timeout_seconds: int = Field(default=900, ge=60, le=86400,
                                 description="Longest the check may take, scheduling included.")


class NetworkSpec(Schema):
    """How the ranks of a replica talk to each other (tensor/pipeline parallelism over NCCL)."""

    rules = (
        Rule("self.fabric == 'ethernet' || has(self.rdmaResource)",
             "fabric infiniband/roce needs rdmaResource (the RDMA device the pods request, e.g. rdma/ib)",
             lambda n: n.fabric is Fabric.ETHERNET or bool(n.rdma_resource)),
        Rule("self.fabric != 'ethernet' || !has(self.nccl) || !has(self.nccl.ibHca)",
             "nccl.ibHca applies to fabric infiniband/roce only; ethernet disables NCCL's IB transport",
             lambda n: n.fabric is not Fabric.ETHERNET or n.nccl.ib_hca is None),
        Rule("self.fabric == 'roce' || !has(self.nccl) || !has(self.nccl.ibGidIndex)",
             "nccl.ibGidIndex applies to fabric roce only",
             lambda n: n.fabric is Fabric.ROCE or n.nccl.ib_gid_index is None),
    )

    fabric: Fabric = Field(default=Fabric.ETHERNET, description="infiniband, roce or ethernet (TCP sockets).")
    nccl: NcclSettings = Field(default_factory=NcclSettings, description="NCCL settings.")
    rdma_resource: str | None = Field(default=None, pattern=r"^[a-z0-9.-]+/[A-Za-z0-9_.-]+$",
                                      description="Extended resource for the RDMA device, one per pod "
                                                  "(e.g. rdma/ib); required with infiniband/roce.")
    networks: list[NetworkName] = Field(default_factory=list, max_length=16, description="Multus "
                                        "NetworkAttachmentDefinitions to attach (secondary NICs): [namespace/]name.")
    host_network: bool = Field(default=False, description="Run serving pods in the node's network namespace.")
    preflight: PreflightSpec = Field(default_factory=PreflightSpec,
                                     description="NCCL check run before a multi-GPU revision takes traffic.")


# -------------------------------------------------------------------- rollout

class CanaryStep(Schema):
    """One step of a canary: shift `weight` percent of traffic to the new revision, or `pause`."""

    rules = (exactly_one(("weight", "pause"), "a step sets exactly one of weight, pause"),
             positive_duration("pause", "pause", "a pause lasts longer than 0s (or is `indefinite`)", "indefinite"))

    weight: int | None = Field(default=None, ge=0, le=100,
                               description="Percent of requests the new revision receives from this step on.")
    pause: str | None = Field(default=None, pattern=r"^(indefinite|([0-9]+(s|m|h))+)$",
                              description="Hold the current weight for a duration (30s, 5m, 1h) while the analysis "
                                          "runs, or `indefinite` until a `promote` action. With analysis, a pause "
                                          "ends only on a Successful measurement.")


class StringMatch(Schema):
    """How a header value must look: exactly, or matching a regex."""

    # Gateway API's HTTPHeaderMatch value: 1-4096 characters.
    exact: str | None = Field(default=None, min_length=1, max_length=4096, description="The value, exactly.")
    regex: str | None = Field(default=None, min_length=1, max_length=1024,
                              description="A regular expression (RE2) the value must match.")

    rules = (exactly_one(("exact", "regex"), "set exactly one of exact, regex"),
             Rule(f"!has(self.regex) || {k8s.cel(k8s.CEL_RE2, 'self.regex')}", "regex must be an RE2 regular "
                  "expression", lambda m: m.regex is None or k8s.re2_problem(m.regex) is None, ".regex"))


class CookieMatch(Schema):
    """A cookie name and value."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Cookie name.")
    value: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Cookie value, exactly.")


HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$"


class RequestMatch(Schema):
    """Requests that go to the new revision in an A/B test (all given conditions must hold)."""

    rules = (Rule("(has(self.headers) && size(self.headers) > 0) || has(self.cookie)",
                  "a match needs headers or a cookie", lambda m: bool(m.headers) or m.cookie is not None),
             Rule(f'!has(self.headers) || self.headers.all(k, k.matches("{HEADER_NAME}"))',
                  "header names are tokens of RFC 7230 (letters, digits and !#$%&'*+-.^_`|~), as Gateway API's "
                  "HTTPHeaderName", lambda m: all(re.fullmatch(HEADER_NAME, k) for k in m.headers), ".headers"))

    headers: dict[str, StringMatch] = Field(default_factory=dict, max_length=16,
                                            description="Header name to the value it must have.")
    cookie: CookieMatch | None = Field(default=None, description="A cookie the request must carry.")


# The analysis' metric providers (providers/, one module each), by the name spec.rollout.analysis.provider gives:
# the one list the spec, the CRD's enum and the providers' factory (providers.provider_for) share.
AnalysisProviderName = Literal["frontend", "triton", "prometheus", "gateway"]
ANALYSIS_PROVIDERS: tuple[str, ...] = get_args(AnalysisProviderName)
# The placeholders of a prometheus query template (PrometheusQueries), filled in for the canary's revision and
# again for the stable's; `quantile` only in the latency template.
QUERY_PLACEHOLDERS = ("namespace", "name", "revision", "service", "window")
MAX_QUERY_LENGTH = 4096


def _template_rule(field: str, placeholders: tuple[str, ...]) -> Rule:
    """A query template (wire name `field`) is 1-4096 characters and names no placeholder but `placeholders`
    (CEL: what is left once every known placeholder is removed holds no double opening brace). The CRD's text
    never holds two opening braces in a row: the chart ships it as a Helm template (CEL concatenates them)."""
    stripped = f"self.{field}" + "".join(".replace('{' + '{" + p + "}}', '')" for p in placeholders)

    def holds(queries: BaseModel) -> bool:
        value = getattr(queries, field)
        if value is None:
            return True
        for p in placeholders:
            value = value.replace(f"{{{{{p}}}}}", "")
        return 0 < len(getattr(queries, field)) <= MAX_QUERY_LENGTH and "{{" not in value

    return Rule(f"!has(self.{field}) || (size(self.{field}) > 0 && size(self.{field}) <= {MAX_QUERY_LENGTH} && "
                f"!{stripped}.contains('{{' + '{{'))",
                f"queries.{field} must be a PromQL template of 1-{MAX_QUERY_LENGTH} characters whose only "
                f"placeholders are {', '.join(placeholders)}, each in double curly braces", holds, f".{field}")


class PrometheusQueries(Schema):
    """Your own PromQL for the analysis (Flagger's metric templates), e.g. over a gateway's or a mesh's series
    (providers/prometheus.py has working ones for Traefik and written ones for Envoy Gateway, Istio and NGINX
    Gateway Fabric). Each is run once for the canary and once for the stable, with the placeholders, each in
    double curly braces, filled in: namespace and name (the resource's), revision, service (<name>-canary or
    <name>-stable, the HTTPRoute's backends) and window (the measurement's range, e.g. 30s); and quantile (0-1)
    in latency. A query left out keeps the front door's series. (No two opening braces in a row in this text:
    the chart ships the CRD as a Helm template.)"""

    rules = (
        _template_rule("requests", QUERY_PLACEHOLDERS),
        _template_rule("failures", QUERY_PLACEHOLDERS),
        _template_rule("latency", (*QUERY_PLACEHOLDERS, "quantile")),
        Rule("has(self.requests) == has(self.failures)", "queries.requests and queries.failures go together: an "
             "error rate of one source's failures over another's requests means nothing",
             lambda q: (q.requests is None) == (q.failures is None)),
        Rule("has(self.requests) || has(self.latency)", "queries needs requests and failures, or latency",
             lambda q: q.requests is not None or q.latency is not None),
    )

    requests: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                 description="The revision's requests over the window: one number (wrap the query "
                                             "in sum()).")
    failures: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                 description="Of which failed, over the window: one number.")
    latency: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                description="The revision's whole-request latency at the quantile placeholder "
                                            "(0-1) over the window, in seconds: what maxP99LatencySeconds is held "
                                            "to. Time to first token and inter-token latency always come from the "
                                            "front door's series.")


class PrometheusProvider(Schema):
    """Which Prometheus (one the operator is configured with), how it labels the pods' series, and optionally
    your own queries."""

    source: str = Field(pattern=K8S_NAME, max_length=63,
                        description="The name of a prometheus metric source of the operator's configuration (the "
                                    "chart's metricSources): its address and credentials are the installer's, not "
                                    "the resource's.")
    min_range: str = Field(default="30s", pattern=DURATION,
                           description="Shortest range of the increase() queries: it must hold at least two scrapes "
                                       "(a measurement looks back max(interval, minRange)).")
    revision_label: str = Field(default="serving_deepseek_ai_revision", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                description="The metric label that carries the pods' serving.deepseek.ai/revision "
                                            "label (what your scrape config's labelmap makes of it).")
    queries: PrometheusQueries | None = Field(
        default=None, description="Query templates of your own; by default the front door's deepseek_frontend_* "
                                  "series of each revision's pods (scraped on port 8003).")


class GatewayProvider(Schema):
    """Which gateway metrics (a source the operator is configured with), and which answers count as failures."""

    source: str = Field(pattern=K8S_NAME, max_length=63,
                        description="The name of a gateway metric source of the operator's configuration (the "
                                    "chart's metricSources), e.g. Traefik's metrics with "
                                    "metrics.prometheus.addServicesLabels.")
    rules = (Rule(k8s.cel(k8s.CEL_RE2, "self.failureStatusCodes"), "failureStatusCodes must be an RE2 regular "
                  "expression", lambda g: k8s.re2_problem(g.failure_status_codes) is None, ".failureStatusCodes"),)

    failure_status_codes: str = Field(
        default=r"^(5[0-9][0-9]|400)$", max_length=256,
        description="Regular expression of the HTTP status codes that count as failed requests. Triton answers "
                    "400 when a model's execution fails, so 400 counts by default besides 5xx.")


class LatencyObjective(Schema):
    """A latency gate on one percentile of the new revision: an absolute bound, a bound relative to the stable
    revision's same percentile over the same window, or both."""

    rules = (Rule("has(self.maxSeconds) || has(self.maxRatioToStable)",
                  "a latency gate needs maxSeconds, maxRatioToStable or both",
                  lambda o: o.max_seconds is not None or o.max_ratio_to_stable is not None),)

    percentile: float = Field(default=95, gt=0, lt=100,
                              description="Which percentile of each window is held to the bounds (in mode "
                                          "sequential, timeToFirstToken.maxSeconds is held per request instead: see "
                                          "maxSeconds).")
    max_seconds: float | None = Field(
        default=None, gt=0,
        description="Highest value of the percentile, in seconds. In mode sequential, for timeToFirstToken: a "
                    "request slower than this is bad like a failed one, and the test holds the bad share to "
                    "maxErrorRate (the percentile does not apply).")
    max_ratio_to_stable: float | None = Field(
        default=None, ge=1,
        description="Highest ratio of the new revision's percentile to the stable's over the same window; a window "
                    "without a figure of the stable's is Inconclusive, never a pass.")


class Analysis(Schema):
    """How each measurement of the new revision is judged; failureLimit consecutive failures roll it back."""

    rules = (
        Rule("self.provider != 'prometheus' || has(self.prometheus)",
             "provider prometheus needs `prometheus: {source: ...}`",
             lambda a: a.provider != "prometheus" or a.prometheus is not None),
        Rule("self.provider != 'gateway' || has(self.gateway)",
             "provider gateway needs `gateway: {source: ...}`",
             lambda a: a.provider != "gateway" or a.gateway is not None),
        positive_duration("interval", "interval", "analysis.interval must be longer than 0s"),
        Rule("self.mode != 'sequential' || (self.maxErrorRate > 0.0 && self.maxErrorRate < 1.0)",
             "analysis.mode sequential needs 0 < maxErrorRate < 1 (a limit of 0 or 1 has no sequential test)",
             lambda a: a.mode != "sequential" or 0 < a.max_error_rate < 1),
        Rule("!has(self.timeToFirstToken) || self.provider != 'gateway'",
             "provider gateway measures no time to first token (the gateway sees whole requests): use provider "
             "frontend or prometheus for timeToFirstToken",
             lambda a: a.time_to_first_token is None or a.provider != "gateway"),
        Rule("!has(self.interTokenLatency) || !(self.provider in ['gateway', 'triton'])",
             "providers gateway and triton measure no inter-token latency: use provider frontend or prometheus for "
             "interTokenLatency",
             lambda a: a.inter_token_latency is None or a.provider not in ("gateway", "triton")),
    )

    interval: str = Field(default="30s", pattern=DURATION, description="Time between measurements.")
    max_error_rate: float = Field(default=0.02, ge=0, le=1,
                                  description="Highest failed/total ratio of the new revision's requests that passes.")
    min_requests: int = Field(
        default=50, ge=1,
        description="Requests a window needs for a verdict. A window short of them is never Successful: it keeps "
                    "measuring (Pending, the window grows) until it has them, or is Inconclusive once it spans 10 "
                    "intervals; its failures alone fail it when they put the rate over maxErrorRate even if every "
                    "request still missing succeeded.")
    failure_limit: int = Field(default=2, ge=1, le=100,
                               description="Consecutive Failed measurements that roll the new revision back.")
    on_inconclusive: Literal["pause", "continue", "rollback"] = Field(
        default="pause", description="What an Inconclusive measurement does: pause the rollout until `resume`, "
                                     "let it continue, or roll back.")
    max_p99_latency_seconds: float | None = Field(default=None, gt=0,
                                                  description="Optional latency gate on the new revision's p99 of "
                                                              "whole requests (arrival to last byte).")
    time_to_first_token: LatencyObjective | None = Field(
        default=None, description="Optional gate on the time to first token (to the first generated text the "
                                  "client got; a non-streamed answer's is the whole answer).")
    inter_token_latency: LatencyObjective | None = Field(
        default=None, description="Optional gate on the inter-token latency of streamed answers.")
    mirror: Literal["fill", "off"] = Field(
        default="fill",
        description="fill: while a canary takes traffic, each stable pod's front door also sends it a share of its "
                    "own requests, answers discarded, so that a canary replica carries as much load as a stable one "
                    "(a step's weight is often below its replicas' share): more evidence sooner, no client sees "
                    "the canary's answers, mirrored requests are counted apart. off: only the canary's own "
                    "share of traffic is measured.")
    mode: Literal["windowed", "sequential"] = Field(
        default="windowed",
        description="windowed: each interval's error rate against maxErrorRate, failureLimit failures in a row "
                    "roll back. sequential: a sequential likelihood-ratio test on the canary's bad requests "
                    "(failed, or slower than timeToFirstToken.maxSeconds) since its traffic started, after every "
                    "measurement (measure often: interval 1s-5s): it rolls back at once when they prove the rate "
                    "above maxErrorRate (1% false rollbacks at half the limit), passes when they prove it below "
                    "and minRequests are reached, and otherwise keeps measuring. failureLimit then counts only the "
                    "other latency gates' failed windows.")
    provider: AnalysisProviderName = Field(
        default="frontend",
        description="frontend (scrape each revision's pods' front door: every client request, its errors, time to "
                    "first token and inter-token latency), prometheus (PromQL over the front door's series, or "
                    "your queries), triton (scrape Triton's counters: it counts the llmapi model's errors as "
                    "successes, so it can fail a canary but never pass one on errors) or gateway (the gateway's "
                    "response codes and durations).")
    prometheus: PrometheusProvider | None = Field(default=None, description="Settings of the prometheus provider.")
    gateway: GatewayProvider | None = Field(default=None, description="Settings of the gateway provider.")

    def named_source(self) -> tuple[Literal["prometheus", "gateway"], str] | None:
        """The metric source this analysis reads, by kind and name (prometheus and gateway read one of the
        operator's sources; frontend and triton scrape the pods)."""
        if self.provider == "prometheus" and self.prometheus is not None:
            return "prometheus", self.prometheus.source
        if self.provider == "gateway" and self.gateway is not None:
            return "gateway", self.gateway.source
        return None


class ParentRef(Schema):
    """A Gateway the HTTPRoute attaches to."""

    name: str = Field(pattern=K8S_NAME, max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, pattern=K8S_NAME, max_length=63,
                                  description="Gateway namespace (default: ours).")
    section_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                     description="Listener name on the Gateway (Gateway API's SectionName).")


# Gateway API's Hostname: a lowercase DNS name, optionally a wildcard for one leading label; no IP, no port.
Hostname = Annotated[str, Field(pattern=rf"^(\*\.)?{k8s.DNS1123_SUBDOMAIN}$", max_length=253)]


# Gateway API's own rules on an HTTPRoute's parentRefs (its CRD's x-kubernetes-validations, in the same form): a
# Gateway named more than once needs a sectionName on each, and no two may name the same listener.
# (`namespace` is a word CEL reserves: the API server names the field __namespace__ in rules.)
_NAMESPACE_OF = "(has({0}.__namespace__) ? {0}.__namespace__ : '')"
_SECTION_OF = "(has({0}.sectionName) ? {0}.sectionName : '')"
_SAME_GATEWAY = f"p1.name == p2.name && {_NAMESPACE_OF.format('p1')} == {_NAMESPACE_OF.format('p2')}"


def _distinct_parents(refs: list[ParentRef]) -> bool:
    for p in refs:
        same = [q for q in refs if (q.name, q.namespace or "") == (p.name, p.namespace or "")]
        if len(same) > 1 and (p.section_name is None
                              or sum(q.section_name == p.section_name for q in same) > 1):
            return False
    return True


PARENTS_APART = ("parentRefs: a Gateway named more than once needs a different sectionName on each (Gateway API "
                 "refuses the HTTPRoute otherwise)")


class GatewayApiRouting(Schema):
    """Split traffic with a Gateway API HTTPRoute."""

    rules = (Rule(f"self.parentRefs.all(p1, self.parentRefs.all(p2, !({_SAME_GATEWAY}) || "
                  "has(p1.sectionName) == has(p2.sectionName))) && self.parentRefs.all(p1, "
                  f"self.parentRefs.exists_one(p2, {_SAME_GATEWAY} && "
                  f"{_SECTION_OF.format('p1')} == {_SECTION_OF.format('p2')}))",
                  PARENTS_APART, lambda g: _distinct_parents(g.parent_refs), ".parentRefs"),)

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=32,
                                         description="Gateways the HTTPRoute attaches to (Gateway API: at most 32).")
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16,
                                      description="Hostnames the HTTPRoute serves (all if empty); lowercase, no "
                                                  "port, `*.` allowed first (Gateway API's Hostname).")


class ServiceRouting(Schema):
    """Traffic follows the replica ratio behind the `<name>` Service; weights are approximate."""


class TrafficRouting(Schema):
    """How traffic reaches the stable and the new revision."""

    rules = (exactly_one(("gatewayAPI", "service"), "set exactly one of gatewayAPI, service"),)

    gateway_api: GatewayApiRouting | None = Field(default=None, alias="gatewayAPI",
                                                  description="Weighted HTTPRoute (Gateway API).")
    service: ServiceRouting | None = Field(default=None, description="Replica ratio behind one Service.")


_GATEWAY_ROUTING = "(has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))"
_SERVICE_PLACEHOLDER = "{" + "{service}}"  # never two opening braces in a row in the CRD's text (a Helm template)


def _queries_name_service(r: RolloutSpec) -> bool:
    queries = r.analysis.prometheus.queries if r.analysis and r.analysis.prometheus else None
    return queries is not None and any(_SERVICE_PLACEHOLDER in (q or "")
                                       for q in (queries.requests, queries.failures, queries.latency))


# What the analysis needs of the routing and the strategy: settings that contradict each other, refused.
ANALYSIS_ROUTING_RULES = (
    Rule(f"!has(self.analysis) || self.analysis.provider != 'gateway' || {_GATEWAY_ROUTING}",
         "analysis provider gateway needs trafficRouting.gatewayAPI: with trafficRouting service the gateway sees "
         "one Service, never the two revisions apart (use provider frontend, triton or prometheus)",
         lambda r: r.analysis is None or r.analysis.provider != "gateway" or r.traffic_routing.gateway_api is not None,
         ".analysis.provider"),
    Rule("!has(self.analysis) || !has(self.analysis.prometheus) || !has(self.analysis.prometheus.queries) || "
         f"{_GATEWAY_ROUTING} || ![self.analysis.prometheus.queries.?requests.orValue(''), "
         "self.analysis.prometheus.queries.?failures.orValue(''), self.analysis.prometheus.queries.?latency"
         ".orValue('')].exists(q, q.contains('{' + '{service}}'))",
         "analysis.prometheus.queries use the service placeholder (the HTTPRoute's backends <name>-canary and "
         "<name>-stable), which only trafficRouting.gatewayAPI makes: with trafficRouting service they measure "
         "nothing", lambda r: r.traffic_routing.gateway_api is not None or not _queries_name_service(r),
         ".analysis.prometheus.queries"),
    Rule("self.strategy != 'recreate' || !has(self.analysis)",
         "strategy recreate has no analysis: the stable revision stops before the new one starts, so there is no "
         "canary to measure or roll back to (use strategy canary for an analysed rollout)",
         lambda r: r.strategy != "recreate" or r.analysis is None, ".analysis"),
)


def _sorted(values: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


class RolloutSpec(Schema):
    """How a new revision replaces the stable one."""

    rules = (
        Rule("self.strategy != 'abTest' || (has(self.match) && size(self.match) > 0)",
             "strategy abTest needs `match` (which requests go to the new revision)",
             lambda r: r.strategy != "abTest" or bool(r.match)),
        Rule("self.strategy == 'abTest' || !has(self.match) || size(self.match) == 0",
             "`match` applies to strategy abTest only", lambda r: r.strategy == "abTest" or not r.match),
        Rule("self.strategy != 'abTest' || (has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
             "strategy abTest needs trafficRouting.gatewayAPI: a Service cannot route by header",
             lambda r: r.strategy != "abTest" or r.traffic_routing.gateway_api is not None),
        Rule("self.strategy != 'abTest' || !has(self.steps) || self.steps.all(s, !has(s.weight))",
             "an abTest has pause steps only (matching requests go to the new revision)",
             lambda r: r.strategy != "abTest" or all(s.weight is None for s in r.steps)),
        Rule("self.strategy != 'recreate' || !has(self.steps) || size(self.steps) == 0",
             "strategy recreate has no steps", lambda r: r.strategy != "recreate" or not r.steps),
        Rule("!has(self.steps) || !self.steps.exists(s, has(s.weight)) || "
             "self.steps.exists(s, has(s.weight) && s.weight > 0)",
             "a canary needs a step with a weight above 0: with every weight 0 the new revision never gets "
             "traffic to be judged by", lambda r: not any(s.weight is not None for s in r.steps)
             or any((s.weight or 0) > 0 for s in r.steps), ".steps"),
        Rule("(has(self.maxSurge) && self.maxSurge > 0) || !has(self.maxUnavailable) || self.maxUnavailable > 0",
             "maxSurge and maxUnavailable cannot both be 0: the rollout could neither add a replica nor free one",
             lambda r: r.max_surge > 0 or r.max_unavailable > 0),
        Rule("!has(self.steps) || self.steps.filter(s, has(s.weight)).map(s, s.weight).isSorted()",
             "step weights must not go down (a canary only ever gets more traffic; a rollback is the analysis' "
             "or an `abort` action's)", lambda r: _sorted([s.weight for s in r.steps if s.weight is not None]),
             ".steps"),
        *ANALYSIS_ROUTING_RULES,
    )

    strategy: Literal["canary", "abTest", "recreate"] = Field(
        default="canary", description="canary (weighted steps), abTest (matching requests go to the new revision) "
                                      "or recreate (stop the old revision first: no extra GPUs).")
    steps: list[CanaryStep] = Field(default_factory=list, max_length=32,
                                    description="Steps before promotion; none = promote once the new revision is "
                                                "Ready (and the analysis passes, if any).")
    match: list[RequestMatch] = Field(default_factory=list, max_length=8,
                                      description="abTest: requests matching any entry go to the new revision.")
    analysis: Analysis | None = Field(default=None, description="Metric analysis; none = no automatic rollback.")
    traffic_routing: TrafficRouting = Field(
        default_factory=lambda: TrafficRouting(service=ServiceRouting()),
        description="How traffic is split: gatewayAPI (HTTPRoute weights, header matches) or service "
                    "(replica ratio).")
    revision_history_limit: int = Field(default=5, ge=1, le=50,
                                        description="Earlier revisions kept (scaled to zero) for rollback-to.")
    max_surge: int = Field(
        default=1, ge=0, le=16,
        description="Replicas (of a multi-node layout: groups) beyond the desired count a rollout may hold. The "
                    "new revision's replicas first take these extra GPUs, then those of stable replicas drained "
                    "for them; 0 rolls out on a full GPU pool, each new replica in the GPUs a stable one freed.")
    max_unavailable: int = Field(
        default=1, ge=0, le=16,
        description="Stable replicas a rollout may drain at once: Ready replicas of both revisions together never "
                    "fall below the desired count minus this (without the status saying why).")


# One replica rolled out on a full pool would leave the model down between the drain and the new replica.
ONE_REPLICA_NO_SURGE = ("rollout.maxSurge 0 with 1 replica would take the model down at every rollout: use "
                        "rollout.strategy recreate (down on purpose), maxSurge: 1 (one replica's GPUs beyond the "
                        "pool), or at least 2 replicas (serving.replicas and autoscaling.minReplicas)")


class DeepSeekDeploymentSpec(Schema):
    # The removed field's own validator names it (spec.engine) before this rule runs.
    rules = (
        Rule("!has(self.engine)", REMOVED_ENGINE, lambda s: s.engine is None),
        Rule("!has(self.rollout) || self.rollout.maxSurge > 0 || self.rollout.strategy == 'recreate' || "
             "(has(self.serving.autoscaling) ? self.serving.autoscaling.minReplicas >= 2 : "
             "self.serving.replicas != 1)",
             ONE_REPLICA_NO_SURGE,
             lambda s: s.rollout.max_surge > 0 or s.rollout.strategy == "recreate" or (
                 s.serving.autoscaling.min_replicas >= 2 if s.serving.autoscaling else s.serving.replicas != 1)),
    )

    model: ModelRef = Field(description="Which DeepSeek-R1 model, from where, at which precision.")
    engine: dict[str, Any] | None = _removed(REMOVED_ENGINE)
    runtime: RuntimeSpec = Field(default_factory=RuntimeSpec,
                                 description="TensorRT-LLM's PyTorch backend: parallelism, batching, KV cache.")
    serving: ServingSpec = Field(description="Where and how the model is served.")
    network: NetworkSpec = Field(default_factory=NetworkSpec, description="NCCL fabric between a replica's ranks.")
    pods: PodSettings = Field(default_factory=PodSettings,
                              description="Identity, priority and runtime of every pod the operator makes.")
    rollout: RolloutSpec = Field(default_factory=RolloutSpec, description="How new revisions are rolled out.")

    @field_validator("engine")
    @classmethod
    def _no_engine(cls, value: Any) -> Any:
        raise ValueError(REMOVED_ENGINE)
