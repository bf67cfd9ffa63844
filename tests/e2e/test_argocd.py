"""Argo CD for real: its application controller and repo server (built from the argo-cd Go module) with our
health checks and actions (deploy/argocd/argocd-cm.yaml), syncing a DeepSeekDeployment from a local Git
repository. It reaches Synced/Healthy, shows Progressing while a canary runs and Degraded after an automatic
rollback, and never fights the operator: the Application stays Synced through every rollout."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_rollout import NAME, Load, canary_cr, gateway_analysis
from tests.e2e.test_serving import Resources, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
APP = "deepseek-models"
ARGOCD_CRDS = ["crd/applications.argoproj.io", "crd/applicationsets.argoproj.io", "crd/appprojects.argoproj.io"]


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", "-C", str(repo), "-c", "user.name=test", "-c", "user.email=test@example.com", *args],
                   check=True, capture_output=True)


@pytest.fixture
def argocd(testbed: TestbedClient, operator: OperatorProcess, tmp_path: Path) -> Iterator[Path]:
    state = tmp_path / "argocd"
    started = subprocess.run([str(REPO / "testbed" / "argocd" / "run"), str(state)], capture_output=True, text=True)
    try:
        assert started.returncode == 0, started.stderr
        yield state
    finally:
        subprocess.run([str(REPO / "testbed" / "argocd" / "stop"), str(state)], capture_output=True)
        cluster.kubectl("delete", "namespace", "argocd", "--ignore-not-found", "--wait=false")
        cluster.kubectl("delete", "--ignore-not-found", *ARGOCD_CRDS)


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "argo")


class Application:
    def __init__(self, testbed: TestbedClient) -> None:
        self.custom = client.CustomObjectsApi(testbed.api)

    def get(self) -> dict[str, Any]:
        return dict(self.custom.get_namespaced_custom_object("argoproj.io", "v1alpha1", "argocd", "applications",
                                                             APP))

    def states(self) -> tuple[str, str]:
        """The Application's sync and health (Argo CD 3 keeps per-resource health messages out of the CR)."""
        status = self.get().get("status") or {}
        return (status.get("sync") or {}).get("status", ""), (status.get("health") or {}).get("status", "")


def no_drift(seen: list[tuple[str, str]]) -> bool:
    """Synced from Argo CD's sync of the commit on: an OutOfSync before it is Git being ahead (the Application's
    status can trail the sync by a refresh), after it would be the operator's writes showing as drift."""
    synced = [i for i, (sync, _) in enumerate(seen) if sync == "Synced"]
    return bool(synced) and all(sync == "Synced" for sync, _ in seen[synced[0]:])


def commit(repo: Path, cr: dict[str, Any], message: str) -> None:
    (repo / "models" / f"{NAME}.yaml").write_text(yaml.safe_dump(cr, sort_keys=False))
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", message)


def test_argocd_syncs_a_model_and_tracks_its_rollouts(testbed: TestbedClient, ns: str, argocd: Path,
                                                      tmp_path: Path) -> None:
    repo = tmp_path / "models-repo"
    (repo / "models").mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    analysis = gateway_analysis(testbed)
    cr = canary_cr(ns, analysis=analysis, replicas=1, steps=[{"weight": 50}, {"pause": "20s"}])
    commit(repo, cr, "r1-canary")

    application = yaml.safe_load((REPO / "deploy" / "argocd" / "application-model.yaml").read_text())
    application["spec"]["source"] = {"repoURL": f"file://{repo}", "targetRevision": "main", "path": "models"}
    application["spec"]["destination"]["namespace"] = ns
    assert kubectl_apply([application]).returncode == 0
    app = Application(testbed)
    eventually("Synced and Healthy", lambda: app.states() == ("Synced", "Healthy") or None, timeout=180,
               interval=1)
    res = Resources(testbed, ns)
    assert res.get(NAME)["status"]["phase"] == "Healthy"

    def follow(until: str, generation: int, timeout: float) -> list[tuple[str, str]]:
        """Application states seen from Argo CD's sync of the commit until the resource reaches `until` with no
        rollout left."""
        eventually("Argo CD to apply the commit", lambda: res.get(NAME)["metadata"]["generation"] > generation,
                   timeout=90, interval=1)
        # The status read right after the sync can still be the old generation's Healthy.
        eventually("the operator to reconcile the commit",
                   lambda: (res.get(NAME).get("status") or {}).get("observedGeneration", 0) > generation,
                   timeout=60, interval=0.5)
        seen: list[tuple[str, str]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = app.states()
            if not seen or state != seen[-1]:
                seen.append(state)
            status = res.get(NAME).get("status") or {}
            if status.get("phase") == until and not status.get("canaryRevision") and state[1] != "Progressing":
                return seen
            time.sleep(0.5)
        raise AssertionError(f"not {until} after {timeout}s; Application states: {seen}")

    # A new revision from Git: Progressing while the canary walks, Healthy once promoted, Synced throughout.
    with Load(testbed.gateway, f"{ns}.llm.test"):
        cr["spec"]["serving"]["podAnnotations"] = {"testbed.deepseek.ai/latency-ms": "1"}
        generation = res.get(NAME)["metadata"]["generation"]
        commit(repo, cr, "a new revision")
        seen = follow("Healthy", generation, timeout=240)
    assert ("Synced", "Progressing") in seen, seen
    assert seen[-1] == ("Synced", "Healthy")
    assert no_drift(seen), f"Argo CD saw drift it would fight: {seen}"

    # A bad revision from Git: the operator rolls it back; Argo CD says Degraded, with the operator's reason,
    # and stays Synced (Git still names the bad revision; the operator holds it, and nobody undoes anybody).
    with Load(testbed.gateway, f"{ns}.llm.test"):
        cr["spec"]["serving"]["podAnnotations"] = {"testbed.deepseek.ai/error-rate": "0.3"}
        generation = res.get(NAME)["metadata"]["generation"]
        commit(repo, cr, "a bad revision")
        seen = follow("RolledBack", generation, timeout=240)
    eventually("Degraded", lambda: app.states() == ("Synced", "Degraded"), timeout=60)
    degraded = next(c for c in res.get(NAME)["status"]["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AnalysisFailed"
    assert no_drift(seen), f"Argo CD saw drift it would fight: {seen}"
    # Another comparison with Git: still no sync operation against the operator.
    compared = app.get()["status"].get("reconciledAt")
    eventually("Argo CD to compare with Git again", lambda: app.get()["status"].get("reconciledAt") != compared,
               timeout=60)
    assert app.states()[0] == "Synced"
    history = app.get()["status"].get("history") or []
    assert len(history) == 3  # one sync per commit, none to undo the operator's doing
