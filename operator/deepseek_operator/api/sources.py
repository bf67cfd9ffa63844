"""The metric sources the operator may call: its own configuration (`--metric-sources`, the chart's
`metricSources`), never a resource's. A DeepSeekDeployment picks one by name.

Why by name: a resource author who could give an address and a Secret would have the operator read that Secret
with the operator's rights and send it to any URL (a confused deputy). Here addresses and credentials are chosen
by whoever installs the operator; the credentials are files mounted into the operator's pod from Secrets of its
own namespace, so the operator reads no Secret through the API at all.
"""

from __future__ import annotations

from collections.abc import Mapping

import yaml
from pydantic import Field, ValidationError, field_validator

from deepseek_operator.api.spec import K8S_NAME, Schema, SourceProviderName


class MetricSource(Schema):
    """One endpoint the analysis may read, with what it takes to reach it."""

    name: str = Field(pattern=K8S_NAME, max_length=63, description="What resources call it.")
    provider: SourceProviderName = Field(description="prometheus: a Prometheus HTTP API; gateway: the gateway's own "
                                             "metrics page (Traefik's exposition).")
    address: str = Field(pattern=r"^https?://[^\s]+$", description="Prometheus base URL, or the gateway's "
                                                                   "metrics URL.")
    bearer_token_file: str | None = Field(default=None, pattern=r"^/[^\s]*$",
                                          description="A file holding the bearer token to send (read each call).")
    ca_file: str | None = Field(default=None, pattern=r"^/[^\s]*$",
                                description="PEM bundle the server's certificate must chain to (https); "
                                            "default: the system's trust store. Never unverified.")


class MetricSources(Schema):
    sources: list[MetricSource] = Field(default_factory=list)

    @field_validator("sources")
    @classmethod
    def _unique(cls, sources: list[MetricSource]) -> list[MetricSource]:
        names = [s.name for s in sources]
        if dupes := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"metric source names must be unique: {', '.join(dupes)}")
        return sources


def parse_sources(text: str) -> dict[str, MetricSource]:
    """The sources of a configuration file (YAML: `sources: [...]`), by name; ValueError says what is wrong."""
    try:
        doc = yaml.safe_load(text) or {}
        return {s.name: s for s in MetricSources.model_validate(doc).sources}
    except (yaml.YAMLError, ValidationError) as err:
        raise ValueError(f"metric sources: {err}") from err


def source_problem(field: str, provider: SourceProviderName, name: str,
                   known: Mapping[str, MetricSource]) -> str | None:
    """Why a resource's `source` cannot be used, or None: it must name a configured source of its kind."""
    if (source := known.get(name)) is not None and source.provider == provider:
        return None
    offered = sorted(n for n, s in known.items() if s.provider == provider)
    there = f"it has {', '.join(offered)}" if offered else f"it has none of kind {provider}"
    return (f"{field}: the operator has no {provider} metric source named {name!r} ({there}; sources are set by "
            f"whoever installs the operator: the chart's metricSources)")
