"""Security end to end: a resource author cannot make the operator carry a Secret to an address of the author's
choosing (the confused deputy of a metric provider), and the analysis reads the sources it was installed with."""

from __future__ import annotations

import base64
import http.server
import threading
import time
from collections.abc import Iterator
from typing import Any, ClassVar

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed import cluster
from tests.bad_specs import VALID, merge
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, kubectl_apply

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
        ns, "unknown", {"provider": "gateway", "gateway": {"source": "author-collector"}}))

    def spec_valid() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, ns, PLURAL, "unknown")
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == "SpecValid"), None)

    condition = eventually("SpecValid on the resource", spec_valid, timeout=60)
    assert condition["status"] == "False" and condition["reason"] == "InvalidSpec"
    assert f"no gateway metric source named 'author-collector' (it has {cluster.GATEWAY_SOURCE};" in \
        condition["message"]
    assert not client.AppsV1Api(testbed.api).list_namespaced_deployment(
        ns, label_selector="app.kubernetes.io/instance=unknown").items
    time.sleep(3)  # passes at a 1 s analysis interval would have called by now
    assert _Collector.seen == []


def test_a_layout_the_namespace_refuses_waits_with_a_reason_until_the_label_allows_it(
        testbed: TestbedClient, operator: OperatorProcess) -> None:
    from tests.e2e.test_multinode import two_node_cr
    from tests.e2e.test_serving import Resources, model_store_namespace

    namespaces = model_store_namespace(testbed, "psa", pod_security="restricted")
    ns = next(namespaces)
    try:
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
    finally:
        next(namespaces, None)
