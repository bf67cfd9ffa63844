"""Metric providers (how many requests the canary and the stable answered over a window, how many failed, and
their latency histograms) behind one Protocol, as Flagger has them, one module each: `frontend` (the default),
`prometheus`, `triton`, `gateway`; and the download progress reader. `provider_for` picks one by the name in
spec.rollout.analysis.provider (api/spec/analysis.py's AnalysisProviderName: the one list of names)."""

from __future__ import annotations

from deepseek_operator.api.spec import ANALYSIS_PROVIDERS, AnalysisProviderName
from deepseek_operator.providers.base import MetricProvider


def providers() -> dict[AnalysisProviderName, MetricProvider]:
    """Every provider, by its name in the spec."""
    from deepseek_operator.providers.frontend import FrontendProvider
    from deepseek_operator.providers.gateway import GatewayProvider
    from deepseek_operator.providers.prometheus import PrometheusProvider
    from deepseek_operator.providers.triton import TritonProvider

    by_name: dict[AnalysisProviderName, MetricProvider] = {
        "frontend": FrontendProvider(), "triton": TritonProvider(), "prometheus": PrometheusProvider(),
        "gateway": GatewayProvider()}
    assert set(by_name) == set(ANALYSIS_PROVIDERS), "AnalysisProviderName and the providers differ"
    return by_name


def provider_for(name: AnalysisProviderName) -> MetricProvider:
    return providers()[name]
