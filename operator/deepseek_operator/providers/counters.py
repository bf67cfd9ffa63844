"""The counter arithmetic of the scraping providers (frontend, triton, gateway): each sample is a flat map of
counters, keyed `<role>:<source>|requests`, `<role>:<source>|errors` and `<role>:<source>|<kind>|le=<seconds>` (a
latency histogram's cumulative bucket; kind ttft, itl or e2e), where role is canary or stable and source the pod
(or the gateway) it was read from. The increase of each since the sample kept in status, summed per role, is the
window's Measurement: both revisions' requests, errors and latency histograms."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import replace

from deepseek_operator.plan import AnalysisRequest
from deepseek_operator.providers.base import ProviderError, get
from deepseek_operator.rollout.analysis import ROLES, Measurement, histogram, latency_key, window

REQUESTS, ERRORS = "requests", "errors"
# The layout of the keys above, kept in status with the sample: a sample of another layout (an operator upgraded
# mid-rollout) is no base to difference against, so the next measurement is a baseline again.
FORMAT_KEY, FORMAT = "#format", 2.0


def counter_key(role: str, source: str, name: str) -> str:
    return f"{role}:{source}|{name}"


def bucket_key(role: str, source: str, kind: str, le_seconds: float) -> str:
    return f"{role}:{source}|{kind}|le={le_seconds!r}"


def add(out: dict[str, float], key: str, value: float) -> None:
    out[key] = out.get(key, 0.0) + value


def summarize_counters(increase: Mapping[str, float], window_seconds: float) -> Measurement:
    """Both revisions' requests, errors and latency histograms from per-key increases."""
    sums: dict[tuple[str, str], float] = defaultdict(float)
    buckets: dict[tuple[str, str], dict[float, float]] = defaultdict(lambda: defaultdict(float))
    for key, value in increase.items():
        head, _, name = key.partition("|")
        role = head.partition(":")[0]
        if role not in ROLES:
            continue
        kind, le, bound = name.partition("|le=")
        if le:
            buckets[(role, kind)][float(bound)] += value
        else:
            sums[(role, name)] += value
    return Measurement(requests=sums[("canary", REQUESTS)], errors=sums[("canary", ERRORS)],
                       window_seconds=window_seconds, stable_requests=sums[("stable", REQUESTS)],
                       stable_errors=sums[("stable", ERRORS)],
                       latency={latency_key(role, kind): histogram(b) for (role, kind), b in sorted(buckets.items())})


def differenced(request: AnalysisRequest, current: Mapping[str, float]) -> Measurement:
    """The window since the sample kept in status; the first sample (or one of another layout) is a baseline.
    What is kept for the next window leaves out zero counters: a key missing counts as zero."""
    kept = {FORMAT_KEY: FORMAT, **{k: v for k, v in current.items() if v}}
    if request.previous_counters.get(FORMAT_KEY) != FORMAT:
        # The first sample of this canary: a baseline; the first judged window starts now.
        return Measurement(0, 0, window_seconds=request.window_seconds, baseline_only=True, counters=kept)
    increase = window(request.previous_counters, current)
    return replace(summarize_counters(increase, request.window_seconds), counters=kept)


def scrape_pods(request: AnalysisRequest, what: str, port: int,
                counters: Callable[[str, str, str], dict[str, float]]) -> dict[str, float]:
    """Every Ready canary and stable pod's page at `port`, as counters(page, role, pod IP). A canary pod that does
    not answer fails the measurement (ProviderError). A stable pod that does not answer is one going away (a
    scale-down, a drained replica on a full pool, between the pass that saw it Ready and this read): its counters
    kept from the last sample carry over, so it adds nothing to this window and no jump to the next."""
    current: dict[str, float] = {}
    for role, ips in (("canary", request.canary_pod_ips), ("stable", request.stable_pod_ips)):
        for ip in ips:
            try:
                page = get(what, f"http://{ip}:{port}/metrics")
            except ProviderError:
                if role == "canary":
                    raise
                mine = counter_key(role, ip, "")  # "stable:<ip>|": another pod's IP may start with this one's
                current |= {k: v for k, v in request.previous_counters.items() if k.startswith(mine)}
                continue
            try:
                current |= counters(page, role, ip)
            except (ValueError, KeyError) as err:  # not the exposition format, a bucket without `le`
                raise ProviderError(what, f"{ip}: {err}") from err
    return current
