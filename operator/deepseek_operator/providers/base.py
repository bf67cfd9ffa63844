"""What every metric provider shares: the Protocol, the one HTTP read a provider makes, and the error it raises
when it cannot measure (the analysis calls that Inconclusive, never a pass)."""

from __future__ import annotations

import ssl
import urllib.request
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Protocol

from deepseek_operator.api.sources import MetricSource
from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.rollout.analysis import Measurement

TIMEOUT_S = 5.0


class MetricProvider(Protocol):
    """Those of DIFFERENCING_PROVIDERS (api/spec/analysis.py) difference counters against the sample kept in status
    (counters.py): their first measurement of a canary is a baseline."""

    def measure(self, request: AnalysisRequest) -> Measurement: ...


class ProviderError(Exception):
    """A provider could not measure: its source did not answer, or answered what it cannot use."""

    def __init__(self, provider: str, detail: str) -> None:
        super().__init__(f"{provider}: {detail}")
        self.provider, self.detail = provider, detail


def unmeasured(request: AnalysisRequest, err: ProviderError) -> Measurement:
    """The Measurement of a provider that could not measure: Inconclusive, with its words."""
    return Measurement(0, 0, window_seconds=request.window_seconds, error=str(err))


def get(provider: str, url: str, headers: Mapping[str, str] | None = None,
        context: ssl.SSLContext | None = None) -> str:
    req = urllib.request.Request(url, headers=dict(headers or {}))
    try:
        with urllib.request.urlopen(req, timeout=TIMEOUT_S, context=context) as resp:
            return str(resp.read().decode())
    except (OSError, ValueError) as err:
        raise ProviderError(provider, str(err)) from err


def source_reader(provider: str, source: MetricSource | None) -> Callable[[str], str]:
    """Reads of one of the operator's metric sources for one measurement: its address (+ the path given), its
    bearer token (read now, so a rotated Secret is used at the next measurement) and its server verified against
    its CA bundle (or the system's); a source that cannot be read is a ProviderError."""
    if source is None:
        raise ProviderError(provider, "the metric source is not in the operator's configuration")
    headers = {}
    try:
        if source.bearer_token_file:
            headers["Authorization"] = f"Bearer {Path(source.bearer_token_file).read_text().strip()}"
        context = ssl.create_default_context(cafile=source.ca_file) if source.address.startswith("https") else None
    except (OSError, ssl.SSLError) as err:
        raise ProviderError(provider, f"source {source.name}: {err}") from err

    def read(url_path: str) -> str:
        return get(provider, source.address.rstrip("/") + url_path if url_path else source.address, headers, context)

    return read
