"""No Secret in the open: before a test namespace goes, every value of its Secrets (those the tests made and the
operator's SSH keys) is looked for where anyone with `view` or a log reader could find it: resources' status
and annotations, events, ConfigMaps, pod specs, the operator's log and the namespace's container logs."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from deepseek_operator.api.spec import GROUP, PLURAL, VERSION

MIN_LENGTH = 8  # shorter values ("true", "8000") are everywhere and say nothing
HELM_RELEASE = "helm.sh/release.v1"  # Helm's own record of a release: the chart's values, not a credential


def secret_values(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """`secret/key` -> each value of the namespace's Secrets, and each long line of the multi-line ones (a
    key pair leaked in part is leaked)."""
    out: dict[str, str] = {}
    for secret in client.CoreV1Api(api).list_namespaced_secret(namespace).items:
        if secret.type == HELM_RELEASE:
            continue
        for key, encoded in (secret.data or {}).items():
            value = base64.b64decode(encoded).decode(errors="replace").strip()
            for i, part in enumerate([value, *(line for line in value.splitlines() if len(line) >= 40)]):
                if len(part) >= MIN_LENGTH and "PRIVATE KEY-----" not in part:
                    out[f"{secret.metadata.name}/{key}" + (f" line {i}" if i else "")] = part
    return out


def readable_text(api: client.ApiClient, namespace: str) -> dict[str, str]:
    """Where a value must never appear, by what it is."""
    core, custom = client.CoreV1Api(api), client.CustomObjectsApi(api)
    dump = api.sanitize_for_serialization
    places: dict[str, str] = {}
    try:
        for obj in custom.list_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL)["items"]:
            seen = {"status": obj.get("status"), "annotations": obj["metadata"].get("annotations")}
            places[f"DeepSeekDeployment {obj['metadata']['name']}"] = json.dumps(seen)
    except ApiException as err:
        if err.status != 404:  # the CRD may not be installed yet
            raise
    places["events"] = "\n".join(f"{e.reason}: {e.message}" for e in core.list_namespaced_event(namespace).items)
    for cm in core.list_namespaced_config_map(namespace).items:
        places[f"ConfigMap {cm.metadata.name}"] = json.dumps(cm.data or {})
    for pod in core.list_namespaced_pod(namespace).items:
        places[f"Pod {pod.metadata.name}"] = json.dumps(dump(pod.spec)) + json.dumps(pod.metadata.annotations or {})
    return places


def leaks(api: client.ApiClient, namespace: str, logs: Path) -> list[str]:
    """What of the namespace's Secrets is readable elsewhere; `logs` holds the operator's log and the pods'."""
    values = secret_values(api, namespace)
    if not values:
        return []
    places: dict[str, Any] = readable_text(api, namespace)
    if (operator_log := logs / "operator.log").exists():
        places["the operator's log"] = operator_log.read_text(errors="replace")
    for log in sorted(logs.glob(f"pods/{namespace}_*/*/*.log")):  # the operator's too, when it runs in a pod
        places[f"log {log.relative_to(logs)}"] = log.read_text(errors="replace")
    return [f"{what} is in {where}" for what, value in values.items()
            for where, text in places.items() if value in text]
