"""Bad input never goes silent. The API server rejects what is never valid, naming the field; what only the catalog
can judge is accepted and conditioned (FitsHardware, SpecValid) with a message and nothing created; a child the
API server refuses shows in status and events until a fix of the spec clears it; and for specs generated from the
CRD's schema and mutated, admission refuses them or the operator gives them a status, and `plan()` never raises.
The table is tests/bad_specs.py; `benchmarks/bad_input.py` counts how many go nowhere without a word."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kubernetes import client
from kubernetes.client.rest import ApiException

from deepseek_operator.plan import Observed, plan
from tests.bad_specs import CONDITIONED, REJECTED, VALID, Bad
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import GROUP, PLURAL, VERSION, Resources, kubectl_apply, model_store_namespace

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
    name = f"c{CONDITIONED.index(case)}-{case.id}"[:47].rstrip("-")
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
        time.sleep(12)  # a retry or two: still one event, the same condition
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
