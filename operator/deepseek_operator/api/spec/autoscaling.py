"""spec.serving.autoscaling: scaling on LLM load, through KEDA or a plain HorizontalPodAutoscaler."""

from __future__ import annotations

from typing import Literal

from pydantic import (
    Field,
)

from deepseek_operator.api.spec.base import (
    DURATION,
    K8S_NAME,
    Rule,
    Schema,
    duration_seconds,
    positive_duration,
)

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
                    "every HTTP API: waiting in TensorRT-LLM's queue or generating), queuedRequests (the front "
                    "door's deepseek_frontend_requests_waiting_first_token: requests TensorRT-LLM has not yet "
                    "answered a first token to, its queue and prefill), or custom "
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
