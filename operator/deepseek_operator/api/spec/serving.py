"""spec.serving: replicas, GPUs, the OpenAI front door, resources and pod placement."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    Field,
    field_validator,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.spec.autoscaling import Autoscaling
from deepseek_operator.api.spec.base import (
    DEFAULT_FRONTEND_IMAGE,
    GPU_TYPES,
    GROUP,
    IMAGE,
    LABEL_KEY,
    LABEL_VALUE,
    MAX_MAP_ENTRIES,
    QUANTITY,
    Rule,
    Schema,
    map_keys,
    map_values,
)
from deepseek_operator.api.spec.runtime import REMOVED_BATCHING, removed_field
from deepseek_operator.api.spec.security import GrpcTls, NetworkPolicySettings


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
    batching: dict[str, Any] | None = removed_field(REMOVED_BATCHING)
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
