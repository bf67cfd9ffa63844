"""Bad input never goes silent. The API server rejects what is never valid, naming the field; what only the catalog
can judge is accepted and conditioned (FitsHardware, SpecValid) with a message and nothing created; a child the
API server refuses shows in status and events until a fix of the spec clears it; what Kubernetes already says
against a child (the kubelet's FailedMount for a Secret or ConfigMap a pod mounts, a Gateway's status on the
HTTPRoute) is quoted in the resource's conditions; a refused NetworkPolicy holds every new pod back; and for specs
generated from the CRD's schema and mutated, admission refuses them or the operator gives them a status, and
`plan()` never raises. The table is tests/bad_specs.py; `benchmarks/bad_input.py` counts how many go nowhere
without a word."""

from __future__ import annotations

import base64
import copy
import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from deepseek_operator.plan import Observed, plan
from testbed import cluster
from tests.bad_specs import CONDITIONED, REJECTED, VALID, Bad
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, Resources, _docs, kubectl_apply, model_store_namespace
from tests.unit.test_metric_sources import _cert, _pem

pytestmark = pytest.mark.e2e
CRD_FILE = "crds/serving.deepseek.ai_deepseekdeployments.yaml"


@pytest.fixture(scope="module")
def bad_ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    name = testbed.namespace("bad")
    yield name
    testbed.delete_namespace(name)


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    yield from model_store_namespace(testbed, "child")


@pytest.mark.parametrize("case", REJECTED, ids=[c.id for c in REJECTED])
def test_apiserver_rejects_what_is_never_valid(bad_ns: str, case: Bad) -> None:
    doc = case.document(bad_ns)
    out = kubectl_apply([doc])
    assert out.returncode != 0, f"accepted: {doc}"
    assert case.text in out.stderr, out.stderr


@pytest.mark.parametrize("case", CONDITIONED, ids=[c.id for c in CONDITIONED])
def test_what_cannot_work_is_conditioned_and_creates_nothing(testbed: TestbedClient, bad_ns: str,
                                                             operator: OperatorProcess, case: Bad) -> None:
    name = case.name or f"c{CONDITIONED.index(case)}-{case.id}"[:47].rstrip("-")
    assert kubectl_apply([case.document(bad_ns, name)]).returncode == 0
    custom = client.CustomObjectsApi(testbed.api)
    ctype, reason = str(case.condition).split("/")

    def condition() -> dict[str, Any] | None:
        obj = custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)
        return next((c for c in (obj.get("status") or {}).get("conditions") or [] if c["type"] == ctype), None)

    cond = eventually(f"{ctype} on {name}", condition, timeout=60)
    assert cond["reason"] == reason and case.text in cond["message"], cond
    obj = custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)
    selector = f"serving.deepseek.ai/deployment={name}"
    if reason == "IgnoredSetting":  # said, and the rest goes ahead
        assert cond["status"] == "True" and obj["status"]["phase"] != "Degraded"
        custom.delete_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)
        return
    assert cond["status"] == "False" and obj["status"]["phase"] == "Degraded"
    # Nothing was created for it, and the operator is not rewriting it in a loop.
    assert not client.AppsV1Api(testbed.api).list_namespaced_deployment(bad_ns, label_selector=selector).items
    assert not testbed.core.list_namespaced_config_map(bad_ns, label_selector=selector).items
    version = obj["metadata"]["resourceVersion"]
    time.sleep(3)
    assert custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, name)["metadata"][
        "resourceVersion"] == version
    assert operator.proc is not None and operator.proc.poll() is None


def denials(policy: str) -> int:
    """The requests a ValidatingAdmissionPolicy refused, as the API server counts them (its /metrics)."""
    prefix = "apiserver_validating_admission_policy_check_total{"
    return sum(int(float(line.rsplit(" ", 1)[1])) for line in cluster.kubectl("get", "--raw", "/metrics").splitlines()
               if line.startswith(prefix) and f'policy="{policy}"' in line and 'enforcement_action="deny"' in line)


def test_a_child_the_api_server_refuses_shows_in_status_and_a_fix_clears_it(testbed: TestbedClient,
                                                                          ns: str) -> None:
    """A platform's admission policy (a real ValidatingAdmissionPolicy) refuses the serving Deployment."""
    policy = f"no-team-x-{ns}"
    assert kubectl_apply([
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": policy},
         "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
             {"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"],
              "resources": ["deployments"]}]},
             "validations": [{"expression": "object.spec.template.metadata.?labels.team.orValue('') != 'x'",
                              "message": "pods of team x may not run in this namespace"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": policy},
         "spec": {"policyName": policy, "validationActions": ["Deny"],
                  "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}},
    ]).returncode == 0
    res = Resources(testbed, ns)
    try:
        doc = Bad("team-x", {"spec": {"serving": {"podLabels": {"team": "x"}}}}, "").document(ns, "r1-team")
        doc["spec"]["model"]["source"]["pvc"]["path"] = "/models/DeepSeek-R1-Distill-Qwen-7B"

        probe = {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "probe", "namespace": ns},
                 "spec": {"selector": {"matchLabels": {"team": "x"}}, "template": {
                     "metadata": {"labels": {"team": "x"}},
                     "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}

        def enforced() -> bool:  # the API server takes a moment to load a new policy
            try:
                res.apps.create_namespaced_deployment(ns, probe, dry_run="All")
            except ApiException as err:
                return err.status in (400, 403, 422)
            return False

        eventually("the admission policy to be enforced", enforced, timeout=30)

        def refused() -> dict[str, Any] | None:
            status = (res.get("r1-team").get("status") or {})
            degraded = next((c for c in status.get("conditions") or [] if c["type"] == "Degraded"), {})
            return status if degraded.get("reason") == "ChildRejected" else None

        kubectl_apply([doc])
        status = eventually("the refusal in status", refused, timeout=60)
        degraded = next(c for c in status["conditions"] if c["type"] == "Degraded")
        assert status["phase"] == "Degraded" and degraded["status"] == "True"
        assert degraded["message"].startswith("the API server refused Deployment r1-team-")
        assert "pods of team x may not run in this namespace" in degraded["message"]
        # The other children were applied; the refusal was said once, as a Warning.
        assert testbed.core.list_namespaced_config_map(ns, label_selector="serving.deepseek.ai/deployment=r1-team")
        events = [e for e in testbed.core.list_namespaced_event(ns, field_selector="involvedObject.name=r1-team").items
                  if e.reason == "ChildRejected"]
        assert len(events) == 1 and events[0].type == "Warning"
        # The operator tries again on its back-off (10 s, then 20 s): the API server refuses it twice more (a pass
        # on the status write's own event, and one retry at least) and the condition and the one event stay.
        refused_before = denials(policy)
        eventually("the operator to try the refused Deployment again", lambda: denials(policy) >= refused_before + 2,
                   timeout=60)
        again = res.get("r1-team")["status"]
        assert next(c for c in again["conditions"] if c["type"] == "Degraded")["lastTransitionTime"] == \
            degraded["lastTransitionTime"]
        assert len([e for e in testbed.core.list_namespaced_event(
            ns, field_selector="involvedObject.name=r1-team").items if e.reason == "ChildRejected"]) == 1

        res.patch("r1-team", {"serving": {"podLabels": {"team": "y"}}})
        fixed = res.wait_phase("r1-team", "Healthy", timeout=120)["status"]
        assert next(c for c in fixed["conditions"] if c["type"] == "Degraded")["status"] == "False"
    finally:
        admission = client.AdmissionregistrationV1Api(testbed.api)
        for delete in (admission.delete_validating_admission_policy_binding,
                       admission.delete_validating_admission_policy):
            try:
                delete(policy)
            except ApiException as err:
                if err.status != 404:
                    raise


# ------------------------------------------------------------------------ what Kubernetes already says, quoted

QWEN_7B_PATH = "/models/DeepSeek-R1-Distill-Qwen-7B"
POD_WORDS_WITHIN_S = 45  # a pod scheduled, the kubelet's first mount try and its event, a pass


def _qwen(ns: str, name: str, **serving: Any) -> dict[str, Any]:
    doc = Bad(name, {"spec": {"serving": serving}}, "").document(ns, name)
    doc["spec"]["model"]["source"]["pvc"]["path"] = QWEN_7B_PATH
    return doc


def _condition_saying(res: Resources, name: str, words: str, types: tuple[str, ...]) -> dict[str, Any] | None:
    conditions = (res.get(name).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] in types and words in c["message"]), None)


def _warnings(testbed: TestbedClient, ns: str, name: str, reason: str) -> list[Any]:
    return [e for e in testbed.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
            if e.reason == reason and e.type == "Warning"]


def passes(operator: OperatorProcess) -> float:
    """The reconcile passes the operator has run, as its metrics count them."""
    text = requests.get(operator.metrics_url, timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith("deepseek_operator_reconcile_duration_seconds_count"))


def test_a_missing_grpc_tls_secret_is_said_in_the_kubelets_words_and_creating_it_lets_the_pods_start(
        testbed: TestbedClient, operator: OperatorProcess, ns: str) -> None:
    """The serving pod mounts a Secret that does not exist: it stays in ContainerCreating and only the kubelet's
    FailedMount event says why. The resource quotes it within seconds, in one Warning event."""
    res = Resources(testbed, ns)
    assert kubectl_apply([_qwen(ns, "r1-tls", replicas=1, grpcTls={"secretName": "triton-grpc"})]).returncode == 0
    words = 'MountVolume.SetUp failed for volume "grpc-tls" : secret "triton-grpc" not found'
    began = time.monotonic()
    said = eventually("the kubelet's words in the resource's conditions",
                      lambda: _condition_saying(res, "r1-tls", words, ("Ready", "Progressing")),
                      timeout=POD_WORDS_WITHIN_S)
    assert said["reason"] == "ContainersFailing" and "FailedMount" in said["message"], said
    print(f"FailedMount quoted {time.monotonic() - began:.1f} s after the apply")
    [pod] = testbed.core.list_namespaced_pod(ns, label_selector="serving.deepseek.ai/deployment=r1-tls").items
    waiting = pod.status.container_statuses[0].state.waiting
    assert waiting is not None and waiting.reason == "ContainerCreating"  # as the kubelet: no word there
    assert any(words in e.message for e in _warnings(testbed, ns, pod.metadata.name, "FailedMount"))
    # The kubelet's retries bump its event (every 10 s at most), each bump a pass of the resource's: said once.
    eventually("the kubelet to repeat FailedMount",
               lambda: max(e.count or 1 for e in _warnings(testbed, ns, pod.metadata.name, "FailedMount")) >= 2,
               timeout=30)
    passes_before = passes(operator)
    eventually("a pass after the repeat", lambda: passes(operator) > passes_before, timeout=30)
    failing = _warnings(testbed, ns, "r1-tls", "PodFailing")
    assert len(failing) == 1 and words in failing[0].message, [e.message for e in failing]

    ca_key, ca = _cert("test CA")
    key, cert = _cert("localhost", ca_key, ca.subject)
    testbed.core.create_namespaced_secret(ns, {"metadata": {"name": "triton-grpc"}, "type": "kubernetes.io/tls",
                                               "data": {"tls.crt": base64.b64encode(_pem(cert)).decode(),
                                                        "tls.key": base64.b64encode(_pem(key)).decode()}})
    status = res.wait_phase("r1-tls", "Healthy", timeout=180)["status"]
    assert not any(words in c["message"] for c in status["conditions"])


def test_a_missing_calibration_configmap_holds_the_quantize_job_with_the_kubelets_words(testbed: TestbedClient,
                                                                                       ns: str) -> None:
    res = Resources(testbed, ns)
    [doc] = [d for d in _docs("r1-distill-qwen-1.5b-l4.yaml", ns) if d["kind"] == "DeepSeekDeployment"]
    doc["metadata"]["name"] = "r1-calibrated"  # FP8 of a BF16 checkpoint: a quantize Job, on a missing ConfigMap
    doc["spec"]["model"]["calibration"] = {"configMap": {"name": "chats", "key": "r1.jsonl"}}
    assert kubectl_apply([doc]).returncode == 0
    words = 'configmap "chats" not found'
    said = eventually("the kubelet's words in CheckpointReady",
                      lambda: _condition_saying(res, "r1-calibrated", words, ("CheckpointReady",)),
                      timeout=POD_WORDS_WITHIN_S)
    assert said["status"] == "False" and said["reason"] == "ContainersFailing" and "FailedMount" in said["message"]
    progressing = _condition_saying(res, "r1-calibrated", words, ("Progressing",))
    assert progressing is not None and progressing["status"] == "True"
    samples = "\n".join(json.dumps({"text": f"calibration sample {n}"}) for n in range(8))
    assert kubectl_apply([{"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "chats", "namespace": ns},
                           "data": {"r1.jsonl": samples}}]).returncode == 0
    res.wait_phase("r1-calibrated", "Healthy", timeout=240)


@pytest.mark.parametrize(("parent", "words"), [
    # A listener the Gateway does not have: Traefik answers Accepted=False with its reason.
    ({"name": cluster.GATEWAY_NAME, "namespace": cluster.GATEWAY_NAMESPACE, "sectionName": "no-such-listener"},
     "Accepted=False (NoMatchingParent)"),
    # A Gateway that does not exist: no controller answers (Traefik 3.6 writes no status for a route none of whose
    # parents it runs), which the resource says once the route has waited ROUTE_ANSWER_S.
    ({"name": "no-such-gateway", "namespace": cluster.GATEWAY_NAMESPACE},
     "no Gateway controller has taken or refused the route"),
], ids=["missing-listener", "missing-gateway"])
def test_a_gateway_that_does_not_take_the_route_is_said_in_its_words(testbed: TestbedClient, ns: str,
                                                                    parent: dict[str, str], words: str) -> None:
    res = Resources(testbed, ns)
    doc = _qwen(ns, "r1-routed", replicas=1)
    doc["spec"]["rollout"] = {"trafficRouting": {"gatewayAPI": {"parentRefs": [parent],
                                                                "hostnames": [f"{ns}.llm.test"]}}}
    assert kubectl_apply([doc]).returncode == 0
    said = eventually("the Gateway's words in Degraded",
                      lambda: _condition_saying(res, "r1-routed", words, ("Degraded",)), timeout=90)
    assert said["status"] == "True" and said["reason"] == "RouteNotAccepted", said
    assert f"Gateway {parent['namespace']}/{parent['name']}" in said["message"]
    assert res.get("r1-routed")["status"]["phase"] == "Degraded"
    assert [e for e in _warnings(testbed, ns, "r1-routed", "RouteNotAccepted") if words in e.message]
    # Attached to the Gateway's own listener, the route is taken and the resource is Healthy again.
    res.patch("r1-routed", {"rollout": {"trafficRouting": {"gatewayAPI": {"parentRefs": [
        {"name": cluster.GATEWAY_NAME, "namespace": cluster.GATEWAY_NAMESPACE}]}}}})
    status = res.wait_phase("r1-routed", "Healthy", timeout=120)["status"]
    assert next(c for c in status["conditions"] if c["type"] == "Degraded")["status"] == "False"


# ------------------------------------------------------------------------ security children fail closed

def _refuse_network_policies(testbed: TestbedClient, ns: str, operations: list[str]) -> str:
    """A platform's admission policy (a real ValidatingAdmissionPolicy) that refuses NetworkPolicies in `ns`."""
    name = f"no-netpol-{ns}"
    assert kubectl_apply([
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
         "metadata": {"name": name},
         "spec": {"failurePolicy": "Fail", "matchConstraints": {"resourceRules": [
             {"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"], "operations": operations,
              "resources": ["networkpolicies"]}]},
             "validations": [{"expression": "false", "message": "NetworkPolicies are the platform team's here"}]}},
        {"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
         "metadata": {"name": name},
         "spec": {"policyName": name, "validationActions": ["Deny"],
                  "matchResources": {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": ns}}}}},
    ]).returncode == 0
    probe = {"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
             "metadata": {"name": "probe", "namespace": ns}, "spec": {"podSelector": {}}}
    networking = client.NetworkingV1Api(testbed.api)

    def enforced() -> bool:  # the API server takes a moment to load a new policy
        try:
            if "CREATE" in operations:
                networking.create_namespaced_network_policy(ns, probe, dry_run="All")
            else:  # an update of a policy the namespace has (the resource's own), dry run
                [existing, *_] = networking.list_namespaced_network_policy(ns).items
                networking.patch_namespaced_network_policy(existing.metadata.name, ns, {"metadata": {
                    "labels": {"probe": "admission"}}}, dry_run="All")
        except ApiException as err:
            return err.status in (400, 403, 422)
        return False

    eventually("the admission policy to be enforced", enforced, timeout=30)
    return name


def _drop_admission_policy(testbed: TestbedClient, name: str) -> None:
    admission = client.AdmissionregistrationV1Api(testbed.api)
    for delete in (admission.delete_validating_admission_policy_binding,
                   admission.delete_validating_admission_policy):
        try:
            delete(name)
        except ApiException as err:
            if err.status != 404:
                raise


def test_no_pod_starts_without_its_network_policy_and_running_pods_are_not_scaled_past_it(
        testbed: TestbedClient, ns: str) -> None:
    """The API server refuses the resource's NetworkPolicy: its pods would run unprotected, so none is started
    (the other children are applied) and the resource is Degraded saying so; a resource already serving behind its
    policy keeps its pods but gets no more while a change of the policy is refused."""
    res = Resources(testbed, ns)
    apps = client.AppsV1Api(testbed.api)
    policy = _refuse_network_policies(testbed, ns, ["CREATE", "UPDATE"])
    try:
        assert kubectl_apply([_qwen(ns, "r1-guarded", replicas=1)]).returncode == 0

        def held() -> dict[str, Any] | None:
            return _condition_saying(res, "r1-guarded", "no new pod of the resource is started", ("Degraded",))

        said = eventually("the refusal and the hold in status", held, timeout=60)
        assert said["reason"] == "ChildRejected" and "NetworkPolicy r1-guarded-ingress" in said["message"]
        assert "NetworkPolicies are the platform team's here" in said["message"]
        time.sleep(5)
        selector = "serving.deepseek.ai/deployment=r1-guarded"
        assert not apps.list_namespaced_deployment(ns, label_selector=selector).items  # no pod without its policy
        assert not testbed.core.list_namespaced_pod(ns, label_selector=selector).items
        assert testbed.core.list_namespaced_config_map(ns, label_selector=selector).items  # the others went ahead
    finally:
        _drop_admission_policy(testbed, policy)
    res.wait_phase("r1-guarded", "Healthy", timeout=180)
    assert client.NetworkingV1Api(testbed.api).read_namespaced_network_policy("r1-guarded-ingress", ns)

    # Serving behind its policy: a change of the policy is refused, and a scale-up with it is held at what runs.
    policy = _refuse_network_policies(testbed, ns, ["UPDATE"])
    try:
        res.patch("r1-guarded", {"serving": {"replicas": 2, "networkPolicy": {"monitoring": []}}})
        said = eventually("the hold in status", lambda: _condition_saying(
            res, "r1-guarded", "kept at 1 of 2 replicas", ("Degraded",)), timeout=60)
        assert said["reason"] == "ChildRejected"
        [deployment] = apps.list_namespaced_deployment(ns, label_selector="serving.deepseek.ai/deployment=r1-guarded"
                                                       ).items
        assert deployment.spec.replicas == 1 and deployment.status.ready_replicas == 1  # the running pod stays
    finally:
        _drop_admission_policy(testbed, policy)
    status = res.wait_phase("r1-guarded", "Healthy", timeout=180)["status"]
    assert status["ready"] == "2/2"


# ------------------------------------------------------------------------ generated from the schema, mutated

def _leaves(schema: dict[str, Any], path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], dict[str, Any]]]:
    """Every field of the schema with its own schema (objects too: replacing one whole is a mutation)."""
    out = [(path, schema)] if path else []
    for name, sub in (schema.get("properties") or {}).items():
        out += _leaves(sub, (*path, name))
    if isinstance(schema.get("items"), dict):
        out += _leaves(schema["items"], (*path, "0"))
    return out


ODD_STRINGS = ["", " ", "a b", "x" * 300, "-x", "UPPER", "1.5Gi", "0s", "(", "/abs/path", "auto", "fp8", "H100-80GB",
               "nvidia.com/gpu", "team", "deepseek-r1", "indefinite", "s3://models/x", "http://x", "é", "a/b/c"]


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    kind = schema.get("type")
    if "enum" in schema:
        return st.sampled_from([*schema["enum"], "bogus"])
    if kind == "string":
        return st.one_of(st.sampled_from(ODD_STRINGS), st.text(max_size=12))
    if kind == "integer":
        return st.one_of(st.sampled_from([0, -1, 1, 2, 3, 8, 16, 64, 2**31]), st.integers(-5, 10**6))
    if kind == "number":
        return st.one_of(st.sampled_from([0, -0.5, 0.5, 1, 1.5]), st.floats(-2, 2, allow_nan=False))
    if kind == "boolean":
        return st.booleans()
    if kind == "array":
        return st.lists(_value(schema.get("items") or {"type": "string"}), max_size=3)
    if kind == "object" and isinstance(schema.get("additionalProperties"), dict):
        return st.dictionaries(st.sampled_from(ODD_STRINGS[:12]), _value(schema["additionalProperties"]), max_size=2)
    return st.one_of(st.just({}), st.sampled_from([None, 1, "x"]))  # an object replaced whole, or by a wrong type


def _mutations(crd: dict[str, Any]) -> st.SearchStrategy[list[tuple[tuple[str, ...], Any]]]:
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]["spec"]
    leaves = _leaves(schema, ("spec",))
    one = st.sampled_from(leaves).flatmap(lambda leaf: st.tuples(st.just(leaf[0]), _value(leaf[1])))
    return st.lists(one, min_size=1, max_size=3)


def _put(node: Any, path: tuple[str, ...], value: Any) -> Any:
    """`node` with `value` at `path`; a "0" step makes that list one element long."""
    if not path:
        return copy.deepcopy(value)
    key, rest = path[0], path[1:]
    if key == "0":
        first = node[0] if isinstance(node, list) and node and isinstance(node[0], dict) else {}
        return [_put(first, rest, value)]
    out = dict(node) if isinstance(node, dict) else {}
    out[key] = _put(out.get(key), rest, value)
    return out


def _mutated(mutations: list[tuple[tuple[str, ...], Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = copy.deepcopy(VALID)
    for path, value in mutations:
        doc = _put(doc, path, value)
    return doc


CRD = yaml.safe_load((Path(__file__).resolve().parents[2] / CRD_FILE).read_text())
STATUS_WITHIN_S = 30


@settings(max_examples=40, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(mutations=_mutations(CRD))
def test_generated_specs_are_refused_or_get_a_status_and_never_break_the_plan(
        testbed: TestbedClient, bad_ns: str, mutations: list[tuple[tuple[str, ...], Any]]) -> None:
    doc = _mutated(mutations)
    doc["metadata"] = {"name": "generated", "namespace": bad_ns}
    custom = client.CustomObjectsApi(testbed.api)
    try:
        stored = custom.create_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, doc,
                                                        field_validation="Strict")
    except ApiException as err:
        assert err.status in (400, 422) and err.body, err  # refused, with a reason
        return
    try:
        stored["metadata"].setdefault("generation", 1)
        planned = plan(stored, Observed(), "2026-12-01T00:00:00Z")  # never raises on an admitted spec
        assert planned.status.get("conditions"), planned.status

        def reported() -> dict[str, Any] | None:
            obj = custom.get_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, "generated")
            status = obj.get("status") or {}
            return status if status.get("conditions") and status.get("observedGeneration") == \
                obj["metadata"]["generation"] else None

        status = eventually("a status from the operator", reported, timeout=STATUS_WITHIN_S)
        assert status["phase"], status
    finally:
        custom.delete_namespaced_custom_object(GROUP, VERSION, bad_ns, PLURAL, "generated")
        eventually("the generated resource to go", lambda: not _exists(custom, bad_ns), timeout=60)


def _exists(custom: client.CustomObjectsApi, namespace: str) -> bool:
    try:
        custom.get_namespaced_custom_object(GROUP, VERSION, namespace, PLURAL, "generated")
    except ApiException as err:
        return err.status != 404
    return True
