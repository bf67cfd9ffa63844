"""`prometheus`: the same figures as `frontend`, from a Prometheus that scrapes the pods' front doors, over the
window: for the canary's revision and the stable's (by `revisionLabel`, the pods' serving.deepseek.ai/revision
label as the scrape config's labelmap names it), over the inference APIs

    requests  sum(increase(deepseek_frontend_requests_total{namespace="<ns>",<revisionLabel>="<revision>",
                  api=~"chat|completions|generate|generate_stream|infer"}[<window>]))
    errors    sum(increase(deepseek_frontend_request_failures_total{…,
                  reason=~"engine_error|error_in_200|http_5xx"}[<window>]))
    latency   sum by (le) (increase(deepseek_frontend_<histogram>_bucket{…}[<window>]))  for time_to_first_token,
              inter_token_latency and request_duration (e2e): the histograms themselves, so any percentile and
              the count of requests slower than an objective come from them

with <window> = max(the window, minRange) in seconds. Or the resource's own templates (`queries`, Flagger's metric
templates): `requests` and `failures` each one number over {{window}}, `latency` the whole-request latency in
seconds at {{quantile}} (0.99 here: maxP99LatencySeconds); each filled in for the canary ({{revision}} its
revision, {{service}} `<name>-canary`) and for the stable (`<name>-stable`), with {{namespace}} and {{name}} the
resource's. A template left out keeps the front door's query; time to first token and inter-token latency always
come from the front door (no gateway sees a token).

Templates for gateways and meshes, as spec.rollout.analysis.prometheus.queries (YAML's `>-` folds the lines into
one). Only Traefik runs on the testbed; the others are written from their documentation, not run.

Traefik (metrics.prometheus.addServicesLabels; its Gateway API provider names a backend
<ns>-<service>-<port name>-<port>@kubernetesgateway, as providers/gateway.py matches it):

    requests: >-
      sum(increase(traefik_service_requests_total{
        service=~"{{namespace}}-{{service}}-(http-)?8000([-@].*)?"}[{{window}}]))
    failures: >-
      sum(increase(traefik_service_requests_total{
        service=~"{{namespace}}-{{service}}-(http-)?8000([-@].*)?", code=~"5..|400"}[{{window}}]))
    latency: >-
      histogram_quantile({{quantile}}, sum by (le) (rate(traefik_service_request_duration_seconds_bucket{
        service=~"{{namespace}}-{{service}}-(http-)?8000([-@].*)?"}[{{window}}])))

Envoy Gateway (Envoy's cluster stats). Per-revision figures need a cluster per backendRef whose stat name carries
the Service (weighted clusters, and e.g. EnvoyProxy spec.telemetry.metrics.clusterStatName
"%ROUTE_KIND%/%ROUTE_NAMESPACE%/%ROUTE_NAME%/%ROUTE_RULE_NUMBER%/%BACKEND_REFS%"); where one cluster holds all of
a rule's backends (envoyproxy/gateway#6742) these count the canary and the stable together: keep the front door's.

    requests: >-
      sum(increase(envoy_cluster_upstream_rq_total{
        envoy_cluster_name=~"httproute/{{namespace}}/{{name}}/.*{{service}}.*"}[{{window}}]))
    failures: >-
      sum(increase(envoy_cluster_upstream_rq_xx{
        envoy_cluster_name=~"httproute/{{namespace}}/{{name}}/.*{{service}}.*",
        envoy_response_code_class="5"}[{{window}}]))
    latency: >-
      histogram_quantile({{quantile}}, sum by (le) (rate(envoy_cluster_upstream_rq_time_bucket{
        envoy_cluster_name=~"httproute/{{namespace}}/{{name}}/.*{{service}}.*"}[{{window}}]))) / 1000

Istio (the destination's sidecar; each revision's Deployment is <name>-<revision>):

    requests: >-
      sum(increase(istio_requests_total{reporter="destination",
        destination_workload_namespace="{{namespace}}",
        destination_workload="{{name}}-{{revision}}"}[{{window}}]))
    failures: >-
      sum(increase(istio_requests_total{reporter="destination",
        destination_workload_namespace="{{namespace}}",
        destination_workload="{{name}}-{{revision}}", response_code=~"5.."}[{{window}}]))
    latency: >-
      histogram_quantile({{quantile}}, sum by (le) (rate(istio_request_duration_milliseconds_bucket{
        reporter="destination", destination_workload_namespace="{{namespace}}",
        destination_workload="{{name}}-{{revision}}"}[{{window}}]))) / 1000

NGINX Gateway Fabric: NGINX OSS exports no per-upstream counts (only nginx_http_requests): keep the front door's.
With NGINX Plus, per upstream (<namespace>_<service>_<port>) by status range (check the label names your NGINX
Agent exports); it has only average latencies, no histogram, so leave `latency` out:

    requests: >-
      sum(increase(nginx_http_upstream_peer_responses_total{
        nginx_upstream_name="{{namespace}}_{{service}}_8000"}[{{window}}]))
    failures: >-
      sum(increase(nginx_http_upstream_peer_responses_total{
        nginx_upstream_name="{{namespace}}_{{service}}_8000", nginx_status_range="5xx"}[{{window}}]))
"""

from __future__ import annotations

import json
import math
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.spec import PrometheusQueries, duration_seconds
from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import ProviderError, source_reader, unmeasured
from deepseek_operator.providers.frontend import FAILURE_REASONS, INFERENCE_APIS
from deepseek_operator.rollout.analysis import (
    E2E,
    ITL,
    TTFT,
    Histogram,
    Measurement,
    histogram,
    latency_key,
    quantile_key,
)

REQUESTS = "deepseek_frontend_requests_total"
FAILURES = "deepseek_frontend_request_failures_total"
HISTOGRAMS = {TTFT: "deepseek_frontend_time_to_first_token_seconds",
              ITL: "deepseek_frontend_inter_token_latency_seconds",
              E2E: "deepseek_frontend_request_duration_seconds"}
P99 = 0.99  # the quantile a latency template is asked for: maxP99LatencySeconds'


def fill(template: str, values: Mapping[str, str]) -> str:
    """A query template with its {{placeholders}} replaced (api/spec/analysis.py's rules admit no others)."""
    for name, value in values.items():
        template = template.replace(f"{{{{{name}}}}}", value)
    return template


def _any_regex(values: frozenset[str]) -> str:
    return "|".join(sorted(values))


Query = Callable[[str], list[dict[str, Any]]]


def _one(query: Query, promql: str) -> float | None:
    """A query's one number (a scalar, or a vector of one series); None when nothing matched."""
    result = query(promql)
    if not result:
        return None
    if len(result) > 1:
        raise ProviderError("prometheus", f"{len(result)} series where one number was expected (wrap the query "
                                          f"in sum()): {promql}")
    return float(result[0]["value"][1])


def _buckets(query: Query, promql: str) -> Histogram | None:
    result = query(promql)
    by_le = {float(r["metric"]["le"]): float(r["value"][1]) for r in result if "le" in r.get("metric", {})}
    if not by_le or any(not math.isfinite(v) for v in by_le.values()):
        return None
    return histogram(by_le)


@dataclass
class PrometheusProvider:

    def measure(self, request: AnalysisRequest) -> Measurement:
        settings = request.prometheus
        assert settings is not None
        span = f"{max(math.ceil(request.window_seconds), duration_seconds(settings.min_range))}s"
        try:
            fetch = source_reader("prometheus", request.source)  # one token read and TLS context for all queries
        except ProviderError as err:
            return unmeasured(request, err)

        def query(promql: str) -> list[dict[str, Any]]:
            path = "/api/v1/query?" + urllib.parse.urlencode({"query": promql})
            try:
                body = json.loads(fetch(path))
                if body.get("status") != "success":
                    raise ProviderError("prometheus", f"query failed: {body.get('error', body)}")
                data = body["data"]
                if data.get("resultType") == "scalar":
                    return [{"metric": {}, "value": data["result"]}]
                return list(data["result"])
            except (ValueError, KeyError, IndexError, TypeError) as err:  # an answer that is no PromQL result
                raise ProviderError("prometheus", f"unreadable answer: {err}") from err

        figures: dict[str, tuple[float | None, float | None]] = {}
        latency: dict[str, Histogram] = {}
        quantiles: dict[str, float] = {}
        try:
            for role, revision, service in (("canary", request.canary_revision, request.canary_service),
                                            ("stable", request.stable_revision, request.stable_service)):
                values = {"namespace": request.namespace, "name": request.name, "revision": revision,
                          "service": service, "window": span}
                figures[role] = self._counts(query, settings.queries, settings.revision_label, values)
                for kind, name in HISTOGRAMS.items():
                    if kind == E2E and settings.queries is not None and settings.queries.latency is not None:
                        figure = _one(query, fill(settings.queries.latency, {**values, "quantile": f"{P99:g}"}))
                        if figure is not None:
                            quantiles[quantile_key(role, E2E, P99)] = figure
                        continue
                    selector = self._selector(request.namespace, settings.revision_label, revision)
                    buckets = _buckets(query, f"sum by (le) (increase({name}_bucket{{{selector}}}[{span}]))")
                    if buckets:
                        latency[latency_key(role, kind)] = buckets
        except (ProviderError, ValueError, KeyError, IndexError, TypeError) as err:
            why = err if isinstance(err, ProviderError) else ProviderError("prometheus", f"unreadable answer: {err}")
            return unmeasured(request, why)
        (ok, failed), (stable_ok, stable_failed) = figures["canary"], figures["stable"]
        return Measurement(requests=ok or 0.0, errors=failed or 0.0, window_seconds=request.window_seconds,
                           stable_requests=stable_ok or 0.0, stable_errors=stable_failed or 0.0,
                           latency=latency, quantiles=quantiles)

    @staticmethod
    def _selector(namespace: str, revision_label: str, revision: str) -> str:
        return (f'namespace="{namespace}",{revision_label}="{revision}",'
                f'api=~"{_any_regex(INFERENCE_APIS)}"')

    def _counts(self, query: Query, queries: PrometheusQueries | None, revision_label: str,
                values: Mapping[str, str]) -> tuple[float | None, float | None]:
        """One revision's requests and errors over the window: the resource's templates, or the front door's."""
        if queries is not None and queries.requests is not None and queries.failures is not None:
            return _one(query, fill(queries.requests, values)), _one(query, fill(queries.failures, values))
        selector = self._selector(values["namespace"], revision_label, values["revision"])
        span = values["window"]
        return (_one(query, f"sum(increase({REQUESTS}{{{selector}}}[{span}]))"),
                _one(query, f'sum(increase({FAILURES}{{{selector},reason=~"{_any_regex(FAILURE_REASONS)}"}}'
                            f"[{span}]))"))
