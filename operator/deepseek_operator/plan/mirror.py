"""Mirroring a share of the stable revision's traffic to the canary (spec.rollout.analysis.mirror: fill). Pure.

A canary at a small weight answers few requests, so its analysis waits long for evidence; yet its replicas often
have room to spare: a step's weight never exceeds their share of the Ready replicas (rollout/capacity.py), and
is often below it (10% on one replica of five). With `fill`, each stable pod's front door also sends that share
of its requests to a canary pod, answers discarded, until a canary replica carries as much load as a stable one:
the canary's counters see more requests, no client sees a canary's answer, and no replica is loaded beyond what
the stable's are. The front door counts mirrored requests apart (label mirrored="true") and the analysis counts
them with the rest.

An order lives `ttl_seconds` in the front door and is renewed every pass of the rollout, so that an operator that
stopped cannot leave mirroring on; when the rollout ends each stable pod is told to stop at once.
"""

from __future__ import annotations

from dataclasses import dataclass

from deepseek_operator.render.children import HTTP_PORT

MIRROR_TTL_FLOOR_S = 30.0
MIRROR_TTL_CEILING_S = 3600.0  # the longest order the front door takes (frontend/mirror.py)


@dataclass(frozen=True)
class MirrorOrder:
    pod_ip: str  # the stable pod whose front door is told
    target: str  # the canary pod its share goes to ("" with fraction 0: stop)
    fraction: float
    ttl_seconds: float


def fill_fraction(weight: int, canary_ready: int, stable_ready: int) -> float:
    """The share of its requests each stable replica sends to the canary so that a canary replica carries as much
    as a stable one: w + m(1 - w) = c(1 - w)/s of the traffic, for weight w on c canary and s stable replicas."""
    w = weight / 100
    if not 0 < w < 1 or canary_ready <= 0 or stable_ready <= 0:
        return 0.0
    share = (canary_ready * (1 - w) / stable_ready - w) / (1 - w)
    return round(max(0.0, min(1.0, share)), 4)


def orders(*, fraction: float, stable_ips: tuple[str, ...], canary_ips: tuple[str, ...], interval_s: float,
           stop: bool) -> tuple[MirrorOrder, ...]:
    """One order per Ready stable pod: its canary pod (spread round-robin) and the fraction; or, `stop`, a zero
    fraction for each (the rollout ended this pass)."""
    ttl = min(MIRROR_TTL_CEILING_S, max(MIRROR_TTL_FLOOR_S, 3 * interval_s))
    if stop or fraction <= 0 or not canary_ips:
        return tuple(MirrorOrder(ip, "", 0.0, ttl) for ip in stable_ips) if stop else ()
    return tuple(MirrorOrder(ip, pod_url(canary_ips[i % len(canary_ips)], HTTP_PORT), fraction, ttl)
                 for i, ip in enumerate(stable_ips))


def pod_url(ip: str, port: int) -> str:
    host = f"[{ip}]" if ":" in ip else ip  # an IPv6 pod IP goes in brackets
    return f"http://{host}:{port}"
