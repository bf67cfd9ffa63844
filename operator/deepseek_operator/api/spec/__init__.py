"""The DeepSeekDeployment spec: pydantic v2 models, camelCase on the wire, unknown fields rejected, one module per
part of the spec (base: what they share; model, runtime, serving, security, autoscaling, network, rollout,
analysis; deployment: the whole).

These models are the single source of truth: the CRD's OpenAPI schema (crds/) is generated from them by
`python -m deepseek_operator.api.crd`, and the operator parses every object through them. The names the rest of the
operator uses are here too: `from deepseek_operator.api.spec import DeepSeekDeploymentSpec`.
"""

from __future__ import annotations

from deepseek_operator.api.spec.analysis import (
    ANALYSIS_PROVIDERS,
    DIFFERENCING_PROVIDERS,
    AnalysisProviderName,
    GatewaySettings,
    LatencyObjective,
    PrometheusQueries,
    PrometheusSettings,
    SourceProviderName,
)
from deepseek_operator.api.spec.autoscaling import Autoscaling, ScalingBehaviour
from deepseek_operator.api.spec.base import (
    DEFAULT_MODEL_CACHE_PVC,
    GPU_TYPES,
    GROUP,
    K8S_NAME,
    KIND,
    MODEL_NAMES,
    PLURAL,
    SHORT_NAMES,
    SINGULAR,
    VERSION,
    Schema,
    duration_seconds,
)
from deepseek_operator.api.spec.deployment import ONE_REPLICA_NO_SURGE, DeepSeekDeploymentSpec
from deepseek_operator.api.spec.model import CustomModel
from deepseek_operator.api.spec.network import NetworkSpec
from deepseek_operator.api.spec.rollout import GatewayApiRouting, RequestMatch, TrafficRouting
from deepseek_operator.api.spec.security import NetworkPeer

__all__ = [
    "ANALYSIS_PROVIDERS", "DEFAULT_MODEL_CACHE_PVC", "DIFFERENCING_PROVIDERS", "GPU_TYPES", "GROUP", "K8S_NAME",
    "KIND", "MODEL_NAMES", "ONE_REPLICA_NO_SURGE", "PLURAL", "SHORT_NAMES", "SINGULAR", "VERSION",
    "AnalysisProviderName", "Autoscaling", "CustomModel", "DeepSeekDeploymentSpec", "GatewayApiRouting",
    "GatewaySettings", "LatencyObjective", "NetworkPeer", "NetworkSpec", "PrometheusQueries", "PrometheusSettings",
    "RequestMatch", "ScalingBehaviour", "Schema", "SourceProviderName", "TrafficRouting", "duration_seconds",
]
