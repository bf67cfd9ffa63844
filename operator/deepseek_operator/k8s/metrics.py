"""The operator's own Prometheus metrics."""

from __future__ import annotations

from prometheus_client import Counter, Histogram

RECONCILE_SECONDS = Histogram("deepseek_operator_reconcile_duration_seconds", "Time of one reconcile pass.",
                              buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10))
RECONCILE_ERRORS = Counter("deepseek_operator_reconcile_errors_total", "Reconcile passes that raised.")
CHILDREN_APPLIED = Counter("deepseek_operator_children_applied_total", "Server-side applies of children.", ["kind"])
STATUS_WRITES = Counter("deepseek_operator_status_writes_total", "Status subresource writes.")
API_WRITES = Counter("deepseek_operator_api_writes_total", "Write requests sent to the API server.", ["method"])
