"""The NetworkPolicies of a resource: its pods take no connection but those it needs. Serving ports from the
Gateways' namespaces and the resource's clients; metrics ports from monitoring and the operator (whose `triton`
provider scrapes the pods); everything between the pods of one multi-node revision (MPI's SSH, NCCL's ports,
which are ephemeral) and from nowhere else."""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.spec import DeepSeekDeploymentSpec, NetworkPeer
from deepseek_operator.render import naming
from deepseek_operator.render.children import (
    FRONTEND_METRICS_PORT,
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    Owner,
    child_metadata,
)

API_VERSION = "networking.k8s.io/v1"
NAMESPACE_NAME = "kubernetes.io/metadata.name"  # the label every namespace carries (its name)


def _peer(peer: NetworkPeer) -> dict[str, Any]:
    return {**({"namespaceSelector": {"matchLabels": dict(peer.namespace_selector)}}
               if peer.namespace_selector is not None else {}),
            **({"podSelector": {"matchLabels": dict(peer.pod_selector)}} if peer.pod_selector is not None else {})}


def _namespace(name: str) -> dict[str, Any]:
    return {"namespaceSelector": {"matchLabels": {NAMESPACE_NAME: name}}}


def _ports(*ports: int) -> list[dict[str, Any]]:
    return [{"protocol": "TCP", "port": p} for p in ports]


def _policy(owner: Owner, name: str, selector: dict[str, str], ingress: list[dict[str, Any]]) -> dict[str, Any]:
    """A policy that admits only `ingress`. A rule whose `from` is empty admits every source (NetworkPolicy's
    semantics, networking/v1 NetworkPolicyIngressRule): such a rule is never rendered, so an empty list of peers
    admits nobody."""
    rules = [r for r in ingress if r.get("from")]
    return {"apiVersion": API_VERSION, "kind": "NetworkPolicy",
            "metadata": child_metadata(owner, name, naming.COMPONENT_NETWORK_POLICY),
            "spec": {"podSelector": {"matchLabels": selector}, "policyTypes": ["Ingress"], "ingress": rules}}


def resource_policies(owner: Owner, spec: DeepSeekDeploymentSpec, operator_namespace: str | None
                      ) -> list[dict[str, Any]]:
    """Every pod of the resource denies what no policy allows, and takes clients and scrapers on the serving and
    metrics ports. One policy over all its pods, not a deny-all plus one for the servers: only the servers listen
    on those ports, so the pods that are no servers (preflights) stay as closed, for one write fewer per
    resource."""
    settings = spec.serving.network_policy
    routing = spec.rollout.traffic_routing.gateway_api
    gateways = sorted({ref.namespace or owner.namespace for ref in routing.parent_refs}) if routing else []
    clients = [_peer(p) for p in settings.clients] or [{"podSelector": {}}]  # default: this namespace's pods
    clients += [_namespace(ns) for ns in gateways]
    scrapers = [_peer(p) for p in settings.monitoring]  # empty: nobody (the rule is dropped, not made open)
    rules = [{"from": clients, "ports": _ports(HTTP_PORT, GRPC_PORT)},
             {"from": scrapers, "ports": _ports(METRICS_PORT, FRONTEND_METRICS_PORT)}]
    analysis = spec.rollout.analysis
    if analysis is not None and analysis.mirror == "fill" and spec.rollout.strategy == "canary":
        # A stable pod's front door mirrors a share of its requests to a canary pod (plan/mirror.py).
        rules.append({"from": [{"podSelector": {"matchLabels": {naming.LABEL_DEPLOYMENT: owner.name}}}],
                      "ports": _ports(HTTP_PORT)})
    if operator_namespace:
        # The operator's analysis scrapes the pods' figures: Triton's and the front door's; and it gives the
        # front doors their mirror orders on the metrics port.
        rules.append({"from": [_namespace(operator_namespace)], "ports": _ports(METRICS_PORT, FRONTEND_METRICS_PORT)})
    return [_policy(owner, naming.ingress_policy_name(owner.name), {naming.LABEL_DEPLOYMENT: owner.name}, rules)]


def group_policy(owner: Owner, revision: str) -> dict[str, Any]:
    """The pods of one multi-node revision (its groups and their preflight) reach each other on every port."""
    selector = {naming.LABEL_DEPLOYMENT: owner.name, naming.LABEL_REVISION: revision}
    return _policy(owner, naming.group_policy_name(owner.name, revision), selector, [{"from": [{"podSelector": {
        "matchLabels": selector}}]}])
