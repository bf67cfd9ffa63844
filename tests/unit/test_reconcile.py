"""The k8s layer's pass around the pure plan: a child the API server refuses, and a pass that raises, each end in
a status write that says so (not in a pass that stops before it), one Warning event, and a retry with back-off.
The API server here is a recording stand-in for `Kube`; tests/e2e/test_bad_input.py has the real one."""

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes.client.exceptions import ApiException

from deepseek_operator.k8s import kinds
from deepseek_operator.k8s import reconcile as pass_
from deepseek_operator.k8s.client import Kube
from deepseek_operator.plan import Observed
from deepseek_operator.plan.pods import ready_pod_ips
from deepseek_operator.plan.status import fail_closed
from deepseek_operator.render import naming
from tests.unit.test_plan import QWEN_7B, example


class RecordingKube:
    """What the pass asks of the API server; `refuse` kinds are answered as a 422 with that message."""

    def __init__(self, refuse: dict[str, str] | None = None) -> None:
        self.refuse = refuse or {}
        self.applied: list[str] = []
        self.events: list[tuple[str, str, str]] = []
        self.statuses: list[dict[str, Any]] = []

    def apply(self, obj: dict[str, Any]) -> None:
        if obj["kind"] in self.refuse:
            err = ApiException(status=422, reason="Unprocessable Entity")
            err.body = json.dumps({"kind": "Status", "message": self.refuse[obj["kind"]]})
            raise err
        self.applied.append(obj["kind"])

    def delete(self, *_: Any) -> None:
        pass

    def ensure_ssh_secret(self, _: dict[str, Any]) -> None:
        pass

    def pod_security(self, _: str) -> str | None:
        return "restricted"

    def event(self, _: dict[str, Any], type_: str, reason: str, message: str) -> None:
        self.events.append((type_, reason, message))

    def write_status(self, namespace: str, name: str, old: dict[str, Any], new: dict[str, Any]) -> str:
        self.statuses.append(new)
        return str(len(self.statuses))


def _degraded(status: dict[str, Any]) -> dict[str, Any]:
    return next(c for c in status["conditions"] if c["type"] == "Degraded")


def test_a_refused_child_is_reported_and_the_others_are_applied() -> None:
    kube = RecordingKube(refuse={"Deployment": 'Deployment.apps "r1" is invalid: bad label'})
    body = example(QWEN_7B)
    result = pass_.reconcile(kube, body, Observed(pvc_uids={"model-store": "uid"}))  # type: ignore[arg-type]
    status = kube.statuses[-1]
    assert status["phase"] == "Degraded" and _degraded(status)["reason"] == "ChildRejected"
    assert "Deployment r1-qwen-7b-" in _degraded(status)["message"] and "bad label" in _degraded(status)["message"]
    assert "ConfigMap" in kube.applied  # the others went ahead
    assert [e[1] for e in kube.events if e[0] == "Warning"] == ["ChildRejected"]
    assert result.requeue_after == 10
    body["status"] = status  # the next pass sees what was written: the same error is not said again
    pass_.reconcile(kube, body, Observed(pvc_uids={"model-store": "uid"}))  # type: ignore[arg-type]
    assert [e[1] for e in kube.events if e[0] == "Warning"] == ["ChildRejected"]


def test_a_pass_that_raises_is_reported_in_status_and_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*_: Any) -> Any:
        raise KeyError("bf16")

    monkeypatch.setattr(pass_, "run", broken)
    kube = RecordingKube()
    body = example(QWEN_7B)
    body["status"] = {"phase": "Healthy", "stableRevision": "abc"}
    result = pass_.reconcile(kube, body, Observed(pvc_uids={"model-store": "uid"}))  # type: ignore[arg-type]
    status = kube.statuses[-1]
    assert _degraded(status)["reason"] == "ReconcileError" and "KeyError: 'bf16'" in _degraded(status)["message"]
    assert status["stableRevision"] == "abc"  # nothing of the status is lost
    assert kube.applied == [] and result.requeue_after == 10
    assert [e[:2] for e in kube.events] == [("Warning", "ReconcileError")]


def test_a_refused_network_policy_holds_every_new_pod_back_and_says_so() -> None:
    kube = RecordingKube(refuse={"NetworkPolicy": 'NetworkPolicy "r1-qwen-7b-ingress" is forbidden: the platform'})
    body = example(QWEN_7B)
    pass_.reconcile(kube, body, Observed(pvc_uids={"model-store": "uid"}))  # type: ignore[arg-type]
    status = kube.statuses[-1]
    degraded = _degraded(status)
    assert degraded["reason"] == "ChildRejected" and "forbidden: the platform" in degraded["message"]
    assert "no new pod of the resource is started while its NetworkPolicy is refused" in degraded["message"]
    assert "held back: Deployment r1-qwen-7b-" in degraded["message"]
    assert "Deployment" not in kube.applied and "ConfigMap" in kube.applied  # the pods' guard first, or no pods
    assert [e[1] for e in kube.events if e[0] == "Warning"] == ["ChildRejected"]


def test_fail_closed_keeps_what_runs_and_starts_nothing_new() -> None:
    deployment = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "r1-a", "labels": {}},
                  "spec": {"replicas": 3}}
    new_revision = {**deployment, "metadata": {"name": "r1-b", "labels": {}}}
    preflight = {"apiVersion": "batch/v1", "kind": "Job", "spec": {},
                 "metadata": {"name": "r1-b-pf", "labels": {naming.LABEL_COMPONENT: naming.COMPONENT_PREFLIGHT}}}
    service = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "r1"}, "spec": {}}
    running = Observed(deployments={"r1-a": {**deployment, "spec": {"replicas": 2}}})
    kept, held = fail_closed([deployment, new_revision, preflight, service], running)
    assert [(o["metadata"]["name"], o["spec"].get("replicas")) for o in kept] == [("r1-a", 2), ("r1", None)]
    assert held == ["Deployment r1-a (kept at 2 of 3 replicas)", "Deployment r1-b", "Job r1-b-pf"]
    # A scale-down (a rollback's drain) goes ahead.
    smaller = {**deployment, "spec": {"replicas": 1}}
    assert fail_closed([smaller], running) == ([smaller], [])


class RecordingApiClient:
    """The kubernetes ApiClient's two calls Kube makes, answering 200 to each and keeping (method, path)."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, str]] = []

    def param_serialize(self, method: str, resource_path: str, **_: Any) -> tuple[str, str]:
        return method, resource_path

    def call_api(self, method: str, path: str) -> Any:
        self.calls.append((method, path))
        return type("Response", (), {"status": 200, "data": b"{}", "read": lambda self: b"{}"})()


def test_the_api_client_does_only_what_the_charts_rbac_grants_the_operator() -> None:
    api = RecordingApiClient()
    kube = Kube(api)  # type: ignore[arg-type]
    kube.delete("resource.nvidia.com/v1beta1", "ComputeDomain", "llm", "r1-abc-imex")  # a GB200 revision gone
    kube.apply({"apiVersion": "keda.sh/v1alpha1", "kind": "ScaledObject", "metadata": {"namespace": "llm",
                                                                                       "name": "r1"}})
    assert api.calls == [("DELETE", "/apis/resource.nvidia.com/v1beta1/namespaces/llm/computedomains/r1-abc-imex"),
                         ("PATCH", "/apis/keda.sh/v1alpha1/namespaces/llm/scaledobjects/r1")]
    # What the chart does not grant is refused before any request: a PDB goes with its owner, Secrets are never
    # patched, and no PodMonitor is the operator's.
    with pytest.raises(kinds.NotGranted):
        kube.delete("policy/v1", "PodDisruptionBudget", "llm", "r1")
    with pytest.raises(kinds.NotGranted):
        kube.apply({"apiVersion": "v1", "kind": "Secret", "metadata": {"namespace": "llm", "name": "r1-abc-ssh"}})
    with pytest.raises(kinds.NotGranted):
        kube.apply({"apiVersion": "monitoring.coreos.com/v1", "kind": "PodMonitor",
                    "metadata": {"namespace": "llm", "name": "r1"}})
    assert len(api.calls) == 2


def test_a_pod_being_deleted_is_not_measured_though_still_ready() -> None:
    """A drained stable replica keeps its Ready condition until the kubelet has run its preStop: the summary keeps
    its deletionTimestamp, so the analysis does not scrape a front door that is about to stop."""
    def pod(name: str, ip: str, **meta: Any) -> dict[str, Any]:
        return pass_.summarize({"kind": "Pod", "metadata": {"name": name, "labels": {
            "serving.deepseek.ai/revision": "r1"}, **meta}, "spec": {}, "status": {
                "podIP": ip, "conditions": [{"type": "Ready", "status": "True"}]}})

    pods = (pod("a", "10.0.0.1"), pod("b", "10.0.0.2", deletionTimestamp="2026-12-06T10:00:00Z"))
    assert ready_pod_ips(pods, "r1") == ("10.0.0.1",)
