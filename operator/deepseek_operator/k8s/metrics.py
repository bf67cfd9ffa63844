"""The operator's own Prometheus metrics."""

from __future__ import annotations

from typing import Any

from prometheus_client import Counter, Gauge, Histogram

RECONCILE_SECONDS = Histogram("deepseek_operator_reconcile_duration_seconds", "Time of one reconcile pass.",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RECONCILE_ERRORS = Counter("deepseek_operator_reconcile_errors_total", "Reconcile passes that raised.")
CHILDREN_APPLIED = Counter("deepseek_operator_children_applied_total", "Server-side applies of children.", ["kind"])
STATUS_WRITES = Counter("deepseek_operator_status_writes_total", "Status subresource writes.")
API_WRITES = Counter("deepseek_operator_api_writes_total", "Write requests sent to the API server.", ["method"])

CANARY_WEIGHT = Gauge("deepseek_operator_canary_weight", "Percent of traffic the canary receives.",
                      ["namespace", "name"])
ROLLOUTS = Counter("deepseek_operator_rollouts_total", "Rollouts that ended, by outcome.",
                   ["namespace", "name", "outcome"])
ROLLBACKS = Counter("deepseek_operator_rollbacks_total", "Automatic and manual rollbacks.", ["namespace", "name"])
ANALYSIS = Counter("deepseek_operator_analysis_total", "Analysis verdicts.", ["namespace", "name", "result"])
ANALYSIS_ERROR_RATE = Gauge("deepseek_operator_analysis_error_rate", "Error rate of the last analysed window.",
                            ["namespace", "name", "revision"])
ANALYSIS_P99 = Gauge("deepseek_operator_analysis_p99_seconds", "p99 latency of the last analysed window.",
                     ["namespace", "name", "revision"])
GPUS = Gauge("deepseek_operator_gpus", "GPUs the resource's serving pods request (replicas x GPUs per replica).",
             ["namespace", "name"])


OUTCOMES = ("promoted", "rolled_back", "aborted")
VERDICTS = ("Successful", "Failed", "Inconclusive")


def record_rollout(namespace: str, name: str, status: dict[str, Any], outcome: str, verdict: str) -> None:
    # Every counter of a resource exists at 0 from its first pass: Prometheus' increase() cannot see a series
    # that is born at 1, so a first rollback would never show on a dashboard.
    ROLLBACKS.labels(namespace, name)
    for each in OUTCOMES:
        ROLLOUTS.labels(namespace, name, each)
    for each in VERDICTS:
        ANALYSIS.labels(namespace, name, each)
    CANARY_WEIGHT.labels(namespace, name).set(status.get("canaryWeight", 0))
    gpus = (status.get("parallelism") or {}).get("gpusPerReplica", 0)
    GPUS.labels(namespace, name).set(gpus * (status.get("replicas", 0) + status.get("canaryReplicas", 0)))
    if outcome:
        ROLLOUTS.labels(namespace, name, outcome).inc()
        if outcome in ("rolled_back", "aborted"):
            ROLLBACKS.labels(namespace, name).inc()
    analysis = status.get("analysis") or {}
    if verdict:
        ANALYSIS.labels(namespace, name, verdict).inc()
        if analysis.get("errorRate") is not None:
            ANALYSIS_ERROR_RATE.labels(namespace, name, analysis["revision"]).set(analysis["errorRate"])
        if analysis.get("p99LatencySeconds") is not None:
            ANALYSIS_P99.labels(namespace, name, analysis["revision"]).set(analysis["p99LatencySeconds"])
