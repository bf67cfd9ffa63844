"""`prometheus`: PromQL `increase()` over Triton's `nv_inference_request_success` / `_failure` per revision
label, and its latency histogram's p99."""

from __future__ import annotations

import json
import math
import urllib.parse
from dataclasses import dataclass

from deepseek_operator.api.spec import duration_seconds
from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import (
    CLIENT_MODEL,
    FAILURE,
    LATENCY_HISTOGRAM,
    SUCCESS,
    ProviderError,
    source_reader,
    unmeasured,
)
from deepseek_operator.rollout.analysis import Measurement


@dataclass
class PrometheusProvider:
    def measure(self, request: AnalysisRequest) -> Measurement:
        settings = request.prometheus
        assert settings is not None
        span = f"{max(math.ceil(request.window_seconds), duration_seconds(settings.min_range))}s"
        try:
            fetch = source_reader("prometheus", request.source)  # one token read and TLS context for all queries
        except ProviderError as err:
            return unmeasured(request, err)

        def selector(revision: str) -> str:
            return (f'namespace="{request.namespace}",{settings.revision_label}="{revision}",'
                    f'model="{CLIENT_MODEL}"')

        def scalar(query: str) -> float | None:
            path = "/api/v1/query?" + urllib.parse.urlencode({"query": query})
            try:
                body = json.loads(fetch(path))
                if body.get("status") != "success":
                    raise ProviderError("prometheus", f"query failed: {body.get('error', body)}")
                result = body["data"]["result"]
                return float(result[0]["value"][1]) if result else None
            except (ValueError, KeyError, IndexError, TypeError) as err:  # an answer that is no PromQL result
                raise ProviderError("prometheus", f"unreadable answer: {err}") from err

        try:
            canary = selector(request.canary_revision)
            ok = scalar(f"sum(increase({SUCCESS}{{{canary}}}[{span}]))")
            failed = scalar(f"sum(increase({FAILURE}{{{canary}}}[{span}]))")
            p99_ms = scalar(f"histogram_quantile(0.99, sum by (le) "
                            f"(increase({LATENCY_HISTOGRAM}_bucket{{{canary}}}[{span}])))")
            stable = selector(request.stable_revision)
            stable_ok = scalar(f"sum(increase({SUCCESS}{{{stable}}}[{span}]))")
            stable_failed = scalar(f"sum(increase({FAILURE}{{{stable}}}[{span}]))")
        except ProviderError as err:
            return unmeasured(request, err)
        if ok is None and failed is None:
            return Measurement(0, 0, window_seconds=request.window_seconds)  # no samples: no requests seen
        errors = failed or 0.0
        return Measurement(
            requests=(ok or 0.0) + errors, errors=errors,
            p99_seconds=p99_ms / 1000 if p99_ms is not None and math.isfinite(p99_ms) else None,
            window_seconds=request.window_seconds,
            stable_requests=(stable_ok or 0.0) + (stable_failed or 0.0), stable_errors=stable_failed or 0.0,
            errors_counted=False)
