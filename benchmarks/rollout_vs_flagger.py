"""Our canary rollouts against Flagger's, on the same testbed, pods, load and fault: how soon a bad version stops
taking traffic, what it costs clients and GPUs, and how long a good version takes to ship.

    .venv/bin/python -m testbed.cluster up && testbed/build flagger
    .venv/bin/python benchmarks/rollout_vs_flagger.py [--tool ours|flagger|both] [--fault error|latency]
        [--settings equal|defaults|sequential] [--runs 5] [--no-clean] [--rate 20] [--threads 16]

Each run, per tool, in a namespace of its own (deleted afterwards): 4 replicas of the stand-in Triton (1 GPU each)
behind the testbed's Gateway, Traefik splitting traffic; a paced load through Traefik (--rate req/s from --threads
threads, each request bounded by --request-timeout, the whole load by --rollout-timeout + 90 s); then a faulty
version (pod annotation testbed.deepseek.ai/error-rate 0.3, or latency-ms 400 against a 0.3 s p99 gate), which both
tools should roll back, then (unless --no-clean) a clean version, which both should promote. The stand-in Triton
answers one request at a time (the real llmapi model batches in flight), so the added latency stays within what one
canary pod can answer at its first step's share (2 req/s at 400 ms): the fault is the latency, not an overload.
Flagger canaries a plain Deployment (testbed/flagger/example-triton.yaml) and judges Traefik's metrics through
Prometheus (example-metrics.yaml: non-2xx codes, as the stand-in's failures reach clients as HTTP 400, and the
duration histogram); ours is a DeepSeekDeployment with the gateway provider, reading the same Traefik counters and
histogram. The status of the Canary / DeepSeekDeployment and the namespace's Deployments are polled every --poll
seconds.

Figures per tool, median and worst over --runs: (a) weight > 0 -> weight 0, (b) the version change -> weight 0,
(c) failed client requests during the faulty rollout, (d) peak GPUs held (sum of spec.replicas x GPUs per pod over
the namespace's Deployments) and GPU-seconds beyond the stable 4, (e) the clean version's change -> promoted;
then ours/Flagger. A rollout that ends otherwise (paused, timed out) is counted in `outcomes` and left out of the
figures. Figures only: nothing is asserted.
"""

from __future__ import annotations

import argparse
import json
import os
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
REPLICAS = 4
STEP_WEIGHTS = [10, 20, 30, 40, 50]  # Flagger's stepWeight 10 up to maxWeight 50, as our steps
LATENCY_LIMIT_S = 0.3  # the p99 gate of both tools, on one of Traefik's bucket bounds (0.1, 0.3, 1.2, 5 s)
ERROR_LIMIT = 0.05
# Ours only (Flagger judges whatever a window holds). A 10 s window at 10% of 20 req/s holds ~20 requests.
MIN_REQUESTS = 5
BASELINE = {"testbed.deepseek.ai/latency-ms": "2"}  # the first version's pods
FAULTS: dict[str, dict[str, str | None]] = {"error": {"testbed.deepseek.ai/error-rate": "0.3"},
          "latency": {"testbed.deepseek.ai/latency-ms": "400"}}
# The clean version: no fault, and a pod change of its own so that it is a new version after the faulty one.
CLEAN: dict[str, str | None] = {"testbed.deepseek.ai/error-rate": None, "testbed.deepseek.ai/latency-ms": "3"}


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
        f"both judge every 10 s and roll back on the 2nd failure; ours with minRequests {MIN_REQUESTS} (Flagger has "
        "no such floor)"),
    "defaults": Setting(
        {}, "30s", {"interval": "1m", "threshold": 5, "stepWeight": 10, "maxWeight": 50}, None, None,
        "ours: the CRD's analysis defaults (interval 30s, maxErrorRate 0.02, minRequests 50, failureLimit 2, "
        "onInconclusive pause) but provider gateway (the default, triton, cannot see the stand-in's failures); "
        "steps have no default: weights 10..50, each paused for one interval. Flagger: its CRD requires interval "
        "and threshold (no defaults): interval 1m (the documented schedule default) and threshold 5 (its docs' "
        "examples); metric interval 1m and progressDeadlineSeconds 600 (its defaults); stepWeight and maxWeight "
        "(default 100) as in `equal`; thresholdRange has no default: error rate max 5%, p99 max 0.3 s"),
    "sequential": Setting(
        {"mode": "sequential", "interval": "1s", "failureLimit": 2, "maxErrorRate": ERROR_LIMIT,
         "minRequests": MIN_REQUESTS},
        "10s", {"interval": "10s", "threshold": 1, "stepWeight": 10, "maxWeight": 50}, "10s", 120,
        "ours: the sequential test every 1 s; Flagger at its tightest: every 10 s (its floor), threshold 1"),
}


@dataclass
class Load:
    """Paced requests through the gateway: `rate` req/s in all, spread over `threads`, each request bounded by
    `timeout_s` and the whole load by `limit_s`. A thread behind its schedule skips ahead rather than bursting."""

    url: str
    host: str
    rate: float
    threads: int
    timeout_s: float
    limit_s: float
    statuses: list[int] = field(default_factory=list)  # HTTP status per request, 0 for no answer
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
                    self.statuses.append(r.status_code)
                except requests.RequestException:
                    self.statuses.append(0)

    @property
    def failed(self) -> int:
        return sum(1 for s in self.statuses if s != 200)

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
    gpus: int


@dataclass
class Rollout:
    """One version change as the poller saw it."""

    outcome: str  # "rolled back", "promoted", "paused", "timed out"
    changed_at: float
    ended_at: float  # when the outcome was seen
    samples: list[Sample]
    requests: int
    failed: int

    def weight_up_to_zero(self) -> tuple[float, float] | None:
        """When the weight first went above 0, and when it was next 0."""
        up = next((s.at for s in self.samples if s.weight > 0), None)
        down = next((s.at for s in self.samples if up is not None and s.at > up and s.weight == 0), None)
        return (up, down) if up is not None and down is not None else None

    def extra_gpu_seconds(self) -> float:
        pairs = zip(self.samples, self.samples[1:], strict=False)
        return sum(max(0, a.gpus - REPLICAS) * (b.at - a.at) for a, b in pairs)


class Tool(Protocol):
    name: str
    ns: str  # the namespace of the current run, "" before one is made
    verdict: str  # what decided the last rollback, as the tool said it ("" where it says nothing more)

    def prepare(self, setting: Setting) -> str: ...  # a fresh namespace serving the first version; its host

    def change(self, annotations: dict[str, str | None]) -> None: ...  # a new version of the pods

    def outcome(self) -> tuple[int, str | None]: ...  # the canary weight, and how the rollout ended if it has


def gateway_answers(testbed: TestbedClient, host: str) -> bool:
    try:
        return requests.post(f"{testbed.gateway}/v2/models/tensorrt_llm/generate", timeout=5,
                             json={"text_input": "ping", "sampling_param_max_tokens": 1}, headers={"Host": host}).ok
    except requests.RequestException:
        return False


def gpus_held(apps: client.AppsV1Api, namespace: str) -> int:
    total = 0
    for d in apps.list_namespaced_deployment(namespace).items:
        limits = [(c.resources.limits if c.resources else None) or {} for c in d.spec.template.spec.containers]
        total += (d.spec.replicas or 0) * sum(int(lim.get("nvidia.com/gpu", 0)) for lim in limits)
    return total


class Ours:
    name = "ours"

    def __init__(self, testbed: TestbedClient) -> None:
        self.testbed = testbed
        self.res: Resources | None = None
        self.ns = self.stable = self.held = self.verdict = ""
        self.trace: list[tuple[float, float, float]] = []  # (when, canary requests, errors) as status said

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
        cr = canary_cr(ns, steps=steps, analysis=self.analysis(setting), replicas=REPLICAS)
        cr["spec"]["serving"]["podAnnotations"] = dict(BASELINE)
        self.res = Resources(self.testbed, ns)
        serve_first_revision(self.res, cr, self.testbed)
        return ns

    @staticmethod
    def analysis(setting: Setting) -> dict[str, Any]:
        return {**setting.ours_analysis, "provider": "gateway", "gateway": {"source": cluster.GATEWAY_SOURCE},
                "maxP99LatencySeconds": LATENCY_LIMIT_S}

    def change(self, annotations: dict[str, str | None]) -> None:
        assert self.res is not None
        status = self.res.get(NAME).get("status") or {}
        self.stable, self.held = status.get("stableRevision", ""), status.get("heldRevision", "")
        self.trace = []
        self.res.patch(NAME, {"serving": {"podAnnotations": annotations}})

    def outcome(self) -> tuple[int, str | None]:
        assert self.res is not None
        obj = self.res.get(NAME)
        s = obj.get("status") or {}
        weight = int(s.get("canaryWeight", 0))
        analysis = s.get("analysis") or {}
        if "totalRequests" in analysis and (not self.trace or self.trace[-1][1:] != (
                analysis["totalRequests"], analysis["totalErrors"])):
            self.trace.append((time.monotonic(), analysis["totalRequests"], analysis["totalErrors"]))
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
            return weight, "promoted"
        return weight, "paused" if s.get("phase") == "Paused" else None


class Flagger:
    name = "flagger"

    def __init__(self, testbed: TestbedClient) -> None:
        self.testbed = testbed
        self.custom = client.CustomObjectsApi(testbed.api)
        self.apps = client.AppsV1Api(testbed.api)
        self.ns = ""
        self.progressed = False  # the rollout of the latest change has begun (its end phases are also the last's)
        self.verdict = ""  # Flagger says only that its threshold was reached

    def prepare(self, setting: Setting) -> str:
        self.ns = self.testbed.namespace("bench-flagger")  # the Triton image runs as root: no restricted profile
        triton = yaml.safe_load((FLAGGER_DIR / "example-triton.yaml").read_text())
        triton["spec"]["replicas"] = REPLICAS
        triton["spec"]["template"]["metadata"]["annotations"] = dict(BASELINE)
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
        docs = [triton, *(d for d in yaml.safe_load_all(templates) if d), canary]
        for d in docs:
            d["metadata"]["namespace"] = self.ns
        if (applied := kubectl_apply(docs)).returncode != 0:
            raise RuntimeError(f"Flagger's objects were refused: {applied.stderr}")
        eventually("Flagger to initialise the Canary", lambda: self.phase() == "Initialized", timeout=600, interval=1)
        host = f"{self.ns}.llm.test"
        eventually("the route to answer through the gateway", lambda: gateway_answers(self.testbed, host), timeout=60)
        return self.ns

    def canary(self) -> dict[str, Any]:
        return cast(dict[str, Any], self.custom.get_namespaced_custom_object(
            "flagger.app", "v1beta1", self.ns, "canaries", FLAGGER_TARGET))

    def phase(self) -> str:
        return str((self.canary().get("status") or {}).get("phase", ""))

    def change(self, annotations: dict[str, str | None]) -> None:
        self.progressed = False
        self.apps.patch_namespaced_deployment(FLAGGER_TARGET, self.ns,
                                              {"spec": {"template": {"metadata": {"annotations": annotations}}}})

    def outcome(self) -> tuple[int, str | None]:
        s = self.canary().get("status") or {}
        phase = s.get("phase")
        self.progressed |= phase in ("Progressing", "Promoting", "Finalising")
        ended = {"Failed": "rolled back", "Succeeded": "promoted"}.get(phase or "") if self.progressed else None
        return int(s.get("canaryWeight", 0)), ended


def observe(tool: Tool, apps: client.AppsV1Api, namespace: str, testbed: TestbedClient,
            annotations: dict[str, str | None], args: argparse.Namespace) -> Rollout:
    """Changes the version under load and polls until the rollout ends, then until the GPUs are back to the
    stable replicas' (bounded), so that the GPU-seconds count the scale-down too."""
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
                samples.append(Sample(now, weight, gpus_held(apps, namespace)))
            except ApiException as err:  # the API server's hiccups are not the tool's; poll again
                print(f"  ({tool.name}: poll failed: {err.status} {err.reason})", file=sys.stderr)
                seen = None
            if seen:
                outcome, ended = seen, now
                break
            time.sleep(max(0.0, args.poll - (time.monotonic() - now)))
        settle = time.monotonic() + 60
        while samples and samples[-1].gpus > REPLICAS and (now := time.monotonic()) < settle:
            time.sleep(args.poll)
            samples.append(Sample(time.monotonic(), samples[-1].weight, gpus_held(apps, namespace)))
    return Rollout(outcome, changed, ended, samples, len(load.statuses), load.failed)


FIGURES = [  # (label, what it reads from the faulty and the clean rollout)
    ("(a) weight>0 -> weight 0 [s]", "a"),
    ("(b) version change -> weight 0 [s]", "b"),
    ("(c) failed client requests", "c"),
    ("(d) peak GPUs held", "d_peak"),
    ("(d) GPU-seconds beyond the stable 4", "d_extra"),
    ("(e) clean version change -> promoted [s]", "e"),
    ("    its peak GPUs held", "e_peak"),
    ("    its GPU-seconds beyond the stable 4", "e_extra"),
    ("    its failed client requests", "e_failed"),
]


def figures(fault: Rollout, clean: Rollout | None) -> dict[str, float]:
    out: dict[str, float] = {}
    if fault.outcome == "rolled back" and (span := fault.weight_up_to_zero()):
        out["a"], out["b"] = span[1] - span[0], span[1] - fault.changed_at
    out["c"] = fault.failed
    if fault.samples:
        out["d_peak"], out["d_extra"] = max(s.gpus for s in fault.samples), fault.extra_gpu_seconds()
    if clean is None:
        return out
    if clean.outcome == "promoted":
        out["e"] = clean.ended_at - clean.changed_at
        out["e_peak"], out["e_extra"] = max(s.gpus for s in clean.samples), clean.extra_gpu_seconds()
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


def fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def report(args: argparse.Namespace, setting: Setting, results: dict[str, list[dict[str, float]]],
           outcomes: dict[str, Counter[str]]) -> None:
    print(f"\nrollouts: fault {args.fault} ({json.dumps(FAULTS[args.fault])}), settings {args.settings}, "
          f"runs {args.runs}, load {args.rate:g} req/s over {args.threads} threads "
          f"(request timeout {args.request_timeout:g} s), {REPLICAS} replicas x 1 GPU")
    print(f"  {setting.note}")
    for name in results:
        if name == "ours":
            print(f"  ours: steps weight {STEP_WEIGHTS} each + pause {setting.ours_pause}; "
                  f"analysis {json.dumps(Ours.analysis(setting))}")
        else:
            print(f"  flagger: analysis {json.dumps(setting.flagger_analysis)}, metric interval "
                  f"{setting.flagger_metric_interval or '1m (default)'}; error rate max {100 * ERROR_LIMIT:g}% "
                  f"(Traefik non-2xx), p99 max {LATENCY_LIMIT_S:g} s (Traefik histogram)")
        print(f"  {name} outcomes: faulty version {dict(outcomes[name + ' fault'])}, "
              f"clean version {dict(outcomes[name + ' clean'])}")
    tools = list(results)
    header = f"{'':44}" + "".join(f"{name + ' median':>16}{name + ' worst':>15}" for name in tools)
    print(header + (f"{'ours/flagger':>14}" if len(tools) == 2 else ""))
    for label, key in FIGURES:
        medians: dict[str, float | None] = {}
        row = f"{label:44}"
        for name in tools:
            values = [r[key] for r in results[name] if key in r]
            medians[name] = statistics.median(values) if values else None
            row += f"{fmt(medians[name]):>16}{fmt(max(values) if values else None):>15}"
        if len(tools) == 2:
            ours, theirs = medians["ours"], medians["flagger"]
            row += f"{(f'{ours / theirs:.2f}' if ours is not None and theirs else '-'):>14}"
        print(row)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tool", choices=["ours", "flagger", "both"], default="both")
    parser.add_argument("--fault", choices=sorted(FAULTS), default="error")
    parser.add_argument("--settings", choices=sorted(SETTINGS), default="equal")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=float, default=20.0, help="requests per second through the gateway")
    # Enough threads that the latency fault's slow answers (10% of requests at the first step) hold no thread
    # past its next turn: the load stays at --rate, and the canary's windows hold as many requests as without it.
    parser.add_argument("--threads", type=int, default=16)
    parser.add_argument("--request-timeout", type=float, default=5.0, help="seconds, per request")
    parser.add_argument("--rollout-timeout", type=float, default=900.0, help="seconds, per version change")
    parser.add_argument("--poll", type=float, default=0.25, help="seconds between status polls")
    parser.add_argument("--no-clean", dest="clean", action="store_false",
                        help="only the faulty version: no (e) figures, half the time a run takes")
    args = parser.parse_args()
    # Interrupted (Ctrl-C, also when started in the background, or SIGTERM): the `finally`s below still stop the
    # operator and Flagger and delete the run's namespace.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    state = cluster.State.load()
    if state is None:
        print("the testbed is not up: .venv/bin/python -m testbed.cluster up", file=sys.stderr)
        return 1
    testbed = TestbedClient.from_state(state)
    apps = client.AppsV1Api(testbed.api)
    setting = SETTINGS[args.settings]
    names = ["ours", "flagger"] if args.tool == "both" else [args.tool]
    operator = OperatorProcess()
    tools: list[Tool] = []
    results: dict[str, list[dict[str, float]]] = {name: [] for name in names}
    outcomes: dict[str, Counter[str]] = {f"{name} {kind}": Counter() for name in names for kind in ("fault", "clean")}
    try:
        if "ours" in names:
            install_crd()
            operator.start()
            tools.append(Ours(testbed))
        if "flagger" in names:
            start_flagger()
            tools.append(Flagger(testbed))
        for run in range(1, args.runs + 1):
            for tool in tools:  # the tools take turns, so a slow stretch of the machine hits both
                tool.ns = ""
                try:
                    namespace = tool.prepare(setting)
                    print(f"  run {run}, {tool.name}: serving in {namespace}", file=sys.stderr)
                    fault = observe(tool, apps, namespace, testbed, FAULTS[args.fault], args)
                    clean = observe(tool, apps, namespace, testbed, CLEAN, args) if args.clean else None
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
                    print(f"    {tool.name}'s verdict: {tool.verdict}", file=sys.stderr)
                    tool.verdict = ""
    finally:
        operator.stop()
        if "flagger" in names:
            stop_flagger()
    report(args, setting, results, outcomes)
    return 0


if __name__ == "__main__":
    sys.exit(main())
