"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from deepseek_operator.api.status import AnalysisResult, DeepSeekDeploymentStatus, Outcome

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


OUTCOMES = tuple(Outcome)
# What a measurement can be judged (Pending is no verdict).
VERDICTS = (AnalysisResult.SUCCESSFUL, AnalysisResult.FAILED, AnalysisResult.INCONCLUSIVE)


def record_rollout(namespace: str, name: str, status: DeepSeekDeploymentStatus, outcome: str, verdict: str) -> None:
    # Every counter of a resource exists at 0 from its first pass: Prometheus' increase() cannot see a series
    # that is born at 1, so a first rollback would never show on a dashboard.
    ROLLBACKS.labels(namespace, name)
    for each_outcome in OUTCOMES:
        ROLLOUTS.labels(namespace, name, each_outcome)
    for each_verdict in VERDICTS:
        ANALYSIS.labels(namespace, name, each_verdict)
    CANARY_WEIGHT.labels(namespace, name).set(status.canary_weight)
    gpus = status.parallelism.gpus_per_replica if status.parallelism else 0
    GPUS.labels(namespace, name).set(gpus * (status.replicas + status.canary_replicas))
    if outcome:
        ROLLOUTS.labels(namespace, name, outcome).inc()
        if outcome in (Outcome.ROLLED_BACK, Outcome.ABORTED):
            ROLLBACKS.labels(namespace, name).inc()
    analysis = status.analysis
    if verdict and analysis is not None:
        ANALYSIS.labels(namespace, name, verdict).inc()
        if analysis.error_rate is not None:
            ANALYSIS_ERROR_RATE.labels(namespace, name, analysis.revision).set(analysis.error_rate)
        if analysis.p99_latency_seconds is not None:
            ANALYSIS_P99.labels(namespace, name, analysis.revision).set(analysis.p99_latency_seconds)
    elif verdict:
        ANALYSIS.labels(namespace, name, verdict).inc()
