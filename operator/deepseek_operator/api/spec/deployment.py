"""The whole spec: DeepSeekDeploymentSpec."""

from __future__ import annotations

from typing import Any

from pydantic import (
    Field,
    field_validator,
)

from deepseek_operator.api.spec.base import Rule, Schema
from deepseek_operator.api.spec.model import ModelRef
from deepseek_operator.api.spec.network import NetworkSpec
from deepseek_operator.api.spec.rollout import RolloutSpec
from deepseek_operator.api.spec.runtime import (
    REMOVED_ENGINE,
    RuntimeSpec,
    removed_field,
)
from deepseek_operator.api.spec.security import PodSettings
from deepseek_operator.api.spec.serving import ServingSpec

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
    engine: dict[str, Any] | None = removed_field(REMOVED_ENGINE)
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
