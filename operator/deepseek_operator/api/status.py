"""The DeepSeekDeployment status, written only by the operator, and its condition vocabulary."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from deepseek_operator.api.spec import Schema

Phase = Literal["Pending", "Building", "Progressing", "Healthy", "Degraded"]

# Condition types.
READY = "Ready"
PROGRESSING = "Progressing"
DEGRADED = "Degraded"
ENGINE_READY = "EngineReady"
FITS_HARDWARE = "FitsHardware"


class Reason:
    """Condition reasons, as named constants (CamelCase, as metav1.Condition requires)."""

    FITS = "Fits"
    INSUFFICIENT_GPU_MEMORY = "InsufficientGPUMemory"
    PRECISION_UNSUPPORTED = "PrecisionUnsupported"
    INVALID_PARALLELISM = "InvalidParallelism"
    EXCEEDS_NODE = "ExceedsNode"
    INVALID_SPEC = "InvalidSpec"
    ENGINE_CACHED = "EngineCached"
    ENGINE_BUILDING = "EngineBuilding"
    ENGINE_BUILD_FAILED = "EngineBuildFailed"
    ENGINE_PENDING = "EngineBuildPending"
    REPLICAS_READY = "ReplicasReady"
    REPLICAS_NOT_READY = "ReplicasNotReady"
    UNSCHEDULABLE = "Unschedulable"
    ROLLING_OUT = "RollingOut"
    SCALED_TO_ZERO = "ScaledToZero"
    BLOCKED = "Blocked"
    RECONCILED = "Reconciled"
    AS_EXPECTED = "AsExpected"


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
    nodes_per_replica: int = Field(description="Nodes one replica spans.")
    gpus_per_replica: int = Field(description="GPUs one replica uses.")


class Sizing(Schema):
    """The fit estimate behind FitsHardware (estimates, not measurements)."""

    weights_gb: float = Field(description="Estimated weight bytes of the whole model, in GB.")
    kv_cache_gb: float = Field(description="Estimated KV cache for maxBatchSize x maxSeqLen, in GB.")
    need_per_gpu_gb: float = Field(description="Estimated memory needed per GPU, in GB.")
    budget_per_gpu_gb: float = Field(description="Usable memory per GPU, in GB.")


class EngineStatus(Schema):
    key: str = Field(description="Engine key: hash of model, revision, precision, parallelism, shapes, GPU, image.")
    state: Literal["Cached", "Building", "Failed", "Pending", "NotRequired"] = Field(
        description="Cached, Building, Failed, Pending (waiting for the cache PVC) or NotRequired (no engine "
                    "to build).")
    job: str = Field(default="", description="The build Job, when one exists.")
    message: str = Field(default="", description="Progress or failure detail.")


class DeepSeekDeploymentStatus(Schema):
    observed_generation: int = Field(default=0, description="The metadata.generation last reconciled.")
    phase: Phase = Field(default="Pending", description="Pending, Building, Progressing, Healthy or Degraded.")
    revision: str = Field(default="", description="Hash of everything that changes serving pods.")
    replicas: int = Field(default=0, description="Desired replicas.")
    ready_replicas: int = Field(default=0, description="Replicas whose pods are all Ready.")
    ready: str = Field(default="0/0", description="ready/desired, for kubectl get.")
    model: str = Field(default="", description="Served model and precision, for kubectl get.")
    parallelism: Parallelism | None = Field(default=None, description="The parallel layout chosen by sizing.")
    sizing: Sizing | None = Field(default=None, description="Memory estimate behind FitsHardware.")
    engine: EngineStatus | None = Field(default=None, description="The engine of the current revision.")
    conditions: list[Condition] = Field(default_factory=list, description="Ready, Progressing, Degraded, ...")
