"""Metric providers (how many requests the canary answered, how many failed, its p99, over a window) behind
one Protocol, as Flagger has them, one module each: `prometheus`, `triton`, `gateway`; and the download
progress reader. `provider_for` picks one by the name in spec.rollout.analysis.provider."""

from __future__ import annotations

from deepseek_operator.providers.base import MetricProvider


def provider_for(name: str) -> MetricProvider:
    from deepseek_operator.providers.gateway import GatewayProvider
    from deepseek_operator.providers.prometheus import PrometheusProvider
    from deepseek_operator.providers.triton import TritonProvider

    providers: dict[str, MetricProvider] = {"prometheus": PrometheusProvider(),
                                            "triton": TritonProvider(), "gateway": GatewayProvider()}
    return providers[name]
