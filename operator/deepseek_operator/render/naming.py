"""Names, labels and hashes of everything the operator creates. Pure."""

from __future__ import annotations

import hashlib
import json
from typing import Any

from deepseek_operator.api.spec import GROUP

FIELD_MANAGER = "deepseek-operator"

LABEL_DEPLOYMENT = f"{GROUP}/deployment"
LABEL_REVISION = f"{GROUP}/revision"
LABEL_CHECKPOINT_KEY = f"{GROUP}/checkpoint-key"
LABEL_WEIGHTS_KEY = f"{GROUP}/weights-key"
LABEL_COMPONENT = "app.kubernetes.io/component"
ANNOTATION_APPLIED_HASH = f"{GROUP}/applied-hash"
# A person's rollout action (promote, abort, ...) and a fresh nonce; the operator handles each nonce once.
ANNOTATION_ACTION = f"{GROUP}/action"
ANNOTATION_ACTION_NONCE = f"{GROUP}/action-nonce"
LABEL_MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGED_BY = "deepseek-operator"

COMPONENT_SERVER = "server"
COMPONENT_SERVER_WORKER = "server-worker"  # a multi-node replica's non-leader pods: never behind a Service
COMPONENT_MODEL_REPO = "model-repository"
COMPONENT_QUANTIZE = "quantize"
COMPONENT_DOWNLOAD = "download"
COMPONENT_MODEL_CACHE = "model-cache"
COMPONENT_PREFLIGHT = "preflight"
COMPONENT_MPI_SSH = "mpi-ssh"
COMPONENT_NETWORK_POLICY = "network-policy"
COMPONENT_AUTOSCALER = "autoscaler"


def digest(value: Any, length: int) -> str:
    """A stable hash of JSON-able data: same input, same hash, on every machine and Python run."""
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:length]


def common_labels(name: str, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "deepseek",
        "app.kubernetes.io/instance": name,
        LABEL_MANAGED_BY: MANAGED_BY,
        LABEL_COMPONENT: component,
        LABEL_DEPLOYMENT: name,
    }


def selector_labels(name: str) -> dict[str, str]:
    """What the serving Deployment and Services select on: never changes for the life of the resource."""
    return {LABEL_DEPLOYMENT: name, LABEL_COMPONENT: COMPONENT_SERVER}


def revision_selector_labels(name: str, revision: str) -> dict[str, str]:
    """What one revision's Deployment and the stable/canary Services select on."""
    return {**selector_labels(name), LABEL_REVISION: revision}


def server_deployment_name(name: str, revision: str) -> str:
    return f"{name}-{revision}"


def stable_service_name(name: str) -> str:
    return f"{name}-stable"


def canary_service_name(name: str) -> str:
    return f"{name}-canary"


def model_repo_configmap_name(name: str, revision: str) -> str:
    return f"{name}-repo-{revision}"


def autoscaler_name(name: str) -> str:
    """The ScaledObject or HorizontalPodAutoscaler of the resource (KEDA names its HPA the same)."""
    return name


def ingress_policy_name(name: str) -> str:
    """The NetworkPolicy that admits to the resource's pods only its clients and scrapers."""
    return f"{name}-ingress"


def group_policy_name(name: str, revision: str) -> str:
    return f"{name}-{revision}-group"


def pod_dns_name(pod: str, service: str, namespace: str) -> str:
    """A pod's own DNS name behind a headless Service that is its subdomain."""
    return f"{pod}.{service}.{namespace}.svc.cluster.local"


def download_job_name(weights_key: str) -> str:
    return f"download-{weights_key}"


def quantize_job_name(checkpoint_key: str) -> str:
    return f"quantize-{checkpoint_key}"
