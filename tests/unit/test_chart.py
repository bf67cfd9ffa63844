"""The Helm chart charts/deepseek-operator: lint, what it renders per mode, its values schema, and its CRD.

Rendering uses the helm binary the testbed builds (testbed/build helm) and is skipped, saying so, until it
exists. The CRD drift and schema checks need no helm.
"""

from __future__ import annotations

import json
import os
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from deepseek_operator.api import images
from deepseek_operator.api.sources import parse_sources
from deepseek_operator.k8s import kinds

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "charts" / "deepseek-operator"
SOURCE_CRD = ROOT / "crds" / "serving.deepseek.ai_deepseekdeployments.yaml"
CHART_CRD = CHART / "templates" / "crds" / "deepseekdeployments.yaml"
HELM = Path(os.environ.get("DEEPSEEK_TESTBED_CACHE", Path.home() / ".cache" / "deepseek-operator")) / "bin" / "helm"
SYNC = "charts/deepseek-operator/sync-crds.sh"
RELEASE, NAMESPACE = "dso", "deepseek-system"
FULLNAME = f"{RELEASE}-deepseek-operator"
READ = {"get", "list", "watch"}

needs_helm = pytest.mark.skipif(not HELM.exists(), reason=f"helm not built yet at {HELM} (testbed/build helm)")


def helm(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([str(HELM), *args], capture_output=True, text=True, timeout=120, check=False)
    if check and result.returncode != 0:
        raise AssertionError(f"helm {' '.join(args)} failed:\n{result.stdout}\n{result.stderr}")
    return result


def render(*sets: str, values: dict[str, Any] | None = None, include_crds: bool = False,
           tmp_path: Path | None = None) -> list[dict[str, Any]]:
    args = ["template", RELEASE, str(CHART), "--namespace", NAMESPACE]
    for s in sets:
        args += ["--set", s]
    if values is not None:
        assert tmp_path is not None
        f = tmp_path / "values.yaml"
        f.write_text(yaml.safe_dump(values))
        args += ["-f", str(f)]
    if include_crds:
        args.append("--include-crds")
    return [d for d in yaml.safe_load_all(helm(*args).stdout) if d]


def kinds_of(docs: list[dict[str, Any]]) -> list[str]:
    return sorted(d["kind"] for d in docs)


def one(docs: list[dict[str, Any]], kind: str, name: str | None = None) -> dict[str, Any]:
    found = [d for d in docs if d["kind"] == kind and (name is None or d["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, got {len(found)}"
    return found[0]


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    c: dict[str, Any] = one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]
    return c


def operator_rules(docs: list[dict[str, Any]]) -> dict[tuple[str, str], list[dict[str, Any]]]:
    """Rules granted to the operator's ServiceAccount, by (kind of role, namespace or '*')."""
    roles = {(d["kind"], d["metadata"].get("namespace", "*"), d["metadata"]["name"]): d["rules"]
             for d in docs if d["kind"] in ("Role", "ClusterRole")}
    granted: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for b in docs:
        if b["kind"] not in ("RoleBinding", "ClusterRoleBinding"):
            continue
        if not any(s["kind"] == "ServiceAccount" and s["name"] == FULLNAME for s in b["subjects"]):
            continue
        ref = b["roleRef"]
        scope = b["metadata"].get("namespace", "*") if ref["kind"] == "Role" else "*"
        key = (ref["kind"], scope if ref["kind"] == "Role" else "*", ref["name"])
        rules = roles[key]
        where = b["metadata"].get("namespace", "*")  # a ClusterRole bound by a RoleBinding applies there only
        granted.setdefault(("Role" if b["kind"] == "RoleBinding" else "ClusterRole", where), []).extend(rules)
    return granted


def verbs_on(rules: list[dict[str, Any]], group: str, resource: str) -> set[str]:
    return {v for r in rules if group in r["apiGroups"] and resource in r["resources"] for v in r["verbs"]}


# ---------------------------------------------------------------- no helm needed


def crd_from_template(text: str) -> dict[str, Any]:
    """The chart's CRD template with its template-only lines dropped (the spec has no template syntax)."""
    kept = [line for line in text.splitlines() if not line.strip().startswith("{{")]
    crd: dict[str, Any] = yaml.safe_load("\n".join(kept))
    return crd


def test_chart_crd_matches_the_generated_crd() -> None:
    source = yaml.safe_load(SOURCE_CRD.read_text())
    chart = crd_from_template(CHART_CRD.read_text())
    assert chart["metadata"]["name"] == source["metadata"]["name"], f"out of sync: run {SYNC}"
    assert chart["spec"] == source["spec"], f"the chart's CRD differs from {SOURCE_CRD.name}: run {SYNC}"
    assert "{{ include" not in CHART_CRD.read_text().split("\nspec:\n", 1)[1], "template syntax inside spec"


def test_sync_script_reproduces_the_chart_crd(tmp_path: Path) -> None:
    # Run the sync script on a copy of the chart and compare its output with the committed template.
    chart = tmp_path / "charts" / "deepseek-operator"
    (chart / "templates" / "crds").mkdir(parents=True)
    (tmp_path / "crds").mkdir()
    (tmp_path / "crds" / SOURCE_CRD.name).write_text(SOURCE_CRD.read_text())
    (chart / "sync-crds.sh").write_text((CHART / "sync-crds.sh").read_text())
    subprocess.run(["bash", str(chart / "sync-crds.sh")], check=True, capture_output=True, timeout=30)
    produced = (chart / "templates" / "crds" / "deepseekdeployments.yaml").read_text()
    assert produced == CHART_CRD.read_text(), f"templates/crds/deepseekdeployments.yaml is stale: run {SYNC}"


def test_values_schema_is_draft7_and_accepts_the_defaults() -> None:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema checks the schema without helm")
    schema = json.loads((CHART / "values.schema.json").read_text())
    assert schema["$schema"] == "http://json-schema.org/draft-07/schema#"
    jsonschema.Draft7Validator.check_schema(schema)
    jsonschema.Draft7Validator(schema).validate(yaml.safe_load((CHART / "values.yaml").read_text()))
    assert schema["additionalProperties"] is False


def test_chart_metadata() -> None:
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    assert chart["apiVersion"] == "v2" and chart["name"] == "deepseek-operator"
    # One version for the package, the chart's appVersion and every image tag the CRD's defaults name.
    package = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert chart["appVersion"] == package == images.TAG
    assert (CHART / "dashboards" / "deepseek.json").exists()


def test_the_charts_operator_rules_are_generated_from_the_operators_table() -> None:
    rules = CHART / "templates" / "_operator-rules.tpl"
    assert rules.read_text() == kinds.rules_template(), \
        f"stale: run .venv/bin/python -m deepseek_operator.k8s.kinds > {rules.relative_to(ROOT)}"


# ---------------------------------------------------------------- helm


@needs_helm
def test_lint_is_clean() -> None:
    for sets in ([], ["replicas=2", "rbac.scope=namespaced", "rbac.namespaces={llm,llm-canary}",
                      "metrics.serviceMonitor.enabled=true", "grafana.dashboard.enabled=true"]):
        args = ["lint", str(CHART), "--strict", *[a for s in sets for a in ("--set", s)]]
        result = helm(*args)
        assert "[ERROR]" not in result.stdout and "[WARNING]" not in result.stdout, result.stdout
        assert "0 chart(s) failed" in result.stdout


@needs_helm
def test_default_render() -> None:
    docs = render()
    assert kinds_of(docs) == sorted(["ServiceAccount", "CustomResourceDefinition", "ClusterRole", "ClusterRole",
                                  "ClusterRole", "ClusterRoleBinding", "Service", "Deployment", "ConfigMap"])
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 1
    assert deployment["spec"]["strategy"]["type"] == "Recreate"
    pod = deployment["spec"]["template"]["spec"]
    assert pod["serviceAccountName"] == FULLNAME
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault"
    c = container(docs)
    assert c["image"] == images.reference("operator") and c["imagePullPolicy"] == "IfNotPresent"
    assert c["args"] == ["--liveness=http://0.0.0.0:8080/healthz", "--metrics-port=9090",
                         "--metric-sources=/etc/deepseek-operator/metric-sources.yaml",
                         f"--operator-namespace={NAMESPACE}"]
    assert c["securityContext"]["readOnlyRootFilesystem"] is True
    assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]
    assert c["securityContext"]["allowPrivilegeEscalation"] is False
    assert {p["name"]: p["containerPort"] for p in c["ports"]} == {"healthz": 8080, "metrics": 9090}
    assert c["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "healthz"}
    assert c["resources"]["requests"] and c["resources"]["limits"]
    service = one(docs, "Service")
    assert service["spec"]["ports"][0]["targetPort"] == "metrics"
    assert service["spec"]["selector"] == deployment["spec"]["selector"]["matchLabels"]
    for d in docs:
        assert d["metadata"]["labels"]["app.kubernetes.io/instance"] == RELEASE
        if d["kind"] not in ("CustomResourceDefinition", "ClusterRole", "ClusterRoleBinding"):
            assert d["metadata"]["namespace"] == NAMESPACE


def granted_by_resource(rules: list[dict[str, Any]]) -> dict[tuple[str, str], set[str]]:
    out: dict[tuple[str, str], set[str]] = {}
    for r in rules:
        for group in r["apiGroups"]:
            for resource in r["resources"]:
                out.setdefault((group, resource), set()).update(r["verbs"])
    return out


# What kopf itself reads cluster-wide (rbac.yaml): CRDs, to notice APIs installed after start-up.
KOPF_DISCOVERY = {("apiextensions.k8s.io", "customresourcedefinitions"): {"list", "watch"}}
# What the operator does, by (API group, resource): its table, k8s/kinds.py.
OPERATOR = {(r.group, r.plural): set(r.verbs) for r in kinds.RESOURCES}


@needs_helm
def test_cluster_scope_grants_what_the_operator_does_and_nothing_else() -> None:
    granted = operator_rules(render())
    assert set(granted) == {("ClusterRole", "*")}
    rules = granted[("ClusterRole", "*")]
    assert granted_by_resource(rules) == OPERATOR | KOPF_DISCOVERY
    # What that means, for the rights a reviewer looks for first:
    assert verbs_on(rules, "", "secrets") == {"create", "delete"}  # its own SSH keys; it reads no Secret
    assert verbs_on(rules, "", "pods") == {"list", "watch"}
    assert verbs_on(rules, "", "events") == {"create", "list", "watch"}  # its own; the kubelet's Warnings read
    assert verbs_on(rules, "serving.deepseek.ai", "deepseekdeployments") == {"list", "watch"}
    assert verbs_on(rules, "serving.deepseek.ai", "deepseekdeployments/status") == {"patch"}
    assert not verbs_on(rules, "monitoring.coreos.com", "podmonitors"), "the operator makes no PodMonitor"
    assert not [r for r in rules if "update" in r["verbs"]], "server-side apply never updates"
    assert not verbs_on(rules, "kopf.dev", "clusterkopfpeerings"), "peering rights only with replicas > 1"
    assert all("*" not in r["verbs"] and "*" not in r["resources"] for r in rules)


@needs_helm
def test_metric_sources_reach_the_operator_as_a_file_and_their_credentials_as_mounted_secrets(
        tmp_path: Path) -> None:
    docs = render(values={"metricSources": [
        {"name": "cluster-prometheus", "provider": "prometheus", "address": "https://prometheus.monitoring:9090",
         "bearerTokenSecret": {"name": "prometheus-reader", "key": "token"},
         "caSecret": {"name": "prometheus-ca", "key": "ca.crt"}},
        {"name": "traefik", "provider": "gateway", "address": "http://traefik-metrics.traefik:9100/metrics"}]},
        tmp_path=tmp_path)
    sources = parse_sources(one(docs, "ConfigMap", f"{FULLNAME}-metric-sources")["data"]["metric-sources.yaml"])
    assert sorted(sources) == ["cluster-prometheus", "traefik"]
    prom = sources["cluster-prometheus"]
    assert (prom.bearer_token_file, prom.ca_file) == ("/etc/deepseek-operator/credentials/cluster-prometheus/token",
                                                      "/etc/deepseek-operator/credentials/cluster-prometheus/ca.crt")
    pod = one(docs, "Deployment")["spec"]["template"]["spec"]
    [projected] = [v["projected"] for v in pod["volumes"] if v["name"] == "metric-credentials"]
    assert [(s["secret"]["name"], s["secret"]["items"]) for s in projected["sources"]] == [
        ("prometheus-reader", [{"key": "token", "path": "cluster-prometheus/token"}]),
        ("prometheus-ca", [{"key": "ca.crt", "path": "cluster-prometheus/ca.crt"}])]
    mounts = {m["name"]: m["mountPath"] for m in container(docs)["volumeMounts"]}
    assert mounts["metric-credentials"] == "/etc/deepseek-operator/credentials"
    # The kubelet reads those Secrets for the pod; the operator itself still may not.
    assert verbs_on(operator_rules(docs)[("ClusterRole", "*")], "", "secrets") == {"create", "delete"}
    bad = helm("template", RELEASE, str(CHART), "--set-json",
               'metricSources=[{"name": "x", "provider": "prometheus", "address": "file:///etc/passwd"}]', check=False)
    assert bad.returncode != 0 and "address" in bad.stderr


@needs_helm
def test_namespaced_scope(tmp_path: Path) -> None:
    docs = render(values={"rbac": {"scope": "namespaced", "namespaces": ["llm", "llm-canary"]}}, tmp_path=tmp_path)
    roles = [d for d in docs if d["kind"] in ("Role", "RoleBinding")]
    assert sorted((d["kind"], d["metadata"]["namespace"]) for d in roles) == [
        ("Role", "llm"), ("Role", "llm-canary"), ("RoleBinding", "llm"), ("RoleBinding", "llm-canary")]
    assert "--namespace=llm" in container(docs)["args"] and "--namespace=llm-canary" in container(docs)["args"]
    granted = operator_rules(docs)
    assert set(granted) == {("Role", "llm"), ("Role", "llm-canary"), ("ClusterRole", "*")}
    cluster_wide = granted[("ClusterRole", "*")]
    assert all(set(r["verbs"]) <= READ for r in cluster_wide), f"cluster-wide writes: {cluster_wide}"
    assert {res for r in cluster_wide for res in r["resources"]} == {"customresourcedefinitions", "namespaces"}
    for ns in ("llm", "llm-canary"):
        assert granted_by_resource(granted[("Role", ns)]) == OPERATOR
    # The aggregated edit role is for people: it exists but is not bound to the operator.
    edit = one(docs, "ClusterRole", f"{FULLNAME}-edit")
    assert edit["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"] == "true"


@needs_helm
def test_ha_turns_on_peering(tmp_path: Path) -> None:
    docs = render("replicas=2")
    assert one(docs, "Deployment")["spec"]["replicas"] == 2
    assert f"--peering={FULLNAME}" in container(docs)["args"]
    assert one(docs, "Deployment")["spec"]["strategy"]["type"] == "RollingUpdate"
    assert one(docs, "ClusterKopfPeering")["metadata"]["name"] == FULLNAME
    rules = operator_rules(docs)[("ClusterRole", "*")]
    assert {"get", "patch", "list", "watch"} == verbs_on(rules, "kopf.dev", "clusterkopfpeerings")
    assert "--peering" not in " ".join(container(render("replicas=1"))["args"])

    docs = render(values={"replicas": 3, "peering": {"name": "llm-ops"},
                          "rbac": {"scope": "namespaced", "namespaces": ["a", "b"]}}, tmp_path=tmp_path)
    assert "--peering=llm-ops" in container(docs)["args"]
    assert sorted(d["metadata"]["namespace"] for d in docs if d["kind"] == "KopfPeering") == ["a", "b"]
    assert not [d for d in docs if d["kind"] == "ClusterKopfPeering"]
    for ns in ("a", "b"):
        assert verbs_on(operator_rules(docs)[("Role", ns)], "kopf.dev", "kopfpeerings") == {
            "get", "patch", "list", "watch"}
    # The peering CRDs ship in the chart's crds/ folder (installed before the templates).
    crds = [d["metadata"]["name"] for d in render("replicas=2", include_crds=True)
            if d["kind"] == "CustomResourceDefinition"]
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= set(crds)


@needs_helm
def test_crd_install_and_annotations() -> None:
    crd = one(render(), "CustomResourceDefinition")
    assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep",
                                              "argocd.argoproj.io/sync-options": "ServerSideApply=true"}
    assert crd["spec"] == yaml.safe_load(SOURCE_CRD.read_text())["spec"], f"out of sync: run {SYNC}"
    names = crd["spec"]["names"]
    assert (crd["spec"]["group"], names["kind"], names["plural"], names["shortNames"]) == (
        "serving.deepseek.ai", "DeepSeekDeployment", "deepseekdeployments", ["dsd"])
    version = crd["spec"]["versions"][0]
    assert version["name"] == "v1alpha1" and version["subresources"] == {"status": {}, "scale": {
        "specReplicasPath": ".spec.serving.replicas", "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector"}}
    assert "CustomResourceDefinition" not in kinds_of(render("crds.install=false"))
    assert "annotations" not in one(render("crds.keep=false"), "CustomResourceDefinition")["metadata"] or \
        "helm.sh/resource-policy" not in one(render("crds.keep=false"), "CustomResourceDefinition")["metadata"][
            "annotations"]


@needs_helm
def test_optional_monitoring() -> None:
    docs = render("metrics.serviceMonitor.enabled=true", "metrics.serviceMonitor.labels.release=prom",
                  "grafana.dashboard.enabled=true", "grafana.dashboard.namespace=monitoring")
    monitor = one(docs, "ServiceMonitor")
    assert monitor["metadata"]["labels"]["release"] == "prom"
    assert monitor["spec"]["endpoints"][0]["port"] == "metrics"
    assert monitor["spec"]["endpoints"][0]["honorLabels"] is True
    assert monitor["spec"]["selector"]["matchLabels"] == one(docs, "Service")["spec"]["selector"]
    dashboard = one(docs, "ConfigMap", f"{FULLNAME}-dashboard")
    assert dashboard["metadata"]["namespace"] == "monitoring"
    assert dashboard["metadata"]["labels"]["grafana_dashboard"] == "1"
    assert json.loads(dashboard["data"]["deepseek-operator.json"]) == json.loads(
        (CHART / "dashboards" / "deepseek.json").read_text())
    assert "ServiceMonitor" not in kinds_of(render())
    metrics_off = render("metrics.enabled=false")
    assert "Service" not in kinds_of(metrics_off)
    assert "--metrics-port=0" in container(metrics_off)["args"]


@needs_helm
def test_image_options() -> None:
    c = container(render("image.repository=reg.example/dso", "image.tag=1.2.3", "image.pullPolicy=Always"))
    assert (c["image"], c["imagePullPolicy"]) == ("reg.example/dso:1.2.3", "Always")
    digest = "sha256:" + "a" * 64
    assert container(render(f"image.digest={digest}"))["image"] == f"{images.REGISTRY}/deepseek-operator@{digest}"


@pytest.mark.parametrize(("sets", "message"), [
    (["replicas=0"], "at '/replicas': minimum: got 0, want 1"),
    (["rbac.scope=galaxy"], "at '/rbac/scope': value must be one of 'cluster', 'namespaced'"),
    (["galaxy=1"], "additional properties 'galaxy' not allowed"),
    (["image.pullPolicy=Sometimes"], "at '/image/pullPolicy': value must be one of 'Always', 'IfNotPresent', 'Never'"),
    (["rbac.scope=namespaced"], "at '/rbac/namespaces': minItems: got 0, want 1"),
    (["rbac.namespaces={llm}"], "at '/rbac/namespaces'"),  # namespaces without scope=namespaced
    (["metrics.serviceMonitor.interval=often"], "at '/metrics/serviceMonitor/interval'"),
])
@needs_helm
def test_bad_values_are_rejected_readably(sets: list[str], message: str) -> None:
    result = helm("template", RELEASE, str(CHART), *[a for s in sets for a in ("--set", s)], check=False)
    assert result.returncode != 0, f"{sets} was accepted"
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr, result.stderr
