"""spec.model: which model, from where (pvc, hf, s3), at which precision, with what calibration data."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.common import Precision
from deepseek_operator.api.spec.base import (
    DEFAULT_DOWNLOADER_IMAGE,
    IMAGE,
    K8S_NAME,
    MODEL_NAMES,
    NO_SPACE_PATH,
    Rule,
    Schema,
    exactly_one,
)


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
