"""The rollout's settings from the spec, and its state to and from status (the machine's State). Pure."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from deepseek_operator.api.spec import (
    DIFFERENCING_PROVIDERS,
    DeepSeekDeploymentSpec,
    LatencyObjective,
    duration_seconds,
)
from deepseek_operator.plan.observed import Observed
from deepseek_operator.rollout import analysis, machine
from deepseek_operator.rollout.clock import rfc3339
from deepseek_operator.rollout.sequential import SequentialPolicy


def _gate(kind: str, objective: LatencyObjective | None) -> analysis.LatencyGate | None:
    if objective is None:
        return None
    return analysis.LatencyGate(kind, objective.percentile, objective.max_seconds, objective.max_ratio_to_stable)


def settings(spec: DeepSeekDeploymentSpec) -> machine.Rollout:
    r = spec.rollout
    steps = tuple(machine.Step(weight=s.weight,
                               pause_seconds=None if s.pause in (None, machine.INDEFINITE)
                               else duration_seconds(str(s.pause)))
                  for s in r.steps)
    a = r.analysis
    policy = analysis.Policy(a.max_error_rate, a.min_requests, a.max_p99_latency_seconds,
                             _gate(analysis.TTFT, a.time_to_first_token),
                             _gate(analysis.ITL, a.inter_token_latency)) if a else None
    return machine.Rollout(
        strategy=r.strategy, steps=steps, router="gatewayAPI" if r.traffic_routing.gateway_api else "service",
        policy=policy, interval_seconds=duration_seconds(a.interval) if a else 30,
        failure_limit=a.failure_limit if a else 1, on_inconclusive=a.on_inconclusive if a else "pause",
        history_limit=r.revision_history_limit, baseline_first=a is not None and a.provider in DIFFERENCING_PROVIDERS,
        sequential=SequentialPolicy.for_limit(a.max_error_rate, a.min_requests)
        if a is not None and a.mode == "sequential" else None,
        max_surge=r.max_surge, max_unavailable=r.max_unavailable)


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


def latency_figures(m: analysis.Measurement, policy: analysis.Policy | None) -> dict[str, Any]:
    """Both revisions' figures of every latency gate, by their status names: the whole-request p99 always (when
    measured), time to first token and inter-token latency at their gate's percentile when the gate is set."""
    out: dict[str, Any] = {"p99LatencySeconds": _seconds(m.percentile("canary", analysis.E2E, 0.99)),
                           "stableP99LatencySeconds": _seconds(m.percentile("stable", analysis.E2E, 0.99))}
    names = {analysis.TTFT: "TimeToFirstToken", analysis.ITL: "InterTokenLatency"}
    for gate in (policy.ttft, policy.itl) if policy else ():
        if gate is None:
            continue
        name, q = names[gate.kind], gate.percentile / 100
        out |= {f"{name[0].lower()}{name[1:]}Percentile": gate.percentile,
                f"{name[0].lower()}{name[1:]}Seconds": _seconds(m.percentile("canary", gate.kind, q)),
                f"stable{name}Seconds": _seconds(m.percentile("stable", gate.kind, q))}
    return out


def analysis_status(previous: Mapping[str, Any] | None, state: machine.State, observed: Observed,
                    provider: str, now: str, policy: analysis.Policy | None = None) -> dict[str, Any] | None:
    last = state.analysis
    if last is None:
        return None
    m = observed.measurement
    if m is None or rfc3339(last.at) != now:
        return dict(previous) if previous else None
    # A window kept open (short of minRequests) keeps the counters of its start: the next measurement
    # differences against them, so it covers the whole window.
    kept = last.window_start is not None and previous is not None and previous.get("revision") == last.revision
    counters = (previous or {}).get("counters") or {} if kept else m.counters
    return {"revision": last.revision, "at": now,
            **({"windowStart": rfc3339(last.window_start)} if last.window_start is not None else {}),
            "windowSeconds": round(m.window_seconds, 1),
            "requests": int(m.requests) if m.requests == m.requests else 0,
            "errors": int(m.errors) if m.errors == m.errors else 0,
            "errorRate": None if m.error_rate is None else round(m.error_rate, 4),
            **latency_figures(m, policy),
            "stableErrorRate": None if m.stable_error_rate is None else round(m.stable_error_rate, 4),
            "result": last.result, "message": last.message, "failures": last.failures, "step": last.step,
            "provider": provider, "counters": dict(counters),
            **({"totalRequests": round(last.totals[0], 2), "totalErrors": round(last.totals[1], 2),
                "totalSlow": round(last.totals[2], 2)} if last.totals else {})}
