"""Security end to end: a resource author cannot make the operator carry a Secret to an address of the author's
choosing (the confused deputy of a metric provider), and the analysis reads the sources it was installed with."""

from __future__ import annotations

import base64
import http.server
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
import tritonclient.grpc as grpcclient
from kubernetes import client
from kubernetes.client.rest import ApiException
from tritonclient.utils import InferenceServerException

from testbed import cluster
from tests.bad_specs import VALID, merge
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_multinode import two_node_cr
from tests.e2e.test_rollout import canary_cr
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, Resources, _docs, kubectl_apply, model_store_namespace
from tests.unit.test_metric_sources import _cert, _pem

pytestmark = pytest.mark.e2e
PASSWORD = "hunter2-the-database-password"


class _Collector(http.server.BaseHTTPRequestHandler):
    """The author's endpoint: it records whatever reaches it."""

    seen: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).seen.append(f"{self.path} {self.headers.get('Authorization')}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *_: object) -> None:
        pass


@pytest.fixture
def collector() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Collector)
    _Collector.seen = []
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    name = testbed.namespace("sec", pod_security="restricted")
    testbed.core.create_namespaced_secret(name, {"metadata": {"name": "db"}, "data": {
        "password": base64.b64encode(PASSWORD.encode()).decode()}})
    yield name
    testbed.delete_namespace(name)  # which also checks that PASSWORD is nowhere to be read


@pytest.fixture
def store(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    """A namespace with the examples' model store, enforcing the `restricted` Pod Security Standard."""
    yield from model_store_namespace(testbed, "sec")


def _resource(ns: str, name: str, analysis: dict[str, Any]) -> dict[str, Any]:
    doc = merge(VALID, {"metadata": {"name": name, "namespace": ns},
                        "spec": {"rollout": {"strategy": "canary", "analysis": analysis}}})
    assert isinstance(doc, dict)
    return doc


def test_a_resource_cannot_send_a_secret_to_its_own_address(testbed: TestbedClient, ns: str,
                                                            collector: str) -> None:
    custom = client.CustomObjectsApi(testbed.api)
    deputy = {"provider": "prometheus", "interval": "1s",
              "prometheus": {"address": collector, "bearerTokenSecretRef": {"name": "db", "key": "password"}}}
    # kubectl (strict field validation) and a plain API call (unknown fields pruned) are both refused.
    out = kubectl_apply([_resource(ns, "deputy", deputy)])
    assert out.returncode != 0 and "address" in out.stderr, out.stderr
    with pytest.raises(ApiException) as refused:
        custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _resource(ns, "deputy", deputy))
    assert refused.value.status == 422 and "source" in str(refused.value.body)

    # Nor can an accepted resource be turned into one: the same fields in a patch are refused too.
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _resource(
        ns, "named", {"provider": "prometheus", "prometheus": {"source": cluster.PROMETHEUS_SOURCE}}))
    with pytest.raises(ApiException):
        custom.patch_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "named", {"spec": {"rollout": {
            "analysis": {"prometheus": {"source": None, **deputy["prometheus"]}}}}})
    # A source the operator was not installed with is reported, naming those it has; nothing is created.
    custom.create_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, _resource(
        ns, "unknown", {"provider": "prometheus", "prometheus": {"source": "author-collector"}}))

    def spec_valid() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "unknown")
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "SpecValid"), None)

    condition = eventually("SpecValid on the resource", spec_valid, timeout=60)
    assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
    assert f"no prometheus metric source named 'author-collector' (it has {cluster.PROMETHEUS_SOURCE};" in \
        condition["message"]
    assert not client.AppsV1Api(testbed.api).list_namespaced_deployment(
        ns, label_selector="app.kubernetes.io/instance=unknown").items
    time.sleep(3)  # passes at a 1 s analysis interval would have called by now
    assert _Collector.seen == []


def test_a_layout_the_namespace_refuses_waits_with_a_reason_until_the_label_allows_it(testbed: TestbedClient,
                                                                                    store: str) -> None:
    ns = store
    res = Resources(testbed, ns)
    assert kubectl_apply([two_node_cr(ns, testbed)]).returncode == 0
    name = two_node_cr(ns, testbed)["metadata"]["name"]

    def degraded() -> dict[str, Any] | None:
        conditions = (res.get(name).get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Degraded" and c["status"] == "True"), None)

    condition = eventually("the resource to say why", degraded, timeout=60)
    assert condition["reason"] == "PodSecurityForbids" and "IPC_LOCK" in condition["message"]
    assert not client.AppsV1Api(testbed.api).list_namespaced_stateful_set(ns).items  # nothing half-applied
    # The platform team allows it: the operator notices without any change to the resource.
    testbed.core.patch_namespace(ns, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "privileged"}}})
    eventually("the workloads", lambda: client.AppsV1Api(testbed.api).list_namespaced_stateful_set(ns).items,
               timeout=90)


def test_a_departments_gpu_quota_stops_a_rollout_with_the_quotas_words_and_raising_it_lets_it_finish(
        testbed: TestbedClient, store: str) -> None:
    ns = store
    quota = {"metadata": {"name": "gpus"}, "spec": {"hard": {"requests.nvidia.com/gpu": "1"}}}
    testbed.core.create_namespaced_resource_quota(ns, quota)
    res = Resources(testbed, ns)
    assert kubectl_apply(_docs("r1-distill-qwen-7b-a100.yaml", ns)).returncode == 0  # 2 replicas x 1 GPU

    def refused() -> dict[str, Any] | None:
        conditions = (res.get("r1-qwen-7b").get("status") or {}).get("conditions") or []
        return next((c for c in conditions if c["type"] == "Progressing" and c["reason"] == "QuotaExceeded"), None)

    condition = eventually("the quota in the conditions", refused, timeout=180)
    assert "exceeded quota: gpus" in condition["message"] and "requests.nvidia.com/gpu" in condition["message"]
    testbed.core.patch_namespaced_resource_quota("gpus", ns, {"spec": {"hard": {"requests.nvidia.com/gpu": "2"}}})
    res.wait_phase("r1-qwen-7b", "Healthy", timeout=240)


def test_triton_grpc_speaks_tls_from_the_secret_and_nothing_else(testbed: TestbedClient, store: str,
                                                                  tmp_path: Path) -> None:
    ns = store
    ca_key, ca = _cert("test CA")
    key, cert = _cert("localhost", ca_key, ca.subject)
    testbed.core.create_namespaced_secret(ns, {"metadata": {"name": "triton-grpc"}, "type": "kubernetes.io/tls",
                                               "data": {"tls.crt": base64.b64encode(_pem(cert)).decode(),
                                                        "tls.key": base64.b64encode(_pem(key)).decode()}})
    [doc] = [d for d in _docs("r1-distill-qwen-7b-a100.yaml", ns) if d["kind"] == "DeepSeekDeployment"]
    doc["spec"]["serving"] |= {"replicas": 1, "grpcTls": {"secretName": "triton-grpc"}}
    assert kubectl_apply([doc]).returncode == 0
    Resources(testbed, ns).wait_phase("r1-qwen-7b", "Healthy", timeout=240)
    [pod] = testbed.ready_pods(ns, "serving.deepseek.ai/deployment=r1-qwen-7b")
    url = f"{pod.status.pod_ip}:8001"
    # The name the certificate carries (the client dials the pod's IP).
    name = [("grpc.ssl_target_name_override", "localhost")]
    (tmp_path / "ca.crt").write_bytes(_pem(ca))
    trusted = grpcclient.InferenceServerClient(url, ssl=True, root_certificates=str(tmp_path / "ca.crt"),
                                               channel_args=name)
    assert trusted.is_server_live() and trusted.is_model_ready("tensorrt_llm")
    # Plaintext, and the system's CAs (which did not sign it).
    for refused in (grpcclient.InferenceServerClient(url),
                    grpcclient.InferenceServerClient(url, ssl=True, root_certificates=None, channel_args=name)):
        with pytest.raises(InferenceServerException):
            refused.is_server_live(client_timeout=5)


def _https_get(address: str, host: str, path: str, ca: Path) -> str:
    """One GET over TLS to `address` for `host` (SNI and Host), trusting only `ca`; the status line."""
    context = ssl.create_default_context(cafile=str(ca))
    ip, port = address.rsplit(":", 1)
    with socket.create_connection((ip, int(port)), timeout=10) as raw, \
            context.wrap_socket(raw, server_hostname=host) as tls:
        tls.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
        return tls.recv(4096).decode(errors="replace").split("\r\n", 1)[0]


def test_https_at_the_gateway_listener_with_a_certificate_the_test_made(testbed: TestbedClient, store: str,
                                                                         tmp_path: Path) -> None:
    ns = store
    ca_key, ca = _cert("department CA")
    key, cert = _cert("*.llm.test", ca_key, ca.subject, san="*.llm.test")
    (tmp_path / "ca.crt").write_bytes(_pem(ca))
    (tmp_path / "other.crt").write_bytes(_pem(_cert("another CA")[1]))
    listener = testbed.core.read_namespaced_secret(cluster.GATEWAY_TLS_SECRET, cluster.GATEWAY_NAMESPACE)
    try:
        testbed.core.patch_namespaced_secret(cluster.GATEWAY_TLS_SECRET, cluster.GATEWAY_NAMESPACE, {"data": {
            "tls.crt": base64.b64encode(_pem(cert)).decode(), "tls.key": base64.b64encode(_pem(key)).decode()}})
        cr = canary_cr(ns, replicas=1)
        cr["spec"]["rollout"]["trafficRouting"]["gatewayAPI"]["parentRefs"][0]["sectionName"] = \
            cluster.GATEWAY_TLS_LISTENER  # the HTTPS listener only
        assert kubectl_apply([cr]).returncode == 0
        Resources(testbed, ns).wait_phase(cr["metadata"]["name"], "Healthy", timeout=240)
        host = f"{ns}.llm.test"
        # Traefik presents the test's certificate (the handshake trusts only the test's CA) and routes to Triton.
        status = eventually("Triton over HTTPS", lambda: (s := _https_get(
            testbed.gateway_tls, host, "/v2/health/ready", tmp_path / "ca.crt")).endswith("200 OK") and s,
            timeout=60)
        assert status.startswith("HTTP/1.1 200")
        # The route is attached to the HTTPS listener alone: plain HTTP does not reach it.
        assert requests.get(f"{testbed.gateway}/v2/health/ready", headers={"Host": host}, timeout=5).status_code == 404
        with pytest.raises(ssl.SSLCertVerificationError):
            _https_get(testbed.gateway_tls, host, "/v2/health/ready", tmp_path / "other.crt")
    finally:
        testbed.core.patch_namespaced_secret(cluster.GATEWAY_TLS_SECRET, cluster.GATEWAY_NAMESPACE,
                                             {"data": listener.data})
