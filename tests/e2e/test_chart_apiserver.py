"""The Helm chart against the testbed's real API server: everything it renders is accepted (server-side dry
run), and its RBAC grants the operator what it needs and, in namespaced mode, nothing elsewhere."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually

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
                           ("watch", "jobs.batch"), ("create", "secrets"), ("delete", "secrets"),
                           ("patch", "networkpolicies.networking.k8s.io")]:
        assert can(verb, resource, watched), f"{verb} {resource} in {watched}"
        assert not can(verb, resource, other), f"{verb} {resource} in {other}"
    assert not can("patch", "deployments.apps", None)

    def can_read_namespace(namespace: str) -> bool:  # its Pod Security label
        answer = kubectl("auth", "can-i", "get", f"namespaces/{namespace}", "--as", account, "-n", namespace)
        return answer.stdout.strip() == "yes"

    assert can_read_namespace(watched) and not can_read_namespace(other)
    assert not can("update", "deepseekdeployments.serving.deepseek.ai", watched)  # never writes spec
    # It reads no Secret at all: the SSH keys it makes are created (AlreadyExists: there), never read back, and
    # metric credentials are files the kubelet mounts into its pod.
    for verb in ("get", "list", "watch", "patch", "update"):
        assert not can(verb, "secrets", watched), f"{verb} secrets"


def test_namespace_editors_and_viewers_get_deepseekdeployments_through_the_default_roles(
        namespaces: list[str]) -> None:
    home, team, _ = namespaces
    rendered = helm_template(home, "crds.install=false")
    assert kubectl("apply", "--server-side", "-f", "-", stdin=rendered).returncode == 0
    # A department's namespace: one person edits, another only looks, through Kubernetes' own roles.
    for user, role in (("editor", "edit"), ("viewer", "view")):
        assert kubectl("create", "rolebinding", f"{user}-{role}", f"--clusterrole={role}", f"--user={user}",
                       "-n", team).returncode == 0

    def can(user: str, verb: str, resource: str = "deepseekdeployments.serving.deepseek.ai", *extra: str) -> bool:
        return kubectl("auth", "can-i", verb, resource, *extra, "--as", user, "-n", team).stdout.strip() == "yes"

    # The controller manager aggregates the chart's roles into edit/view: eventually, not at once.
    eventually("edit to include DeepSeekDeployments", lambda: can("editor", "create"), timeout=30)
    for verb in ("get", "list", "watch", "create", "patch", "delete"):
        assert can("editor", verb), f"an editor may {verb}"
    for verb in ("get", "list", "watch"):
        assert can("viewer", verb), f"a viewer may {verb}"
    for verb in ("create", "patch", "delete"):
        assert not can("viewer", verb), f"a viewer may not {verb}"
    assert not can("viewer", "get", "secrets")  # view never reads Secrets, ours included
    # Status is the operator's: an editor changes spec and annotations (rollout actions), never status.
    assert not can("editor", "patch", "deepseekdeployments.serving.deepseek.ai", "--subresource=status")
