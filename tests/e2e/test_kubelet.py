"""The testbed runs every pod as its spec is written (testbed/podrunner.py): commands, env, volumes, init
containers, probes, restarts with back-off, termination messages; and the operator's own pods, run that way,
start and serve, or say why not."""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
import requests
from kubernetes import client, watch

from testbed import podrunner
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import Resources, _docs, kubectl_apply, model_store_namespace

pytestmark = pytest.mark.e2e
GPU_TOLERATION = [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]


@pytest.fixture
def ns(testbed: TestbedClient) -> Iterator[str]:
    name = testbed.namespace("kubelet")
    yield name
    testbed.delete_namespace(name)


def pod(name: str, containers: list[dict[str, Any]], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name},
            "spec": {"tolerations": GPU_TOLERATION, "containers": containers, **spec}}


def container_status(testbed: TestbedClient, ns: str, name: str, init: bool = False) -> dict[str, Any]:
    status = testbed.core.read_namespaced_pod_status(name, ns).status
    found = (status.init_container_statuses if init else status.container_statuses) or []
    return dict(testbed.api.sanitize_for_serialization(found[0])) if found else {}


def test_a_command_that_fails_goes_to_crash_loop_back_off_with_growing_back_off(testbed: TestbedClient,
                                                                                 ns: str) -> None:
    testbed.apply([pod("crash", [{"name": "app", "image": "busybox:1.36", "command": ["sh", "-c"],
                                  "args": ["echo 'cannot open the model' >&2; exit 3"],
                                  "terminationMessagePolicy": "FallbackToLogsOnError"}])], ns)
    # The kubelet's back-off, as each wait says it, by restartCount (which counts starts): the first restart at
    # once (no wait after the first start), then 10 s, then 20 s. What is checked is what the runner decided, not
    # how long the test's polls took to see it.
    waits: dict[int, str] = {}

    def two_waits() -> dict[int, str] | None:
        status = container_status(testbed, ns, "crash")
        waiting = status["state"].get("waiting") or {}
        if waiting.get("reason") == "CrashLoopBackOff":
            waits.setdefault(int(status.get("restartCount", 0)), waiting["message"].split(" restarting")[0])
        return waits if len(waits) >= 2 else None
    eventually("two back-offs", two_waits, timeout=90)
    assert dict(sorted(waits.items())[:2]) == {1: "back-off 10s", 2: "back-off 20s"}, waits

    def backing_off() -> dict[str, Any] | None:
        status = container_status(testbed, ns, "crash")
        return status if (status["state"].get("waiting") or {}).get("reason") == "CrashLoopBackOff" else None
    status = eventually("CrashLoopBackOff", backing_off, timeout=30)
    last = status["lastState"]["terminated"]
    assert (last["exitCode"], last["reason"]) == (3, "Error")
    assert last["message"] == "cannot open the model"  # FallbackToLogsOnError: the log's last lines


def test_volumes_env_and_read_only_mounts_as_written(testbed: TestbedClient, ns: str) -> None:
    script = "\n".join([
        "set -e", "{",
        'echo "configmap=$(cat /etc/app/greeting)"',
        'echo "subpath=$(cat /etc/motd-app)"',
        'echo "secret=$(cat /var/secret/tok) mode=$(stat -c %a /var/secret/tok)"',
        "echo \"memory=$(grep ' /scratch ' /proc/mounts | cut -d' ' -f3)\"",
        'echo "init=$(cat /scratch/from-init)"',
        'if touch /etc/app/new 2>/dev/null; then echo readonly=no; else echo readonly=yes; fi',
        'echo "env=$GREETING ip=$MY_IP cwd=$(pwd) host=$(hostname)"',
        "} > /dev/termination-log",
    ])
    mounts = [{"name": "config", "mountPath": "/etc/app"},
              {"name": "config", "mountPath": "/etc/motd-app", "subPath": "motd"},
              {"name": "secret", "mountPath": "/var/secret"}, {"name": "scratch", "mountPath": "/scratch"}]
    testbed.apply([
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "app"},
         "data": {"greeting": "hello", "motd": "welcome"}},
        {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "app"}, "stringData": {"token": "s3cr3t"}},
        pod("reader", [{"name": "read", "image": "busybox:1.36", "command": ["sh", "-c", script],
                        "workingDir": "/work", "volumeMounts": mounts,
                        "env": [{"name": "GREETING",
                                 "valueFrom": {"configMapKeyRef": {"name": "app", "key": "greeting"}}},
                                {"name": "MY_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}]}],
            restartPolicy="Never",
            initContainers=[{"name": "prepare", "image": "busybox:1.36",
                             "command": ["sh", "-c", "echo ready > /scratch/from-init"],
                             "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}]}],
            volumes=[{"name": "config", "configMap": {"name": "app"}},
                     {"name": "secret", "secret": {"secretName": "app", "defaultMode": 0o400,
                                                   "items": [{"key": "token", "path": "tok"}]}},
                     {"name": "scratch", "emptyDir": {"medium": "Memory", "sizeLimit": "16Mi"}}]),
    ], ns)
    eventually("the reader to finish", lambda: testbed.core.read_namespaced_pod_status("reader", ns).status.phase
               == "Succeeded", timeout=60)
    ip = testbed.core.read_namespaced_pod_status("reader", ns).status.pod_ip
    report = dict(line.split("=", 1) for line in
                  container_status(testbed, ns, "reader")["state"]["terminated"]["message"].split("\n") if "=" in line)
    assert report["configmap"] == "hello" and report["subpath"] == "welcome"
    assert report["secret"] == "s3cr3t mode=400"
    assert report["memory"] == "tmpfs" and report["init"] == "ready"
    assert report["readonly"] == "yes"
    assert report["env"] == f"hello ip={ip} cwd=/work host=reader"
    assert container_status(testbed, ns, "reader", init=True)["state"]["terminated"]["reason"] == "Completed"


def test_a_volume_mounted_over_the_checkout_does_not_hide_what_the_container_runs_from(testbed: TestbedClient,
                                                                                      ns: str) -> None:
    """A checkout under /tmp, and a pod with an emptyDir at /tmp (every pod with a read-only root has one): the
    container's python, its packages and the stand-ins (here the quantize Job's) live in the checkout, and still
    run. Here the emptyDir is
    mounted on the checkout's own path, which any checkout path allows."""
    checkout = str(podrunner.REPO)
    testbed.apply([pod("hidden", [{
        "name": "app", "image": "ghcr.io/deepseek-operator/deepseek-operator-tritonserver:0.1.0",
        "command": ["python3", "-c", "import modelopt.torch.quantization, torch, transformers; "
                                     "open('/dev/termination-log', 'w').write('ran')"],
        "volumeMounts": [{"name": "scratch", "mountPath": checkout}]}],
        restartPolicy="Never", volumes=[{"name": "scratch", "emptyDir": {}}])], ns)
    eventually("the pod to finish", lambda: testbed.core.read_namespaced_pod_status("hidden", ns).status.phase
               in ("Succeeded", "Failed"), timeout=60)
    terminated = container_status(testbed, ns, "hidden")["state"]["terminated"]
    assert (terminated["exitCode"], terminated.get("message")) == (0, "ran"), terminated


def test_a_failing_init_container_holds_the_pod_in_init_crash_loop(testbed: TestbedClient, ns: str) -> None:
    testbed.apply([pod("held", [{"name": "app", "image": "busybox:1.36", "command": ["sleep", "3600"]}],
                       initContainers=[{"name": "fetch", "image": "busybox:1.36", "command": ["false"]}])], ns)

    def looping() -> dict[str, Any] | None:
        status = container_status(testbed, ns, "held", init=True)
        return status if (status.get("state") or {}).get("waiting", {}).get("reason") == "CrashLoopBackOff" else None
    status = eventually("Init:CrashLoopBackOff", looping, timeout=60)
    assert status["lastState"]["terminated"]["exitCode"] == 1
    assert testbed.core.read_namespaced_pod_status("held", ns).status.phase == "Pending"
    assert container_status(testbed, ns, "held")["state"]["waiting"]["reason"] != "Running"


def test_liveness_restarts_and_readiness_takes_the_pod_out_of_its_endpoints(testbed: TestbedClient,
                                                                             ns: str) -> None:
    # HTTP servers answering with their pod's name; "flaky" turns unready 25 s after it starts, "lively" stops
    # being live after 12 s.
    def serve(unready_after: str = "", dead_after: str = "") -> str:
        return ("mkdir -p /srv/www && hostname > /srv/www/index.html && touch /tmp/live /tmp/ready; "
                + (f"(sleep {dead_after}; rm /tmp/live) & " if dead_after else "")
                + (f"(sleep {unready_after}; rm /tmp/ready) & " if unready_after else "")
                + "exec python3 -m http.server 8080 --directory /srv/www")

    def web(name: str, command: str, probes: dict[str, Any], **spec: Any) -> dict[str, Any]:
        return {**pod(name, [{"name": "web", "image": "busybox:1.36", "command": ["sh", "-c", command],
                              "ports": [{"name": "web", "containerPort": 8080}], **probes}], **spec),
                "metadata": {"name": name, "labels": {"app": "web"} if name != "lively" else {}}}

    ready_file = {"readinessProbe": {"exec": {"command": ["test", "-f", "/tmp/ready"]}, "periodSeconds": 2,
                                     "failureThreshold": 1}}
    live_file = {"livenessProbe": {"exec": {"command": ["test", "-f", "/tmp/live"]}, "periodSeconds": 2,
                                   "failureThreshold": 2},
                 "readinessProbe": {"httpGet": {"path": "/", "port": "web"}, "periodSeconds": 2}}
    host = f"web.{ns}.test"
    testbed.apply([
        web("steady", serve(), ready_file), web("flaky", serve(unready_after="25"), ready_file),
        # Python as PID 1 ignores SIGTERM (no handler), as in any container: SIGKILL after the grace period.
        web("lively", serve(dead_after="12"), live_file, terminationGracePeriodSeconds=2),
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 8080, "targetPort": 8080}]}},
    ], ns)
    client.CustomObjectsApi(testbed.api).create_namespaced_custom_object(
        "gateway.networking.k8s.io", "v1", ns, "httproutes",
        {"apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute", "metadata": {"name": "web"},
         "spec": {"parentRefs": [{"name": "llm-gateway", "namespace": "default"}], "hostnames": [host],
                  "rules": [{"backendRefs": [{"name": "web", "port": 8080}]}]}})
    discovery = client.DiscoveryV1Api(testbed.api)

    def ready_endpoints() -> set[str]:
        slices = discovery.list_namespaced_endpoint_slice(ns, label_selector="kubernetes.io/service-name=web").items
        return {e.target_ref.name for s in slices for e in s.endpoints or [] if e.conditions.ready}

    def answering() -> set[str]:
        with requests.Session() as s:
            return {r.text.strip() for r in (s.get(testbed.gateway, headers={"Host": host}, timeout=5)
                                             for _ in range(40)) if r.ok}

    eventually("both pods ready behind the gateway", lambda: answering() == {"steady", "flaky"}, timeout=60)
    eventually("readiness failing to take flaky out of the EndpointSlice",
               lambda: ready_endpoints() == {"steady"}, timeout=40)
    eventually("the gateway to send everything to steady", lambda: answering() == {"steady"}, timeout=20)
    eventually("the failed liveness probe to restart the container",
               lambda: container_status(testbed, ns, "lively").get("restartCount", 0) >= 1, timeout=60)
    last = container_status(testbed, ns, "lively")["lastState"]["terminated"]
    assert last["exitCode"] == 137  # killed by the kubelet after the grace period, not ended by itself


def test_an_image_the_testbed_does_not_have_cannot_be_pulled(testbed: TestbedClient, ns: str) -> None:
    testbed.apply([pod("nopull", [{"name": "app", "image": "docker.io/library/nginx:1.27"}])], ns)
    status = eventually("ErrImagePull", lambda: container_status(testbed, ns, "nopull") or None, timeout=30)
    assert status["state"]["waiting"]["reason"] == "ErrImagePull"


def qwen_7b(namespace: str) -> dict[str, Any]:
    """The BF16 Qwen-7B example: served from its checkpoint, no quantize Job."""
    return next(d for d in _docs("r1-distill-qwen-7b-a100.yaml", namespace) if d["kind"] == "DeepSeekDeployment")


@pytest.fixture
def served(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "asis")


def test_the_serving_pod_runs_tritonserver_in_the_foreground_with_the_images_model_folder(testbed: TestbedClient,
                                                                                        served: str) -> None:
    """Failures the stand-ins now reproduce: a repository without the model's helpers.py, an image whose llmapi
    model cannot import tensorrt_llm, a server that is not the container's main process. Any of them would keep
    this pod from Ready with 0 restarts."""
    res = Resources(testbed, served)
    doc = qwen_7b(served)
    assert kubectl_apply([doc]).returncode == 0
    res.wait_phase("r1-qwen-7b", "Healthy", timeout=180)
    pods = testbed.ready_pods(served, "app.kubernetes.io/instance=r1-qwen-7b")
    assert pods
    for p in pods:
        [triton] = [c for c in p.status.container_statuses if c.name == "triton"]
        assert triton.restart_count == 0 and triton.state.running is not None
        assert requests.get(f"http://{p.status.pod_ip}:8000/v2/models/tensorrt_llm/ready", timeout=5).ok
    time.sleep(12)  # a launcher that returned would have ended the container by now
    again = testbed.core.read_namespaced_pod_status(pods[0].metadata.name, served).status
    # Triton and the front door beside it: neither restarted.
    assert sorted((c.name, c.restart_count) for c in again.container_statuses) == [("frontend", 0), ("triton", 0)]
    # tritonserver is the container's first process: what the kubelet signals is the server itself.
    pid1 = podrunner.container_pid1(pods[0].metadata.uid, "triton")
    assert pid1 is not None and Path(f"/proc/{pid1}/cmdline").read_bytes().split(b"\0")[0] == b"tritonserver"


def _serving_pod(testbed: TestbedClient, served: str, annotations: dict[str, str]) -> Any:
    res = Resources(testbed, served)
    doc = qwen_7b(served)
    doc["spec"]["serving"]["replicas"] = 1
    doc["spec"]["serving"]["podAnnotations"] = annotations
    assert kubectl_apply([doc]).returncode == 0
    res.wait_phase("r1-qwen-7b", "Healthy", timeout=180)
    [pod] = testbed.ready_pods(served, "app.kubernetes.io/instance=r1-qwen-7b")
    return pod


def test_a_pod_deleted_under_load_finishes_its_requests_and_exits_before_sigkill(testbed: TestbedClient,
                                                                                 served: str) -> None:
    # Each answer takes 24 tokens x 0.6 s: longer than the 10 s preStop, so Triton's own drain after SIGTERM
    # (and the front door's) must carry the requests still in flight.
    pod = _serving_pod(testbed, served, {"testbed.deepseek.ai/token-interval-ms": "600"})
    url = f"http://{pod.status.pod_ip}:8000/v2/models/tensorrt_llm/generate"
    body = {"text_input": "one two three", "sampling_param_max_tokens": 24}
    last: dict[str, Any] = {}

    def watch_containers() -> None:
        stream = watch.Watch()
        for event in stream.stream(testbed.core.list_namespaced_pod, served, timeout_seconds=120,
                                   field_selector=f"metadata.name={pod.metadata.name}"):
            statuses = event["object"].status.container_statuses or []
            last.update({c.name: c.state.terminated for c in statuses if c.state.terminated})
            if event["type"] == "DELETED":
                stream.stop()
    watcher = threading.Thread(target=watch_containers, daemon=True)
    watcher.start()
    with ThreadPoolExecutor(6) as pool:
        answers = [pool.submit(requests.post, url, json=body, timeout=120) for _ in range(6)]
        eventually("the requests to be in flight", lambda: _in_flight(pod.status.pod_ip) >= 6, timeout=20)
        testbed.core.delete_namespaced_pod(pod.metadata.name, served)  # the default grace period: 60 s
        replies = [a.result() for a in answers]
    watcher.join(130)
    assert [r.status_code for r in replies] == [200] * 6, [r.text for r in replies]
    assert all(r.json()["text_output"].endswith("one") for r in replies)  # whole answers, not cut short
    # Both containers ended by themselves after draining, not by the SIGKILL at the grace period's end (137).
    assert {name: t.exit_code for name, t in last.items()} == {"triton": 0, "frontend": 0}, last


def _in_flight(ip: str) -> float:
    page = requests.get(f"http://{ip}:8003/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in page.splitlines()
               if line.startswith("deepseek_frontend_requests_in_flight{"))


def test_tritonserver_killed_in_its_pod_restarts_the_container_at_once(testbed: TestbedClient, served: str) -> None:
    pod = _serving_pod(testbed, served, {})
    server = podrunner.container_pid1(pod.metadata.uid, "triton")  # the process `kill -9 1` in it would kill
    assert server is not None and Path(f"/proc/{server}/cmdline").read_bytes().startswith(b"tritonserver")
    os.kill(server, signal.SIGKILL)
    restarted = eventually("the triton container to restart", lambda: (
        s if (s := container_status_named(testbed, served, pod.metadata.name, "triton")).get("restartCount", 0) >= 1
        else None), timeout=60)
    assert restarted["lastState"]["terminated"]["exitCode"] == 137  # the server's own death, seen by the kubelet
    eventually("the pod to serve again", lambda: requests.post(
        f"http://{pod.status.pod_ip}:8000/v2/models/tensorrt_llm/generate",
        json={"text_input": "back again", "sampling_param_max_tokens": 4}, timeout=5).ok, timeout=120)


def container_status_named(testbed: TestbedClient, ns: str, pod: str, name: str) -> dict[str, Any]:
    status = testbed.core.read_namespaced_pod_status(pod, ns).status
    found = [c for c in status.container_statuses or [] if c.name == name]
    return dict(testbed.api.sanitize_for_serialization(found[0])) if found else {}


def test_a_checkpoint_folder_without_a_checkpoint_crash_loops_and_the_status_says_why(
        testbed: TestbedClient, served: str) -> None:
    res = Resources(testbed, served)
    doc = qwen_7b(served)
    doc["spec"]["model"]["source"]["pvc"]["path"] = "/models/not-downloaded"
    doc["spec"]["serving"]["replicas"] = 1
    assert kubectl_apply([doc]).returncode == 0

    def failing() -> dict[str, Any] | None:
        found = res.condition("r1-qwen-7b", "Progressing")
        return found if found and found["reason"] == "ContainersFailing" else None
    progressing = eventually("the resource to name the failing pod", failing, timeout=120)
    assert "CrashLoopBackOff" in progressing["message"] and "/triton" in progressing["message"]
    events = testbed.core.list_namespaced_event(served, field_selector="involvedObject.name=r1-qwen-7b").items
    assert any(e.reason == "PodFailing" and e.type == "Warning" for e in events)
