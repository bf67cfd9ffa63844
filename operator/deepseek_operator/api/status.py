"""The DeepSeekDeployment status, written only by the operator, and its condition vocabulary."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from deepseek_operator.api.spec import Schema


class _Carried:
    """Marks a status field that a pass changing nothing (a bad spec, no fit, a failed gate) carries over."""


CARRIED = _Carried()

class Phase(StrEnum):
    PENDING = "Pending"
    PREPARING = "Preparing"  # a gate is open: weights downloading, quantize Job, NCCL preflight
    PROGRESSING = "Progressing"
    PAUSED = "Paused"
    HEALTHY = "Healthy"
    DEGRADED = "Degraded"
    ROLLED_BACK = "RolledBack"


class Outcome(StrEnum):
    """How a rollout ended, for the rollouts counter."""

    PROMOTED = "promoted"
    ROLLED_BACK = "rolled_back"
    ABORTED = "aborted"


class AnalysisResult(StrEnum):
    SUCCESSFUL = "Successful"
    FAILED = "Failed"
    INCONCLUSIVE = "Inconclusive"
    PENDING = "Pending"  # no verdict yet: a baseline taken, a window short of minRequests, a sequential test going on


class WeightsState(StrEnum):
    PENDING = "Pending"
    DOWNLOADING = "Downloading"
    READY = "Ready"
    FAILED = "Failed"


class QuantizationState(StrEnum):
    NOT_REQUIRED = "NotRequired"
    PENDING = "Pending"
    RUNNING = "Running"
    COMPLETE = "Complete"
    FAILED = "Failed"


class PreflightState(StrEnum):
    RUNNING = "Running"
    PASSED = "Passed"
    FAILED = "Failed"

# Condition types.
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
CHECKPOINT_READY = "CheckpointReady"
WEIGHTS_READY = "WeightsReady"
FITS_HARDWARE = "FitsHardware"
PREFLIGHT = "Preflight"
AUTOSCALING = "Autoscaling"  # only with spec.serving.autoscaling: whether its scaler is in place and reads
SPEC_VALID = "SpecValid"  # False: the spec cannot work as written; True with IgnoredSetting: parts of it do not apply


class Reason:
    """Condition reasons, as named constants (CamelCase, as metav1.Condition requires)."""

    FITS = "Fits"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    PRECISION_UNSUPPORTED = "PrecisionUnsupported"
    INVALID_PARALLELISM = "InvalidParallelism"
    EXCEEDS_NODE = "ExceedsNode"
    EXCEEDS_CONTEXT = "ExceedsContext"  # runtime.maxSeqLen beyond the model's context window
    NO_SUCH_NODE = "NoSuchNode"  # serving.gpu.perNode beyond what a node of the GPU type has
    INVALID_SPEC = "InvalidSpec"
    VALID_SPEC = "Valid"
    IGNORED_SETTING = "IgnoredSetting"  # a setting the serving path does not use for this spec, named
    CHILD_REJECTED = "ChildRejected"  # the API server refused an object the operator applies for the resource
    RECONCILE_ERROR = "ReconcileError"  # the operator's pass failed on the resource (a bug): logged, retried
    POD_SECURITY_FORBIDS = "PodSecurityForbids"  # the namespace's Pod Security level admits none of the pods
    NO_MULTI_NODE_NVLINK = "NoMultiNodeNVLink"  # replicas across GB200 trays need IMEX channels (a DRA driver)
    GPU_UNSUPPORTED = "GPUUnsupported"
    ON_VOLUME = "OnVolume"  # a pvc: source, read in place
    DOWNLOADED = "Downloaded"
    DOWNLOADING = "Downloading"
    DOWNLOAD_PENDING = "DownloadPending"
    DOWNLOAD_FAILED = "DownloadFailed"
    QUANTIZED = "Quantized"
    AS_PUBLISHED = "ServedAsPublished"
    QUANTIZING = "Quantizing"
    QUANTIZE_FAILED = "QuantizeFailed"
    QUANTIZE_PENDING = "QuantizePending"
    REPLICAS_READY = "ReplicasReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    UNSCHEDULABLE = "Unschedulable"
    # A pod of the resource (serving, download, quantize or preflight) crash-loops, cannot pull, fails its startup
    # probe, or cannot start at all: a Secret, ConfigMap or key it mounts is missing (the kubelet's FailedMount).
    CONTAINERS_FAILING = "ContainersFailing"
    ROLLING_OUT = "RollingOut"
    SCALED_TO_ZERO = "ScaledToZero"
    AS_EXPECTED = "AsExpected"
    # Rollouts.
    CANARY_STEP = "CanaryStep"
    CANARY_PAUSED = "CanaryPaused"
    PAUSED_BY_USER = "PausedByUser"
    ANALYSIS_INCONCLUSIVE = "AnalysisInconclusive"
    ANALYSIS_FAILED = "AnalysisFailed"
    ABORTED = "Aborted"
    ROLLED_BACK_BY_USER = "RolledBackByUser"
    PROMOTING = "Promoting"
    PROMOTED = "Promoted"
    CANARY_UNSCHEDULABLE = "CanaryUnschedulable"
    QUOTA_EXCEEDED = "QuotaExceeded"  # a ResourceQuota of the namespace refuses the revision's pods
    # A Gateway of trafficRouting.gatewayAPI does not take the resource's HTTPRoute (its status.parents say
    # Accepted or ResolvedRefs False), or no controller answered for one of its parentRefs.
    ROUTE_NOT_ACCEPTED = "RouteNotAccepted"
    PODS_REFUSED = "PodsRefused"  # admission (a policy, a webhook) refuses the revision's pods
    CANARY_CONTAINERS_FAILING = "CanaryContainersFailing"
    # Autoscaling.
    SCALER_READY = "ScalerReady"
    SCALER_NOT_READY = "ScalerNotReady"  # KEDA or the HPA says why it cannot scale (no metric, ...)
    NO_SCALER = "NoScaler"  # neither the KEDA API nor an hpaMetric: nothing can scale the resource
    SCALED = "Scaled"  # the event of a change of spec.serving.replicas
    # The NCCL preflight of a multi-GPU revision.
    PREFLIGHT_RUNNING = "PreflightRunning"
    PREFLIGHT_PASSED = "PreflightPassed"
    PREFLIGHT_FAILED = "PreflightFailed"


class Condition(Schema):
    """metav1.Condition."""

    type: str = Field(description="Condition type.")
    status: Literal["True", "False", "Unknown"] = Field(description="True, False or Unknown.")
    observed_generation: int = Field(description="metadata.generation this condition was computed for.")
    last_transition_time: str = Field(description="When status last changed (RFC 3339).")
    reason: str = Field(description="CamelCase reason, one of the operator's named constants.")
    message: str = Field(default="", description="Human-readable detail.")


class Parallelism(Schema):
    tensor: int = Field(description="Tensor-parallel ranks (within one node).")
    pipeline: int = Field(description="Pipeline-parallel stages (across nodes).")
    expert: int = Field(default=1, description="Expert-parallel ranks (MoE models; 1 for dense).")
    nodes_per_replica: int = Field(description="Nodes one replica spans.")
    gpus_per_replica: int = Field(description="GPUs one replica uses.")


class Sizing(Schema):
    """The fit estimate behind FitsHardware (estimates, not measurements)."""

    weights_gb: float = Field(description="Estimated weight bytes of the whole model, in GB.")
    kv_cache_gb: float = Field(description="Estimated KV cache for maxBatchSize x maxSeqLen, in GB.")
    need_per_gpu_gb: float = Field(description="Estimated memory needed per GPU, in GB.")
    budget_per_gpu_gb: float = Field(description="Usable memory per GPU, in GB.")


class RuntimeStatus(Schema):
    """The runtime the current revision is served with: the recipe picked and the settings it resolved to."""

    recipe: str = Field(description="The recipe (spec.runtime fields override it).")
    source: str = Field(description="Where TensorRT-LLM publishes it.")
    reason: str = Field(default="", description="Why this recipe, and what the fit check changed.")
    max_batch_size: int = Field(description="max_batch_size served.")
    max_num_tokens: int = Field(description="max_num_tokens served.")
    attention_data_parallel: bool = Field(default=False, description="enable_attention_dp.")
    kv_cache_dtype: str = Field(default="auto", description="KV cache element type.")
    mtp_layers: int = Field(default=0, description="Multi-token-prediction draft tokens (0: off).")
    chunked_prefill: bool = Field(default=False, description="enable_chunked_prefill: prompts longer than "
                                                             "maxNumTokens are prefilled over several iterations.")
    moe_backend: str | None = Field(default=None, description="moe_config.backend (MoE models).")


class ModelStatus(Schema):
    """The served model and its weights: read from a PVC in place, or downloaded once per key into the cache."""

    name: str = Field(default="", description="Served model and precision.")
    source: str = Field(default="", description="Where the weights come from (pvc:, hf: or s3: and the location).")
    key: str = Field(default="", description="Download key: hash of the source location and revision; the "
                                             "checkpoint is at checkpoints/<key> in the model cache PVC.")
    state: WeightsState = Field(
        default=WeightsState.PENDING,
        description="Pending (waiting for the cache PVC or the Job's pod), Downloading, Ready (on the volume, "
                    "complete and verified) or Failed.")
    bytes_done: int = Field(default=0, description="Bytes downloaded and written so far.")
    bytes_total: int = Field(default=0, description="Bytes of the whole checkpoint.")
    bytes_per_second: int = Field(default=0, description="Download rate over the last seconds.")
    progress: str = Field(default="", description="bytes done of total, for kubectl get -o wide.")
    job: str = Field(default="", description="The download Job, when there is one.")
    message: str = Field(default="", description="Progress, or the store's own error on failure.")


class QuantizationStatus(Schema):
    """The checkpoint the runtime loads: as published, or quantized once per key by a Job."""

    key: str = Field(description="Checkpoint key: hash of model, revision, source, precision and image (the "
                                 "quantizer's version).")
    state: QuantizationState = Field(
        description="NotRequired (the published checkpoint is served as it is), Pending (waiting for the cache "
                    "PVC), Running (the quantize Job runs), Complete or Failed.")
    job: str = Field(default="", description="The quantize Job, when one exists.")
    message: str = Field(default="", description="Progress or failure detail.")


class Analysis(Schema):
    """The last measurement of the new revision and what it was judged, with the stable's figures over the same
    window beside the new revision's."""

    revision: str = Field(description="The revision measured.")
    at: str = Field(description="When it was measured (RFC 3339).")
    window_start: str | None = Field(
        default=None, description="While a window short of minRequests stays open (result Pending): where it "
                                  "started; the next measurement covers it from there (RFC 3339).")
    window_seconds: float = Field(default=0, description="Length of the window measured, in seconds.")
    requests: int = Field(default=0, description="Requests the revision answered in the window.")
    errors: int = Field(default=0, description="Of which failed.")
    error_rate: float | None = Field(default=None, description="errors / requests; absent without requests.")
    p99_latency_seconds: float | None = Field(default=None, description="p99 of whole requests in the window, if "
                                                                        "measured.")
    stable_p99_latency_seconds: float | None = Field(default=None, description="The stable revision's, over the "
                                                                               "same window.")
    time_to_first_token_percentile: float | None = Field(default=None, description="With a timeToFirstToken gate: "
                                                                                   "the percentile it holds.")
    time_to_first_token_seconds: float | None = Field(default=None, description="The revision's time to first "
                                                                                "token at that percentile.")
    stable_time_to_first_token_seconds: float | None = Field(default=None, description="The stable revision's, "
                                                                                       "over the same window.")
    inter_token_latency_percentile: float | None = Field(default=None, description="With an interTokenLatency "
                                                                                   "gate: the percentile it holds.")
    inter_token_latency_seconds: float | None = Field(default=None, description="The revision's inter-token "
                                                                                "latency at that percentile.")
    stable_inter_token_latency_seconds: float | None = Field(default=None, description="The stable revision's, "
                                                                                       "over the same window.")
    stable_error_rate: float | None = Field(default=None, description="The stable revision's error rate, "
                                                                      "for comparison.")
    result: Literal["Successful", "Failed", "Inconclusive", "Pending"] = Field(
        description="The verdict; Pending while a differencing provider's first window runs, while a window short "
                    "of minRequests keeps measuring, or while a sequential test keeps measuring.")
    message: str = Field(default="", description="Why.")
    failures: int = Field(default=0, description="Consecutive Failed measurements so far.")
    step: int = Field(default=-1, description="The rollout step it was taken in.")
    provider: str = Field(default="", description="Which provider measured.")
    total_requests: float | None = Field(default=None, description="analysis.mode sequential: the revision's "
                                                                 "requests since its traffic started.")
    total_errors: float | None = Field(default=None, description="Of which failed.")
    total_slow: float | None = Field(default=None, description="Of which were slower to their first token than "
                                                             "timeToFirstToken.maxSeconds.")
    # Not the CRD's default 64 entries for a map: a scraping provider keeps each pod's requests, errors and latency
    # buckets (about 45 keys a pod), so a canary beside 4 stable replicas already keeps 200; no CEL rule reads it.
    counters: dict[str, float] = Field(default_factory=dict, json_schema_extra={"maxProperties": 16384},
                                       description="Provider counters at the window's start, to difference the "
                                                   "next measurement.")


class PreflightStatus(Schema):
    """The NCCL all-reduce check of the revision being rolled out (rank 0's summary)."""

    revision: str = Field(description="The revision checked.")
    job: str = Field(description="The preflight Job.")
    job_uid: str = Field(default="", description="Its uid: a Job deleted and created again runs anew.")
    state: PreflightState = Field(description="Running, Passed or Failed.")
    message: str = Field(default="", description="The verdict with its figures, or progress.")
    backend: str = Field(default="", description="nccl (GPUs) or gloo (CPU).")
    world_size: int = Field(default=0, description="Ranks that took part.")
    nodes: int = Field(default=0, description="Nodes the ranks ran on.")
    bus_bandwidth_gbps: float | None = Field(default=None, alias="busBandwidthGBps",
                                             description="Peak all-reduce bus bandwidth measured, GB/s.")
    at_size_bytes: int | None = Field(default=None, description="Message size of the peak, bytes.")
    min_bus_bandwidth_gbps: float | None = Field(default=None, alias="minBusBandwidthGBps",
                                                 description="The bound it was held to, GB/s.")
    transport: str = Field(default="", description="The transport NCCL used, from its INFO log.")
    expected_transport: str = Field(default="", description="The transport it had to use.")
    finished_at: str = Field(default="", description="When the Job finished (RFC 3339).")


class HistoryEntry(Schema):
    revision: str = Field(description="Revision hash.")
    model: str = Field(description="Model and precision.")
    promoted_at: str = Field(description="When it became the stable revision.")
    spec: dict[str, Any] = Field(description="The spec that made the revision (for rollback-to).",
                                 json_schema_extra={"x-kubernetes-preserve-unknown-fields": True,
                                                    "type": "object"})


class HandledAction(Schema):
    nonce: str = Field(description="The serving.deepseek.ai/action-nonce handled.")
    action: str = Field(description="The action.")
    at: str = Field(description="When.")
    result: str = Field(default="", description="What it did, or why it was refused.")


class ScalingStatus(Schema):
    """Who sets the replica count, and the last change of it."""

    replicas_set_by: str = Field(default="", description="The field manager that last set spec.serving.replicas, "
                                                         "with `(scale)` when it went through the scale "
                                                         "subresource (kubectl scale, an HPA, KEDA).")
    autoscaler: str = Field(default="", description="The scaler the operator keeps: ScaledObject/<name> or "
                                                    "HorizontalPodAutoscaler/<name>.")
    last_scale: str = Field(default="", description="The last change of the replica count: `2 -> 4`.")
    last_scale_time: str = Field(default="", description="When the operator saw it (RFC 3339).")


class DeepSeekDeploymentStatus(Schema):
    # A pass builds its status step by step: each assignment is validated (a dict becomes its model).
    model_config = ConfigDict(frozen=False, validate_assignment=True)

    observed_generation: int = Field(default=0, description="The metadata.generation last reconciled.")
    phase: Phase = Field(default=Phase.PENDING, description="Pending, Preparing (quantize Job or NCCL preflight), "
                                                        "Progressing, Paused, Healthy, Degraded or RolledBack.")
    revision: Annotated[str, CARRIED] = Field(default="", description="Hash of everything that changes serving pods.")
    replicas: Annotated[int, CARRIED] = Field(default=0, description="Desired replicas.")
    ready_replicas: Annotated[int, CARRIED] = Field(default=0, description="Replicas whose pods are all Ready.")
    ready: Annotated[str, CARRIED] = Field(default="0/0", description="ready/desired, for kubectl get.")
    selector: Annotated[str, CARRIED] = Field(default="", description="Label selector of the serving pods (the "
                                                                       "scale subresource's, for an HPA).")
    scaling: Annotated[ScalingStatus | None, CARRIED] = Field(default=None, description="Who sets the replicas.")
    model: ModelStatus | None = Field(default=None, description="The served model and its weights.")
    parallelism: Parallelism | None = Field(default=None, description="The parallel layout chosen by sizing.")
    sizing: Sizing | None = Field(default=None, description="Memory estimate behind FitsHardware.")
    runtime: RuntimeStatus | None = Field(default=None, description="The runtime recipe and its settings.")
    quantization: QuantizationStatus | None = Field(default=None, description="The checkpoint of the current "
                                                                               "revision.")
    preflight: Annotated[PreflightStatus | None, CARRIED] = Field(
        default=None, description="The NCCL check of the newest "
        "multi-GPU revision.")
    stable_revision: Annotated[str, CARRIED] = Field(default="", description="The revision that serves (promoted).")
    canary_revision: Annotated[str, CARRIED] = Field(default="", description="The revision being rolled out, if any.")
    canary_weight: Annotated[int, CARRIED] = Field(default=0, description="Percent of traffic the canary receives.")
    canary_replicas: Annotated[int, CARRIED] = Field(default=0, description="Replicas of the canary revision.")
    current_step: Annotated[int, CARRIED] = Field(default=0, description="Index of the rollout step in progress.")
    step_started_at: Annotated[str, CARRIED] = Field(
        default="", description="When the current step started (RFC 3339).")
    paused: Annotated[bool, CARRIED] = Field(default=False, description="The rollout waits for `resume` or `promote`.")
    pause_reason: Annotated[str, CARRIED] = Field(default="", description="Why the rollout is paused.")
    rollout_kind: Annotated[str, CARRIED] = Field(
        default="", description="`rollback` while returning to an earlier revision.")
    held_revision: Annotated[str, CARRIED] = Field(
        default="", description="A revision rolled back or aborted: not rolled out again "
        "until the spec changes or a `retry` action.")
    held_reason: Annotated[str, CARRIED] = Field(default="", description="Why the held revision was rolled back.")
    analysis: Annotated[Analysis | None, CARRIED] = Field(
        default=None, description="The last measurement of the new revision.")
    history: Annotated[list[HistoryEntry], CARRIED] = Field(
        default_factory=list, description="Promoted revisions, newest first.")
    last_action: Annotated[HandledAction | None, CARRIED] = Field(
        default=None, description="The last annotation action handled.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded, ...")


def carried_keys() -> tuple[str, ...]:
    """The status keys (as on the wire) a pass that changes nothing carries over as they are."""
    fields = DeepSeekDeploymentStatus.model_fields
    return tuple(f.alias or name for name, f in fields.items() if CARRIED in f.metadata)
