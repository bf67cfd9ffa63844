"""`gateway`: the gateway's own per-backend response codes and durations (Traefik's
`traefik_service_requests_total` and `traefik_service_request_duration_seconds`): what clients saw at the
gateway, for the HTTPRoute's two backends (<name>-canary and <name>-stable; trafficRouting gatewayAPI only). The
duration is the whole request's (e2e): a gateway sees no first token."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import ProviderError, source_reader, unmeasured
from deepseek_operator.providers.counters import ERRORS, REQUESTS, add, bucket_key, counter_key, differenced
from deepseek_operator.render.children import HTTP_PORT
from deepseek_operator.rollout.analysis import E2E, Measurement

SOURCE = "gateway"


def gateway_counters(text: str, services: Mapping[str, str], failure_codes: str) -> dict[str, float]:
    """Traefik's per-service request counters and latency buckets, for the services named {role: pattern}.

    A status code matching `failure_codes` is a failure; any other answer counts as answered.
    """
    patterns = {role: re.compile(pattern) for role, pattern in services.items()}
    failed = re.compile(failure_codes)
    out: dict[str, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            service = sample.labels.get("service", "")
            role = next((r for r, p in patterns.items() if p.search(service)), None)
            if role is None:
                continue
            if sample.name == "traefik_service_requests_total":
                add(out, counter_key(role, SOURCE, REQUESTS), sample.value)
                if failed.search(sample.labels.get("code", "")):
                    add(out, counter_key(role, SOURCE, ERRORS), sample.value)
            elif sample.name == "traefik_service_request_duration_seconds_bucket":
                add(out, bucket_key(role, SOURCE, E2E, float(sample.labels["le"])), sample.value)
    return out


def traefik_service_pattern(namespace: str, service: str, ports: tuple[int, ...]) -> str:
    """How Traefik's Gateway API provider names a backend in its metrics: <ns>-<svc>-<port name>-<port>@…, for
    any of `ports`."""
    alternatives = "|".join(str(p) for p in ports)
    return rf"^{re.escape(namespace)}-{re.escape(service)}-(http-)?({alternatives})(-|@|$)"


@dataclass
class GatewayProvider:

    def measure(self, request: AnalysisRequest) -> Measurement:
        settings = request.gateway
        assert settings is not None
        ports = (HTTP_PORT,)
        services = {"canary": traefik_service_pattern(request.namespace, request.canary_service, ports),
                    "stable": traefik_service_pattern(request.namespace, request.stable_service, ports)}
        try:
            page = source_reader("gateway metrics", request.source)("")
            try:
                current = gateway_counters(page, services, settings.failure_status_codes)
            except (ValueError, KeyError) as err:  # not the exposition format
                raise ProviderError("gateway metrics", str(err)) from err
        except ProviderError as err:
            return unmeasured(request, err)
        return differenced(request, current)
