"""500 DeepSeekDeployments on the testbed (pod runner off: kwok marks pods Ready), one operator process.

Prints: time until all are Healthy, the operator's peak RSS, and the API writes one full resync makes when
nothing changed (the operator restarted: it sees every resource and child again and must write nothing).
Targets from the serving-path issue: < 60 s, < 200 MB, 0 writes. `--baseline` first times the same number
of plain one-GPU Deployments without the operator: the floor this 2-core testbed sets, for a ratio.

`--reactions N` then changes the spec of N resources, one at a time, with all of them present, and prints the
p50 and p99 of the time from the change to the new revision's Deployment existing (its pods are created by the
Deployment controller at once on this testbed).

Usage: .venv/bin/python benchmarks/scale.py [--count 500] [--baseline] [--reactions 20]   (leaves the testbed
stopped)
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed import cluster  # noqa: E402

NAMESPACE = "scale"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_operator(port: int) -> subprocess.Popen[bytes]:
    log = open(cluster.LOGS / "operator-scale.log", "ab")  # noqa: SIM115 - owned by the child
    env = {"KUBECONFIG": str(cluster.KUBECONFIG), "PATH": "/usr/bin:/bin", "PYTHONUNBUFFERED": "1"}
    command = [sys.executable, "-m", "deepseek_operator", "--liveness", "", "--metrics-port", str(port),
               "--metrics-address", "127.0.0.1"]
    return subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO)


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
                     "containers": [{"name": "triton", "image": "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3",
                                     "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}},
    }


def baseline(count: int) -> float:
    """Seconds until `count` plain one-GPU Deployments are available, with no operator involved."""
    cluster.kubectl("create", "namespace", "baseline")
    t0 = time.monotonic()
    items = {"apiVersion": "v1", "kind": "List", "items": [plain_deployment(i) for i in range(count)]}
    cluster.kubectl("create", "-f", "-", stdin=json.dumps(items))
    while True:
        out = json.loads(cluster.kubectl("get", "deployments", "-n", "baseline", "-o", "json"))
        if sum((d.get("status") or {}).get("availableReplicas", 0) for d in out["items"]) == count:
            elapsed = time.monotonic() - t0
            break
        time.sleep(1)
    cluster.kubectl("delete", "namespace", "baseline", "--wait=true", "--timeout=300s")
    return elapsed


def deployment_names() -> set[str]:
    out = json.loads(cluster.kubectl("get", "deployments", "-n", NAMESPACE, "-o", "json"))
    return {d["metadata"]["name"] for d in out["items"]}


def reactions(count: int, changes: int) -> list[float]:
    """Seconds from a spec change of one resource (a new revision) to its new Deployment, for `changes`
    resources spread over the `count` present."""
    seconds = []
    for n in range(changes):
        name = f"r1-{(n * 37) % count:04d}"
        before = {d for d in deployment_names() if d.startswith(f"{name}-")}
        t0 = time.monotonic()
        cluster.kubectl("patch", "dsd", name, "-n", NAMESPACE, "--type=merge", "-p",
                        json.dumps({"spec": {"serving": {"podAnnotations": {"change": str(n)}}}}))
        while not ({d for d in deployment_names() if d.startswith(f"{name}-")} - before):
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"{name}: no new Deployment 120 s after its spec changed")
            time.sleep(0.05)
        seconds.append(time.monotonic() - t0)
    return seconds


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=500)
    parser.add_argument("--baseline", action="store_true", help="also time plain Deployments (no operator)")
    parser.add_argument("--reactions", type=int, default=0, help="spec changes to time once all are Healthy")
    args = parser.parse_args()
    cluster.down(quiet=True)
    cluster.up("instant", REPO / "benchmarks" / "scale-nodes.yaml")
    try:
        floor = baseline(args.count) if args.baseline else None
        cluster.kubectl("apply", "--server-side", "-f", str(REPO / "crds"))
        cluster.kubectl("wait", "--for=condition=Established", "crd/deepseekdeployments.serving.deepseek.ai")
        cluster.kubectl("create", "namespace", NAMESPACE)
        cluster.kubectl("apply", "-f", "-", stdin=json.dumps({
            "apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "model-store", "namespace": NAMESPACE},
            "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Ti"}}}}))
        port = free_port()
        operator = start_operator(port)
        time.sleep(2)
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
        writes_first = metric(port, "deepseek_operator_api_writes_total")
        writes_by_method = samples(port, "deepseek_operator_api_writes_total")
        applies_by_kind = samples(port, "deepseek_operator_children_applied_total")
        status_writes = metric(port, "deepseek_operator_status_writes_total")
        passes_first = metric(port, "deepseek_operator_reconcile_duration_seconds_count")
        pass_seconds = metric(port, "deepseek_operator_reconcile_duration_seconds_sum")
        rss = peak_rss_mb(operator.pid)
        reacted = reactions(args.count, args.reactions) if args.reactions else []
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
    finally:
        cluster.down(quiet=True)


if __name__ == "__main__":
    main()
