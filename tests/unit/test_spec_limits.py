"""The third round of bad input (issue #33), in the operator's own checks: the Python twins of the CRD's new rules
(Kubernetes' limits on the children, settings that contradict each other, addresses and images that are what they
claim), the name limits of a layout spanning nodes, and the autoscaling settings the scaler in use ignores. The API
server's side is the table, tests/bad_specs.py, run by tests/e2e/test_bad_input.py."""

from __future__ import annotations

import copy
import re
from dataclasses import replace
from typing import Any

import pytest
from pydantic import ValidationError

from deepseek_operator.api import images
from deepseek_operator.api import names as k8s
from deepseek_operator.api.crd import crd_manifest
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.plan import plan
from deepseek_operator.plan.context import MAX_LABEL, derived_names, ignored_scaling, name_problem
from tests.bad_specs import CONDITIONED, ROUND_THREE, VALID, merge
from tests.unit.test_plan import REPO, T0, Cluster, cond

REVISION = "0123456789"


def spec_of(patch: dict[str, Any]) -> dict[str, Any]:
    doc: dict[str, Any] = merge(VALID, {"spec": patch})
    return dict(doc["spec"])


def refused(patch: dict[str, Any]) -> str:
    with pytest.raises(ValidationError) as err:
        DeepSeekDeploymentSpec.model_validate(spec_of(patch))
    return str(err.value)


@pytest.mark.parametrize("case", [c for cases in ROUND_THREE.values() for c in cases if c.condition is None],
                         ids=lambda c: c.id)
def test_the_operator_refuses_what_the_api_server_refuses(case: Any) -> None:
    """A spec written before a rule existed (or a revision's spec from history) is refused by the twin."""
    with pytest.raises(ValidationError):
        DeepSeekDeploymentSpec.model_validate(case.document("ns")["spec"])


@pytest.mark.parametrize("case", CONDITIONED, ids=lambda c: c.id)
def test_each_conditioned_input_gets_its_condition_from_the_pass(case: Any) -> None:
    """The pass's side of tests/e2e/test_bad_input.py: the condition each admitted-but-unworkable input gets, so
    that a change of which check answers first shows here, not only in the end-to-end run."""
    doc = case.document("ns", case.name or "bad")
    doc["metadata"].update(uid="uid-1", generation=1)
    ctype, reason = str(case.condition).split("/")
    p = Cluster().reconcile(doc, T0)
    got = cond(p, ctype)
    assert got is not None, p.status.get("conditions")
    assert got["reason"] == reason and case.text in got["message"], got


@pytest.mark.parametrize(("address", "ok"), [
    ("https://huggingface.co", True), ("http://minio.storage:9000", True), ("https://hub.internal/mirror/", True),
    ("http://10.0.0.7:9000", True), ("http://[fd00::7]:9000", True), ("http://MinIO.Storage", True),
    ("https://hub mirror.internal", False), ("http://min io:9000", False), ("http://minio:99999", False),
    ("http://minio:0", False), ("minio:9000", False), ("ftp://minio", False), ("http://[zz]:1", False),
    ("http://minio/a path", False), ("http://", False), ("http://minio:9000\n", False),
])
def test_an_address_is_an_http_url_with_a_real_host(address: str, ok: bool) -> None:
    assert k8s.is_http_url(address) is ok


def test_quantities_compare_as_kubernetes_compares_them() -> None:
    assert k8s.quantity_value("500m") < k8s.quantity_value("1")  # type: ignore[operator]
    assert k8s.quantity_value("1Gi") == 1024 ** 3 and k8s.quantity_value("1G") == 10 ** 9
    assert k8s.quantity_value("2e3") == 2000 and k8s.quantity_value("lots") is None
    assert "every request must be at most its limit" in refused(
        {"serving": {"resources": {"requests": {"memory": "2Gi"}, "limits": {"memory": "2000Mi"}}}})
    DeepSeekDeploymentSpec.model_validate(spec_of(
        {"serving": {"resources": {"requests": {"cpu": "500m", "memory": "2Gi"}, "limits": {"cpu": "1"}}}}))


@pytest.mark.parametrize(("behaviour", "ok"), [
    ({"stabilizationWindow": "1h"}, True), ({"stabilizationWindow": "3601s"}, False),
    ({"stabilizationWindow": "0s", "period": "30m"}, True), ({"stabilizationWindow": "0s", "period": "31m"}, False),
    ({"stabilizationWindow": "0s", "period": "0s"}, False), ({"stabilizationWindow": "0s", "period": "1s"}, True),
])
def test_scaling_behaviour_stays_within_the_hpas_bounds(behaviour: dict[str, str], ok: bool) -> None:
    patch = {"serving": {"autoscaling": {"maxReplicas": 4, "target": 8, "scaleDown": behaviour}}}
    if ok:
        DeepSeekDeploymentSpec.model_validate(spec_of(patch))
    else:
        refused(patch)


def test_a_gateway_named_twice_needs_a_listener_each() -> None:
    twice = [{"name": "gw", "sectionName": "web"}, {"name": "gw", "sectionName": "websecure"}]
    DeepSeekDeploymentSpec.model_validate(spec_of({"rollout": {"trafficRouting": {"gatewayAPI": {
        "parentRefs": [*twice, {"name": "gw", "namespace": "edge"}]}}}}))
    for refs in ([{"name": "gw"}, {"name": "gw", "sectionName": "web"}],
                 [{"name": "gw", "sectionName": "web"}, {"name": "gw", "sectionName": "web"}]):
        assert "a Gateway named more than once" in refused({"rollout": {"trafficRouting": {"gatewayAPI": {
            "parentRefs": refs}}}})


def test_images_are_references_the_runtime_can_pull() -> None:
    # NVIDIA's image the Dockerfile's `tritonserver` target is built from, too.
    [nvidia] = re.findall(r"^FROM (\S+) AS tritonserver$", (REPO / "Dockerfile").read_text(), re.MULTILINE)
    for reference in (*(images.reference(t) for t in images.TARGETS), nvidia, "busybox",
                      "localhost:5000/triton:1", "registry.example.com/nvidia/tritonserver@sha256:" + "a" * 64):
        DeepSeekDeploymentSpec.model_validate(spec_of({"runtime": {"image": reference}}))
    for reference in ("nvcr.io/NVIDIA/tritonserver:26.07", "nvcr.io/nvidia/tritonserver:", "triton:a b",
                      "-triton", "nvcr.io/nvidia/tritonserver:26.07@sha256:short"):
        refused({"runtime": {"image": reference}})


def test_the_crd_carries_each_twin_as_cel() -> None:
    text = str(crd_manifest())
    for words in ("isURL(self.endpoint)", "isURL(self.endpointUrl)", "duration(self.stabilizationWindow) <= "
                  "duration('3600s')", "duration(self.period) <= duration('1800s')",
                  "quantity(self.requests[k]).compareTo(quantity(self.limits[k])) <= 0",
                  "self.podAnnotations.map(k, size(k) + size(self.podAnnotations[k])).sum()",
                  "has(p1.__namespace__)", "self.strategy != 'recreate' || !has(self.analysis)"):
        assert words in text, words
    assert "{" + "{" not in text  # the chart ships the CRD as a Helm template


# ------------------------------------------------------------------------------------- names of a layout


def test_names_a_layout_spanning_nodes_derives_fit_63_characters_up_to_37() -> None:
    assert name_problem("x" * 47, REVISION, 1, True) is None  # one node: the CRD's 47 is the limit
    assert name_problem("x" * 37, REVISION, 2, True) is None
    said = name_problem("x" * 38, REVISION, 2, True)
    assert said is not None and "controller-revision-hash" in said and "at most 37 characters" in said
    worst = max(len(v) for _, v in derived_names("x" * 37, REVISION, 18, 18))
    assert worst == MAX_LABEL  # 18 trays of an NVL72 rack: still the workers' revision hash that binds


def test_a_multi_node_resource_with_a_long_name_creates_nothing_and_says_why() -> None:
    [case] = [c for c in ROUND_THREE["kubernetes-limits-on-children"] if c.name]
    body = case.document("llm")
    body["metadata"].update(uid="u", generation=1)
    p = plan(body, Cluster().observed(), T0)
    valid = cond(p, "SpecValid")
    assert valid["status"] == "False" and valid["reason"] == "InvalidSpec" and "at most 37" in valid["message"]
    assert p.apply == [] and p.status["phase"] == "Degraded"


# ------------------------------------------------------------------------------ two scalers, one in use


def _autoscaling(**fields: Any) -> DeepSeekDeploymentSpec:
    return DeepSeekDeploymentSpec.model_validate(spec_of({"serving": {"autoscaling": {
        "maxReplicas": 4, "target": 8, **fields}}}))


def test_the_setting_of_the_scaler_not_in_use_is_said_to_be_ignored() -> None:
    observed = Cluster().observed()
    keda = replace(observed, keda_installed=True)
    both = _autoscaling(prometheus={"source": "prometheus"}, hpaMetric="deepseek_frontend_requests_in_flight")
    [said] = ignored_scaling(both, keda)
    assert said.startswith("spec.serving.autoscaling.hpaMetric is ignored: the KEDA API is served")
    [said] = ignored_scaling(both, observed)
    assert said.startswith("spec.serving.autoscaling.prometheus is ignored: the KEDA API is not served")
    hpa = _autoscaling(metric="custom", query="sum(up)", pollingInterval="5s", hpaMetric="queue_depth")
    assert [s.split(":")[0] for s in ignored_scaling(hpa, keda)] == [
        "spec.serving.autoscaling.metric is ignored", "spec.serving.autoscaling.pollingInterval is ignored"]
    assert ignored_scaling(_autoscaling(hpaMetric="queue_depth"), observed) == []  # defaults: nothing said
    assert ignored_scaling(_autoscaling(prometheus={"source": "prometheus"}), keda) == []


def test_a_resource_with_both_scalers_goes_ahead_saying_which_one_scales() -> None:
    body = copy.deepcopy(VALID)
    body["metadata"].update(uid="u", generation=1, namespace="llm")
    body["spec"]["serving"]["autoscaling"] = {"maxReplicas": 4, "target": 8, "prometheus": {"source": "prometheus"},
                                              "hpaMetric": "deepseek_frontend_requests_in_flight"}
    p = plan(body, replace(Cluster().observed(), keda_installed=True), T0)
    valid = cond(p, "SpecValid")
    assert valid["status"] == "True" and valid["reason"] == "IgnoredSetting"
    assert "autoscaling.hpaMetric is ignored" in valid["message"]
    assert [o["kind"] for o in p.apply if o["kind"] in ("ScaledObject", "HorizontalPodAutoscaler")] == [
        "ScaledObject"]
