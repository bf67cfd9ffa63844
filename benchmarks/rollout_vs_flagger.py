"""Our canary rollouts against Flagger's, on the same testbed, pods, load and fault: how soon a bad version stops
taking traffic, how often a good one is rolled back all the same, what it costs clients and GPUs, and how long a
good version takes to ship; and (--pool full) what a rollout does on a GPU pool with no GPU to spare.

    .venv/bin/python -m testbed.cluster up && testbed/build flagger
    .venv/bin/python benchmarks/rollout_vs_flagger.py [--tool ours|flagger|both]
        [--fault error|latency|half-limit|low-traffic] [--settings equal|defaults|sequential] [--runs 5]
        [--no-clean] [--rate R] [--threads 16] [--provider frontend|gateway] [--mirror fill|off]
        [--pool small|full] [--pool-layout 4x4] [--rollout-timeout S]

Each run, per tool, in a namespace of its own (deleted afterwards): the stand-in Triton behind the testbed's
Gateway, Traefik splitting traffic (--pool small: 4 replicas x 1 GPU); a paced load through Traefik (--rate req/s
from --threads threads, each request bounded by --request-timeout, the whole load by --rollout-timeout + 90 s);
then a version with a fault (pod annotations), then (unless --no-clean) a clean version, which both should promote.
The faults, against an error limit of 5% (ours maxErrorRate 0.05, Flagger's thresholdRange max 5%; not so in
--settings defaults, where ours has the CRD's 0.02):
  - error: 30% of the new version's requests fail; both should roll it back.
  - latency: it answers 400 ms later, against a 0.3 s p99 gate; both should roll it back. The stand-in answers one
    request at a time, so 400 ms stays within what one canary pod answers at its first step's share (2 req/s).
  - half-limit: 2.5% fail, half the limit: both SHOULD PROMOTE it; a rollback is a false rollback.
  - low-traffic: 8% fail, just above the limit, at low traffic (--rate defaults to 4 req/s here: 0.4 req/s to the
    canary at its first step's 10%); both should roll it back: how long it takes.
Flagger canaries a plain Deployment (testbed/flagger/example-triton.yaml) and judges Traefik's metrics through
Prometheus (example-metrics.yaml: non-2xx codes, as the stand-in's failures reach clients as HTTP 400, and the
duration histogram), configured as testbed/flagger/example-canary.yaml with the setting's interval, threshold and
steps. Ours is a DeepSeekDeployment with the operator's default analysis provider and mirroring (--provider
frontend: each revision's pods' front door; --mirror fill: the stable's front doors mirror a share of their requests
to the canary, answers discarded, so it has more evidence) unless told otherwise; --provider gateway reads the same
Traefik counters and histogram as Flagger (mirrored requests never pass Traefik: fill changes nothing there). The
status of the Canary / DeepSeekDeployment and the namespace's Deployments are polled every --poll seconds.

--pool full (#31): the resource holds the testbed's whole H100 pool (testbed/nodes.yaml: 2 nodes x 8 GPUs) as
--pool-layout replicas x GPUs (4x4: tensor parallel 4, 16 GPUs), and three rollouts take turns in each run: ours
with rollout.maxSurge 0, ours with maxSurge 1 (the default) and Flagger (its Deployment pinned to the H100 nodes).
Ours runs its NCCL preflight of the multi-GPU revision first: with maxSurge 0 a stable replica is drained and the
preflight Job created in its GPUs once it has gone (rollout/capacity.py room_for_a_job, plan/gates.py), then the
canary's first replica takes them.
Before each, the bench waits (--pool-wait) until no other pod holds an H100 GPU, or counts the run as "pool busy".
Flagger needs a second full pool to initialise (its primary must be Ready before it scales the target to zero): the
bench creates its Deployment paused (no pods) and unpauses it once Flagger has initialised. Flagger's canary then
has no GPU to run on: its pods stay Pending until its progressDeadlineSeconds rolls it back, and ours with
maxSurge 1 has none either (the surge GPUs do not exist): both are findings, bounded by --rollout-timeout (300 s
by default here). The namespace's pods are listed every poll for the GPUs scheduled pods hold and how long pods
wait unscheduled.

Figures per tool, median and worst over --runs: (a) weight > 0 -> weight 0, (b) the version change -> weight 0,
and -> rolled back or promoted as the tool's status said, (c) failed client requests during the faulty rollout,
the canary requests a decision needed (as clients saw them: answers from a pod that was not there at the change,
and every failed answer, since the stable has no fault; until weight 0 for a rollback, the promotion otherwise)
and, for ours, the requests its analysis counted (mirrored ones included: the sequential test's totals, or the sum
over its judged windows), (d) peak GPUs held (sum of spec.replicas x GPUs per pod over the namespace's
Deployments) and GPU-seconds beyond the stable's, with --pool full also the peak GPUs of scheduled pods over the
stable's (the goal for maxSurge 0: 0) and the longest any pod waited unscheduled, (e) the clean version's change ->
promoted; then ours/Flagger. The outcomes are counted per tool: for half-limit, the rollbacks are false rollbacks;
for the others, a promotion is a bad version shipped. A rollout that ends otherwise (paused, timed out) is counted
in `outcomes` and left out of the time figures. Figures only: nothing is asserted.

Ours' rollout is "stalled" when its status does not change for --stall-timeout seconds while it progresses (a
canary waiting for GPUs, or status writes the API server refuses): the bench quotes the Progressing condition and
the operator's last complaint about the namespace from its log, and moves on. Two things to know when reading ours'
figures with the default provider (frontend): the stand-in's failures reach the front door as Triton's HTTP 400 on
generate, which the front door counts as the client's (http_4xx) and the provider not as errors; and its per-pod
counters kept in status.analysis.counters exceed the CRD's 64 entries with a few pods, so the API server refuses
the status writes (seen on this testbed with 5 pods: 216 entries). --provider gateway has neither problem.

Another operator process against the same testbed (an end-to-end test's) reconciles this run's resources too: the
bench says so at the start, and its figures are then not clean.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import statistics
import string
import subprocess
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, cast

import requests
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from testbed import checkpoints, cluster
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess, install_crd
from tests.e2e.test_rollout import NAME, canary_cr, serve_first_revision
from tests.e2e.test_serving import Resources, kubectl_apply

REPO = Path(__file__).resolve().parents[1]
FLAGGER_DIR = REPO / "testbed" / "flagger"
FLAGGER_STATE = cluster.STATE_DIR / "flagger-bench"  # not flagger/run's default: a Flagger of someone else's stays
FLAGGER_TARGET = "triton"  # the Deployment and Canary of example-triton.yaml / example-canary.yaml
STEP_WEIGHTS = [10, 20, 30, 40, 50]  # Flagger's stepWeight 10 up to maxWeight 50, as our steps
LATENCY_LIMIT_S = 0.3  # the p99 gate of both tools, on one of Traefik's bucket bounds (0.1, 0.3, 1.2, 5 s)
ERROR_LIMIT = 0.05
# Ours only (Flagger judges whatever a window holds). A 10 s window at 10% of 20 req/s holds ~20 requests.
MIN_REQUESTS = 5
BASELINE = {"testbed.deepseek.ai/latency-ms": "2"}  # the first version's pods
ERROR_RATE = "testbed.deepseek.ai/error-rate"
FAULTS: dict[str, dict[str, str | None]] = {
    "error": {ERROR_RATE: "0.3"},
    "latency": {"testbed.deepseek.ai/latency-ms": "400"},
    "half-limit": {ERROR_RATE: f"{ERROR_LIMIT / 2:g}"},  # a good version: below the limit
    "low-traffic": {ERROR_RATE: f"{1.6 * ERROR_LIMIT:g}"},  # just above it, at --rate LOW_TRAFFIC_RATE
}
SHOULD_PROMOTE = frozenset({"half-limit"})
LOW_TRAFFIC_RATE = 4.0  # req/s through the gateway: 0.4 req/s to the canary at 10%
DEFAULT_RATE = 20.0
# The clean version: no fault, and a pod change of its own so that it is a new version after the faulty one.
CLEAN: dict[str, str | None] = {ERROR_RATE: None, "testbed.deepseek.ai/latency-ms": "3"}
H100_PRODUCT = "NVIDIA-H100-80GB-HBM3"  # testbed/nodes.yaml: the h100 pool, 2 nodes x 8
POOL_GPUS = 16


@dataclass(frozen=True)
class Pool:
    replicas: int
    gpus: int  # per replica
    full: bool  # --pool full: the whole H100 pool (pinned to it, free GPUs checked, pods listed every poll)

    @property
    def stable_gpus(self) -> int:
        return self.replicas * self.gpus

    def __str__(self) -> str:
        kind = f"the whole H100 pool ({POOL_GPUS} GPUs)" if self.full else "small pool"
        return f"{self.replicas} replicas x {self.gpus} GPU(s), {kind}"


@dataclass(frozen=True)
class Setting:
    ours_analysis: dict[str, Any]  # besides the provider and the latency gate, which every setting has
    ours_pause: str  # the pause after each weight step
    flagger_analysis: dict[str, Any]  # besides the metrics
    flagger_metric_interval: str | None  # None: Flagger's default (1m)
    flagger_progress_deadline_s: int | None  # None: Flagger's default (600 s)
    note: str


SETTINGS = {
    "equal": Setting(
        {"interval": "10s", "failureLimit": 2, "maxErrorRate": ERROR_LIMIT, "minRequests": MIN_REQUESTS}, "10s",
        {"interval": "10s", "threshold": 2, "stepWeight": 10, "maxWeight": 50}, "10s", 120,
        f"both judge every 10 s and roll back on the 2nd failure (ours: in a row; Flagger: in all); ours with "
        f"minRequests {MIN_REQUESTS} (Flagger has no such floor: a window without requests fails a check)"),
    "defaults": Setting(
        {}, "30s", {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50}, None, None,
        "ours: the CRD's analysis defaults (interval 30s, maxErrorRate 0.02, minRequests 50, failureLimit 2, "
        "onInconclusive pause, mode windowed, and unless told otherwise provider frontend, mirror fill); steps "
        "have no default: weights 10..50, each paused for one interval. Flagger: its CRD requires interval and "
        "threshold (the code's defaults: 60 s, 1): interval 1m (the documented schedule default) and threshold 5 "
        "(its docs' examples); metric interval 1m and progressDeadlineSeconds 600 (its defaults); stepWeight and "
        "maxWeight (default 100) as in `equal`; thresholdRange has no default: error rate max 5%, p99 max 0.3 s"),
    "sequential": Setting(
        {"mode": "sequential", "interval": "1s", "failureLimit": 2, "maxErrorRate": ERROR_LIMIT,
         "minRequests": MIN_REQUESTS},
        "10s", {"interval": "10s", "threshold": 1, "stepWeight": 10, "maxWeight": 50}, "10s", 120,
        "ours: the sequential test every 1 s; Flagger at its tightest: every 10 s (its floor), threshold 1"),
}

POD_OF_ANSWER = re.compile(r"\[[^\]/\s]+/([^\]\s]+)\]")  # the stand-in's answers name their pod: [<ns>/<pod>]


@dataclass
class Load:
    """Paced requests through the gateway: `rate` req/s in all, spread over `threads`, each request bounded by
    `timeout_s` and the whole load by `limit_s`. A thread behind its schedule skips ahead rather than bursting.
    Each answer is kept: when it came, its HTTP status (0 for none) and the pod that answered ("" if unknown)."""

    url: str
    host: str
    rate: float
    threads: int
    timeout_s: float
    limit_s: float
    answers: list[tuple[float, int, str]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _workers: list[threading.Thread] = field(default_factory=list)

    def _run(self, first_at: float) -> None:
        period = self.threads / self.rate
        deadline = time.monotonic() + self.limit_s
        due = first_at
        with requests.Session() as session:
            while not self._stop.is_set() and time.monotonic() < deadline:
                if (wait := due - time.monotonic()) > 0:
                    self._stop.wait(wait)
                    continue
                due = max(due + period, time.monotonic())
                try:
                    r = session.post(f"{self.url}/v2/models/tensorrt_llm/generate", timeout=self.timeout_s,
                                     json={"text_input": "which version answers", "sampling_param_max_tokens": 4},
                                     headers={"Host": self.host})
                    pod = ""
                    if r.status_code == 200:
                        try:
                            found = POD_OF_ANSWER.search(str(r.json().get("text_output", "")))
                            pod = found.group(1) if found else ""
                        except ValueError:
                            pass
                    self.answers.append((time.monotonic(), r.status_code, pod))
                except requests.RequestException:
                    self.answers.append((time.monotonic(), 0, ""))

    @property
    def failed(self) -> int:
        return sum(1 for _, status, _ in self.answers if status != 200)

    def __enter__(self) -> Load:
        start = time.monotonic()
        for n in range(self.threads):
            t = threading.Thread(target=self._run, args=(start + n / self.rate,), daemon=True)
            t.start()
            self._workers.append(t)
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        for t in self._workers:
            t.join(timeout=self.timeout_s + 5)


@dataclass
class Sample:
    at: float  # time.monotonic()
    weight: int
    gpus: int  # the Deployments' replicas x GPUs
    held: int = -1  # GPUs of scheduled pods (--pool full), -1 when not listed


@dataclass
class Rollout:
    """One version change as the poller saw it."""

    outcome: str  # "rolled back", "promoted", "paused", "timed out"
    changed_at: float
    ended_at: float  # when the outcome was seen
    samples: list[Sample]
    answers: list[tuple[float, int, str]]  # the load's, from its start (3 s before the change)
    old_pods: frozenset[str]  # the namespace's pods at the change
    stable_gpus: int
    evidence: float | None = None  # requests the tool's analysis counted (ours)
    pending_longest: float | None = None  # --pool full: the longest any pod waited unscheduled

    @property
    def requests(self) -> int:
        return len(self.answers)

    @property
    def failed(self) -> int:
        return sum(1 for _, status, _ in self.answers if status != 200)

    def weight_up_to_zero(self) -> tuple[float, float] | None:
        """When the weight first went above 0, and when it was next 0."""
        up = next((s.at for s in self.samples if s.weight > 0), None)
        down = next((s.at for s in self.samples if up is not None and s.at > up and s.weight == 0), None)
        return (up, down) if up is not None and down is not None else None

    def decided_at(self) -> float | None:
        """When the decision took the canary's traffic away (weight 0) or promoted it."""
        if self.outcome == "rolled back":
            span = self.weight_up_to_zero()
            return span[1] if span else self.ended_at
        return self.ended_at if self.outcome == "promoted" else None

    def canary_requests(self, until: float) -> int:
        """The canary's requests from the change to `until`, as clients saw them: answered by a pod that was not
        there at the change, or failed with an HTTP status (the stable has no fault; a request without an answer
        is left out)."""
        return sum(1 for at, status, pod in self.answers if self.changed_at <= at <= until and (
            (status == 200 and pod and pod not in self.old_pods) or status not in (0, 200)))

    def extra_gpu_seconds(self) -> float:
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(max(0, a.gpus - self.stable_gpus) * (b.at - a.at) for a, b in pairs)

    def peak_held_over_stable(self) -> int | None:
        held = [s.held for s in self.samples if s.held >= 0]
        return max(held) - self.stable_gpus if held else None


class Tool(Protocol):
    name: str
    ns: str  # the namespace of the current run, "" before one is made
    verdict: str  # what decided the last rollback, as the tool said it ("" where it says nothing more)

    def prepare(self, setting: Setting) -> str: ...  # a fresh namespace serving the first version; its host

    def change(self, annotations: dict[str, str | None]) -> None: ...  # a new version of the pods

    def outcome(self) -> tuple[int, str | None]: ...  # the canary weight, and how the rollout ended if it has

    def evidence(self) -> float | None: ...  # requests its analysis counted since the change (None: not known)


def gateway_answers(testbed: TestbedClient, host: str) -> bool:
    try:
        return requests.post(f"{testbed.gateway}/v2/models/tensorrt_llm/generate", timeout=5,
                             json={"text_input": "ping", "sampling_param_max_tokens": 1}, headers={"Host": host}).ok
    except requests.RequestException:
        return False


def pod_gpus(spec: Any) -> int:
    limits = [(c.resources.limits if c.resources else None) or {} for c in spec.containers]
    return sum(int(lim.get("nvidia.com/gpu", 0)) for lim in limits)


def gpus_held(apps: client.AppsV1Api, namespace: str) -> int:
    return sum((d.spec.replicas or 0) * pod_gpus(d.spec.template.spec)
               for d in apps.list_namespaced_deployment(namespace).items)


def pods_sample(core: client.CoreV1Api, namespace: str, pending: dict[str, list[float]], now: float) -> int:
    """The GPUs the namespace's scheduled pods hold (a terminating pod holds its GPUs until it is gone); notes in
    `pending` when each unscheduled pod was first and last seen so."""
    held = 0
    for pod in cast(list[Any], core.list_namespaced_pod(namespace).items):
        if pod.status.phase in ("Succeeded", "Failed"):
            continue
        if pod.spec.node_name:
            held += pod_gpus(pod.spec)
        else:
            pending.setdefault(pod.metadata.name, [now, now])[1] = now
    return held


def h100_in_use(core: client.CoreV1Api) -> tuple[int, dict[str, int]]:
    """The H100 pool's allocatable GPUs, and the GPUs pods hold or were bound to there, by namespace."""
    nodes = cast(list[Any], core.list_node(label_selector=f"nvidia.com/gpu.product={H100_PRODUCT}").items)
    total = sum(int((n.status.allocatable or {}).get("nvidia.com/gpu", 0)) for n in nodes)
    names = {n.metadata.name for n in nodes}
    used: Counter[str] = Counter()
    for pod in cast(list[Any], core.list_pod_for_all_namespaces().items):
        if pod.spec.node_name in names and pod.status.phase not in ("Succeeded", "Failed"):
            used[pod.metadata.namespace] += pod_gpus(pod.spec)
    return total, {ns: n for ns, n in used.items() if n}


class PoolBusy(Exception):
    pass


def wait_for_pool(core: client.CoreV1Api, needed: int, wait_s: float) -> None:
    deadline = time.monotonic() + wait_s
    while True:
        total, used = h100_in_use(core)
        if total - sum(used.values()) >= needed:
            return
        if time.monotonic() >= deadline:
            raise PoolBusy(f"{total - sum(used.values())} of {total} H100 GPUs free after {wait_s:g} s, {needed} "
                           f"needed; held by namespaces {used}")
        time.sleep(5)


def operator_complaint(namespace: str) -> str:
    """The operator's last complaint about the namespace's resource in its log (shared by every operator process
    of the testbed): the failed pass and the API server's message, if any."""
    log = OperatorProcess().log_path
    try:
        with log.open("rb") as f:
            f.seek(max(0, log.stat().st_size - 4_000_000))
            lines = f.read().decode(errors="replace").splitlines()
    except OSError:
        return ""
    at = next((i for i in range(len(lines) - 1, -1, -1) if f" {namespace}/" in lines[i] and "failed" in lines[i]), None)
    if at is None:
        return ""
    said = lines[at].split(" WARNING ", 1)[-1]
    body = next((line for line in lines[at + 1:at + 6] if line.startswith("HTTP response body:")), "")
    if body:
        try:
            said += ": " + str(json.loads(body.removeprefix("HTTP response body:").strip()).get("message", ""))
        except ValueError:
            said += ": " + body[:300]
    return said


class Ours:
    def __init__(self, testbed: TestbedClient, name: str, pool: Pool, provider: str, mirror: str,
                 stall_s: float, max_surge: int | None = None) -> None:
        self.testbed = testbed
        self.name, self.pool, self.provider, self.mirror, self.max_surge = name, pool, provider, mirror, max_surge
        self.stall_s = stall_s
        self.last_status, self.status_changed_at = "", 0.0
        self.res: Resources | None = None
        self.ns = self.stable = self.held = self.verdict = ""
        self.trace: list[tuple[float, float, float]] = []  # (when, canary requests, errors) as status said
        self.last_at = ""  # the analysis measured last, as status said
        self.judged = 0.0  # requests of the windows judged since the change (windowed mode)

    def prepare(self, setting: Setting) -> str:
        self.ns = ns = self.testbed.namespace("bench-ours", pod_security="restricted")
        store = yaml.safe_load((REPO / "examples" / "model-store.yaml").read_text())
        store["metadata"]["namespace"] = ns
        if kubectl_apply([store]).returncode != 0:
            raise RuntimeError(f"the model-store PVC was refused in {ns}")
        checkpoints.seed(ns, api=self.testbed.api)
        steps: list[dict[str, Any]] = []
        for weight in STEP_WEIGHTS:
            steps += [{"weight": weight}, {"pause": setting.ours_pause}]
        cr = canary_cr(ns, steps=steps, analysis=self.analysis(setting), replicas=self.pool.replicas)
        cr["spec"]["serving"]["podAnnotations"] = dict(BASELINE)
        if self.pool.gpus > 1:
            cr["spec"]["runtime"]["parallelism"] = {"tensor": self.pool.gpus}
        if self.max_surge is not None:
            cr["spec"]["rollout"]["maxSurge"] = self.max_surge
        self.res = Resources(self.testbed, ns)
        serve_first_revision(self.res, cr, self.testbed)
        return ns

    def analysis(self, setting: Setting) -> dict[str, Any]:
        """The setting's analysis; the provider and mirroring only where they are not the CRD's defaults
        (frontend, fill), so that a default run takes what the CRD gives."""
        out = {**setting.ours_analysis, "maxP99LatencySeconds": LATENCY_LIMIT_S}
        if self.provider != "frontend":
            out |= {"provider": self.provider}
            if self.provider == "gateway":
                out["gateway"] = {"source": cluster.GATEWAY_SOURCE}
        if self.mirror != "fill":
            out["mirror"] = self.mirror
        return out

    def describe(self, setting: Setting) -> str:
        surge = "" if self.max_surge is None else f"rollout.maxSurge {self.max_surge}; "
        mirror = f"mirror {self.mirror}" + (" (no evidence for the gateway provider: mirrored requests never pass "
                                            "Traefik)" if self.mirror == "fill" and self.provider == "gateway" else "")
        return (f"{surge}steps weight {STEP_WEIGHTS} each + pause {setting.ours_pause}; provider {self.provider}, "
                f"{mirror}; analysis {json.dumps(self.analysis(setting))}")

    def change(self, annotations: dict[str, str | None]) -> None:
        assert self.res is not None
        status = self.res.get(NAME).get("status") or {}
        self.stable, self.held = status.get("stableRevision", ""), status.get("heldRevision", "")
        self.trace, self.judged = [], 0.0
        self.last_at = (status.get("analysis") or {}).get("at", "")
        self.last_status, self.status_changed_at = "", time.monotonic()
        self.res.patch(NAME, {"serving": {"podAnnotations": annotations}})

    def evidence(self) -> float | None:
        return self.trace[-1][1] if self.trace else self.judged if self.last_at else None

    def outcome(self) -> tuple[int, str | None]:
        assert self.res is not None
        obj = self.res.get(NAME)
        s = obj.get("status") or {}
        weight = int(s.get("canaryWeight", 0))
        analysis = s.get("analysis") or {}
        if "totalRequests" in analysis and (not self.trace or self.trace[-1][1:] != (
                analysis["totalRequests"], analysis["totalErrors"])):
            self.trace.append((time.monotonic(), analysis["totalRequests"], analysis["totalErrors"]))
        if analysis.get("at") and analysis["at"] != self.last_at:  # a measurement since the last poll
            self.last_at = analysis["at"]
            if analysis.get("result") in ("Successful", "Failed", "Inconclusive"):
                self.judged += float(analysis.get("requests") or 0)
        now, seen = time.monotonic(), json.dumps(s, sort_keys=True)
        if seen != self.last_status:
            self.last_status, self.status_changed_at = seen, now
        elif now - self.status_changed_at > self.stall_s and s.get("phase") in ("Progressing", "Preparing"):
            progressing = "; ".join(c.get("message", "") for c in s.get("conditions") or []
                                    if c.get("type") in ("Progressing", "Preflight") and c.get("message"))
            self.verdict = (f"its status unchanged for {self.stall_s:g} s at weight {weight}: {progressing}; the "
                            f"operator's last complaint: {operator_complaint(self.ns) or 'none'}")
            return weight, "stalled"
        if s.get("observedGeneration") != obj["metadata"]["generation"]:
            return weight, None
        # Compared with the revisions before the change: a phase left over from the last rollout is no outcome.
        if s.get("phase") == "RolledBack" and s.get("heldRevision") not in ("", None, self.held):
            totals = f" (canary totals: {analysis['totalRequests']:g} requests, {analysis['totalErrors']:g} errors)" \
                if "totalRequests" in analysis else ""
            # The canary's totals as each measurement left them (sequential mode): where the evidence came from.
            path = "; totals seen (requests/errors): " + ", ".join(
                f"{t - self.trace[0][0]:.1f}s {n:g}/{e:g}" for t, n, e in self.trace) if self.trace else ""
            self.verdict = f"{analysis.get('message', '')}{totals}{path}"
            return weight, "rolled back"
        if s.get("phase") == "Healthy" and s.get("stableRevision") != self.stable and not s.get("canaryRevision"):
            self.verdict = f"promoted; last analysis: {analysis.get('message', '')}"
            return weight, "promoted"
        return weight, "paused" if s.get("phase") == "Paused" else None


class Flagger:
    name = "flagger"

    def __init__(self, testbed: TestbedClient, pool: Pool) -> None:
        self.testbed = testbed
        self.pool = pool
        self.custom = client.CustomObjectsApi(testbed.api)
        self.apps = client.AppsV1Api(testbed.api)
        self.ns = ""
        self.progressed = False  # the rollout of the latest change has begun (its end phases are also the last's)
        self.failed_checks = 0  # the most status.failedChecks seen in the latest change's rollout
        self.verdict = ""  # Flagger says only that its threshold was reached

    def prepare(self, setting: Setting) -> str:
        self.ns = self.testbed.namespace("bench-flagger")  # the Triton image runs as root: no restricted profile
        triton = yaml.safe_load((FLAGGER_DIR / "example-triton.yaml").read_text())
        triton["spec"]["replicas"] = self.pool.replicas
        pod = triton["spec"]["template"]
        pod["metadata"]["annotations"] = dict(BASELINE)
        if self.pool.full:
            pod["spec"]["nodeSelector"] = {"nvidia.com/gpu.product": H100_PRODUCT}
            for c in pod["spec"]["containers"]:
                c["resources"]["limits"]["nvidia.com/gpu"] = str(self.pool.gpus)
            # Flagger's primary must be Ready before it scales the target to zero: a second pool. Paused, the
            # target has no pods until Flagger has initialised (unpaused below; `paused` is no template change).
            triton["spec"]["paused"] = True
        # The stand-in's llmapi model loads the checkpoint's tokenizer: the example's init container writes only a
        # config.json, so it gets the testbed's tiny checkpoint (as ours' PVC holds it) from a ConfigMap.
        files = {"config.json": json.dumps({"model_type": "testbed-tiny", "architectures": ["Tiny"],
                                            "max_position_embeddings": 163840}), **checkpoints.tokenizer_files()}
        seed = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "bench-checkpoint"}, "data": files}
        init = pod["spec"]["initContainers"][0]
        init["command"][-1] += "cp /seed/* /srv/ckpt/\n"
        init["volumeMounts"].append({"name": "seed", "mountPath": "/seed"})
        pod["spec"]["volumes"].append({"name": "seed", "configMap": {"name": "bench-checkpoint"}})
        templates = string.Template((FLAGGER_DIR / "example-metrics.yaml").read_text()).safe_substitute(
            PROMETHEUS_URL=self.testbed.prometheus)
        canary = yaml.safe_load(string.Template((FLAGGER_DIR / "example-canary.yaml").read_text()).safe_substitute(
            METRIC="gateway-error-rate"))
        canary["spec"]["service"]["hosts"] = [f"{self.ns}.llm.test"]
        if setting.flagger_progress_deadline_s is None:
            canary["spec"].pop("progressDeadlineSeconds")
        else:
            canary["spec"]["progressDeadlineSeconds"] = setting.flagger_progress_deadline_s
        window = {"interval": setting.flagger_metric_interval} if setting.flagger_metric_interval else {}
        canary["spec"]["analysis"] = {**setting.flagger_analysis, "metrics": [
            {"name": "error-rate", "templateRef": {"name": "gateway-error-rate"},
             "thresholdRange": {"max": 100 * ERROR_LIMIT}, **window},
            {"name": "latency-p99", "templateRef": {"name": "gateway-latency-p99"},
             "thresholdRange": {"max": LATENCY_LIMIT_S}, **window}]}
        docs = [seed, triton, *(d for d in yaml.safe_load_all(templates) if d), canary]
        for d in docs:
            d["metadata"]["namespace"] = self.ns
        if (applied := kubectl_apply(docs)).returncode != 0:
            raise RuntimeError(f"Flagger's objects were refused: {applied.stderr}")
        eventually("Flagger to initialise the Canary", lambda: self.phase() == "Initialized", timeout=600, interval=1)
        if self.pool.full:
            self.apps.patch_namespaced_deployment(FLAGGER_TARGET, self.ns, {"spec": {"paused": False}})
        host = f"{self.ns}.llm.test"
        eventually("the route to answer through the gateway", lambda: gateway_answers(self.testbed, host), timeout=60)
        return self.ns

    def describe(self, setting: Setting) -> str:
        return (f"analysis {json.dumps(setting.flagger_analysis)}, metric interval "
                f"{setting.flagger_metric_interval or '1m (default)'}, progressDeadlineSeconds "
                f"{setting.flagger_progress_deadline_s or '600 (default)'}; error rate max {100 * ERROR_LIMIT:g}% "
                f"(Traefik non-2xx), p99 max {LATENCY_LIMIT_S:g} s (Traefik histogram)")

    def canary(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            "flagger.app", "v1beta1", self.ns, "canaries", FLAGGER_TARGET))

    def phase(self) -> str:
        return str((self.canary().get("status") or {}).get("phase", ""))

    def change(self, annotations: dict[str, str | None]) -> None:
        self.progressed, self.failed_checks = False, 0
        self.apps.patch_namespaced_deployment(FLAGGER_TARGET, self.ns,
                                              {"spec": {"template": {"metadata": {"annotations": annotations}}}})

    def evidence(self) -> float | None:
        return None

    def outcome(self) -> tuple[int, str | None]:
        s = self.canary().get("status") or {}
        phase = s.get("phase")
        self.progressed |= phase in ("Progressing", "Promoting", "Finalising")
        self.failed_checks = max(self.failed_checks, int(s.get("failedChecks") or 0))  # a rollback resets them
        ended = {"Failed": "rolled back", "Succeeded": "promoted"}.get(phase or "") if self.progressed else None
        if ended:
            said = [c.get("message", "") for c in s.get("conditions") or [] if c.get("type") == "Promoted"]
            self.verdict = f"failed checks seen: {self.failed_checks}; {'; '.join(said)}"
        return int(s.get("canaryWeight", 0)), ended


def observe(tool: Tool, testbed: TestbedClient, namespace: str, annotations: dict[str, str | None],
            args: argparse.Namespace, pool: Pool) -> Rollout:
    """Changes the version under load and polls until the rollout ends, then until the GPUs are back to the
    stable replicas' (bounded), so that the GPU-seconds count the scale-down too."""
    apps, core = client.AppsV1Api(testbed.api), testbed.core
    old_pods = frozenset(str(p.metadata.name) for p in cast(list[Any], core.list_namespaced_pod(namespace).items))
    pending: dict[str, list[float]] = {}

    def sample(weight: int, at: float) -> Sample:
        held = pods_sample(core, namespace, pending, at) if pool.full else -1
        return Sample(at, weight, gpus_held(apps, namespace), held)

    with Load(testbed.gateway, f"{namespace}.llm.test", args.rate, args.threads, args.request_timeout,
              args.rollout_timeout + 90) as load:
        time.sleep(3)  # traffic before the change, so both tools' first windows have a past to difference
        changed = time.monotonic()
        tool.change(annotations)
        samples: list[Sample] = []
        outcome, ended = "timed out", changed + args.rollout_timeout
        while (now := time.monotonic()) < changed + args.rollout_timeout:
            try:
                weight, seen = tool.outcome()
                samples.append(sample(weight, now))
            except ApiException as err:  # the API server's hiccups are not the tool's; poll again
                print(f"  ({tool.name}: poll failed: {err.status} {err.reason})", file=sys.stderr)
                seen = None
            if seen:
                outcome, ended = seen, now
                break
            time.sleep(max(0.0, args.poll - (time.monotonic() - now)))
        evidence = tool.evidence()
        settle = time.monotonic() + 60
        while samples and (samples[-1].gpus > pool.stable_gpus or samples[-1].held > pool.stable_gpus) \
                and (now := time.monotonic()) < settle:
            time.sleep(args.poll)
            with contextlib.suppress(ApiException):
                samples.append(sample(samples[-1].weight, time.monotonic()))
        answers = list(load.answers)
    longest = max((last - first for first, last in pending.values()), default=0.0) if pool.full else None
    return Rollout(outcome, changed, ended, samples, answers, old_pods, pool.stable_gpus, evidence, longest)


FIGURES = [  # (label, key): what figures() reads from the faulty and the clean rollout; rows nobody has are left out
    ("(a) weight>0 -> weight 0 [s]", "a"),
    ("(b) version change -> weight 0 [s]", "b"),
    ("    version change -> rolled back (status) [s]", "b_end"),
    ("    version change -> promoted [s]", "b_promoted"),
    ("(c) failed client requests", "c"),
    ("    canary requests until the decision (clients)", "c_canary"),
    ("    requests the analysis counted (ours)", "c_evidence"),
    ("(d) peak GPUs held", "d_peak"),
    ("(d) GPU-seconds beyond the stable's", "d_extra"),
    ("    peak GPUs of scheduled pods over the stable's", "d_pool"),
    ("    longest a pod waited unscheduled [s]", "d_pending"),
    ("(e) clean version change -> promoted [s]", "e"),
    ("    its change -> rolled back (status) [s]", "e_end"),
    ("    its peak GPUs held", "e_peak"),
    ("    its GPU-seconds beyond the stable's", "e_extra"),
    ("    its peak GPUs of scheduled pods over the stable's", "e_pool"),
    ("    its longest a pod waited unscheduled [s]", "e_pending"),
    ("    its failed client requests", "e_failed"),
]


def figures(fault: Rollout, clean: Rollout | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if fault.outcome == "rolled back":
        out["b_end"] = fault.ended_at - fault.changed_at
        if span := fault.weight_up_to_zero():
            out["a"], out["b"] = span[1] - span[0], span[1] - fault.changed_at
    elif fault.outcome == "promoted":
        out["b_promoted"] = fault.ended_at - fault.changed_at
    out["c"] = fault.failed
    if (decided := fault.decided_at()) is not None:
        out["c_canary"] = fault.canary_requests(decided)
        if fault.evidence is not None:
            out["c_evidence"] = fault.evidence
    if fault.samples:
        out["d_peak"], out["d_extra"] = max(s.gpus for s in fault.samples), fault.extra_gpu_seconds()
    if (over := fault.peak_held_over_stable()) is not None:
        out["d_pool"] = over
    if fault.pending_longest is not None:
        out["d_pending"] = fault.pending_longest
    if clean is None:
        return out
    if clean.outcome == "promoted":
        out["e"] = clean.ended_at - clean.changed_at
    elif clean.outcome == "rolled back":
        out["e_end"] = clean.ended_at - clean.changed_at
    if clean.samples:
        out["e_peak"], out["e_extra"] = max(s.gpus for s in clean.samples), clean.extra_gpu_seconds()
    if (over := clean.peak_held_over_stable()) is not None:
        out["e_pool"] = over
    if clean.pending_longest is not None:
        out["e_pending"] = clean.pending_longest
    out["e_failed"] = clean.failed
    return out


def delete_namespace(testbed: TestbedClient, namespace: str) -> None:
    testbed.core.delete_namespace(namespace)
    deadline = time.monotonic() + 120  # its pods stopped before the next run starts its own
    while time.monotonic() < deadline:
        try:
            testbed.core.read_namespace(namespace)
        except ApiException as err:
            if err.status == 404:
                return
        time.sleep(1)
    print(f"  (namespace {namespace} still terminating after 120 s)", file=sys.stderr)


def start_flagger() -> None:
    started = subprocess.run([str(FLAGGER_DIR / "run"), str(FLAGGER_STATE)], capture_output=True, text=True,
                             env={**os.environ, "KUBECONFIG": str(cluster.KUBECONFIG)})
    if started.returncode != 0:
        raise RuntimeError(f"testbed/flagger/run failed: {started.stderr.strip()}")
    print(f"  {started.stdout.strip()}", file=sys.stderr)


def stop_flagger() -> None:
    subprocess.run([str(FLAGGER_DIR / "stop"), str(FLAGGER_STATE)], capture_output=True, text=True)


def other_operators(ours: int | None) -> list[int]:
    """Operator processes on this machine other than the bench's own (an end-to-end test's): they reconcile the
    bench's resources too."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in (ours, os.getpid()):
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"-m" in argv and argv[argv.index(b"-m") + 1:][:1] == [b"deepseek_operator"]:
            found.append(int(entry.name))
    return found


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(args: argparse.Namespace, setting: Setting, pool: Pool, tools: list[Any],
           results: dict[str, list[dict[str, float]]], outcomes: dict[str, Counter[str]]) -> None:
    print(f"\nrollouts: fault {args.fault} ({json.dumps(FAULTS[args.fault])}), settings {args.settings}, "
          f"runs {args.runs}, load {args.rate:g} req/s over {args.threads} threads "
          f"(request timeout {args.request_timeout:g} s), {pool}")
    print(f"  {setting.note}")
    if args.settings == "defaults" and FAULTS[args.fault].get(ERROR_RATE) and args.fault != "error":
        print(f"  note: ours' maxErrorRate is the CRD's 0.02 here, Flagger's max {100 * ERROR_LIMIT:g}%: the fault's "
              f"rate {FAULTS[args.fault][ERROR_RATE]} is judged against different limits")
    should = "promoted" if args.fault in SHOULD_PROMOTE else "rolled back"
    for tool in tools:
        print(f"  {tool.name}: {tool.describe(setting)}")
        fault = outcomes[tool.name + " fault"]
        runs = sum(fault.values())
        wrong = (f"false rollbacks {fault['rolled back']}/{runs}" if should == "promoted"
                 else f"bad version promoted {fault['promoted']}/{runs}")
        print(f"  {tool.name} outcomes: faulty version {dict(fault)} ({wrong}; should be {should}), "
              f"clean version {dict(outcomes[tool.name + ' clean'])}")
    names = [t.name for t in tools]
    ratio = len(names) == 2 and set(names) == {"ours", "flagger"}
    width = max(16, *(len(n) + 8 for n in names))
    header = f"{'':52}" + "".join(f"{name + ' median':>{width}}{name + ' worst':>{width}}" for name in names)
    print(header + (f"{'ours/flagger':>14}" if ratio else ""))
    for label, key in FIGURES:
        if not any(key in r for name in names for r in results[name]):
            continue
        medians: dict[str, float | None] = {}
        row = f"{label:52}"
        for name in names:
            values = [r[key] for r in results[name] if key in r]
            medians[name] = statistics.median(values) if values else None
            row += f"{fmt(medians[name]):>{width}}{fmt(max(values) if values else None):>{width}}"
        if ratio:
            ours, theirs = medians["ours"], medians["flagger"]
            row += f"{(f'{ours / theirs:.2f}' if ours is not None and theirs else '-'):>14}"
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=["ours", "flagger", "both"], default="both")
    parser.add_argument("--fault", choices=sorted(FAULTS), default="error")
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="equal")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=None,
                        help=f"requests per second through the gateway (default {DEFAULT_RATE:g}; "
                             f"{LOW_TRAFFIC_RATE:g} for --fault low-traffic)")
    # Enough threads that the latency fault's slow answers (10% of requests at the first step) hold no thread
    # past its next turn: the load stays at --rate, and the canary's windows hold as many requests as without it.
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--request-timeout", type=float, default=5.0, help="seconds, per request")
    parser.add_argument("--rollout-timeout", type=float, default=None,
                        help="seconds, per version change (default 900; 300 with --pool full)")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status polls")
    parser.add_argument("--no-clean", dest="clean", action="store_false",
                        help="only the faulty version: no (e) figures, half the time a run takes")
    parser.add_argument("--provider", choices=["frontend", "gateway"], default="frontend",
                        help="ours' analysis provider (default frontend, the CRD's default)")
    parser.add_argument("--mirror", choices=["fill", "off"], default="fill",
                        help="ours' analysis.mirror (default fill, the CRD's default)")
    parser.add_argument("--stall-timeout", type=float, default=120.0,
                        help="seconds without any change of ours' status during a rollout that count it as "
                             "stalled (the operator's complaint quoted), instead of waiting out --rollout-timeout")
    parser.add_argument("--pool", choices=["small", "full"], default="small",
                        help="small: 4 replicas x 1 GPU; full: the whole H100 pool as --pool-layout, ours with "
                             "maxSurge 0 and 1, and Flagger")
    parser.add_argument("--pool-layout", default="4x4", help="--pool full: replicas x GPUs, 16 GPUs in all")
    parser.add_argument("--pool-wait", type=float, default=180.0,
                        help="--pool full: seconds to wait for the H100 pool to be free before a run")
    args = parser.parse_args()
    if args.rate is None:
        args.rate = LOW_TRAFFIC_RATE if args.fault == "low-traffic" else DEFAULT_RATE
    if args.pool == "full":
        replicas, _, gpus = args.pool_layout.partition("x")
        pool = Pool(int(replicas), int(gpus or 1), True)
        if pool.stable_gpus != POOL_GPUS or pool.replicas < 2:
            parser.error(f"--pool-layout {args.pool_layout}: the H100 pool is {POOL_GPUS} GPUs, in 2 replicas "
                         "at least (maxSurge 0 needs 2)")
    else:
        pool = Pool(4, 1, False)
    if args.rollout_timeout is None:
        args.rollout_timeout = 300.0 if pool.full else 900.0
    # Interrupted (Ctrl-C, also when started in the background, or SIGTERM): the `finally`s below still stop the
    # operator and Flagger and delete the run's namespace.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    state = cluster.State.load()
    if state is None:
        print("the testbed is not up: .venv/bin/python -m testbed.cluster up", file=sys.stderr)
        return 1
    testbed = TestbedClient.from_state(state)
    setting = SETTINGS[args.settings]
    names = ["ours", "flagger"] if args.tool == "both" else [args.tool]
    operator = OperatorProcess()
    tools: list[Any] = []
    try:
        if "ours" in names:
            install_crd()
            operator.start()
            if pool.full:
                tools += [Ours(testbed, f"ours maxSurge {n}", pool, args.provider, args.mirror, args.stall_timeout, n)
                          for n in (0, 1)]
            else:
                tools.append(Ours(testbed, "ours", pool, args.provider, args.mirror, args.stall_timeout))
            if others := other_operators(operator.proc.pid if operator.proc else None):
                print(f"  WARNING: other operator processes run against the testbed (pids {others}): they "
                      "reconcile this run's DeepSeekDeployments too; the figures are not clean", file=sys.stderr)
        if "flagger" in names:
            start_flagger()
            tools.append(Flagger(testbed, pool))
        results: dict[str, list[dict[str, float]]] = {t.name: [] for t in tools}
        outcomes = {f"{t.name} {kind}": Counter[str]() for t in tools for kind in ("fault", "clean")}
        for run in range(1, args.runs + 1):
            for tool in tools:  # the tools take turns, so a slow stretch of the machine hits both
                tool.ns = ""
                try:
                    if pool.full:
                        wait_for_pool(testbed.core, pool.stable_gpus, args.pool_wait)
                    namespace = tool.prepare(setting)
                    print(f"  run {run}, {tool.name}: serving in {namespace}", file=sys.stderr)
                    fault = observe(tool, testbed, namespace, FAULTS[args.fault], args, pool)
                    print(f"  run {run}, {tool.name}: faulty version {fault.outcome}: {tool.verdict}",
                          file=sys.stderr)
                    tool.verdict = ""
                    clean = observe(tool, testbed, namespace, CLEAN, args, pool) if args.clean else None
                except PoolBusy as busy:
                    print(f"  run {run}, {tool.name}: skipped, the pool is busy: {busy}", file=sys.stderr)
                    outcomes[f"{tool.name} fault"]["pool busy"] += 1
                    continue
                finally:
                    if tool.ns:
                        delete_namespace(testbed, tool.ns)
                outcomes[f"{tool.name} fault"][fault.outcome] += 1
                clean_outcome = clean.outcome if clean else "not run"
                outcomes[f"{tool.name} clean"][clean_outcome] += 1
                results[tool.name].append(got := figures(fault, clean))
                print(f"  run {run}, {tool.name}: faulty {fault.outcome}, clean {clean_outcome}; "
                      f"{ {k: round(v, 1) for k, v in got.items()} }", file=sys.stderr)
                if tool.verdict:
                    print(f"    {tool.name}'s last verdict: {tool.verdict}", file=sys.stderr)
                    tool.verdict = ""
    finally:
        operator.stop()
        if "flagger" in names:
            stop_flagger()
    report(args, setting, pool, tools, results, outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
