"""Who may connect to a resource's pods: its NetworkPolicies, as the plan applies and prunes them
(tests/e2e/test_serving.py has the API server accept them; the testbed enforces none: see README)."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from deepseek_operator.plan import plan
from deepseek_operator.plan.revisions import snapshot
from tests.unit.test_plan import QWEN_7B, T0, Cluster, edited, example

TWO_NODES = "r1-671b-h100-2x8-infiniband"
GATEWAY = {"gatewayAPI": {"parentRefs": [{"name": "llm-gateway", "namespace": "gateways"}]}}


def policies(objects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {o["metadata"]["name"]: o["spec"] for o in objects if o["kind"] == "NetworkPolicy"}


def test_every_pod_takes_clients_gateways_and_scrapers_on_their_ports_only() -> None:
    body = edited(example(QWEN_7B), {"rollout": {"strategy": "canary", "trafficRouting": GATEWAY}})
    cluster = Cluster()
    p = plan(body, replace(cluster.observed(), operator_namespace="deepseek-system"), T0)
    found = policies(p.apply)
    assert list(found) == ["r1-qwen-7b-ingress"]  # one policy per resource (a multi-node revision adds its own)
    clients = found["r1-qwen-7b-ingress"]
    assert clients["podSelector"]["matchLabels"] == {"serving.deepseek.ai/deployment": "r1-qwen-7b"}
    assert clients["policyTypes"] == ["Ingress"]
    serving, metrics, operator = clients["ingress"]
    assert [p["port"] for p in serving["ports"]] == [8000, 8001]
    assert serving["from"] == [{"podSelector": {}},  # this namespace's pods, by default
                               {"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "gateways"}}}]
    assert [p["port"] for p in metrics["ports"]] == [8002, 8003]
    assert metrics["from"] == [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "monitoring"}}}]
    # The operator's analysis scrapes the pods' metrics: Triton's and the front door's.
    assert operator == {"from": [{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "deepseek-system"}}}], "ports": [{"protocol": "TCP", "port": 8002},
                                                                       {"protocol": "TCP", "port": 8003}]}


def test_named_clients_replace_the_namespace_default() -> None:
    body = edited(example(QWEN_7B), {"serving.networkPolicy": {"clients": [
        {"namespaceSelector": {"team": "search"}, "podSelector": {"app": "rag"}}]}})
    serving = policies(Cluster().reconcile(body, T0).apply)["r1-qwen-7b-ingress"]["ingress"][0]
    assert serving["from"] == [{"namespaceSelector": {"matchLabels": {"team": "search"}},
                                "podSelector": {"matchLabels": {"app": "rag"}}}]


def test_a_mirroring_canary_takes_its_stable_pods_requests_even_when_clients_are_named() -> None:
    named = {"serving.networkPolicy": {"clients": [{"namespaceSelector": {"team": "search"}}]},
             "rollout": {"strategy": "canary", "trafficRouting": GATEWAY}}
    analysed = {**named, "rollout": {**named["rollout"], "analysis": {"provider": "frontend"}}}

    def rules(patch: dict[str, Any]) -> list[dict[str, Any]]:
        return list(policies(Cluster().reconcile(edited(example(QWEN_7B), patch), T0).apply)
                    ["r1-qwen-7b-ingress"]["ingress"])

    own_pods = {"from": [{"podSelector": {"matchLabels": {"serving.deepseek.ai/deployment": "r1-qwen-7b"}}}],
                "ports": [{"protocol": "TCP", "port": 8000}]}
    assert own_pods in rules(analysed)  # analysis.mirror defaults to fill
    assert own_pods not in rules(named)  # no analysis: nothing is mirrored
    off = {**analysed, "rollout": {**analysed["rollout"], "analysis": {"provider": "frontend", "mirror": "off"}}}
    assert own_pods not in rules(off)


def test_a_multi_node_revision_reaches_itself_from_its_preflight_on_and_nothing_else_does() -> None:
    cluster = Cluster()
    body = example(TWO_NODES)
    first = cluster.reconcile(body, T0)
    revision = first.status["revision"]
    group = policies(first.apply)[f"r1-671b-2x8-{revision}-group"]
    selector = {"serving.deepseek.ai/deployment": "r1-671b-2x8", "serving.deepseek.ai/revision": revision}
    assert group == {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"],
                     "ingress": [{"from": [{"podSelector": {"matchLabels": selector}}]}]}  # every port: SSH, NCCL
    # The pass that applies it keeps it (the preflight's revision is not live yet).
    assert not [d for d in first.delete if d.kind == "NetworkPolicy"]


def test_the_two_policies_of_earlier_versions_are_replaced_by_one() -> None:
    body = example(QWEN_7B)
    cluster = Cluster()
    cluster.reconcile(body, T0)
    # An operator of today has applied its one policy; the cluster still has the two an earlier one made.
    seen = replace(cluster.observed(), network_policies=("r1-qwen-7b-clients", "r1-qwen-7b-ingress",
                                                         "r1-qwen-7b-isolate"))
    upgraded = plan(body, seen, T0)
    assert sorted(d.name for d in upgraded.delete if d.kind == "NetworkPolicy") == ["r1-qwen-7b-clients",
                                                                                     "r1-qwen-7b-isolate"]


def test_turned_off_they_are_deleted_and_changing_them_is_no_new_revision() -> None:
    body = example(QWEN_7B)
    cluster = Cluster()
    cluster.reconcile(body, T0)
    seen = replace(cluster.observed(), network_policies=("r1-qwen-7b-ingress",))
    off = plan(edited(body, {"serving.networkPolicy": {"enabled": False}}), seen, T0)
    assert not policies(off.apply)
    assert [d.name for d in off.delete if d.kind == "NetworkPolicy"] == ["r1-qwen-7b-ingress"]
    from deepseek_operator.api.spec import DeepSeekDeploymentSpec

    def revision_of(doc: dict[str, Any]) -> dict[str, Any]:
        return snapshot(DeepSeekDeploymentSpec.model_validate(doc["spec"]))

    assert revision_of(body) == revision_of(edited(body, {"serving.networkPolicy": {"enabled": False}}))


def test_an_empty_list_of_peers_admits_nobody_and_no_rule_admits_everyone() -> None:
    """`from: []` in a NetworkPolicy rule admits every source: an empty `monitoring` renders no rule (nobody
    scrapes but the operator), never an open one."""
    body = edited(example(QWEN_7B), {"serving.networkPolicy": {"monitoring": []}})
    p = plan(body, replace(Cluster().observed(), operator_namespace="deepseek-system"), T0)
    rules = policies(p.apply)["r1-qwen-7b-ingress"]["ingress"]
    assert all(rule["from"] for rule in rules)
    scraped = [rule for rule in rules if {"protocol": "TCP", "port": 8002} in rule["ports"]]
    assert [rule["from"] for rule in scraped] == [[{"namespaceSelector": {"matchLabels": {
        "kubernetes.io/metadata.name": "deepseek-system"}}}]]  # the operator's namespace only
    # Without an operator namespace either, the metrics ports take no one.
    alone = policies(Cluster().reconcile(body, T0).apply)["r1-qwen-7b-ingress"]["ingress"]
    assert [[p["port"] for p in rule["ports"]] for rule in alone] == [[8000, 8001]]
