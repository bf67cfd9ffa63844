"""spec.rollout.analysis: the metric providers, their settings, and how a measurement is judged."""

from __future__ import annotations

from typing import Literal, get_args

from pydantic import (
    BaseModel,
    Field,
)

from deepseek_operator.api import names as k8s
from deepseek_operator.api.spec.base import (
    DURATION,
    K8S_NAME,
    Rule,
    Schema,
    positive_duration,
)

# The analysis' metric providers (providers/, one module each), by the name spec.rollout.analysis.provider gives:
# the one list the spec, the CRD's enum, the metric sources' kinds (api/sources.py) and the providers' factory
# (providers.provider_for) share. Those that read one of the operator's metric sources by name:
SourceProviderName = Literal["prometheus", "gateway"]
AnalysisProviderName = Literal["frontend", "triton", SourceProviderName]
ANALYSIS_PROVIDERS: tuple[str, ...] = get_args(AnalysisProviderName)
# Those that difference counters between samples (providers/counters.py): their first sample is a baseline.
DIFFERENCING_PROVIDERS: frozenset[AnalysisProviderName] = frozenset({"frontend", "triton", "gateway"})
# The placeholders of a prometheus query template (PrometheusQueries), filled in for the canary's revision and
# again for the stable's; `quantile` only in the latency template.
QUERY_PLACEHOLDERS = ("namespace", "name", "revision", "service", "window")
MAX_QUERY_LENGTH = 4096


def _template_rule(field: str, placeholders: tuple[str, ...]) -> Rule:
    """A query template (wire name `field`) is 1-4096 characters and names no placeholder but `placeholders`
    (CEL: what is left once every known placeholder is removed holds no double opening brace). The CRD's text
    never holds two opening braces in a row: the chart ships it as a Helm template (CEL concatenates them)."""
    stripped = f"self.{field}" + "".join(".replace('{' + '{" + p + "}}', '')" for p in placeholders)

    def holds(queries: BaseModel) -> bool:
        value = getattr(queries, field)
        if value is None:
            return True
        for p in placeholders:
            value = value.replace(f"{{{{{p}}}}}", "")
        return 0 < len(getattr(queries, field)) <= MAX_QUERY_LENGTH and "{{" not in value

    return Rule(f"!has(self.{field}) || (size(self.{field}) > 0 && size(self.{field}) <= {MAX_QUERY_LENGTH} && "
                f"!{stripped}.contains('{{' + '{{'))",
                f"queries.{field} must be a PromQL template of 1-{MAX_QUERY_LENGTH} characters whose only "
                f"placeholders are {', '.join(placeholders)}, each in double curly braces", holds, f".{field}")


class PrometheusQueries(Schema):
    """Your own PromQL for the analysis (Flagger's metric templates), e.g. over a gateway's or a mesh's series
    (providers/prometheus.py has working ones for Traefik and written ones for Envoy Gateway, Istio and NGINX
    Gateway Fabric). Each is run once for the canary and once for the stable, with the placeholders, each in
    double curly braces, filled in: namespace and name (the resource's), revision, service (<name>-canary or
    <name>-stable, the HTTPRoute's backends) and window (the measurement's range, e.g. 30s); and quantile (0-1)
    in latency. A query left out keeps the front door's series. (No two opening braces in a row in this text:
    the chart ships the CRD as a Helm template.)"""

    rules = (
        _template_rule("requests", QUERY_PLACEHOLDERS),
        _template_rule("failures", QUERY_PLACEHOLDERS),
        _template_rule("latency", (*QUERY_PLACEHOLDERS, "quantile")),
        Rule("has(self.requests) == has(self.failures)", "queries.requests and queries.failures go together: an "
             "error rate of one source's failures over another's requests means nothing",
             lambda q: (q.requests is None) == (q.failures is None)),
        Rule("has(self.requests) || has(self.latency)", "queries needs requests and failures, or latency",
             lambda q: q.requests is not None or q.latency is not None),
    )

    requests: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                 description="The revision's requests over the window: one number (wrap the query "
                                             "in sum()).")
    failures: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                 description="Of which failed, over the window: one number.")
    latency: str | None = Field(default=None, min_length=1, max_length=MAX_QUERY_LENGTH,
                                description="The revision's whole-request latency at the quantile placeholder "
                                            "(0-1) over the window, in seconds: what maxP99LatencySeconds is held "
                                            "to. Time to first token and inter-token latency always come from the "
                                            "front door's series.")


class PrometheusSettings(Schema):
    """Which Prometheus (one the operator is configured with), how it labels the pods' series, and optionally
    your own queries."""

    source: str = Field(pattern=K8S_NAME, max_length=63,
                        description="The name of a prometheus metric source of the operator's configuration (the "
                                    "chart's metricSources): its address and credentials are the installer's, not "
                                    "the resource's.")
    min_range: str = Field(default="30s", pattern=DURATION,
                           description="Shortest range of the increase() queries: it must hold at least two scrapes "
                                       "(a measurement looks back max(interval, minRange)).")
    revision_label: str = Field(default="serving_deepseek_ai_revision", pattern=r"^[a-zA-Z_][a-zA-Z0-9_]*$",
                                description="The metric label that carries the pods' serving.deepseek.ai/revision "
                                            "label (what your scrape config's labelmap makes of it).")
    queries: PrometheusQueries | None = Field(
        default=None, description="Query templates of your own; by default the front door's deepseek_frontend_* "
                                  "series of each revision's pods (scraped on port 8003).")


class GatewaySettings(Schema):
    """Which gateway metrics (a source the operator is configured with), and which answers count as failures."""

    source: str = Field(pattern=K8S_NAME, max_length=63,
                        description="The name of a gateway metric source of the operator's configuration (the "
                                    "chart's metricSources), e.g. Traefik's metrics with "
                                    "metrics.prometheus.addServicesLabels.")
    rules = (Rule(k8s.cel(k8s.CEL_RE2, "self.failureStatusCodes"), "failureStatusCodes must be an RE2 regular "
                  "expression", lambda g: k8s.re2_problem(g.failure_status_codes) is None, ".failureStatusCodes"),)

    failure_status_codes: str = Field(
        default=r"^(5[0-9][0-9]|400)$", max_length=256,
        description="Regular expression of the HTTP status codes that count as failed requests. Triton answers "
                    "400 when a model's execution fails, so 400 counts by default besides 5xx.")


class LatencyObjective(Schema):
    """A latency gate on one percentile of the new revision: an absolute bound, a bound relative to the stable
    revision's same percentile over the same window, or both."""

    rules = (Rule("has(self.maxSeconds) || has(self.maxRatioToStable)",
                  "a latency gate needs maxSeconds, maxRatioToStable or both",
                  lambda o: o.max_seconds is not None or o.max_ratio_to_stable is not None),)

    percentile: float = Field(default=95, gt=0, lt=100,
                              description="Which percentile of each window is held to the bounds (in mode "
                                          "sequential, timeToFirstToken.maxSeconds is held per request instead: see "
                                          "maxSeconds).")
    max_seconds: float | None = Field(
        default=None, gt=0,
        description="Highest value of the percentile, in seconds. In mode sequential, for timeToFirstToken: a "
                    "request slower than this is bad like a failed one, and the test holds the bad share to "
                    "maxErrorRate (the percentile does not apply).")
    max_ratio_to_stable: float | None = Field(
        default=None, ge=1,
        description="Highest ratio of the new revision's percentile to the stable's over the same window; a window "
                    "without a figure of the stable's is Inconclusive, never a pass.")


class Analysis(Schema):
    """How each measurement of the new revision is judged; failureLimit consecutive failures roll it back."""

    rules = (
        Rule("self.provider != 'prometheus' || has(self.prometheus)",
             "provider prometheus needs `prometheus: {source: ...}`",
             lambda a: a.provider != "prometheus" or a.prometheus is not None),
        Rule("self.provider != 'gateway' || has(self.gateway)",
             "provider gateway needs `gateway: {source: ...}`",
             lambda a: a.provider != "gateway" or a.gateway is not None),
        positive_duration("interval", "interval", "analysis.interval must be longer than 0s"),
        Rule("self.mode != 'sequential' || (self.maxErrorRate > 0.0 && self.maxErrorRate < 1.0)",
             "analysis.mode sequential needs 0 < maxErrorRate < 1 (a limit of 0 or 1 has no sequential test)",
             lambda a: a.mode != "sequential" or 0 < a.max_error_rate < 1),
        Rule("!has(self.timeToFirstToken) || self.provider != 'gateway'",
             "provider gateway measures no time to first token (the gateway sees whole requests): use provider "
             "frontend or prometheus for timeToFirstToken",
             lambda a: a.time_to_first_token is None or a.provider != "gateway"),
        Rule("!has(self.interTokenLatency) || !(self.provider in ['gateway', 'triton'])",
             "providers gateway and triton measure no inter-token latency: use provider frontend or prometheus for "
             "interTokenLatency",
             lambda a: a.inter_token_latency is None or a.provider not in ("gateway", "triton")),
    )

    interval: str = Field(default="30s", pattern=DURATION, description="Time between measurements.")
    max_error_rate: float = Field(default=0.02, ge=0, le=1,
                                  description="Highest failed/total ratio of the new revision's requests that passes.")
    min_requests: int = Field(
        default=50, ge=1,
        description="Requests a window needs for a verdict. A window short of them is never Successful: it keeps "
                    "measuring (Pending, the window grows) until it has them, or is Inconclusive once it spans 10 "
                    "intervals; its failures alone fail it when they put the rate over maxErrorRate even if every "
                    "request still missing succeeded.")
    failure_limit: int = Field(default=2, ge=1, le=100,
                               description="Consecutive Failed measurements that roll the new revision back.")
    on_inconclusive: Literal["pause", "continue", "rollback"] = Field(
        default="pause", description="What an Inconclusive measurement does: pause the rollout until `resume`, "
                                     "let it continue, or roll back.")
    max_p99_latency_seconds: float | None = Field(default=None, gt=0,
                                                  description="Optional latency gate on the new revision's p99 of "
                                                              "whole requests (arrival to last byte).")
    time_to_first_token: LatencyObjective | None = Field(
        default=None, description="Optional gate on the time to first token (to the first generated text the "
                                  "client got; a non-streamed answer's is the whole answer).")
    inter_token_latency: LatencyObjective | None = Field(
        default=None, description="Optional gate on the inter-token latency of streamed answers.")
    mirror: Literal["fill", "off"] = Field(
        default="fill",
        description="fill: while a canary takes traffic, each stable pod's front door also sends it a share of its "
                    "own requests, answers discarded, so that a canary replica carries as much load as a stable one "
                    "(a step's weight is often below its replicas' share): more evidence sooner, no client sees "
                    "the canary's answers, mirrored requests are counted apart. off: only the canary's own "
                    "share of traffic is measured.")
    mode: Literal["windowed", "sequential"] = Field(
        default="windowed",
        description="windowed: each interval's error rate against maxErrorRate, failureLimit failures in a row "
                    "roll back. sequential: a sequential likelihood-ratio test on the canary's bad requests "
                    "(failed, or slower than timeToFirstToken.maxSeconds) since its traffic started, after every "
                    "measurement (measure often: interval 1s-5s): it rolls back at once when they prove the rate "
                    "above maxErrorRate (1% false rollbacks at half the limit), passes when they prove it below "
                    "and minRequests are reached, and otherwise keeps measuring. failureLimit then counts only the "
                    "other latency gates' failed windows.")
    provider: AnalysisProviderName = Field(
        default="frontend",
        description="frontend (scrape each revision's pods' front door: every client request, its errors, time to "
                    "first token and inter-token latency), prometheus (PromQL over the front door's series, or "
                    "your queries), triton (scrape Triton's counters: it counts the llmapi model's errors as "
                    "successes, so it can fail a canary but never pass one on errors) or gateway (the gateway's "
                    "response codes and durations).")
    prometheus: PrometheusSettings | None = Field(default=None, description="Settings of the prometheus provider.")
    gateway: GatewaySettings | None = Field(default=None, description="Settings of the gateway provider.")

    def named_source(self) -> tuple[SourceProviderName, str] | None:
        """The metric source this analysis reads, by kind and name (prometheus and gateway read one of the
        operator's sources; frontend and triton scrape the pods)."""
        if self.provider == "prometheus" and self.prometheus is not None:
            return "prometheus", self.prometheus.source
        if self.provider == "gateway" and self.gateway is not None:
            return "gateway", self.gateway.source
        return None
