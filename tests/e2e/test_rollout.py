"""Canary and A/B rollouts on the testbed: real stand-in Tritons on pod IPs, Traefik honouring the HTTPRoute the
operator writes, Prometheus scraping the pods, and a bounded load generator going through the gateway."""

from __future__ import annotations

import itertools
import json
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
import requests
from kubernetes import client

from testbed import cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, Resources, _docs, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e
NAME = "r1-canary"
LOAD_LIMIT_S = 240  # no load generator outlives this, whatever the test does
FAULT_SEED = "testbed.deepseek.ai/fault-seed"  # the stand-in's error draws, seeded: the failure counts repeat


def canary_cr(namespace: str, *, strategy: str = "canary", steps: list[dict[str, Any]] | None = None,
              analysis: dict[str, Any] | None = None, match: list[dict[str, Any]] | None = None,
              replicas: int = 2, history: int = 1) -> dict[str, Any]:
    rollout: dict[str, Any] = {
        "strategy": strategy,
        "steps": steps if steps is not None else [{"weight": 20}, {"pause": "6s"}, {"weight": 50}, {"pause": "6s"}],
        "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway", "namespace": "default"}],
                                          "hostnames": [f"{namespace}.llm.test"]}},
        "revisionHistoryLimit": history,
    }
    if analysis is not None:
        rollout["analysis"] = analysis
    if match is not None:
        rollout["match"] = match
    return {
        "apiVersion": f"{GROUP}/{VERSION}", "kind": "DeepSeekDeployment",
        "metadata": {"name": NAME, "namespace": namespace},
        "spec": {
            "model": {"name": "deepseek-r1-distill-qwen-1.5b", "revision": "2025-01-20", "precision": "bf16",
                      "source": {"pvc": {"claimName": "model-store", "path": "/models/DeepSeek-R1-Distill-Qwen-1.5B"}}},
            "runtime": {"maxBatchSize": 8, "maxNumTokens": 1024, "maxSeqLen": 2048},
            "serving": {"replicas": replicas, "gpu": {"type": "H100-80GB"}},
            "rollout": rollout,
        },
    }


@dataclass
class Load:
    """Bounded load through the gateway: a few threads, each request's outcome and which pod answered."""

    url: str | Callable[[], str]  # the gateway, or a picker of one of the Service's endpoints per request
    host: str
    headers: dict[str, str] = field(default_factory=dict)
    threads: int = 4
    pause_s: float = 0.02  # between one thread's requests
    outcomes: list[tuple[int, str]] = field(default_factory=list)  # (status, pod, or the error of status 0)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self) -> None:
        deadline = time.monotonic() + LOAD_LIMIT_S
        with requests.Session() as s:
            for n in itertools.count():
                if self._stop.is_set() or time.monotonic() >= deadline:
                    break
                try:
                    # Every other request is a streamed chat through the OpenAI frontend: both clients count.
                    status, text = (self._chat(s) if n % 2 else self._generate(s))
                    pod = re.match(r"\[([^\]]+)\]", text) if status == 200 else None
                    # The pod that answered; for a failure, when and what, so a failed assertion can be placed.
                    self.outcomes.append((status, pod.group(1).split("/")[-1] if pod else
                                          f"{time.strftime('%H:%M:%S')} {text[:80]}"))
                except (requests.RequestException, ValueError) as e:  # status 0, with what went wrong
                    self.outcomes.append((0, f"{time.strftime('%H:%M:%S')} {type(e).__name__}: {e}"[:200]))
                time.sleep(self.pause_s)

    def _base(self) -> str:
        return self.url() if callable(self.url) else self.url

    def _generate(self, s: requests.Session) -> tuple[int, str]:
        r = s.post(f"{self._base()}/v2/models/tensorrt_llm/generate", timeout=5,
                   json={"text_input": "which revision answers", "sampling_param_max_tokens": 4,
                         "sampling_param_exclude_input_from_output": True},  # else the answer starts with the prompt
                   headers={"Host": self.host, **self.headers})
        return r.status_code, r.json().get("text_output", "") if r.ok else r.text

    def _chat(self, s: requests.Session) -> tuple[int, str]:
        r = s.post(f"{self._base()}/v1/chat/completions", timeout=5, stream=True,
                   json={"messages": [{"role": "user", "content": "which revision answers"}], "max_tokens": 12,
                         "stream": True}, headers={"Host": self.host, **self.headers})
        if not r.ok:
            return r.status_code, r.text
        chunks = [json.loads(line[len("data: "):]) for line in r.iter_lines(decode_unicode=True)
                  if line.startswith("data: {")]
        if any("error" in c for c in chunks):
            return 500, json.dumps(chunks[-1])
        return r.status_code, "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)

    def __enter__(self) -> Load:
        for _ in range(self.threads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=10)


class ServiceEndpoints:
    """What kube-proxy does for a client of the Service (the testbed has none): each request to one of its Ready
    endpoints, chosen at random, from its EndpointSlices as they are now (read at most every 0.5 s)."""

    def __init__(self, testbed: TestbedClient, ns: str, service: str) -> None:
        self._api = client.DiscoveryV1Api(testbed.api)
        self._ns, self._service = ns, service
        self._addresses: list[str] = []
        self._read_at = -1.0
        self._lock = threading.Lock()
        self._random = random.Random(0)

    def __call__(self) -> str:
        with self._lock:
            if time.monotonic() - self._read_at > 0.5:
                slices = self._api.list_namespaced_endpoint_slice(
                    self._ns, label_selector=f"kubernetes.io/service-name={self._service}").items
                self._addresses = [e.addresses[0] for sl in slices for e in sl.endpoints or []
                                   if e.conditions is None or e.conditions.ready is not False]
                self._read_at = time.monotonic()
            if not self._addresses:
                raise requests.ConnectionError(f"Service {self._service} has no Ready endpoint")
            return f"http://{self._random.choice(self._addresses)}:8000"


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "ro")


def status(res: Resources) -> dict[str, Any]:
    return dict(res.get(NAME).get("status") or {})


def serve_first_revision(res: Resources, cr: dict[str, Any], testbed: TestbedClient) -> str:
    assert kubectl_apply([cr]).returncode == 0
    healthy = res.wait_phase(NAME, "Healthy", timeout=180)["status"]

    def routed() -> bool:  # Traefik has picked the route up
        r = requests.post(f"{testbed.gateway}/v2/models/tensorrt_llm/generate", timeout=5,
                          json={"text_input": "ping", "sampling_param_max_tokens": 1},
                          headers={"Host": f"{res.ns}.llm.test"})
        return r.ok
    eventually("the route to answer through the gateway", routed, timeout=60)
    return str(healthy["stableRevision"])


def pods_by_revision(testbed: TestbedClient, ns: str) -> dict[str, str]:
    pods = testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/deployment={NAME}").items
    return {p.metadata.name: p.metadata.labels["serving.deepseek.ai/revision"] for p in pods}


def watch(res: Resources, until: str, timeout: float) -> list[dict[str, Any]]:
    """Polls the status until the phase is `until`; returns every distinct status seen on the way."""
    seen: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        obj = res.get(NAME)
        s = dict(obj.get("status") or {})
        if not seen or s != seen[-1]:
            seen.append(s)
        fresh = s.get("observedGeneration") == obj["metadata"]["generation"]
        if fresh and s.get("phase") == until and not s.get("canaryRevision"):
            return seen
        time.sleep(0.5)
    raise AssertionError(f"not {until} after {timeout}s; last: {seen[-1] if seen else None}")


def test_clean_canary_walks_its_steps_and_is_promoted(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    analysis = gateway_analysis(testbed)
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
        seen = watch(res, "Healthy", timeout=200)
    new = seen[-1]["stableRevision"]
    assert new != old and seen[-1]["history"][0]["revision"] == new and len(seen[-1]["history"]) == 1
    weights = [s.get("canaryWeight", 0) for s in seen if s.get("canaryRevision") == new]
    assert {20, 50} <= set(weights) and weights == sorted(weights)
    assert any((s.get("analysis") or {}).get("result") == "Successful" for s in seen)
    # Every request answered; the old revision's pods and objects are gone past the history limit.
    codes = Counter(code for code, _ in load.outcomes)
    assert codes[200] > 100 and set(codes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)
    eventually("the old revision's Deployment to be pruned", lambda: not res.apps.list_namespaced_deployment(
        ns, label_selector=f"serving.deepseek.ai/revision={old}").items, timeout=60)
    events = {e.reason for e in testbed.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={NAME}")
              .items}
    assert {"RolloutStarted", "CanaryStep", "AnalysisSuccessful", "Promoted"} <= events


def _prometheus_pid() -> int:
    state = cluster.State.load()
    assert state is not None
    return state.pids["prometheus"]


def gateway_analysis(testbed: TestbedClient, **settings: Any) -> dict[str, Any]:
    """Analysis on what clients saw (the gateway's status codes): the provider that sees the llmapi model's
    failures (Triton counts its error responses as successes, triton-inference-server/server#7713)."""
    return {"interval": "4s", "maxErrorRate": 0.05, "minRequests": 20, "failureLimit": 2, "provider": "gateway",
            "gateway": {"source": cluster.GATEWAY_SOURCE}, **settings}


def test_triton_counters_never_show_a_canary_healthy_so_a_clean_one_pauses(testbed: TestbedClient,
                                                                         ns: str) -> None:
    """The triton provider's honest limit: Triton counts the llmapi model's errors as successes, so its counters
    can never prove a canary healthy. A clean canary is paused for a person, naming the providers that can pass."""
    res = Resources(testbed, ns)
    analysis = {"interval": "3s", "maxErrorRate": 0.05, "minRequests": 10, "failureLimit": 2, "provider": "triton",
                "onInconclusive": "pause"}
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test"):
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
        paused = eventually("the rollout to pause", lambda: (s := status(res)).get("phase") == "Paused" and s,
                            timeout=120)
    assert paused["pauseReason"] == "AnalysisInconclusive" and paused["stableRevision"] == old
    assert paused["canaryWeight"] == 20 and paused["currentStep"] <= 1  # never promoted past the first step
    assert paused["analysis"]["requests"] >= 10  # enough requests: what is missing is a count of the errors
    assert "server#7713" in paused["analysis"]["message"] and "frontend" in paused["analysis"]["message"]


@pytest.mark.parametrize("provider", ["frontend", "prometheus"])
def test_with_service_routing_and_no_gateway_a_failing_canary_is_rolled_back_and_a_clean_one_promoted(
        testbed: TestbedClient, ns: str, provider: str) -> None:
    """trafficRouting service: the Service selects both revisions' pods, so the canary's weight is its share of
    the replicas; clients reach the Service's endpoints (kube-proxy's random pick, done here by the load). The
    analysis is the default one (frontend: each revision's pods' front doors), or prometheus over the same
    series."""
    res = Resources(testbed, ns)
    cr = canary_cr(ns, replicas=4, steps=[{"weight": 20}, {"pause": "4s"}, {"weight": 50}, {"pause": "4s"}],
                   analysis={} if provider == "frontend" else {
                       "provider": "prometheus", "prometheus": {"source": cluster.PROMETHEUS_SOURCE}})
    cr["spec"]["rollout"]["trafficRouting"] = {"service": {}}
    assert kubectl_apply([cr]).returncode == 0
    old = res.wait_phase(NAME, "Healthy", timeout=180)["status"]["stableRevision"]
    endpoints = ServiceEndpoints(testbed, ns, NAME)
    with Load(endpoints, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3", FAULT_SEED: "1"}}})
        seen = watch(res, "RolledBack", timeout=200)
    final = seen[-1]
    bad = final["heldRevision"]
    assert bad and final["stableRevision"] == old and final["analysis"]["provider"] == provider
    assert final["analysis"]["result"] == "Failed" and final["analysis"]["errorRate"] > 0.02
    failed = [o for o in load.outcomes if o[0] != 200]
    assert failed and len(failed) / len(load.outcomes) < 0.3 * 0.5, Counter(o[0] for o in load.outcomes)

    # A clean version at the same traffic: promoted without a human.
    with Load(endpoints, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0",
                                                        "testbed.deepseek.ai/latency-ms": "1"}}})
        seen = watch(res, "Healthy", timeout=300)
    final = seen[-1]
    assert final["stableRevision"] not in (old, bad)
    assert any((s.get("analysis") or {}).get("result") == "Successful" for s in seen)
    assert not any(s.get("phase") == "Paused" for s in seen)
    assert {code for code, _ in load.outcomes} == {200}, Counter(o for o in load.outcomes if o[0] != 200)


TTFT_GATE = {"percentile": 90, "maxSeconds": 0.3}


@pytest.mark.parametrize(("provider", "mode"), [("frontend", "windowed"), ("frontend", "sequential")])
def test_a_canary_whose_first_token_comes_400ms_later_is_rolled_back_by_the_ttft_gate(
        testbed: TestbedClient, ns: str, provider: str, mode: str) -> None:
    """No errors, only a slower first token: the TTFT gate fails it in both modes (sequential: each request slower
    than maxSeconds is bad). The same fault through the triton provider cannot be run here: the testbed's
    tritonserver (nvidia-pytriton's 2.51 build) exports no nv_inference_first_response_histogram_ms for the
    Python backend's model; tests/unit/test_analysis_gates.py holds that a latency failure read from Triton's
    counters is a failure, never Inconclusive."""
    res = Resources(testbed, ns)
    analysis = {"interval": "3s", "maxErrorRate": 0.05, "minRequests": 10, "failureLimit": 2, "provider": provider,
                "mode": mode, "timeToFirstToken": TTFT_GATE, "onInconclusive": "pause"}
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "400"}}})
        seen = watch(res, "RolledBack", timeout=150)
    final = seen[-1]
    assert final["stableRevision"] == old and final["analysis"]["result"] == "Failed"
    assert not any(s.get("phase") == "Paused" for s in seen)
    if mode == "windowed":
        assert final["analysis"]["timeToFirstTokenSeconds"] > 0.3, final["analysis"]
        assert "time to first token" in final["analysis"]["message"]
    else:
        # Bad requests here are slow ones, none failed (status.analysis counts them apart).
        assert final["analysis"]["totalSlow"] >= 1 and final["analysis"]["totalErrors"] == 0, final["analysis"]
        assert "roll back" in final["analysis"]["message"]
    assert {code for code, _ in load.outcomes} == {200}  # slow, never failing


def test_errors_in_the_canary_roll_it_back_before_the_first_analysed_step(testbed: TestbedClient,
                                                                        ns: str) -> None:
    res = Resources(testbed, ns)
    analysis = gateway_analysis(testbed)
    provider = "gateway"
    steps = [{"weight": 20}, {"pause": "60s"}, {"weight": 50}, {"pause": "60s"}]
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis, steps=steps), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3", FAULT_SEED: "1"}}})
        seen = watch(res, "RolledBack", timeout=150)
        time.sleep(4)  # a little load after the rollback (and Traefik's reload): all of it on the stable
    final = seen[-1]
    bad = final["heldRevision"]
    assert bad and bad != old and final["stableRevision"] == old and final["canaryWeight"] == 0
    assert max(s.get("currentStep", 0) for s in seen if s.get("canaryRevision") == bad) <= 1  # never left step 1
    assert max(s.get("canaryWeight", 0) for s in seen) == 20
    degraded = next(c for c in final["conditions"] if c["type"] == "Degraded")
    assert (degraded["status"], degraded["reason"]) == ("True", "AnalysisFailed")
    assert "error rate" in degraded["message"] and final["analysis"]["provider"] == provider
    assert final["analysis"]["result"] == "Failed" and final["analysis"]["errorRate"] > 0.05
    # The canary is scaled to zero; the stable kept serving and never failed a request.
    [canary] = res.apps.list_namespaced_deployment(ns, label_selector=f"serving.deepseek.ai/revision={bad}").items
    assert canary.spec.replicas == 0
    revisions = pods_by_revision(testbed, ns)
    stable_pods = {p for p, r in revisions.items() if r == old}
    answered = [pod for code, pod in load.outcomes if code == 200]
    failed = [code for code, _ in load.outcomes if code != 200]
    assert answered and failed, "the canary's share must have seen both answers and failures"
    assert len(failed) / len(load.outcomes) < 0.3 * 0.5  # only the canary's 20% share failed, at ~30%
    assert all(pod in stable_pods for pod in answered[-20:])  # after the rollback: the stable alone
    for pod in stable_pods:
        failures = testbed.prom_query(f'sum(nv_inference_request_failure{{namespace="{ns}",pod="{pod}"}})')
        assert not failures or float(failures[0]["value"][1]) == 0
    # Still named by the spec, the bad revision stays held: no second attempt.
    time.sleep(6)
    assert status(res)["canaryRevision"] == "" and status(res)["heldRevision"] == bad


@pytest.mark.parametrize("mode", ["windowed", "sequential"])
def test_the_shipped_canary_example_at_modest_traffic_rolls_back_a_failing_version_and_ships_a_healthy_one(
        testbed: TestbedClient, ns: str, mode: str) -> None:
    """examples/r1-distill-llama-8b-canary.yaml as shipped (its namespace and host made this test's), ~8 req/s
    through the gateway: its canary's 5 s windows hold fewer than its minRequests 20 (10% of the traffic, plus the
    stable's mirrored share). A version failing 30% is rolled back, never paused; a healthy one is promoted
    without a person."""
    res = Resources(testbed, ns)
    [cr] = _docs("r1-distill-llama-8b-canary.yaml", ns)
    name, host = cr["metadata"]["name"], f"{ns}.llm.test"
    cr["spec"]["rollout"]["trafficRouting"]["gatewayAPI"]["hostnames"] = [host]
    cr["spec"]["rollout"]["analysis"]["mode"] = mode
    assert kubectl_apply([cr]).returncode == 0
    old = res.wait_phase(name, "Healthy", timeout=300)["status"]["stableRevision"]
    eventually("the route to answer", lambda: requests.post(
        f"{testbed.gateway}/v2/models/tensorrt_llm/generate", timeout=5, headers={"Host": host},
        json={"text_input": "ping", "sampling_param_max_tokens": 1}).ok, timeout=60)

    def phases_until(phase: str, timeout: float) -> list[dict[str, Any]]:
        seen: list[dict[str, Any]] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            obj = res.get(name)
            s = dict(obj.get("status") or {})
            if not seen or s != seen[-1]:
                seen.append(s)
            if s.get("observedGeneration") == obj["metadata"]["generation"] and s.get("phase") == phase \
                    and not s.get("canaryRevision"):
                return seen
            time.sleep(0.5)
        raise AssertionError(f"not {phase} after {timeout}s; last: {seen[-1] if seen else None}")

    with Load(testbed.gateway, host, threads=1, pause_s=0.1) as load:
        res.patch(name, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3", FAULT_SEED: "1"}}})
        seen = phases_until("RolledBack", timeout=240)
    final = seen[-1]
    assert final["stableRevision"] == old and final["analysis"]["result"] == "Failed", final["analysis"]
    assert not any(s.get("phase") == "Paused" for s in seen)
    windows = [s["analysis"] for s in seen if (s.get("analysis") or {}).get("revision") == final["heldRevision"]]
    if mode == "windowed":  # the traffic was modest indeed: no window of the canary's reached minRequests
        assert all(a["requests"] < 20 for a in windows), windows
    else:
        assert final["analysis"]["totalRequests"] < 40, final["analysis"]
    failed = sum(1 for code, _ in load.outcomes if code != 200)
    print(f"\n{mode}: rolled back, {failed} of {len(load.outcomes)} client requests failed")

    with Load(testbed.gateway, host, threads=1, pause_s=0.1) as load:
        res.patch(name, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0",
                                                        "testbed.deepseek.ai/latency-ms": "1"}}})
        seen = phases_until("Healthy", timeout=420)
    assert seen[-1]["stableRevision"] not in (old, final["heldRevision"])
    assert not any(s.get("phase") == "Paused" for s in seen)
    assert {code for code, _ in load.outcomes} == {200}, Counter(o for o in load.outcomes if o[0] != 200)


def test_a_window_that_never_reaches_min_requests_pauses_rather_than_promoting(testbed: TestbedClient,
                                                                           ns: str) -> None:
    """The frontend provider can pass a canary; below minRequests it must not: the window keeps measuring
    (Pending, growing) until it spans 10 intervals, then is Inconclusive and the rollout pauses for a person."""
    res = Resources(testbed, ns)
    analysis = {"interval": "2s", "maxErrorRate": 0.05, "minRequests": 1000, "onInconclusive": "pause",
                "mirror": "off"}
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test", threads=1):
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "2"}}})
        # The first windows of a canary at 10% of one thread's requests may hold none yet: wait for one that has.
        pending = eventually("a window short of requests", lambda: (
            a := status(res).get("analysis") or {}).get("result") == "Pending" and a.get("requests", 0) > 0 and a,
            timeout=120)
        paused = eventually("the rollout to pause", lambda: (s := status(res)).get("phase") == "Paused" and s,
                            timeout=120)
    assert 0 < pending["requests"] < 1000 and "minRequests" in pending["message"]
    assert paused["pauseReason"] == "AnalysisInconclusive" and paused["stableRevision"] == old
    assert "fewer than minRequests 1000" in paused["analysis"]["message"]
    assert paused["analysis"]["windowSeconds"] >= 10 * 2 - 1  # it kept measuring before it gave up
    time.sleep(8)  # paused: nothing moves
    still = status(res)
    assert (still["phase"], still["stableRevision"], still["currentStep"]) == ("Paused", old, paused["currentStep"])
    # A person decides: promote-full (through the CLI) ships it without further analysis.
    cli = subprocess.run([sys.executable, "-m", "deepseek_operator.cli", "promote-full", NAME,
                          "-n", ns, "--kubeconfig", str(cluster.KUBECONFIG)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    done = res.wait_phase(NAME, "Healthy", timeout=120)["status"]
    assert done["stableRevision"] != old and done["lastAction"]["action"] == "promote-full"


def test_prometheus_down_mid_analysis_is_inconclusive_never_a_promotion(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    analysis = {"interval": "3s", "maxErrorRate": 0.05, "minRequests": 10, "provider": "prometheus",
                "prometheus": {"source": cluster.PROMETHEUS_SOURCE}, "onInconclusive": "pause"}
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis, steps=[{"weight": 50}, {"pause": "30s"}]),
                               testbed)
    pid = _prometheus_pid()
    with Load(testbed.gateway, f"{ns}.llm.test"):
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "2"}}})
        eventually("the canary to take traffic", lambda: status(res).get("canaryWeight") == 50, timeout=120)
        os.kill(pid, signal.SIGSTOP)  # Prometheus stops answering (its port stays open)
        try:
            paused = eventually("the rollout to pause", lambda: (s := status(res)).get("phase") == "Paused" and s,
                                timeout=90)
        finally:
            os.kill(pid, signal.SIGCONT)
    assert paused["stableRevision"] == old and paused["pauseReason"] == "AnalysisInconclusive"
    assert "prometheus" in paused["analysis"]["message"]


def test_ab_test_sends_only_matching_requests_to_the_new_revision(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    cr = canary_cr(ns, strategy="abTest", steps=[{"pause": "indefinite"}],
                   match=[{"headers": {"x-model-variant": {"exact": "b"}}}])
    old = serve_first_revision(res, cr, testbed)
    res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
    paused = eventually("the A/B test to run", lambda: (s := status(res)).get("phase") == "Paused" and s,
                        timeout=120)
    new = paused["canaryRevision"]
    time.sleep(3)  # Traefik reloads the route with its header match
    with Load(testbed.gateway, f"{ns}.llm.test", headers={"x-model-variant": "b"}, threads=2) as variant_b:
        time.sleep(4)
    with Load(testbed.gateway, f"{ns}.llm.test", threads=2) as others:
        time.sleep(4)
    revisions = pods_by_revision(testbed, ns)
    got_b = Counter(revisions.get(pod) for code, pod in variant_b.outcomes if code == 200)
    got_others = Counter(revisions.get(pod) for code, pod in others.outcomes if code == 200)
    assert set(got_b) == {new} and sum(got_b.values()) > 20, got_b
    assert set(got_others) == {old} and sum(got_others.values()) > 20, got_others
    # An abTest cannot work without a gateway: the apiserver says so.
    bad = canary_cr(ns, strategy="abTest", match=[{"headers": {"x-model-variant": {"exact": "b"}}}], steps=[])
    bad["metadata"]["name"] = "no-gateway"
    bad["spec"]["rollout"]["trafficRouting"] = {"service": {}}
    refused = kubectl_apply([bad])
    assert refused.returncode != 0 and "a Service cannot route by header" in refused.stderr


def test_rollback_to_an_earlier_revision(testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    first = serve_first_revision(res, canary_cr(ns, steps=[], history=3), testbed)
    res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
    second = eventually("the second revision to be promoted",
                        lambda: (s := status(res)).get("stableRevision") not in (None, first)
                        and s.get("phase") == "Healthy" and s["stableRevision"], timeout=150)
    subprocess.run([sys.executable, "-m", "deepseek_operator.cli", "rollback-to", NAME, first,
                    "-n", ns, "--kubeconfig", str(cluster.KUBECONFIG)], check=True, capture_output=True)
    back = eventually("the first revision to serve again",
                      lambda: (s := status(res)).get("stableRevision") == first and not s.get("canaryRevision")
                      and s, timeout=150)
    assert back["phase"] == "RolledBack" and back["heldRevision"] == second
    ready = next(c for c in back["conditions"] if c["type"] == "Ready")
    degraded = next(c for c in back["conditions"] if c["type"] == "Degraded")
    assert ready["status"] == "True" and degraded["status"] == "False"
    assert set(pods_by_revision(testbed, ns).values()) <= {first, second}
    eventually("only the first revision's pods to serve", lambda: {
        r for p, r in pods_by_revision(testbed, ns).items()
        if p in {x.metadata.name for x in testbed.ready_pods(ns, f"serving.deepseek.ai/deployment={NAME}")}}
        == {first}, timeout=60)
    res.custom.delete_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, NAME)


KILL_POINTS = [
    ("quantizing for the new revision", lambda s, new: s.get("phase") == "Preparing"),
    ("rollout started", lambda s, new: s.get("canaryRevision") and s.get("canaryWeight", 0) == 0),
    ("weight 20", lambda s, new: s.get("canaryWeight") == 20),
    ("baseline measured", lambda s, new: (s.get("analysis") or {}).get("result") == "Pending"),
    ("first verdict", lambda s, new: (s.get("analysis") or {}).get("result") == "Successful"),
    ("weight 50", lambda s, new: s.get("canaryWeight") == 50),
    ("second pause", lambda s, new: s.get("currentStep") == 3),
    ("promoting", lambda s, new: s.get("currentStep") == 4 and s.get("canaryRevision")),
    ("promoted", lambda s, new: s.get("stableRevision") == new),
]
# Points a pass may go through between two polls: the quantize Job of a tiny checkpoint, and promoting when the
# canary already holds all the replicas it will (2 of 2 at weight 50: rollout/capacity.py) and is promoted at once.
PASSING_POINTS = frozenset({"quantizing for the new revision", "promoting"})


def test_operator_killed_at_every_point_of_a_rollout_resumes_to_the_same_outcome(
        testbed: TestbedClient, ns: str, operator: OperatorProcess) -> None:
    res = Resources(testbed, ns)
    cr = canary_cr(ns, analysis=gateway_analysis(testbed))
    cr["spec"]["model"]["precision"] = "fp8"  # each checkpoint revision is quantized once: a Building phase
    old = serve_first_revision(res, cr, testbed)
    killed_at = []
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"model": {"revision": "2025-02-01"}})  # a new quantized checkpoint, then the canary
        new = eventually("the new revision", lambda: (s := status(res)).get("revision") != old and s["revision"],
                         timeout=30)
        for point, reached in KILL_POINTS:
            try:
                eventually(point, lambda reached=reached: reached(status(res), new), timeout=120, interval=0.1)
            except AssertionError:
                if point not in PASSING_POINTS:
                    raise
                continue
            operator.kill()  # SIGKILL: no goodbye, no status flush
            killed_at.append(point)
            time.sleep(1.5)
            operator.start()
        done = res.wait_phase(NAME, "Healthy", timeout=150)["status"]
    assert len(killed_at) >= len(KILL_POINTS) - len(PASSING_POINTS), killed_at
    assert (done["stableRevision"], done["canaryRevision"], done["heldRevision"]) == (new, "", "")
    assert [h["revision"] for h in done["history"]] == [new]
    assert set(code for code, _ in load.outcomes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)
    # No extra children: one revision's Deployment and ConfigMap, the three Services, one route, one budget.
    selector = f"serving.deepseek.ai/deployment={NAME}"
    eventually("the old revision to be pruned", lambda: len(res.apps.list_namespaced_deployment(
        ns, label_selector=selector).items) == 1, timeout=60)
    assert [d.metadata.name for d in res.apps.list_namespaced_deployment(ns, label_selector=selector).items] == [
        f"{NAME}-{new}"]
    assert len(testbed.core.list_namespaced_config_map(ns, label_selector=selector).items) == 1
    assert len(testbed.core.list_namespaced_service(ns, label_selector=selector).items) == 3
    jobs = res.batch.list_namespaced_job(ns, label_selector="app.kubernetes.io/component=quantize").items
    assert len(jobs) == 2  # one quantize Job per key, never run twice


def test_sequential_analysis_rolls_back_on_fewer_requests_than_a_window_needs(testbed: TestbedClient,
                                                                             ns: str) -> None:
    """analysis.mode sequential at ~2 req/s to the canary (10% of ~20 req/s), 30% of them failing: rolled back by
    the sequential test before minRequests (50) canary requests, where windowed analysis could only pause."""
    res = Resources(testbed, ns)
    analysis = gateway_analysis(testbed, mode="sequential", interval="2s", minRequests=50)
    steps = [{"weight": 10}, {"pause": "120s"}, {"weight": 50}, {"pause": "60s"}]
    old = serve_first_revision(res, canary_cr(ns, analysis=analysis, steps=steps), testbed)
    timeline: list[tuple[float, int]] = []
    with Load(testbed.gateway, f"{ns}.llm.test", threads=2, pause_s=0.1):
        changed = time.monotonic()
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3", FAULT_SEED: "1"}}})
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            s = status(res)
            timeline.append((time.monotonic(), int(s.get("canaryWeight", 0))))
            if s.get("phase") == "RolledBack":
                break
            time.sleep(0.25)
    final = status(res)
    assert final["phase"] == "RolledBack" and final["stableRevision"] == old, final
    assert final["analysis"]["result"] == "Failed" and "roll back" in final["analysis"]["message"]
    assert final["analysis"]["totalRequests"] < 50, final["analysis"]  # decided before a window could be
    first = next(t for t, w in timeline if w > 0)
    last = next(t for t, w in timeline if t > first and w == 0)
    print(f"\nsequential analysis: weight > 0 -> weight 0 in {last - first:.1f}s, version change -> weight 0 in "
          f"{last - changed:.1f}s, on {final['analysis']['totalRequests']:.0f} canary requests "
          f"({final['analysis']['totalErrors']:.0f} failed)")


def _front_door(ip: str, path: str) -> requests.Response:
    return requests.get(f"http://{ip}:8003{path}", timeout=5)


def _requests_counted(ip: str, mirrored: str) -> float:
    """The pod front door's deepseek_frontend_requests_total for mirrored="true" or "false", all codes."""
    total = 0.0
    for line in _front_door(ip, "/metrics").text.splitlines():
        if line.startswith("deepseek_frontend_requests_total{") and f'mirrored="{mirrored}"' in line:
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_a_canary_below_its_replicas_share_gets_a_mirrored_share_of_the_stables_requests(testbed: TestbedClient,
                                                                                        ns: str) -> None:
    """10% of the traffic on 1 of 5 replicas: each stable pod's front door mirrors 13.9% of its requests to the
    canary (then a canary replica carries a stable one's load). Clients only ever get 10% of answers from the
    canary; its front door counts the mirrored ones apart; an abort stops the mirroring at once."""
    res = Resources(testbed, ns)
    analysis = {"interval": "3s", "maxErrorRate": 0.05, "minRequests": 10}
    old = serve_first_revision(res, canary_cr(ns, replicas=4, analysis=analysis,
                                              steps=[{"weight": 10}, {"pause": "indefinite"}]), testbed)
    with Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
        paused = eventually("the canary at 10%", lambda: (s := status(res)).get("canaryWeight") == 10
                            and s.get("phase") == "Paused" and s, timeout=150)
        new = paused["canaryRevision"]
        stable_pods = testbed.ready_pods(ns, f"serving.deepseek.ai/revision={old}")
        [canary_pod] = testbed.ready_pods(ns, f"serving.deepseek.ai/revision={new}")
        canary_ip = canary_pod.status.pod_ip
        orders = eventually("every stable pod's mirror order", lambda: (o := [
            _front_door(p.status.pod_ip, "/mirror").json()["order"] for p in stable_pods]) and all(o) and o,
                            timeout=30)
        before = _requests_counted(canary_ip, "true")
        mark = len(load.outcomes)
        time.sleep(6)
        mirrored = _requests_counted(canary_ip, "true") - before
        answered = [pod for code, pod in load.outcomes[mark:] if code == 200]
    assert len(stable_pods) == 4
    assert {o["target"] for o in orders} == {f"http://{canary_ip}:8000"}
    assert all(o["fraction"] == pytest.approx(0.1389, abs=1e-4) for o in orders), orders
    # Clients: about 10% from the canary, never the mirrored share on top.
    canary_share = sum(1 for pod in answered if pod == canary_pod.metadata.name) / len(answered)
    assert 0.03 < canary_share < 0.2, canary_share
    # The canary's front door: about 13.9% of the stable's 90% mirrored, counted apart.
    assert mirrored > 0.05 * len(answered), (mirrored, len(answered))
    assert any("the stable mirrors 13.9% of its requests" in c["message"] for c in paused["conditions"])
    cli = subprocess.run([sys.executable, "-m", "deepseek_operator.cli", "abort", NAME, "-n", ns,
                          "--kubeconfig", str(cluster.KUBECONFIG)], capture_output=True, text=True)
    assert cli.returncode == 0, cli.stderr
    eventually("every stable pod told to stop", lambda: all(
        _front_door(p.status.pod_ip, "/mirror").json()["order"] is None for p in stable_pods), timeout=30)
