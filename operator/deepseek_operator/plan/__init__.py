"""The pass: plan(resource, observed, now) -> Plan, every decision of one reconcile, with no I/O.

The k8s/ layer observes once, builds the pass context (`start`), lets a metric provider answer the context's
analysis request, then runs the steps: apply `Plan.apply` with server-side apply, delete `Plan.delete`, post
`Plan.events` and write `Plan.status` only when it differs from what the resource already has. A spec that
cannot work changes nothing that already runs: it is reported in conditions and events only.

The steps, in order (each in the module named):
  context.start           parse the spec, resolve the runtime recipe, check the fit, render the target revision
  gates.weights_gate      the weights are on the cluster (read in place, or the download Job)
  gates.quantize_gate     the checkpoint has the served precision (as published, or the quantize Job)
  gates.preflight_gate    the fabric of a new multi-GPU revision passed its NCCL check
  rollout.roll            the rollout machine decides; workloads, routing, pruning, history, status
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from deepseek_operator.api.status import WeightsState
from deepseek_operator.plan import gates, rollout
from deepseek_operator.plan.context import PassContext, start
from deepseek_operator.plan.observed import AnalysisRequest, ChildRef, Observed, Plan

GATES: tuple[Callable[[PassContext], Plan | None], ...] = (gates.weights_gate, gates.quantize_gate,
                                                           gates.preflight_gate)
DOWNLOAD_POLL_S = gates.DOWNLOAD_POLL_S


def run(ctx: PassContext) -> Plan:
    """The steps after the context: each gate may end the pass; the rollout ends it otherwise."""
    for gate in GATES:
        if (ended := gate(ctx)) is not None:
            return ended
    return rollout.roll(ctx)


def plan(body: dict[str, Any], observed: Observed, now: str) -> Plan:
    started = start(body, observed, now)
    return started if isinstance(started, Plan) else run(started)


def download_progress_request(body: Mapping[str, Any], observed: Observed) -> tuple[str, str] | None:
    """(Job name, pod IP) of the running download pod whose progress the resource shows, if there is one."""
    model = (body.get("status") or {}).get("model")
    if not isinstance(model, Mapping) or not model.get("job"):
        return None
    if model.get("state") not in (WeightsState.PENDING, WeightsState.DOWNLOADING):
        return None
    for pod in observed.download_pods.get(model["job"], ()):
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and status.get("podIP"):
            return model["job"], status["podIP"]
    return None


__all__ = ["DOWNLOAD_POLL_S", "AnalysisRequest", "ChildRef", "Observed", "PassContext", "Plan",
           "download_progress_request", "plan", "run", "start"]
