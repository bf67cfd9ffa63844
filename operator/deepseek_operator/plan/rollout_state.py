"""The rollout's settings from the spec, and its state to and from status (the machine's State). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepseek_operator.api.spec import DeepSeekDeploymentSpec, duration_seconds
from deepseek_operator.plan.observed import Observed
from deepseek_operator.rollout import analysis, machine
from deepseek_operator.rollout.clock import rfc3339
from deepseek_operator.rollout.sequential import SequentialPolicy

# The providers that difference counters between samples (providers/counters.py): a window needs a baseline.
DIFFERENCING = frozenset({"triton", "gateway"})


def settings(spec: DeepSeekDeploymentSpec) -> machine.Rollout:
    r = spec.rollout
    steps = tuple(machine.Step(weight=s.weight,
                               pause_seconds=None if s.pause in (None, machine.INDEFINITE)
                               else duration_seconds(str(s.pause)))
                  for s in r.steps)
    a = r.analysis
    policy = analysis.Policy(a.max_error_rate, a.min_requests, a.max_p99_latency_seconds) if a else None
    return machine.Rollout(
        strategy=r.strategy, steps=steps, router="gatewayAPI" if r.traffic_routing.gateway_api else "service",
        policy=policy, interval_seconds=duration_seconds(a.interval) if a else 30,
        failure_limit=a.failure_limit if a else 1, on_inconclusive=a.on_inconclusive if a else "pause",
        history_limit=r.revision_history_limit, baseline_first=a is not None and a.provider in DIFFERENCING,
        sequential=SequentialPolicy.for_limit(a.max_error_rate, a.min_requests)
        if a is not None and a.mode == "sequential" else None)


def analysis_status(previous: Mapping[str, Any] | None, state: machine.State, observed: Observed,
                     provider: str, now: str) -> dict[str, Any] | None:
    last = state.analysis
    if last is None:
        return None
    m = observed.measurement
    if m is None or rfc3339(last.at) != now:
        return dict(previous) if previous else None
    return {"revision": last.revision, "at": now, "windowSeconds": round(m.window_seconds, 1),
            "requests": int(m.requests) if m.requests == m.requests else 0,
            "errors": int(m.errors) if m.errors == m.errors else 0,
            "errorRate": None if m.error_rate is None else round(m.error_rate, 4),
            "p99LatencySeconds": None if m.p99_seconds is None else round(m.p99_seconds, 4),
            "stableErrorRate": None if m.stable_error_rate is None else round(m.stable_error_rate, 4),
            "result": last.result, "message": last.message, "failures": last.failures, "step": last.step,
            "provider": provider, "counters": dict(m.counters),
            **({"totalRequests": round(last.totals[0], 2), "totalErrors": round(last.totals[1], 2)}
               if last.totals else {})}
