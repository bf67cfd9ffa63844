"""The Grafana dashboard shipped by the chart: valid JSON, sound PromQL, and only metrics that really exist."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "charts" / "deepseek-operator" / "dashboards" / "deepseek.json"

# Every metric the dashboard may use, with where it comes from.
EXPORTED = {
    # Triton's per-model counters on the serving pods' :8002/metrics (labels model, version). Checked against the
    # names in the tritonserver library that nvidia-pytriton bundles (what the testbed's pods run); Triton exports
    # latency only as cumulative microsecond counters, no histogram.
    "nv_inference_request_success",
    "nv_inference_request_failure",
    "nv_inference_count",
    "nv_inference_request_duration_us",
    "nv_inference_queue_duration_us",
    "nv_inference_pending_request_count",  # a gauge
    # A histogram of newer Triton builds, exported with --metrics-config=histogram_latencies=true (the serving
    # command sets it): not in the testbed's build, so test_helm.py lists its panel as having no data there.
    "nv_inference_first_response_histogram_ms",
    # The serving pods' frontend's registry on their --metrics-port (8003) /metrics,
    # operator/deepseek_operator/frontend/metrics.py (checked below against a live registry); labels model,
    # revision, api, mirrored (and code / reason), plus the same pod labels as Triton's.
    "deepseek_frontend_requests_total",  # code
    "deepseek_frontend_request_failures_total",  # reason: http_4xx, http_5xx, error_in_200
    "deepseek_frontend_request_duration_seconds",  # histograms
    "deepseek_frontend_time_to_first_token_seconds",
    "deepseek_frontend_inter_token_latency_seconds",
    "deepseek_frontend_prompt_tokens_total",
    "deepseek_frontend_output_tokens_total",
    "deepseek_frontend_requests_in_flight",  # gauges
    "deepseek_frontend_requests_waiting_first_token",
    "nv_trt_llm_request_metrics",  # request_type waiting | scheduled: the inference extension's names for Triton
    # Prometheus' own per-target series (testbed/cluster.py scrapes every pod with container port 8002).
    "up",
    # The operator's registry, operator/deepseek_operator/k8s/metrics.py (checked below).
    "deepseek_operator_reconcile_duration_seconds",  # histogram: _bucket, _sum, _count
    "deepseek_operator_reconcile_errors_total",
    "deepseek_operator_children_applied_total",
    "deepseek_operator_status_writes_total",
    "deepseek_operator_api_writes_total",
    "deepseek_operator_canary_weight",  # labels namespace, name
    "deepseek_operator_rollouts_total",  # namespace, name, outcome
    "deepseek_operator_rollbacks_total",  # namespace, name
    "deepseek_operator_analysis_error_rate",  # namespace, name, revision
    "deepseek_operator_analysis_p99_seconds",  # namespace, name, revision
    "deepseek_operator_analysis_total",  # namespace, name, result
    "deepseek_operator_gpus",  # namespace, name: replicas x status.parallelism.gpusPerReplica
}
HISTOGRAMS = {"deepseek_operator_reconcile_duration_seconds", "nv_inference_first_response_histogram_ms",
              "deepseek_frontend_time_to_first_token_seconds", "deepseek_frontend_inter_token_latency_seconds",
              "deepseek_frontend_request_duration_seconds"}
FRONTEND = {"deepseek_frontend_", "nv_trt_llm_"}
# The frontend's own labels, and those of the scrape (see TRITON_LABELS).
FRONTEND_LABELS = {"model", "revision", "api", "mirrored", "code", "reason", "request_type", "le",
                   "serving_deepseek_ai_revision", "serving_deepseek_ai_deployment", "namespace", "pod", "container"}

# Labels as they reach Prometheus: the testbed's scrape config maps pod labels with `labelmap`, which turns
# `serving.deepseek.ai/revision` into `serving_deepseek_ai_revision`; plus namespace and pod.
TRITON_LABELS = {"serving_deepseek_ai_revision", "serving_deepseek_ai_deployment", "namespace", "pod", "model",
                 "container", "le"}  # le: a histogram's buckets

PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
                   "offset", "inf", "nan"}


def load() -> dict[str, Any]:
    dashboard: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return dashboard


def all_panels(dashboard: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for panel in dashboard["panels"]:
        out.append(panel)
        out.extend(panel.get("panels", []))  # collapsed rows keep their panels inside
    return out


def exprs(dashboard: dict[str, Any]) -> list[str]:
    found = [t["expr"] for p in all_panels(dashboard) for t in p.get("targets", []) if t.get("expr")]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            query = var["query"]["query"] if isinstance(var["query"], dict) else var["query"]
            match = re.fullmatch(r"label_values\((.*),\s*(\w+)\)", query.strip())
            assert match, f"variable {var['name']}: expected label_values(selector, label), got {query!r}"
            found.append(match.group(1))
    return found


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def balanced(expr: str) -> bool:
    pairs = {")": "(", "]": "[", "}": "{"}
    stack: list[str] = []
    for ch in strip_strings(expr):
        if ch in "([{":
            stack.append(ch)
        elif ch in pairs and (not stack or stack.pop() != pairs[ch]):
            return False
    return not stack


def metric_names(expr: str) -> set[str]:
    text = strip_strings(expr)
    text = re.sub(r"\{[^{}]*\}", " ", text)  # label matchers
    text = re.sub(r"\[[^\[\]]*\]", " ", text)  # range selectors, durations
    text = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)", " ", text)  # label lists
    text = text.replace("$__rate_interval", " ").replace("$__range", " ")
    names = set()
    for match in re.finditer(r"(?<![\w:.$])([a-zA-Z_:][a-zA-Z0-9_:]*)(\s*\()?", text):
        name, call = match.group(1), match.group(2)
        if call or name.lower() in PROMQL_KEYWORDS:
            continue  # functions and aggregations
        names.add(name)
    return names


def base_name(name: str) -> str:
    for suffix in ("_bucket", "_sum", "_count"):
        if name.endswith(suffix) and name[: -len(suffix)] in HISTOGRAMS:
            return name[: -len(suffix)]
    return name


def test_dashboard_is_valid_json_with_expected_shape() -> None:
    d = load()
    assert 36 <= d["schemaVersion"] <= 41
    assert d["uid"] and d["title"]
    names = {v["name"]: v for v in d["templating"]["list"]}
    assert {"datasource", "namespace", "deployment"} <= set(names)
    assert names["datasource"]["type"] == "datasource" and names["datasource"]["query"] == "prometheus"
    ids = [p["id"] for p in all_panels(d)]
    assert len(ids) == len(set(ids)), "panel ids must be unique"
    for panel in all_panels(d):
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
        assert panel.get("description"), f"panel {panel['title']!r} has no description"
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"


def test_every_expression_is_structurally_sound() -> None:
    found = exprs(load())
    assert len(found) >= 15
    for expr in found:
        assert balanced(expr), f"unbalanced brackets in {expr!r}"
        assert strip_strings(expr).count('"') % 2 == 0, expr
        assert metric_names(expr), f"no metric in {expr!r}"


def test_every_metric_is_exported() -> None:
    used = {base_name(n) for expr in exprs(load()) for n in metric_names(expr)}
    unknown = used - EXPORTED
    assert not unknown, f"metrics nobody exports: {sorted(unknown)}"


@pytest.mark.parametrize("expr", ['sum by (le) (rate(x_bucket{a="b(c"}[5m]))', "a / on(x) group_left(y) b"])
def test_metric_name_extraction(expr: str) -> None:
    assert metric_names(expr) in ({"x_bucket"}, {"a", "b"})


def test_panels_cover_the_required_views() -> None:
    d = load()
    text = " ".join(exprs(d))
    for metric in ("nv_inference_request_success", "nv_inference_request_failure", "nv_inference_request_duration_us",
                   "deepseek_operator_canary_weight", "deepseek_operator_analysis_error_rate",
                   "deepseek_operator_analysis_p99_seconds", "deepseek_operator_analysis_total",
                   "deepseek_operator_rollbacks_total", "deepseek_operator_reconcile_duration_seconds_bucket",
                   "deepseek_operator_reconcile_errors_total"):
        assert metric in text, metric
    latency = next(p for p in all_panels(d) if "nv_inference_request_duration_us" in json.dumps(p.get("targets")))
    assert "not p99" in latency["description"], "the latency panel must say it is a mean from counters"


def test_operator_metrics_match_its_registry() -> None:
    registry = (ROOT / "operator" / "deepseek_operator" / "k8s" / "metrics.py").read_text()
    for name in sorted(n for n in EXPORTED if n.startswith("deepseek_operator_")):
        assert f'"{name}"' in registry, f"{name} is not in k8s/metrics.py"


def _frontend_registry() -> dict[str, set[str]]:
    """The frontend's metric names as exported (with _total, _bucket...) and their labels, from a live registry."""
    from deepseek_operator.frontend.metrics import Metrics

    out: dict[str, set[str]] = {}
    for family in Metrics("m", "r").registry.collect():
        for sample in family.samples:
            out.setdefault(sample.name, set()).update(sample.labels)
        out.setdefault(family.name, set())
    return out


def test_frontend_metrics_match_its_registry() -> None:
    exported = _frontend_registry()
    for name in sorted(n for n in EXPORTED if n.startswith(tuple(FRONTEND))):
        assert name in exported or f"{name}_count" in exported, f"{name} is not in frontend/metrics.py's registry"
    used = {n for expr in exprs(load()) for n in metric_names(expr) if n.startswith(tuple(FRONTEND))}
    assert used <= set(exported), f"not exported by the frontend: {sorted(used - set(exported))}"


def test_frontend_queries_use_the_labels_they_have() -> None:
    exported = _frontend_registry()
    for expr in exprs(load()):
        names = {n for n in metric_names(expr) if n.startswith(tuple(FRONTEND))}
        if not names:
            continue
        have = set.union(*(exported[n] for n in names)) | FRONTEND_LABELS - {"model", "revision", "api", "mirrored",
                                                                              "code", "reason", "request_type", "le"}
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr):
            assert label in have, f"{label} in {expr!r}"
        for group in re.findall(r"\bby\s*\(([^()]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert label in have, f"{label} in {expr!r}"


def test_frontend_panels_show_ttft_itl_tokens_per_second_waiting_and_running_per_revision() -> None:
    found = exprs(load())

    def per_revision(metric: str, *also: str) -> bool:
        grouped = ("by (le, serving_deepseek_ai_revision)", "by (serving_deepseek_ai_revision)")
        return any(metric in e and any(g in e for g in grouped) and all(a in e for a in also) for e in found)

    assert per_revision("deepseek_frontend_time_to_first_token_seconds_bucket")
    assert per_revision("deepseek_frontend_inter_token_latency_seconds_bucket")
    assert per_revision("deepseek_frontend_output_tokens_total", "rate(")
    assert per_revision("nv_trt_llm_request_metrics", 'request_type="waiting"')
    assert per_revision("nv_trt_llm_request_metrics", 'request_type="scheduled"')
    assert not any("kv_cache" in e for e in found), "the llmapi model reports no KV-cache use"


def test_frontend_panels_show_client_traffic_only() -> None:
    """A stable pod may mirror requests to a canary (frontend/mirror.py): they are counted with mirrored="true", and
    the dashboard shows what clients got. Every selector of a deepseek_frontend_* series (all have `mirrored`)
    takes mirrored="false"; the inference extension's gauges have no such label (they are the pod's load)."""
    exported = _frontend_registry()
    selectors = [m for expr in exprs(load()) for m in re.finditer(r"(deepseek_frontend_\w+)\{([^{}]*)\}", expr)]
    assert len(selectors) >= 9
    for match in selectors:
        assert "mirrored" in exported[match.group(1)], match.group(1)
        assert 'mirrored="false"' in match.group(2), match.group(0)
    assert "mirrored" not in exported["nv_trt_llm_request_metrics"]


def test_triton_queries_use_the_labels_prometheus_really_has() -> None:
    scrape = (ROOT / "testbed" / "cluster.py").read_text()
    assert "__meta_kubernetes_pod_label_(.+)" in scrape, "the testbed no longer maps pod labels to metric labels"
    # Triton's own labels are model and version; the rest come from the scrape's relabelling (see TRITON_LABELS).
    for expr in exprs(load()):
        if "nv_inference" not in expr:
            continue
        for label in re.findall(r"(\w+)\s*(?:=~|!~|!=|=)\s*\"", expr):
            assert label in TRITON_LABELS, f"{label} in {expr!r}"
        for group in re.findall(r"\bby\s*\(([^()]*)\)", expr):
            for label in (g.strip() for g in group.split(",")):
                assert label in TRITON_LABELS, f"{label} in {expr!r}"
