"""spec.rollout: steps, A/B matches, traffic routing and the rules between them."""

from __future__ import annotations

import itertools
import re
from typing import Annotated, Literal

from pydantic import (
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.spec.analysis import Analysis
from deepseek_operator.api.spec.base import (
    K8S_NAME,
    Rule,
    Schema,
    exactly_one,
    positive_duration,
)


class CanaryStep(Schema):
    """One step of a canary: shift `weight` percent of traffic to the new revision, or `pause`."""

    rules = (exactly_one(("weight", "pause"), "a step sets exactly one of weight, pause"),
             positive_duration("pause", "pause", "a pause lasts longer than 0s (or is `indefinite`)", "indefinite"))

    weight: int | None = Field(default=None, ge=0, le=100,
                               description="Percent of requests the new revision receives from this step on.")
    pause: str | None = Field(default=None, pattern=r"^(indefinite|([0-9]+(s|m|h))+)$",
                              description="Hold the current weight for a duration (30s, 5m, 1h) while the analysis "
                                          "runs, or `indefinite` until a `promote` action. With analysis, a pause "
                                          "ends only on a Successful measurement.")


class StringMatch(Schema):
    """How a header value must look: exactly, or matching a regex."""

    # Gateway API's HTTPHeaderMatch value: 1-4096 characters.
    exact: str | None = Field(default=None, min_length=1, max_length=4096, description="The value, exactly.")
    regex: str | None = Field(default=None, min_length=1, max_length=1024,
                              description="A regular expression (RE2) the value must match.")

    rules = (exactly_one(("exact", "regex"), "set exactly one of exact, regex"),
             Rule(f"!has(self.regex) || {k8s.cel(k8s.CEL_RE2, 'self.regex')}", "regex must be an RE2 regular "
                  "expression", lambda m: m.regex is None or k8s.re2_problem(m.regex) is None, ".regex"))


class CookieMatch(Schema):
    """A cookie name and value."""

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Cookie name.")
    value: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="Cookie value, exactly.")


HEADER_NAME = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,256}$"


class RequestMatch(Schema):
    """Requests that go to the new revision in an A/B test (all given conditions must hold)."""

    rules = (Rule("(has(self.headers) && size(self.headers) > 0) || has(self.cookie)",
                  "a match needs headers or a cookie", lambda m: bool(m.headers) or m.cookie is not None),
             Rule(f'!has(self.headers) || self.headers.all(k, k.matches("{HEADER_NAME}"))',
                  "header names are tokens of RFC 7230 (letters, digits and !#$%&'*+-.^_`|~), as Gateway API's "
                  "HTTPHeaderName", lambda m: all(re.fullmatch(HEADER_NAME, k) for k in m.headers), ".headers"))

    headers: dict[str, StringMatch] = Field(default_factory=dict, max_length=16,
                                            description="Header name to the value it must have.")
    cookie: CookieMatch | None = Field(default=None, description="A cookie the request must carry.")



class ParentRef(Schema):
    """A Gateway the HTTPRoute attaches to."""

    name: str = Field(pattern=K8S_NAME, max_length=253, description="Gateway name.")
    namespace: str | None = Field(default=None, pattern=K8S_NAME, max_length=63,
                                  description="Gateway namespace (default: ours).")
    section_name: str | None = Field(default=None, pattern=K8S_NAME, max_length=253,
                                     description="Listener name on the Gateway (Gateway API's SectionName).")


# Gateway API's Hostname: a lowercase DNS name, optionally a wildcard for one leading label; no IP, no port.
Hostname = Annotated[str, Field(pattern=rf"^(\*\.)?{k8s.DNS1123_SUBDOMAIN}$", max_length=253)]


# Gateway API's own rules on an HTTPRoute's parentRefs (its CRD's x-kubernetes-validations, in the same form): a
# Gateway named more than once needs a sectionName on each, and no two may name the same listener.
# (`namespace` is a word CEL reserves: the API server names the field __namespace__ in rules.)
_NAMESPACE_OF = "(has({0}.__namespace__) ? {0}.__namespace__ : '')"
_SECTION_OF = "(has({0}.sectionName) ? {0}.sectionName : '')"
_SAME_GATEWAY = f"p1.name == p2.name && {_NAMESPACE_OF.format('p1')} == {_NAMESPACE_OF.format('p2')}"


def _distinct_parents(refs: list[ParentRef]) -> bool:
    for p in refs:
        same = [q for q in refs if (q.name, q.namespace or "") == (p.name, p.namespace or "")]
        if len(same) > 1 and (p.section_name is None
                              or sum(q.section_name == p.section_name for q in same) > 1):
            return False
    return True


PARENTS_APART = ("parentRefs: a Gateway named more than once needs a different sectionName on each (Gateway API "
                 "refuses the HTTPRoute otherwise)")


class GatewayApiRouting(Schema):
    """Split traffic with a Gateway API HTTPRoute."""

    rules = (Rule(f"self.parentRefs.all(p1, self.parentRefs.all(p2, !({_SAME_GATEWAY}) || "
                  "has(p1.sectionName) == has(p2.sectionName))) && self.parentRefs.all(p1, "
                  f"self.parentRefs.exists_one(p2, {_SAME_GATEWAY} && "
                  f"{_SECTION_OF.format('p1')} == {_SECTION_OF.format('p2')}))",
                  PARENTS_APART, lambda g: _distinct_parents(g.parent_refs), ".parentRefs"),)

    parent_refs: list[ParentRef] = Field(min_length=1, max_length=32,
                                         description="Gateways the HTTPRoute attaches to (Gateway API: at most 32).")
    hostnames: list[Hostname] = Field(default_factory=list, max_length=16,
                                      description="Hostnames the HTTPRoute serves (all if empty); lowercase, no "
                                                  "port, `*.` allowed first (Gateway API's Hostname).")


class ServiceRouting(Schema):
    """Traffic follows the replica ratio behind the `<name>` Service; weights are approximate."""


class TrafficRouting(Schema):
    """How traffic reaches the stable and the new revision."""

    rules = (exactly_one(("gatewayAPI", "service"), "set exactly one of gatewayAPI, service"),)

    gateway_api: GatewayApiRouting | None = Field(default=None, alias="gatewayAPI",
                                                  description="Weighted HTTPRoute (Gateway API).")
    service: ServiceRouting | None = Field(default=None, description="Replica ratio behind one Service.")


_GATEWAY_ROUTING = "(has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))"
_SERVICE_PLACEHOLDER = "{" + "{service}}"  # never two opening braces in a row in the CRD's text (a Helm template)


def _queries_name_service(r: RolloutSpec) -> bool:
    queries = r.analysis.prometheus.queries if r.analysis and r.analysis.prometheus else None
    return queries is not None and any(_SERVICE_PLACEHOLDER in (q or "")
                                       for q in (queries.requests, queries.failures, queries.latency))


# What the analysis needs of the routing and the strategy: settings that contradict each other, refused.
ANALYSIS_ROUTING_RULES = (
    Rule(f"!has(self.analysis) || self.analysis.provider != 'gateway' || {_GATEWAY_ROUTING}",
         "analysis provider gateway needs trafficRouting.gatewayAPI: with trafficRouting service the gateway sees "
         "one Service, never the two revisions apart (use provider frontend, triton or prometheus)",
         lambda r: r.analysis is None or r.analysis.provider != "gateway" or r.traffic_routing.gateway_api is not None,
         ".analysis.provider"),
    Rule("!has(self.analysis) || !has(self.analysis.prometheus) || !has(self.analysis.prometheus.queries) || "
         f"{_GATEWAY_ROUTING} || ![self.analysis.prometheus.queries.?requests.orValue(''), "
         "self.analysis.prometheus.queries.?failures.orValue(''), self.analysis.prometheus.queries.?latency"
         ".orValue('')].exists(q, q.contains('{' + '{service}}'))",
         "analysis.prometheus.queries use the service placeholder (the HTTPRoute's backends <name>-canary and "
         "<name>-stable), which only trafficRouting.gatewayAPI makes: with trafficRouting service they measure "
         "nothing", lambda r: r.traffic_routing.gateway_api is not None or not _queries_name_service(r),
         ".analysis.prometheus.queries"),
    Rule("self.strategy != 'recreate' || !has(self.analysis)",
         "strategy recreate has no analysis: the stable revision stops before the new one starts, so there is no "
         "canary to measure or roll back to (use strategy canary for an analysed rollout)",
         lambda r: r.strategy != "recreate" or r.analysis is None, ".analysis"),
)


def _sorted(values: list[int]) -> bool:
    return all(a <= b for a, b in itertools.pairwise(values))


class RolloutSpec(Schema):
    """How a new revision replaces the stable one."""

    rules = (
        Rule("self.strategy != 'abTest' || (has(self.match) && size(self.match) > 0)",
             "strategy abTest needs `match` (which requests go to the new revision)",
             lambda r: r.strategy != "abTest" or bool(r.match)),
        Rule("self.strategy == 'abTest' || !has(self.match) || size(self.match) == 0",
             "`match` applies to strategy abTest only", lambda r: r.strategy == "abTest" or not r.match),
        Rule("self.strategy != 'abTest' || (has(self.trafficRouting) && has(self.trafficRouting.gatewayAPI))",
             "strategy abTest needs trafficRouting.gatewayAPI: a Service cannot route by header",
             lambda r: r.strategy != "abTest" or r.traffic_routing.gateway_api is not None),
        Rule("self.strategy != 'abTest' || !has(self.steps) || self.steps.all(s, !has(s.weight))",
             "an abTest has pause steps only (matching requests go to the new revision)",
             lambda r: r.strategy != "abTest" or all(s.weight is None for s in r.steps)),
        Rule("self.strategy != 'recreate' || !has(self.steps) || size(self.steps) == 0",
             "strategy recreate has no steps", lambda r: r.strategy != "recreate" or not r.steps),
        Rule("!has(self.steps) || !self.steps.exists(s, has(s.weight)) || "
             "self.steps.exists(s, has(s.weight) && s.weight > 0)",
             "a canary needs a step with a weight above 0: with every weight 0 the new revision never gets "
             "traffic to be judged by", lambda r: not any(s.weight is not None for s in r.steps)
             or any((s.weight or 0) > 0 for s in r.steps), ".steps"),
        Rule("(has(self.maxSurge) && self.maxSurge > 0) || !has(self.maxUnavailable) || self.maxUnavailable > 0",
             "maxSurge and maxUnavailable cannot both be 0: the rollout could neither add a replica nor free one",
             lambda r: r.max_surge > 0 or r.max_unavailable > 0),
        Rule("!has(self.steps) || self.steps.filter(s, has(s.weight)).map(s, s.weight).isSorted()",
             "step weights must not go down (a canary only ever gets more traffic; a rollback is the analysis' "
             "or an `abort` action's)", lambda r: _sorted([s.weight for s in r.steps if s.weight is not None]),
             ".steps"),
        *ANALYSIS_ROUTING_RULES,
    )

    strategy: Literal["canary", "abTest", "recreate"] = Field(
        default="canary", description="canary (weighted steps), abTest (matching requests go to the new revision) "
                                      "or recreate (stop the old revision first: no extra GPUs).")
    steps: list[CanaryStep] = Field(default_factory=list, max_length=32,
                                    description="Steps before promotion; none = promote once the new revision is "
                                                "Ready (and the analysis passes, if any).")
    match: list[RequestMatch] = Field(default_factory=list, max_length=8,
                                      description="abTest: requests matching any entry go to the new revision.")
    analysis: Analysis | None = Field(default=None, description="Metric analysis; none = no automatic rollback.")
    traffic_routing: TrafficRouting = Field(
        default_factory=lambda: TrafficRouting(service=ServiceRouting()),
        description="How traffic is split: gatewayAPI (HTTPRoute weights, header matches) or service "
                    "(replica ratio).")
    revision_history_limit: int = Field(default=5, ge=1, le=50,
                                        description="Earlier revisions kept (scaled to zero) for rollback-to.")
    max_surge: int = Field(
        default=1, ge=0, le=16,
        description="Replicas (of a multi-node layout: groups) beyond the desired count a rollout may hold. The "
                    "new revision's replicas first take these extra GPUs, then those of stable replicas drained "
                    "for them; 0 rolls out on a full GPU pool, each new replica in the GPUs a stable one freed.")
    max_unavailable: int = Field(
        default=1, ge=0, le=16,
        description="Stable replicas a rollout may drain at once: Ready replicas of both revisions together never "
                    "fall below the desired count minus this (without the status saying why).")
