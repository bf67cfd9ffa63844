"""What a pass reads (Observed, what providers measure on request) and what it decides (Plan). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from deepseek_operator.api.sources import MetricSource
from deepseek_operator.api.spec import AnalysisProviderName, GatewaySettings, PrometheusSettings
from deepseek_operator.api.status import DeepSeekDeploymentStatus
from deepseek_operator.plan.mirror import MirrorOrder
from deepseek_operator.rollout import analysis
from deepseek_operator.rollout.machine import Event


@dataclass(frozen=True)
class Observed:
    """What one pass saw of the resource's world, read once before planning."""

    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # serving Deployments, by name
    # Multi-node revisions: StatefulSets (leaders and workers) or LeaderWorkerSets, by name; the SSH Secrets.
    statefulsets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    leader_worker_sets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    lws_installed: bool = False  # the LeaderWorkerSet API is served: multi-node revisions become LWS
    keda_installed: bool = False  # KEDA's ScaledObject API is served: autoscaling renders a ScaledObject
    # NVIDIA's DRA driver serves ComputeDomains: replicas across GB200 trays get their IMEX channels.
    compute_domains_installed: bool = False
    scalers: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # the resource's ScaledObject/HPA, by kind
    # The namespace's pod-security.kubernetes.io/enforce label (None: none, the cluster's default applies).
    pod_security: str | None = None
    # The metric sources of the operator's configuration, by name: what a resource's analysis may pick.
    metric_sources: Mapping[str, MetricSource] = field(default_factory=dict)
    model_repo_configmaps: tuple[str, ...] = ()
    http_routes: tuple[str, ...] = ()
    # The resource's HTTPRoutes as summaries, by name: their status.parents say whether each Gateway took them.
    routes: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    network_policies: tuple[str, ...] = ()  # the resource's, by name
    operator_namespace: str | None = None  # where the operator runs (None: outside the cluster)
    # The serving pods, as summaries (labels, status, and under plan.pods.WARNING the kubelet's newest Warning event
    # that holds a pod in ContainerCreating: a volume it cannot mount).
    pods: tuple[dict[str, Any], ...] = ()
    pvc_uids: Mapping[str, str] = field(default_factory=dict)  # PVCs of the namespace, by name
    quantize_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # quantize Jobs, by name
    download_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # download Jobs, by name
    download_pods: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # by their Job's name
    quantize_pods: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # by their Job's name
    # What the running download pod's progress endpoint answered this pass (see download_progress_request).
    download_progress: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    preflight_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # the resource's, by name
    preflight_pods: tuple[dict[str, Any], ...] = ()  # their pods, as summaries (rank 0's termination message)
    # (kind, name) -> the applied-hash annotation of each child as it is now: unchanged children are not re-applied.
    applied_hashes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    measurement: analysis.Measurement | None = None  # the canary measured this pass, when the analysis was due


@dataclass(frozen=True)
class AnalysisRequest:
    """What a metric provider is asked to measure (see providers/)."""

    provider: AnalysisProviderName
    namespace: str
    name: str
    canary_revision: str
    stable_revision: str
    window_seconds: float
    previous_counters: Mapping[str, float]
    canary_pod_ips: tuple[str, ...]
    stable_pod_ips: tuple[str, ...]
    canary_service: str
    stable_service: str
    prometheus: PrometheusSettings | None = None
    gateway: GatewaySettings | None = None
    source: MetricSource | None = None  # what the prometheus or gateway settings name, from the operator's config
    # spec.serving.streaming: Triton's time-to-first-response histogram is then the time to first token only, not
    # the whole request's (providers/triton.py).
    streaming: bool = False


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any]  # as written to the API: `typed` dumped by alias
    typed: DeepSeekDeploymentStatus  # the same status as the model, for the k8s layer's metrics
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)
    # The SSH key Secrets of live multi-node revisions: the k8s layer creates those missing, generating the keys.
    ssh_secrets: list[dict[str, Any]] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until a pass is due even if nothing changes (pauses, analysis)
    # What the stable pods' front doors mirror to the canary (plan/mirror.py): the k8s layer tells each of them.
    mirror: tuple[MirrorOrder, ...] = ()
    outcome: str = ""  # promoted | rolled_back | aborted when this pass ended a rollout
    verdict: str = ""  # the analysis verdict taken this pass
