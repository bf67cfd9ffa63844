"""plan() during rollouts: the HTTPRoute the gateway sees, actions by annotation, the analysis request, and the
status a person reads. Drives the same fake namespace as test_plan.py."""

from __future__ import annotations

import math
from dataclasses import replace
from typing import Any

from deepseek_operator.plan import AnalysisRequest, Observed, PassContext, plan, start
from deepseek_operator.plan.rollout import analysis_request
from deepseek_operator.render import naming
from deepseek_operator.rollout.analysis import Measurement
from deepseek_operator.rollout.clock import epoch
from tests.unit.test_plan import QWEN_7B, T0, Cluster, drive, edited, example

GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway", "namespace": "default"}]}}
ANALYSIS = {"interval": "30s", "maxErrorRate": 0.02, "minRequests": 50, "failureLimit": 1, "provider": "triton"}


def at(seconds: float) -> str:
    from deepseek_operator.rollout.clock import rfc3339
    return rfc3339(epoch(T0) + seconds)


def asked(body: dict[str, Any], observed: Observed, now: str) -> AnalysisRequest | None:
    """What the pass at `now` asks the metric provider to measure; None when no measurement is due."""
    ctx = start(body, observed, now)
    assert isinstance(ctx, PassContext), "the pass ended before its analysis"
    return analysis_request(ctx)


def with_rollout(**rollout: Any) -> dict[str, Any]:
    return edited(example(QWEN_7B), {"rollout": rollout})


def route(cluster_plan: Any) -> dict[str, Any]:
    [r] = [o for o in cluster_plan.apply if o["kind"] == "HTTPRoute"]
    return r


def start_canary(body: dict[str, Any], passes: int = 6) -> tuple[Cluster, dict[str, Any]]:
    """A new revision rolled out (at most `passes` passes) until its canary has the replicas of the first step
    (they take the surge, then drained stable replicas' GPUs, pass by pass)."""
    cluster = drive(body)
    assert body["status"]["phase"] == "Healthy"
    body = edited(body, {"serving.podAnnotations": {"version": "2"}})
    for _ in range(passes):
        p = cluster.reconcile(body, at(1))
        cluster.roll_out()
        if p.status.get("currentStep", 0) >= 1 or p.status["phase"] == "Paused":
            break
    return cluster, body


def test_gateway_route_weights_follow_the_canary_steps() -> None:
    body = with_rollout(steps=[{"weight": 10}, {"pause": "indefinite"}], trafficRouting=GATEWAY)
    cluster = drive(body)
    first = [o for o in cluster.reconcile(body, at(0)).apply if o["kind"] == "HTTPRoute"]
    assert first == []  # unchanged: not re-sent
    body = edited(body, {"serving.podAnnotations": {"version": "2"}})
    started = cluster.reconcile(body, at(1))
    cluster.roll_out()
    p = cluster.reconcile(body, at(2))
    stable, canary = p.status["stableRevision"], p.status["canaryRevision"]
    rules = route(p)["spec"]["rules"]
    # Every HTTP API (OpenAI's and Triton's) goes through the pods' front door on the http port, split alike.
    assert rules == [{"backendRefs": [{"name": "r1-qwen-7b-stable", "port": 8000, "weight": 90},
                                      {"name": "r1-qwen-7b-canary", "port": 8000, "weight": 10}]}]
    assert route(p)["spec"]["parentRefs"] == [{"group": "gateway.networking.k8s.io", "kind": "Gateway",
                                               "name": "llm-gateway", "namespace": "default"}]
    services = {o["metadata"]["name"]: o["spec"]["selector"][naming.LABEL_REVISION]
                for o in started.apply if o["kind"] == "Service" and naming.LABEL_REVISION in o["spec"]["selector"]}
    assert services == {"r1-qwen-7b-canary": canary}  # the stable Service did not change
    assert (p.status["phase"], p.status["pauseReason"]) == ("Paused", "CanaryPaused")
    assert stable != canary


def test_ab_route_matches_headers_and_cookies() -> None:
    body = with_rollout(strategy="abTest", steps=[{"pause": "indefinite"}], trafficRouting=GATEWAY,
                        match=[{"headers": {"x-model-variant": {"exact": "b"}}},
                               {"cookie": {"name": "variant", "value": "b"}}])
    cluster, body = start_canary(body, passes=1)
    p = cluster.reconcile(body, at(2))
    rules = route(p)["spec"]["rules"]
    headers = [[{"type": "Exact", "name": "x-model-variant", "value": "b"}],
               [{"type": "RegularExpression", "name": "Cookie", "value": "(^|.*; )variant=b(;.*|$)"}]]
    assert rules[0]["matches"] == [{"headers": h} for h in headers]
    assert rules[0]["backendRefs"] == [{"name": "r1-qwen-7b-canary", "port": 8000, "weight": 1}]
    assert rules[1] == {"backendRefs": [{"name": "r1-qwen-7b-stable", "port": 8000, "weight": 100}]}
    assert len(rules) == 2
    assert p.status["canaryWeight"] == 0 and p.status["canaryReplicas"] == 1


def test_actions_are_handled_once_and_recorded_in_status() -> None:
    body = with_rollout(steps=[{"weight": 20}, {"pause": "indefinite"}])
    cluster, body = start_canary(body)
    p = cluster.reconcile(body, at(2))
    assert p.status["phase"] == "Paused"
    body["metadata"]["annotations"] = {naming.ANNOTATION_ACTION: "promote", naming.ANNOTATION_ACTION_NONCE: "n-1"}
    p = cluster.reconcile(body, at(3))
    assert p.status["lastAction"] == {"nonce": "n-1", "action": "promote", "at": at(3), "result": "step 1 skipped"}
    assert p.status["currentStep"] == 2 and p.status["phase"] == "Progressing"
    again = cluster.reconcile(body, at(4))  # the same nonce: nothing new
    assert again.status["lastAction"]["at"] == at(3)
    body["metadata"]["annotations"] = {naming.ANNOTATION_ACTION: "launch", naming.ANNOTATION_ACTION_NONCE: "n-2"}
    refused = cluster.reconcile(body, at(5))
    assert refused.status["lastAction"]["result"].startswith("refused: unknown action 'launch'")
    assert [(e.type, e.reason) for e in refused.events] == [("Warning", "ActionRefused")]


def test_analysis_is_requested_when_due_and_a_failure_rolls_back_with_the_figures() -> None:
    body = with_rollout(steps=[{"weight": 50}, {"pause": "5m"}], analysis=ANALYSIS)
    cluster, body = start_canary(body)
    p = cluster.reconcile(body, at(2))
    # Behind one Service the weight is the replica ratio: 2 new replicas beside 1 stable carry 67% (of 2 + 1).
    assert (p.status["canaryWeight"], p.status["canaryReplicas"]) == (67, 2)
    # The triton provider differences counters: its baseline is due as soon as the canary has traffic, so the
    # first judged window closes one interval later (a prometheus provider waits the interval: see below).
    baseline = asked(body, cluster.observed(), at(10))
    assert baseline is not None and baseline.previous_counters == {}
    prometheus = edited(body, {"rollout.analysis": {**ANALYSIS, "provider": "prometheus",
                                                    "prometheus": {"source": "prometheus"}}})
    assert asked(prometheus, cluster.observed(), at(10)) is None  # not due before the interval
    by_name = asked(prometheus, cluster.observed(), at(40))
    assert by_name is not None and by_name.source == cluster.metric_sources["prometheus"]  # the operator's
    request = asked(body, cluster.observed(), at(40))
    assert request is not None
    assert (request.provider, request.canary_revision, request.stable_revision) == (
        "triton", p.status["canaryRevision"], p.status["stableRevision"])
    assert request.window_seconds == 39 and request.previous_counters == {}
    observed = cluster.observed()
    failed = Observed(**{**observed.__dict__, "measurement": Measurement(requests=200, errors=40,
                                                                          window_seconds=38)})
    rolled = plan(body, failed, at(40))
    assert (rolled.status["phase"], rolled.status["canaryRevision"], rolled.status["heldRevision"]) == (
        "RolledBack", "", p.status["canaryRevision"])
    assert rolled.status["analysis"]["errorRate"] == 0.2 and rolled.status["analysis"]["result"] == "Failed"
    degraded = next(c for c in rolled.status["conditions"] if c["type"] == "Degraded")
    assert degraded["reason"] == "AnalysisFailed" and "error rate 0.2000 (40/200)" in degraded["message"]
    deployments = {o["metadata"]["name"]: o["spec"]["replicas"] for o in rolled.apply if o["kind"] == "Deployment"}
    canary, stable = (f"r1-qwen-7b-{p.status[k]}" for k in ("canaryRevision", "stableRevision"))
    # The canary's replicas go at once; the stable grows back only into the GPUs they gave up: not while its pods
    # still hold them, then once they are gone.
    assert deployments == {canary: 0}
    assert rolled.outcome == "rolled_back" and rolled.verdict == "Failed"
    body = {**body, "status": rolled.status}
    for name, replicas in deployments.items():
        cluster.deployments[name]["spec"]["replicas"] = replicas
    cluster.roll_out()
    regrown = cluster.reconcile(body, at(41))
    assert {o["metadata"]["name"]: o["spec"]["replicas"] for o in regrown.apply if o["kind"] == "Deployment"}[
        stable] == 2


def test_no_measurement_is_asked_while_the_pod_watch_sees_no_ready_canary_pod() -> None:
    """The canary's Deployment counts a Ready replica before the pod watch has seen it Ready (two watches): a
    measurement then would scrape no pod, be Inconclusive and pause the rollout for nothing."""
    body = with_rollout(steps=[{"weight": 50}, {"pause": "5m"}], analysis={**ANALYSIS, "provider": "frontend"})
    cluster, body = start_canary(body)
    p = cluster.reconcile(body, at(2))
    canary = p.status["canaryRevision"]
    observed = cluster.observed()
    lagging = tuple({**pod, "status": {**pod["status"], "conditions": [{"type": "Ready", "status": "False"}]}}
                    if pod["metadata"]["labels"][naming.LABEL_REVISION] == canary else pod for pod in observed.pods)
    assert asked(body, replace(observed, pods=lagging), at(40)) is None
    request = asked(body, observed, at(40))
    assert request is not None and len(request.canary_pod_ips) == p.status["canaryReplicas"]


def test_service_router_reports_the_replica_ratio() -> None:
    body = with_rollout(steps=[{"weight": 10}, {"pause": "indefinite"}])
    cluster, body = start_canary(body)
    p = cluster.reconcile(body, at(2))
    # 2 stable replicas + 1 canary behind one Service: a third of the traffic, whatever 10 % asked for.
    assert (p.status["canaryWeight"], p.status["canaryReplicas"]) == (33, 1)
    assert not [o for o in p.apply if o["kind"] == "HTTPRoute"]


def test_a_resync_mid_rollout_writes_nothing_new() -> None:
    body = with_rollout(steps=[{"weight": 50}, {"pause": "indefinite"}], trafficRouting=GATEWAY)
    cluster, body = start_canary(body)
    cluster.reconcile(body, at(2))
    p = cluster.reconcile(body, at(3))
    again = plan(body, cluster.observed(), at(3))
    assert again.apply == [] and again.delete == [] and again.events == []
    assert again.status == p.status


FRONT_DOOR = {"interval": "30s", "maxErrorRate": 0.05, "minRequests": 20, "failureLimit": 2,
              "timeToFirstToken": {"percentile": 90, "maxSeconds": 1.0, "maxRatioToStable": 2},
              "interTokenLatency": {"maxSeconds": 0.05}, "maxP99LatencySeconds": 30}


def measured(cluster: Any, body: dict[str, Any], seconds: float, m: Measurement) -> dict[str, Any]:
    """A pass at `seconds` in which the provider answered `m`; the status it writes (into body too)."""
    observed = cluster.observed()
    p = plan(body, Observed(**{**observed.__dict__, "measurement": m}), at(seconds))
    body["status"] = p.status
    return dict(p.status["analysis"])


def test_the_default_provider_scrapes_the_front_doors_and_takes_its_baseline_at_once() -> None:
    body = with_rollout(steps=[{"weight": 50}, {"pause": "5m"}], analysis={"interval": "30s"})
    cluster, body = start_canary(body)
    cluster.reconcile(body, at(2))
    request = asked(body, cluster.observed(), at(3))
    assert request is not None and request.provider == "frontend" and request.previous_counters == {}
    assert request.streaming  # the spec's streaming, for Triton's time-to-first-response histogram


def test_a_window_short_of_min_requests_stays_open_in_status_and_the_next_measurement_covers_it() -> None:
    body = with_rollout(steps=[{"weight": 50}, {"pause": "5m"}], analysis=FRONT_DOOR)
    cluster, body = start_canary(body)
    cluster.reconcile(body, at(2))
    c0, c1, c2 = ({"#format": 2.0, "canary:10.0.0.1|requests": float(n)} for n in (100, 117, 134))
    assert measured(cluster, body, 10, Measurement(0, 0, baseline_only=True, counters=c0))["result"] == "Pending"
    short = measured(cluster, body, 40, Measurement(17, 0, window_seconds=30, counters=c1))
    # Pending, the window kept open from the baseline: its counters stay those of its start.
    assert (short["result"], short["windowStart"], short["counters"]) == ("Pending", at(10), c0)
    assert "fewer than minRequests 20" in short["message"] and body["status"]["phase"] == "Progressing"
    # The next request, from status alone (a restarted operator asks the same): the whole window, from c0.
    assert asked(body, cluster.observed(), at(69)) is None  # one interval after the last measurement
    request = asked(body, cluster.observed(), at(70))
    assert request is not None and request.window_seconds == 60 and request.previous_counters == c0
    histograms = {"canary:ttft": ((0.25, 30.0), (0.5, 34.0), (math.inf, 34.0)),
                  "stable:ttft": ((0.25, 300.0), (math.inf, 300.0)),
                  "canary:itl": ((0.01, 200.0), (0.02, 400.0), (math.inf, 400.0)),
                  "stable:itl": ((0.01, 500.0), (math.inf, 500.0)),
                  "canary:e2e": ((5.0, 34.0), (math.inf, 34.0)), "stable:e2e": ((5.0, 300.0), (math.inf, 300.0))}
    done = measured(cluster, body, 70, Measurement(34, 0, window_seconds=60, counters=c2, stable_requests=300,
                                                   stable_errors=0, latency=histograms))
    assert done["result"] == "Successful" and "windowStart" not in done and done["counters"] == c2
    # Both revisions' figures of every gate set, over the same window.
    figures = {k: v for k, v in done.items() if k.endswith(("LatencySeconds", "TokenSeconds", "Percentile"))}
    assert figures == {"p99LatencySeconds": 4.95, "stableP99LatencySeconds": 4.95,
                       "timeToFirstTokenPercentile": 90, "timeToFirstTokenSeconds": 0.2875,
                       "stableTimeToFirstTokenSeconds": 0.225, "interTokenLatencyPercentile": 95,
                       "interTokenLatencySeconds": 0.019, "stableInterTokenLatencySeconds": 0.0095}
