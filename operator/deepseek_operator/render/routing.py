"""Traffic routers: how the split the rollout decided reaches clients. Pure.

Two routers behind one Protocol. `gatewayAPI` renders an HTTPRoute with weighted backendRefs to `<name>-stable`
and `<name>-canary` on the `http` port, the pods' front door for the OpenAI API and Triton's HTTP API alike (and
header/cookie matches for an A/B test, first: Gateway API's precedence puts rules with more header matches
ahead): the gateway's data plane honours the weight exactly.
`service` renders nothing: the `<name>` Service selects every revision's pods, so the split is the replica
ratio the rollout machine chose (and reports as the effective weight).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from deepseek_operator.api.spec import GatewayApiRouting, RequestMatch, TrafficRouting
from deepseek_operator.render import naming
from deepseek_operator.render.children import HTTP_PORT, Owner, child_metadata

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"


@dataclass(frozen=True)
class Split:
    canary_active: bool
    canary_weight: int  # percent, 0..100
    ab_matches: tuple[RequestMatch, ...] = ()  # abTest: requests matching any go to the canary


class TrafficRouter(Protocol):
    def objects(self, owner: Owner, split: Split) -> list[dict[str, Any]]:
        """The routing objects that realise `split` (applied with the other children)."""
        ...


def _header_matches(match: RequestMatch) -> list[dict[str, str]]:
    out = [{"type": "Exact" if m.exact is not None else "RegularExpression", "name": name,
            "value": m.exact if m.exact is not None else str(m.regex)}
           for name, m in sorted(match.headers.items())]
    if match.cookie is not None:
        cookie = f"{re.escape(match.cookie.name)}={re.escape(match.cookie.value)}"
        out.append({"type": "RegularExpression", "name": "Cookie", "value": f"(^|.*; ){cookie}(;.*|$)"})
    return out


def _rules(owner: Owner, split: Split) -> list[dict[str, Any]]:
    """The split: A/B matches to the canary, then the weighted (or all-stable) default."""
    stable = {"name": naming.stable_service_name(owner.name), "port": HTTP_PORT}
    canary = {"name": naming.canary_service_name(owner.name), "port": HTTP_PORT}
    rules: list[dict[str, Any]] = []
    if split.canary_active and split.ab_matches:
        rules.append({"matches": [{"headers": _header_matches(m)} for m in split.ab_matches],
                      "backendRefs": [{**canary, "weight": 1}]})
    if split.canary_active and not split.ab_matches:
        rules.append({"backendRefs": [{**stable, "weight": 100 - split.canary_weight},
                                      {**canary, "weight": split.canary_weight}]})
    else:
        rules.append({"backendRefs": [{**stable, "weight": 100}]})
    return rules


@dataclass(frozen=True)
class GatewayApiRouter:
    routing: GatewayApiRouting

    def objects(self, owner: Owner, split: Split) -> list[dict[str, Any]]:
        rules = _rules(owner, split)
        parents = [{k: v for k, v in {"group": "gateway.networking.k8s.io", "kind": "Gateway", "name": ref.name,
                                      "namespace": ref.namespace, "sectionName": ref.section_name}.items() if v}
                   for ref in self.routing.parent_refs]
        spec: dict[str, Any] = {"parentRefs": parents, "rules": rules}
        if self.routing.hostnames:
            spec["hostnames"] = list(self.routing.hostnames)
        return [{"apiVersion": GATEWAY_API_VERSION, "kind": "HTTPRoute",
                 "metadata": child_metadata(owner, owner.name, naming.COMPONENT_SERVER), "spec": spec}]


@dataclass(frozen=True)
class ServiceRouter:
    def objects(self, owner: Owner, split: Split) -> list[dict[str, Any]]:
        return []


def router_for(routing: TrafficRouting) -> TrafficRouter:
    if routing.gateway_api is not None:
        return GatewayApiRouter(routing.gateway_api)
    return ServiceRouter()
