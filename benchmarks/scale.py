"""500 DeepSeekDeployments on the testbed (pod runner off: kwok marks pods Ready), one operator process.

Prints: time until all are Healthy, the operator's peak RSS, and the API writes one full resync makes when
nothing changed (the operator restarted: it sees every resource and child again and must write nothing).
Targets from the serving-path issue: < 60 s, < 200 MB, 0 writes. `--baseline` first times the same number
of plain one-GPU Deployments without the operator: the floor this 2-core testbed sets, for a ratio.

`--reactions N` then changes the spec of N resources, one at a time, with all of them present, and prints the
p50 and p99 of the time from the change to the new revision's Deployment existing (its pods are created by the
Deployment controller at once on this testbed).

`--rollbacks N` then gives N resources, one at a time, a canary rollout behind the testbed's Gateway whose
analysis (gateway provider, windowed, 2 s, failureLimit 1) reads a scripted page in Traefik's exposition format:
with no pod processes there are no real answers to count, so the page says the canary fails 30% of 2 req/s. It
prints the p50 and p99 of the time from the deciding measurement (the page's last read for that canary before the
weight went to 0) to the resource's status showing weight 0 (written after the HTTPRoute), and from the spec
change to the new revision's Deployment.

Usage: .venv/bin/python benchmarks/scale.py [--count 500] [--baseline] [--reactions 20] [--rollbacks 20]
(leaves the testbed stopped)
"""

from __future__ import annotations

import argparse
import http.server
import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from deepseek_operator.api import images  # noqa: E402
from testbed import cluster  # noqa: E402

NAMESPACE = "scale"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(port: int, metric_sources: Path | None = None) -> subprocess.Popen[bytes]:
    log = open(cluster.LOGS / "operator-scale.log", "ab")  # noqa: SIM115 - owned by the child
    env = {"KUBECONFIG": str(cluster.KUBECONFIG), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "deepseek_operator", "--liveness", "", "--metrics-port", str(port),
               "--metrics-address", "127.0.0.1"]
    if metric_sources is not None:
        command += ["--metric-sources", str(metric_sources)]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


class ScriptedGatewayPage:
    """Traefik's per-service request counters for one resource per path (/<resource>/metrics): its canary
    Service answers 2 req/s since the page started, 30% of them HTTP 500; its stable Service 20 req/s, all 200.
    Each read of a path is timed, so a rollback can be traced to the measurement that decided it."""

    CANARY_RATE, CANARY_FAILING, STABLE_RATE = 2.0, 0.3, 20.0

    def __init__(self) -> None:
        self.started = time.monotonic()
        self.reads: dict[str, list[float]] = {}
        page = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                name = self.path.strip("/").split("/")[0]
                page.reads.setdefault(name, []).append(time.monotonic())
                body = page.text(name).encode()
                self.send_response(200)
                self.send_header("Content-Type", "text/plain; version=0.0.4")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def text(self, name: str) -> str:
        t = time.monotonic() - self.started
        canary = self.CANARY_RATE * t
        lines = ["# TYPE traefik_service_requests_total counter"]
        for service, code, count in ((f"{name}-stable", "200", self.STABLE_RATE * t),
                                     (f"{name}-canary", "200", (1 - self.CANARY_FAILING) * canary),
                                     (f"{name}-canary", "500", self.CANARY_FAILING * canary)):
            lines.append(f'traefik_service_requests_total{{code="{code}",method="POST",protocol="http",'
                         f'service="{NAMESPACE}-{service}-8000@kubernetesgateway"}} {count:.3f}')
        return "\n".join(lines) + "\n"

    def sources_file(self, names: list[str]) -> Path:
        path = cluster.STATE_DIR / "scale-metric-sources.yaml"
        path.write_text(yaml.safe_dump({"sources": [
            {"name": f"page-{name}", "provider": "gateway", "address": f"http://127.0.0.1:{self.port}/{name}/metrics"}
            for name in names]}))
        return path

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def samples(port: int, name: str) -> dict[str, float]:
    """The operator's samples of one metric, by their label set as written (`{kind="Deployment"}`, or "")."""
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith(name) and not line.startswith("#"):
            series, value = line.rsplit(" ", 1)
            out[series[len(name):]] = float(value)
    return out


def label_value(series: str) -> str:
    """`{kind="Deployment"}` -> Deployment."""
    return series.split("=", 1)[1].strip('"}') if "=" in series else series


def metric(port: int, name: str) -> float:
    return sum(samples(port, name).values())


def peak_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def testbed_pids() -> dict[str, int]:
    state = cluster.State.load()
    assert state is not None, "the testbed is not up"
    return dict(state.pids)


def cpu_seconds(pids: dict[str, int]) -> dict[str, float]:
    """User + system CPU seconds each process has used so far (children not counted)."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {}
    for name, pid in pids.items():
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        out[name] = (int(fields[11]) + int(fields[12])) / tick
    return out


def cpu_used(before: dict[str, float], after: dict[str, float]) -> str:
    """The CPU seconds each process used between two readings, largest first."""
    used = {name: after[name] - before.get(name, 0.0) for name in after}
    return ", ".join(f"{name} {s:.1f}" for name, s in sorted(used.items(), key=lambda kv: -kv[1]) if s >= 0.5)


def phases() -> dict[str, int]:
    out = json.loads(cluster.kubectl("get", "dsd", "-n", NAMESPACE, "-o", "json"))
    counts: dict[str, int] = {}
    for item in out["items"]:
        phase = (item.get("status") or {}).get("phase", "none")
        counts[phase] = counts.get(phase, 0) + 1
    return counts


def resource(i: int) -> dict[str, object]:
    return {
        "apiVersion": "serving.deepseek.ai/v1alpha1", "kind": "DeepSeekDeployment",
        "metadata": {"name": f"r1-{i:04d}", "namespace": NAMESPACE},
        "spec": {"model": {"name": "deepseek-r1-distill-qwen-1.5b", "revision": "2025-01-20",
                           "source": {"pvc": {"claimName": "model-store", "path": "/models/q1.5"}}},
                 "runtime": {"maxBatchSize": 16, "maxNumTokens": 2048, "maxSeqLen": 4096},
                 "serving": {"replicas": 1, "gpu": {"type": "H100-80GB", "perNode": 8}}},
    }


def plain_deployment(i: int) -> dict[str, object]:
    labels = {"app": f"plain-{i:04d}"}
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": f"plain-{i:04d}", "namespace": "baseline"},
        "spec": {"replicas": 1, "selector": {"matchLabels": labels}, "template": {
            "metadata": {"labels": labels},
            "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
                     "containers": [{"name": "triton", "image": images.TRITON_IMAGE,
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }


def until_available(namespace: str, count: int, send: Callable[[], object]) -> tuple[float, str]:
    """Seconds from `send()` until `count` Deployments of the namespace are available, and the CPU seconds each
    testbed process spent meanwhile; then the namespace is deleted."""
    pids = testbed_pids()
    cpu0 = cpu_seconds(pids)
    t0 = time.monotonic()
    send()
    while True:
        out = json.loads(cluster.kubectl("get", "deployments", "-n", namespace, "-o", "json"))
        if sum((d.get("status") or {}).get("availableReplicas", 0) for d in out["items"]) == count:
            elapsed = time.monotonic() - t0
            cpu = cpu_used(cpu0, cpu_seconds(pids))
            break
        time.sleep(1)
    cluster.kubectl("delete", "namespace", namespace, "--wait=true", "--timeout=300s")
    return elapsed, cpu


def baseline(count: int) -> tuple[float, str]:
    """Plain one-GPU Deployments, created with no operator involved: seconds until available, CPU by process."""
    cluster.kubectl("create", "namespace", "baseline")
    items = {"apiVersion": "v1", "kind": "List", "items": [plain_deployment(i) for i in range(count)]}
    return until_available("baseline", count, lambda: cluster.kubectl("create", "-f", "-", stdin=json.dumps(items)))


def model_store(namespace: str) -> None:
    cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "model-store", "namespace": namespace},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}}))


def rendered_children(i: int) -> list[dict[str, Any]]:
    """What the operator's first pass applies for resource i (its pure plan), without owner references: the
    objects a user would apply by hand to serve the same model without the operator."""
    sys.path.insert(0, str(REPO / "operator"))
    from deepseek_operator.plan import Observed, PassContext, run, start

    body: dict[str, Any] = resource(i)
    body["metadata"] = {**body["metadata"], "uid": f"uid-{i}", "generation": 1}
    context = start(body, Observed(pvc_uids={"model-store": "uid-model-store"}), "2026-12-02T00:00:00Z")
    assert isinstance(context, PassContext), context
    children = []
    for obj in run(context).apply:
        obj = json.loads(json.dumps(obj))
        obj["metadata"].pop("ownerReferences", None)
        obj["metadata"]["namespace"] = "same-objects"
        children.append(obj)
    return children


def same_objects_baseline(count: int) -> tuple[float, str, int]:
    """The children the operator would make for `count` resources, server-side applied by kubectl with its field
    manager and no operator: seconds until available, CPU by process, and objects per resource."""
    cluster.kubectl("create", "namespace", "same-objects")
    model_store("same-objects")
    items = {"apiVersion": "v1", "kind": "List", "items": [obj for i in range(count) for obj in rendered_children(i)]}
    elapsed, cpu = until_available("same-objects", count, lambda: cluster.kubectl(
        "apply", "--server-side", "--field-manager=deepseek-operator", "-f", "-", stdin=json.dumps(items)))
    return elapsed, cpu, len(items["items"]) // count


def deployment_names() -> set[str]:
    out = json.loads(cluster.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json"))
    return {d["metadata"]["name"] for d in out["items"]}


def reaction_names(count: int, changes: int) -> list[str]:
    return [f"r1-{(n * 37) % count:04d}" for n in range(changes)]


def reactions(count: int, changes: int) -> list[float]:
    """Seconds from a spec change of one resource (a new revision) to its new Deployment, for `changes`
    resources spread over the `count` present."""
    seconds = []
    for n, name in enumerate(reaction_names(count, changes)):
        before = {d for d in deployment_names() if d.startswith(f"{name}-")}
        t0 = time.monotonic()
        cluster.kubectl("patch", "dsd", name, "-n", NAMESPACE, "--type=merge", "-p",
                        json.dumps({"spec": {"serving": {"podAnnotations": {"change": str(n)}}}}))
        wait_until(f"{name}: a new Deployment after its spec changed",
                   lambda: {d for d in deployment_names() if d.startswith(f"{name}-")} - before, poll=0.05)  # noqa: B023 - run in this iteration
        seconds.append(time.monotonic() - t0)
    return seconds


def rollback_names(count: int, rollbacks: int, changes: int) -> list[str]:
    """The resources whose canaries the scripted page fails: spread over the others, none of the reactions'."""
    taken = set(reaction_names(count, changes))
    spread = (f"r1-{(n * 53 + 11) % count:04d}" for n in range(count))
    return [name for name in dict.fromkeys(spread) if name not in taken][:rollbacks]


def rollbacks(names: list[str], page: ScriptedGatewayPage) -> tuple[list[float], list[float]]:
    """For each resource in turn: a canary rollout that the page's figures fail. Returns the seconds from the
    deciding measurement to weight 0 in the resource's status, and from the spec change to the new Deployment."""
    from kubernetes import client, config  # polled through the client: a kubectl process per poll is 0.1 s

    api = config.new_client_from_config(str(cluster.KUBECONFIG))  # type: ignore[no-untyped-call]
    custom, apps = client.CustomObjectsApi(api), client.AppsV1Api(api)
    timed = [rollback_one(n, name, page, custom, apps) for n, name in enumerate(names)]
    return [decided for decided, _ in timed], [reacted for _, reacted in timed]


def rollback_one(n: int, name: str, page: ScriptedGatewayPage, custom: Any, apps: Any) -> tuple[float, float]:
    def status() -> dict[str, Any]:
        body = custom.get_namespaced_custom_object("serving.deepseek.ai", "v1alpha1", NAMESPACE,
                                                   "deepseekdeployments", name)
        return dict(body.get("status") or {})

    def revisions() -> set[str]:
        listed = apps.list_namespaced_deployment(NAMESPACE, label_selector=f"serving.deepseek.ai/deployment={name}")
        return {d.metadata.name for d in listed.items}

    rollout = {"strategy": "canary", "steps": [{"weight": 10}, {"pause": "60s"}],
               "trafficRouting": {"gatewayAPI": {"parentRefs": [{"name": cluster.GATEWAY_NAME,
                                                                 "namespace": cluster.GATEWAY_NAMESPACE}],
                                                 "hostnames": [f"{name}.llm.test"]}},
               "analysis": {"provider": "gateway", "gateway": {"source": f"page-{name}"}, "interval": "2s",
                            "failureLimit": 1, "maxErrorRate": 0.05, "minRequests": 1}}
    # Routing first (no new revision: the stable gets its HTTPRoute), then the change that makes a canary.
    generation = custom.patch_namespaced_custom_object(
        "serving.deepseek.ai", "v1alpha1", NAMESPACE, "deepseekdeployments", name,
        {"spec": {"rollout": rollout}})["metadata"]["generation"]
    wait_until(f"{name}'s route", lambda: (s := status()).get("observedGeneration") == generation
               and s.get("phase") == "Healthy")
    before = revisions()
    t0 = time.monotonic()
    custom.patch_namespaced_custom_object("serving.deepseek.ai", "v1alpha1", NAMESPACE, "deepseekdeployments",
                                          name, {"spec": {"serving": {"podAnnotations": {"rollback": str(n)}}}})
    wait_until(f"{name}'s canary Deployment", lambda: revisions() - before, poll=0.02)
    reacted = time.monotonic() - t0
    wait_until(f"{name}'s canary weight", lambda: status().get("canaryWeight", 0) > 0, poll=0.02)
    wait_until(f"{name} rolled back", lambda: status().get("phase") == "RolledBack", poll=0.02)
    seen = time.monotonic()
    reads = [t for t in page.reads.get(name, []) if t <= seen]
    return seen - reads[-1], reacted


def wait_until(what: str, ready: Callable[[], object], poll: float = 0.5, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not ready():
        if time.monotonic() > deadline:
            raise SystemExit(f"{what}: not within {timeout:.0f} s")
        time.sleep(poll)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--baseline", action="store_true", help="also time plain Deployments (no operator)")
    parser.add_argument("--reactions", type=int, default=0, help="spec changes to time once all are Healthy")
    parser.add_argument("--rollbacks", type=int, default=0,
                        help="failing canary rollouts to time once all are Healthy (after the reactions)")
    args = parser.parse_args()
    cluster.down(quiet=True)
    cluster.up("instant", REPO / "benchmarks" / "scale-nodes.yaml")
    try:
        floor, floor_cpu = baseline(args.count) if args.baseline else (None, "")
        same, same_cpu, same_kinds = same_objects_baseline(args.count) if args.baseline else (None, "", 0)
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/deepseekdeployments.serving.deepseek.ai")
        cluster.kubectl("create", "namespace", NAMESPACE)
        model_store(NAMESPACE)
        port = free_port()
        page = ScriptedGatewayPage() if args.rollbacks else None
        failing = rollback_names(args.count, args.rollbacks, args.reactions)
        operator = start_operator(port, page.sources_file(failing) if page else None)
        time.sleep(2)
        pids = {**testbed_pids(), "operator": operator.pid}
        cpu0 = cpu_seconds(pids)
        t0 = time.monotonic()
        items = {"apiVersion": "v1", "kind": "List", "items": [resource(i) for i in range(args.count)]}
        cluster.kubectl("create", "-f", "-", stdin=json.dumps(items))
        created_s = time.monotonic() - t0
        while True:
            counts = phases()
            if counts.get("Healthy", 0) == args.count:
                break
            if time.monotonic() - t0 > 900:
                raise SystemExit(f"not all Healthy after 900 s: {counts}")
            time.sleep(1)
        ready_s = time.monotonic() - t0
        cpu = cpu_used(cpu0, cpu_seconds(pids))
        writes_first = metric(port, "deepseek_operator_api_writes_total")
        writes_by_method = samples(port, "deepseek_operator_api_writes_total")
        applies_by_kind = samples(port, "deepseek_operator_children_applied_total")
        status_writes = metric(port, "deepseek_operator_status_writes_total")
        passes_first = metric(port, "deepseek_operator_reconcile_duration_seconds_count")
        pass_seconds = metric(port, "deepseek_operator_reconcile_duration_seconds_sum")
        rss = peak_rss_mb(operator.pid)
        reacted = reactions(args.count, args.reactions) if args.reactions else []
        decided, rolled_reacted = rollbacks(failing, page) if page else ([], [])
        if page:
            page.stop()
        operator.terminate()
        operator.wait()

        # A full resync: a new operator process sees all resources and children again.
        port2 = free_port()
        operator = start_operator(port2)
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            time.sleep(2)
            try:
                if metric(port2, "deepseek_operator_reconcile_duration_seconds_count") >= args.count:
                    break
            except OSError:
                continue
        time.sleep(5)
        resync_passes = metric(port2, "deepseek_operator_reconcile_duration_seconds_count")
        resync_writes = metric(port2, "deepseek_operator_api_writes_total")
        operator.terminate()
        operator.wait()
        print(f"resources: {args.count} (created in {created_s:.1f} s)")
        print(f"time until all Healthy: {ready_s:.1f} s")
        if floor is not None:
            print(f"plain Deployments (no operator) until all available: {floor:.1f} s; "
                  f"operator / plain = {ready_s / floor:.2f}")
            print(f"  CPU seconds by process (plain): {floor_cpu}")
        if same is not None:
            print(f"the operator's children applied by kubectl (no operator; {same_kinds} objects per resource) until "
                  f"all available: {same:.1f} s; operator / same objects = {ready_s / same:.2f}")
            print(f"  CPU seconds by process (same objects): {same_cpu}")
        print(f"  CPU seconds by process (operator): {cpu}")
        print(f"operator peak RSS: {rss:.0f} MB")
        print(f"API writes to reach Healthy: {writes_first:.0f} ({writes_first / args.count:.1f} per resource)")
        per_resource = {**{f"{label_value(k)} requests": n for k, n in writes_by_method.items()},
                        "status writes": status_writes,
                        **{f"{label_value(k)} applies": n for k, n in applies_by_kind.items()}}
        print("  of which, per resource: " + ", ".join(f"{what} {n / args.count:.2f}"
                                                       for what, n in per_resource.items() if n))
        print(f"reconcile passes to reach Healthy: {passes_first:.0f} ({passes_first / args.count:.1f} per "
              f"resource, {1000 * pass_seconds / max(passes_first, 1):.0f} ms each)")
        print(f"full resync after restart: {resync_passes:.0f} reconcile passes, {resync_writes:.0f} API writes")
        if reacted:
            print(f"spec change -> the new revision's Deployment, with {args.count} resources present: p50 "
                  f"{percentile(reacted, 0.5):.2f} s, p99 {percentile(reacted, 0.99):.2f} s over {len(reacted)} "
                  "changes")
        if decided:
            print(f"deciding measurement -> weight 0 in status, {args.count} resources present: p50 "
                  f"{percentile(decided, 0.5):.2f} s, p99 {percentile(decided, 0.99):.2f} s over {len(decided)} "
                  f"rollbacks; their spec change -> canary Deployment: p50 {percentile(rolled_reacted, 0.5):.2f} s, "
                  f"p99 {percentile(rolled_reacted, 0.99):.2f} s")
    finally:
        cluster.down(quiet=True)


if __name__ == "__main__":
    main()
