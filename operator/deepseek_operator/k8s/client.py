"""The one place that writes to the Kubernetes API: server-side apply, deletes, status and events."""

from __future__ import annotations

import base64
import datetime as dt
import json
import logging
import time
import uuid
from typing import Any

from kubernetes import client
from kubernetes.client.exceptions import ApiException

from deepseek_operator.api.spec import GROUP, KIND, PLURAL, VERSION
from deepseek_operator.k8s import kinds, metrics
from deepseek_operator.render.naming import FIELD_MANAGER
from deepseek_operator.render.security import ENFORCE_LABEL

LOG = logging.getLogger(__name__)



def _path(api_version: str, kind: str, verb: str, namespace: str, name: str = "") -> str:
    """The child's REST path, for a verb the chart grants on it (kinds.NotGranted otherwise: the table, and so the
    chart's RBAC, must say it first)."""
    plural = kinds.granted(api_version, kind, verb).plural
    prefix = "/api/v1" if api_version == "v1" else f"/apis/{api_version}"
    return f"{prefix}/namespaces/{namespace}/{plural}" + (f"/{name}" if name else "")


def merge_patch(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """The JSON merge patch (RFC 7386) that turns `old` into `new`: a key gone at any depth is sent as null, as
    a merge patch keeps every key it does not name (lists are replaced whole)."""
    patch: dict[str, Any] = {k: None for k in old if k not in new}
    for key, value in new.items():
        before = old.get(key)
        if isinstance(value, dict) and isinstance(before, dict):
            if nested := merge_patch(before, value):
                patch[key] = nested
        elif key not in old or value != before:
            patch[key] = value
    return patch


POD_SECURITY_TTL_S = 20.0


class Kube:
    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self._ssh_secrets: set[tuple[str, str]] = set()  # (namespace, name) of key Secrets known to exist
        self._pod_security: dict[str, tuple[float, str | None]] = {}  # namespace -> (read at, enforced level)

    def _call(self, method: str, path: str, body: Any = None, content_type: str = "application/json",
              query: list[tuple[str, str]] | None = None, count: bool = True) -> Any:
        if count:  # reads are not writes
            metrics.API_WRITES.labels(method=method).inc()
        request = self.api.param_serialize(
            method=method, resource_path=path, query_params=query or [],
            header_params={"Content-Type": content_type, "Accept": "application/json"}, body=body,
            auth_settings=["BearerToken"])
        response = self.api.call_api(*request)
        response.read()  # type: ignore[no-untyped-call]
        if not 200 <= response.status < 300:
            raise ApiException(http_resp=response)
        return response

    def apply(self, obj: dict[str, Any]) -> None:
        """Server-side apply with our single field manager; `force` takes fields back from kubectl edits."""
        meta = obj["metadata"]
        self._call("PATCH", _path(obj["apiVersion"], obj["kind"], "patch", meta["namespace"], meta["name"]),
                   body=obj, content_type="application/apply-patch+yaml",
                   query=[("fieldManager", FIELD_MANAGER), ("force", "true")])
        metrics.CHILDREN_APPLIED.labels(kind=obj["kind"]).inc()

    def delete(self, api_version: str, kind: str, namespace: str, name: str) -> None:
        self._ssh_secrets.discard((namespace, name))
        try:
            self._call("DELETE", _path(api_version, kind, "delete", namespace, name),
                       body={"propagationPolicy": "Background"})
        except ApiException as e:
            if e.status != 404:
                raise

    def ensure_ssh_secret(self, secret: dict[str, Any]) -> None:
        """Creates a multi-node revision's MPI key pair (ed25519, OpenSSH format) unless it exists.

        The operator may not read Secrets at all (a right to read one is a right to read all of a namespace's):
        it creates the ones it names, takes AlreadyExists for existing, once per process, and remembers them."""
        meta = secret["metadata"]
        key = (meta["namespace"], meta["name"])
        if key not in self._ssh_secrets:
            self._create_ssh_secret(secret)
            self._ssh_secrets.add(key)

    def _create_ssh_secret(self, secret: dict[str, Any]) -> None:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

        key = Ed25519PrivateKey.generate()
        private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                    serialization.NoEncryption())
        public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
        meta = secret["metadata"]
        body = {**secret, "data": {"id_ed25519": base64.b64encode(private).decode(),
                                   "id_ed25519.pub": base64.b64encode(public + b"\n").decode()}}
        try:
            self._call("POST", _path(secret["apiVersion"], secret["kind"], "create", meta["namespace"]), body=body)
        except ApiException as e:
            if e.status != 409:
                raise

    def serves(self, group_version: str, plural: str) -> bool:
        """Whether the API server serves this resource (an optional CRD such as LeaderWorkerSet is installed)."""
        try:
            response = self._call("GET", f"/apis/{group_version}", count=False)
        except ApiException as e:
            if e.status == 404:
                return False
            raise
        return any(r.get("name") == plural for r in json.loads(response.data).get("resources") or [])

    def pod_security(self, namespace: str) -> str | None:
        """The Pod Security Standard the namespace enforces (its pod-security.kubernetes.io/enforce label), read
        at most every POD_SECURITY_TTL_S seconds per namespace."""
        read_at, level = self._pod_security.get(namespace, (-POD_SECURITY_TTL_S, None))
        if time.monotonic() - read_at < POD_SECURITY_TTL_S:
            return level
        try:
            response = self._call("GET", f"/api/v1/namespaces/{namespace}", count=False)
        except ApiException as e:
            if e.status != 403:
                raise
            LOG.warning("may not read namespace %s (get namespaces): its Pod Security level is not checked", namespace)
            level = None
        else:
            level = (json.loads(response.data).get("metadata", {}).get("labels") or {}).get(ENFORCE_LABEL)
        self._pod_security[namespace] = (time.monotonic(), level)
        return level

    def write_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
        """Turns status `old` into `new`; returns the resourceVersion the resource has after the write."""
        response = self._call("PATCH", f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{PLURAL}/{name}/status",
                              body={"status": merge_patch(old, new)}, content_type="application/merge-patch+json")
        metrics.STATUS_WRITES.inc()
        return str(json.loads(response.data)["metadata"]["resourceVersion"])

    def event(self, body: dict[str, Any], type_: str, reason: str, message: str) -> None:
        meta = body["metadata"]
        now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        event = {
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": f"{meta['name']}.{uuid.uuid4().hex[:12]}", "namespace": meta["namespace"]},
            "involvedObject": {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": meta["name"],
                               "namespace": meta["namespace"], "uid": meta["uid"],
                               "resourceVersion": meta.get("resourceVersion", "")},
            "reason": reason, "message": message[:1024], "type": type_,
            "source": {"component": FIELD_MANAGER}, "reportingComponent": FIELD_MANAGER,
            "firstTimestamp": now, "lastTimestamp": now, "count": 1,
        }
        try:
            self._call("POST", f"/api/v1/namespaces/{meta['namespace']}/events", body=event)
        except ApiException as e:  # an event lost must never fail a reconcile
            LOG.warning("could not post event %s: %s", reason, e.reason)
