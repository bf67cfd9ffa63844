"""Traffic routers: how the split the rollout decided reaches clients. Pure.

Two routers behind one Protocol. `gatewayAPI` renders an HTTPRoute with weighted backendRefs to `<name>-stable`
and `<name>-canary` (and header/cookie matches for an A/B test): the gateway's data plane honours the weight
exactly. With the OpenAI frontend on, requests under `/v1` go to the Services' `openai` port and the rest to
Triton's HTTP port, with the same split: each backend set is one pair of rules (A/B matches, then the weights);
Gateway API's precedence (longest path prefix first, then most header matches) keeps them apart.
`service` renders nothing: the `<name>` Service selects every revision's pods, so the split is the replica
ratio the rollout machine chose (and reports as the effective weight).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Protocol

from deepseek_operator.api.spec import GatewayApiRouting, RequestMatch, TrafficRouting
from deepseek_operator.render import naming
from deepseek_operator.render.children import HTTP_PORT, OPENAI_PORT, Owner, child_metadata

GATEWAY_API_VERSION = "gateway.networking.k8s.io/v1"
OPENAI_PATH_PREFIX = "/v1"


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


def _rules(owner: Owner, split: Split, port: int, path: str | None) -> list[dict[str, Any]]:
    """The split over one port: A/B matches to the canary, then the weighted (or all-stable) default."""
    stable = {"name": naming.stable_service_name(owner.name), "port": port}
    canary = {"name": naming.canary_service_name(owner.name), "port": port}
    on_path = {"path": {"type": "PathPrefix", "value": path}} if path else {}
    rules: list[dict[str, Any]] = []
    if split.canary_active and split.ab_matches:
        rules.append({"matches": [{**on_path, "headers": _header_matches(m)} for m in split.ab_matches],
                      "backendRefs": [{**canary, "weight": 1}]})
    default: dict[str, Any] = {"matches": [on_path]} if path else {}
    if split.canary_active and not split.ab_matches:
        rules.append({**default, "backendRefs": [{**stable, "weight": 100 - split.canary_weight},
                                                 {**canary, "weight": split.canary_weight}]})
    else:
        rules.append({**default, "backendRefs": [{**stable, "weight": 100}]})
    return rules


@dataclass(frozen=True)
class GatewayApiRouter:
    routing: GatewayApiRouting
    openai: bool = False

    def objects(self, owner: Owner, split: Split) -> list[dict[str, Any]]:
        rules = _rules(owner, split, OPENAI_PORT, OPENAI_PATH_PREFIX) if self.openai else []
        rules += _rules(owner, split, HTTP_PORT, None)
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


def router_for(routing: TrafficRouting, openai: bool) -> TrafficRouter:
    if routing.gateway_api is not None:
        return GatewayApiRouter(routing.gateway_api, openai)
    return ServiceRouter()
