"""The chart installed for real: `helm install` on the testbed runs the operator as a pod (the pod runner starts
`python -m deepseek_operator` for the operator's image, authenticated with a token bound to that pod's service
account), so the chart's RBAC is exactly what the operator has. Upgrade, a value the schema rejects, uninstall,
and the Grafana dashboard's queries answered by the testbed's Prometheus from what that pod exports."""

from __future__ import annotations

import json
import re
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from testbed import checkpoints, cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess, install_crd
from tests.e2e.test_rollout import NAME, Load, canary_cr, gateway_analysis, serve_first_revision, watch
from tests.e2e.test_serving import Resources, _docs, kubectl_apply

pytestmark = pytest.mark.e2e
REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "deepseek-operator"
DASHBOARD = CHART / "dashboards" / "deepseek.json"
RELEASE = "dso"
# Panels whose series the testbed cannot produce, and why. The p99 gate reads Triton's latency histogram
# (--metrics-config histogram_latencies=true), which the tritonserver nvidia-pytriton bundles does not export for
# the stand-in's (non-decoupled) models: no p99 is ever measured here, so the operator never sets that gauge.
# The testbed's Triton build has no first-response histogram (newer Triton releases export it).
NO_DATA_ON_TESTBED = {"Analysis p99 latency", "Time to first response (Triton)"}
CRD = "customresourcedefinition/deepseekdeployments.serving.deepseek.ai"


def metric_sources() -> list[str]:
    """The chart's metricSources: the testbed's Traefik metrics, which the operator's pod reaches on the bridge
    (the testbed's Prometheus listens on loopback, out of a pod's reach)."""
    state = cluster.State.load()
    assert state is not None
    gateway = [s for s in cluster.metric_sources(state) if s["provider"] == "gateway"]
    return ["--set-json", f"metricSources={json.dumps(gateway)}"]


def helm(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(cluster.BIN / "helm"), f"--kubeconfig={cluster.KUBECONFIG}", *args],
                          capture_output=True, text=True, timeout=300)


def operator_pods(testbed: TestbedClient, namespace: str) -> list[Any]:
    return list(testbed.core.list_namespaced_pod(
        namespace, label_selector=f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/name=deepseek-operator"
    ).items)


@pytest.fixture
def release(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[list[str]]:
    """Three namespaces (the release's, one to watch, another); the session's operator process stopped, so the
    release's pod is the only operator; everything put back afterwards."""
    names = [testbed.namespace(prefix) for prefix in ("helm", "watched", "other")]
    operator.stop()
    # Let the release adopt the CRD the session installed (Helm's adoption labels), as an upgrade from a
    # hand-applied CRD to the chart would.
    cluster.kubectl("label", "--overwrite", CRD, "app.kubernetes.io/managed-by=Helm")
    cluster.kubectl("annotate", "--overwrite", CRD, f"meta.helm.sh/release-name={RELEASE}",
                    f"meta.helm.sh/release-namespace={names[0]}")
    try:
        yield names
    finally:
        helm("uninstall", RELEASE, "-n", names[0], "--wait", "--timeout=60s")
        for name in names:
            testbed.delete_namespace(name)
        cluster.kubectl("delete", "clusterrole,clusterrolebinding", "-l", f"app.kubernetes.io/instance={RELEASE}",
                        "--ignore-not-found")
        install_crd()
        operator.start()


def _revision(namespace: str) -> int:
    listed = json.loads(helm("list", "-n", namespace, "-o", "json").stdout)
    return int(next(r for r in listed if r["name"] == RELEASE)["revision"])


def _dashboard_queries(namespace: str, name: str) -> list[tuple[str, str]]:
    """Every panel query with Grafana's variables as a user on this deployment would have them."""
    out = []
    for panel in json.loads(DASHBOARD.read_text())["panels"]:
        for target in panel.get("targets", []):
            expr = (target["expr"].replace("$namespace", namespace).replace("$deployment", name)
                    .replace("$model", "tensorrt_llm").replace("$__rate_interval", "1m").replace("$__range", "10m"))
            out.append((panel["title"], expr))
    return out


def test_helm_install_upgrade_uninstall_with_the_operator_in_a_pod(testbed: TestbedClient,
                                                                    release: list[str]) -> None:
    home, watched, other = release
    for ns in (watched, other):
        assert kubectl_apply(_docs("model-store.yaml", ns)).returncode == 0
        checkpoints.seed(ns, api=testbed.api)

    # A value the schema rejects never reaches the cluster, and says which value and why.
    bad = helm("install", RELEASE, str(CHART), "-n", home, "--set", "replicas=-1")
    assert bad.returncode != 0 and "replicas" in bad.stderr and "minimum" in bad.stderr.lower()

    # Namespaced: the operator's pod runs under its own service account, with rights in `watched` only.
    installed = helm("install", RELEASE, str(CHART), "-n", home, "--wait", "--timeout=180s",
                     "--set", "rbac.scope=namespaced", "--set", f"rbac.namespaces={{{watched}}}", *metric_sources())
    assert installed.returncode == 0, installed.stderr
    assert "kubectl get dsd -w" in installed.stdout  # NOTES.txt tells the next step
    [pod] = operator_pods(testbed, home)
    assert pod.spec.service_account_name == f"{RELEASE}-deepseek-operator"
    assert any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions)
    res_watched, res_other = Resources(testbed, watched), Resources(testbed, other)
    for ns in (watched, other):
        assert kubectl_apply(_docs("r1-distill-qwen-7b-a100.yaml", ns)).returncode == 0
    res_watched.wait_phase("r1-qwen-7b", "Healthy", timeout=180)
    time.sleep(5)
    assert not res_other.get("r1-qwen-7b").get("status"), "a namespaced operator touched another namespace"
    assert not res_other.apps.list_namespaced_deployment(other).items

    # Upgrade to cluster scope: a new pod, and the other namespace's resource is served too.
    upgraded = helm("upgrade", RELEASE, str(CHART), "-n", home, "--wait", "--timeout=180s",
                    "--set", "rbac.scope=cluster", *metric_sources())
    assert upgraded.returncode == 0, upgraded.stderr
    assert _revision(home) == 2
    eventually("the upgraded operator pod", lambda: [p for p in operator_pods(testbed, home)
                                                      if p.metadata.uid != pod.metadata.uid and p.status.phase
                                                      == "Running"] or None, timeout=60)
    res_other.wait_phase("r1-qwen-7b", "Healthy", timeout=180)
    rejected = helm("upgrade", RELEASE, str(CHART), "-n", home, "--set", "rbac.scope=everywhere")
    assert rejected.returncode != 0 and "/rbac/scope" in rejected.stderr and _revision(home) == 2

    # A canary that fails its analysis, rolled back by the operator in the pod; then every query of the
    # dashboard has an answer from what the testbed's Prometheus scraped (Triton's pods and the operator's).
    analysis = gateway_analysis(testbed)
    res = Resources(testbed, watched)
    serve_first_revision(res, canary_cr(watched, analysis=analysis, steps=[{"weight": 50}, {"pause": "60s"}]),
                         testbed)
    with Load(testbed.gateway, f"{watched}.llm.test"):
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3"}}})
        watch(res, "RolledBack", timeout=150)
        time.sleep(6)  # a few scrapes of the stable's answers after the rollback

    def answered(expr: str) -> list[dict[str, Any]] | None:
        r = requests.get(f"{testbed.prometheus}/api/v1/query", params={"query": expr}, timeout=10)
        assert r.status_code == 200, f"{expr}: {r.text}"
        return r.json()["data"]["result"] or None

    for title, expr in _dashboard_queries(watched, NAME):
        if title in NO_DATA_ON_TESTBED:
            answered(expr)  # still a query Prometheus accepts
            continue
        eventually(f"panel {title!r} to have data: {expr}", lambda e=expr: answered(e), timeout=30, interval=2)
    rollbacks = answered(dict(_dashboard_queries(watched, NAME))["Rollbacks"])
    assert rollbacks and float(rollbacks[0]["value"][1]) >= 1
    # The operator's series come from its pod, scraped like the chart's ServiceMonitor would.
    weight = answered(f'deepseek_operator_canary_weight{{namespace="{watched}"}}')
    assert weight and re.match(rf"{RELEASE}-deepseek-operator-", weight[0]["metric"]["pod"])

    # Uninstall: the operator goes; the CRD (kept by policy) and the resources stay.
    assert helm("uninstall", RELEASE, "-n", home, "--wait", "--timeout=60s").returncode == 0
    eventually("the operator pod to go", lambda: not operator_pods(testbed, home), timeout=60)
    assert cluster.kubectl("get", CRD, "-o", "name").strip() == CRD.replace("customresourcedefinition", \
        "customresourcedefinition.apiextensions.k8s.io")
    assert res_watched.get("r1-qwen-7b")["status"]["phase"] == "Healthy"
