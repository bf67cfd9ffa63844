"""The Helm chart against the testbed's real API server: everything it renders is accepted (server-side dry
run), and its RBAC grants the operator what it needs and, in namespaced mode, nothing elsewhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testbed import cluster
from tests.e2e.kube import TestbedClient

pytestmark = pytest.mark.e2e
CHART = Path(__file__).resolve().parents[2] / "charts" / "deepseek-operator"
RELEASE = "dso"


def helm_template(namespace: str, *values: str) -> str:
    sets = [arg for v in values for arg in ("--set", v)]
    return subprocess.run([str(cluster.BIN / "helm"), "template", RELEASE, str(CHART), "-n", namespace,
                           "--include-crds", *sets], capture_output=True, text=True, check=True).stdout


def kubectl(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.BIN / "kubectl"), f"--kubeconfig={cluster.KUBECONFIG}", *args],
                          input=stdin, capture_output=True, text=True)


@pytest.fixture
def namespaces(testbed: TestbedClient) -> Iterator[list[str]]:
    names = [testbed.namespace("chart") for _ in range(3)]
    yield names
    for name in names:
        testbed.delete_namespace(name)
    kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={RELEASE}",
            "--ignore-not-found")


@pytest.mark.parametrize("values", [
    (),
    ("replicas=2",),  # HA: kopf peering objects and their CRDs
    ("rbac.scope=namespaced", "metrics.enabled=false", "livenessProbe.enabled=false"),
], ids=["default", "ha", "namespaced, no metrics"])
def test_everything_the_chart_renders_is_accepted_by_the_api_server(namespaces: list[str],
                                                                     values: tuple[str, ...]) -> None:
    home, watched, _ = namespaces
    extra = (f"rbac.namespaces={{{watched}}}",) if "rbac.scope=namespaced" in values else ()
    docs = [d for d in yaml.safe_load_all(helm_template(home, *values, *extra)) if d]
    # CRDs first for real (a dry run cannot validate objects of kinds that do not exist yet), then the rest.
    crds = [d for d in docs if d["kind"] == "CustomResourceDefinition"]
    assert kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
                   stdin=yaml.safe_dump_all(crds)).returncode == 0
    for crd in crds:
        kubectl("wait", "--for=condition=Established", f"crd/{crd['metadata']['name']}", "--timeout=30s")
    rest = [d for d in docs if d["kind"] != "CustomResourceDefinition"]
    applied = kubectl("apply", "--server-side", "--dry-run=server", "-f", "-",
                      stdin=yaml.safe_dump_all(rest))
    assert applied.returncode == 0, applied.stderr
    assert {d["kind"] for d in rest} >= {"Deployment", "ServiceAccount"}


def test_namespaced_rbac_reaches_the_watched_namespace_only(namespaces: list[str]) -> None:
    home, watched, other = namespaces
    rendered = helm_template(home, "rbac.scope=namespaced", f"rbac.namespaces={{{watched}}}", "crds.install=false")
    applied = kubectl("apply", "--server-side", "-f", "-", stdin=rendered)
    assert applied.returncode == 0, applied.stderr
    account = f"system:serviceaccount:{home}:{RELEASE}-deepseek-operator"

    def can(verb: str, resource: str, namespace: str | None) -> bool:
        scope = ["-n", namespace] if namespace else ["--all-namespaces"]
        resource, _, sub = resource.partition("/")
        subresource = [f"--subresource={sub}"] if sub else []
        answer = kubectl("auth", "can-i", verb, resource, *subresource, "--as", account, *scope).stdout
        return answer.strip() == "yes"

    for verb, resource in [("patch", "deployments.apps"), ("create", "configmaps"), ("delete", "services"),
                           ("patch", "deepseekdeployments.serving.deepseek.ai/status"),
                           ("watch", "deepseekdeployments.serving.deepseek.ai"), ("create", "events"),
                           ("patch", "httproutes.gateway.networking.k8s.io"), ("list", "pods"),
                           ("patch", "statefulsets.apps"),
                           ("watch", "jobs.batch"), ("create", "secrets"), ("get", "secrets")]:
        assert can(verb, resource, watched), f"{verb} {resource} in {watched}"
        assert not can(verb, resource, other), f"{verb} {resource} in {other}"
    assert not can("patch", "deployments.apps", None)
    assert not can("update", "deepseekdeployments.serving.deepseek.ai", watched)  # never writes spec
    assert not can("list", "secrets", watched)  # the SSH keys it makes are fetched by name, never listed
