"""The testbed behaves like a GPU cluster where it matters to the operator: scheduling on GPU nodes, real
Triton on pod IPs, Prometheus scraping, a real gateway honouring weights and header matches, fault
injection, and cleanup when pods go away."""

from __future__ import annotations

import collections
import random
import re
import subprocess

import numpy as np
import pytest
import requests
import tritonclient.http as triton_http
from kubernetes import client

from testbed import network
from tests.e2e.kube import TestbedClient, eventually, fire, generate, triton_deployment

pytestmark = pytest.mark.e2e


def _identity(resp: requests.Response) -> str:
    match = re.match(r"\[([^\]]+)\]", resp.json()["text_output"])
    assert match, resp.text
    return match.group(1)


def _pod_pids(uid: str) -> list[int]:
    """The processes in a pod's network namespace (the pod runner makes one per pod)."""
    res = subprocess.run(["ip", "netns", "pids", network.names_for(uid)[0]], capture_output=True, text=True)
    return [int(p) for p in res.stdout.split()]


def test_gpu_pod_is_scheduled_ready_and_serves_real_triton(testbed: TestbedClient) -> None:
    ns = testbed.namespace("gpu")
    try:
        testbed.apply(triton_deployment("llm", gpus=4), ns)
        pod = eventually("a Ready pod", lambda: testbed.ready_pods(ns, "app=llm"), timeout=120)[0]
        node = testbed.core.read_node(pod.spec.node_name)
        assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
        assert int(node.status.allocatable["nvidia.com/gpu"]) >= 4

        # A real Triton infer request on the pod IP, through Triton's own client.
        tc = triton_http.InferenceServerClient(f"{pod.status.pod_ip}:8000")
        assert tc.is_server_ready() and tc.is_model_ready("tensorrt_llm")
        text = triton_http.InferInput("text_input", [1], "BYTES")
        text.set_data_from_numpy(np.array([b"one two three"], dtype=np.object_))
        result = tc.infer("tensorrt_llm", [text])
        # No sampling_param_exclude_input_from_output: the answer starts with the prompt, as upstream's default does.
        assert result.as_numpy("text_output")[0].decode() == f"one two three [{ns}/{pod.metadata.name}] three two one"

        # Prometheus discovered the pod through our apiserver and scraped its Triton metrics.
        series = eventually("nv_inference_request_success in Prometheus", lambda: testbed.prom_query(
            f'nv_inference_request_success{{namespace="{ns}",model="tensorrt_llm"}} > 0'), timeout=60)
        assert series[0]["metric"]["pod"] == pod.metadata.name
        assert series[0]["metric"]["app"] == "llm"
    finally:
        testbed.delete_namespace(ns)


def test_pod_that_cannot_fit_any_gpu_node_stays_pending(testbed: TestbedClient) -> None:
    ns = testbed.namespace("fit")
    try:
        testbed.apply(triton_deployment("huge", gpus=16), ns)

        def unschedulable() -> bool:
            pods = testbed.core.list_namespaced_pod(ns, label_selector="app=huge").items
            return bool(pods) and any(c.type == "PodScheduled" and c.reason == "Unschedulable"
                                      for c in pods[0].status.conditions or [])

        eventually("the scheduler to report Unschedulable", unschedulable, timeout=60)
    finally:
        testbed.delete_namespace(ns)


def test_gateway_honours_httproute_weights_and_header_match(testbed: TestbedClient) -> None:
    ns = testbed.namespace("gw")
    try:
        testbed.apply(triton_deployment("stable") + triton_deployment("canary"), ns)
        for app in ("stable", "canary"):
            eventually(f"{app} Ready", lambda app=app: testbed.ready_pods(ns, f"app={app}"), timeout=120)
        hostname = f"{ns}.llm.test"
        route = {
            "apiVersion": "gateway.networking.k8s.io/v1", "kind": "HTTPRoute",
            "metadata": {"name": "llm", "namespace": ns},
            "spec": {
                "parentRefs": [{"name": "llm-gateway", "namespace": "default"}],
                "hostnames": [hostname],
                "rules": [
                    {"matches": [{"headers": [{"name": "x-model-variant", "value": "b"}]}],
                     "backendRefs": [{"name": "canary", "port": 8000}]},
                    {"backendRefs": [{"name": "stable", "port": 8000, "weight": 90},
                                     {"name": "canary", "port": 8000, "weight": 10}]},
                ],
            },
        }
        client.CustomObjectsApi(testbed.api).create_namespaced_custom_object(
            "gateway.networking.k8s.io", "v1", ns, "httproutes", route)
        headers = {"Host": hostname}

        def routed() -> bool:
            r = generate(testbed.gateway, "warm up", headers=headers)
            return r.status_code == 200

        eventually("the gateway to route", routed, timeout=60)

        responses = fire(2000, lambda s: generate(testbed.gateway, "hello", headers=headers, session=s))
        assert all(r.status_code == 200 for r in responses)
        counts = collections.Counter(_identity(r).split("/")[1].split("-")[0] for r in responses)
        canary_share = counts["canary"] / 2000
        assert abs(canary_share - 0.10) <= 0.03, counts

        matched = fire(200, lambda s: generate(testbed.gateway, "hello",
                                               headers={**headers, "x-model-variant": "b"}, session=s))
        assert {_identity(r).split("/")[1].split("-")[0] for r in matched} == {"canary"}
    finally:
        testbed.delete_namespace(ns)


def test_error_rate_annotation_fails_requests_that_triton_counts_as_successes(testbed: TestbedClient) -> None:
    """The llmapi model answers a failed request with an error response; Triton's Python backend counts those
    as successes (triton-inference-server/server#7713), on the real tritonserver here as in NVIDIA's images.
    The operator's analysis relies on this, so the testbed keeps it as it is."""
    ns = testbed.namespace("fault")
    try:
        seed = "flaky-600"  # the stand-in's draws, seeded: the same failures every run
        testbed.apply(triton_deployment("flaky", annotations={"testbed.deepseek.ai/error-rate": "0.3",
                                                              "testbed.deepseek.ai/fault-seed": seed}), ns)
        pod = eventually("a Ready pod", lambda: testbed.ready_pods(ns, "app=flaky"), timeout=120)[0]
        base = f"http://{pod.status.pod_ip}:8000"
        responses = fire(600, lambda s: generate(base, "hi", session=s), workers=1)
        failed = sum(r.status_code != 200 for r in responses)
        draws = random.Random(seed)
        assert failed == sum(draws.random() < 0.3 for _ in range(600)), failed  # one draw per request, in order
        assert 0.24 <= failed / 600 <= 0.36, failed
        assert all("testbed fault injection" in r.json()["error"] for r in responses if r.status_code != 200)

        metrics = requests.get(f"http://{pod.status.pod_ip}:8002/metrics", timeout=5).text
        def counted(name: str) -> float:
            return sum(float(line.rsplit(" ", 1)[1]) for line in metrics.splitlines()
                       if line.startswith(f'{name}{{model="tensorrt_llm"'))
        assert counted("nv_inference_request_failure") == 0
        assert counted("nv_inference_request_success") == 600

        def prom_successes() -> float | None:
            res = testbed.prom_query(f'sum(nv_inference_request_success{{namespace="{ns}",model="tensorrt_llm"}})')
            value = float(res[0]["value"][1]) if res else 0.0
            return value if value == 600 else None

        eventually("Prometheus to scrape the counters", prom_successes, timeout=30)
    finally:
        testbed.delete_namespace(ns)


def test_deleted_pod_loses_its_process(testbed: TestbedClient) -> None:
    ns = testbed.namespace("del")
    try:
        # A bare pod, so no controller replaces it (a replacement could reuse the IP).
        model, deployment, _ = triton_deployment("gone")
        template = deployment["spec"]["template"]
        testbed.apply([model, {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "gone", **template["metadata"]},
                               "spec": template["spec"]}], ns)
        pod = eventually("a Ready pod", lambda: testbed.ready_pods(ns, "app=gone"), timeout=120)[0]
        assert _pod_pids(pod.metadata.uid), "tritonserver should be running"
        testbed.core.delete_namespaced_pod(pod.metadata.name, ns)
        eventually("the pod's processes to exit", lambda: not _pod_pids(pod.metadata.uid), timeout=60)
        with pytest.raises(requests.RequestException):
            requests.get(f"http://{pod.status.pod_ip}:8000/v2/health/ready", timeout=2)
    finally:
        testbed.delete_namespace(ns)
