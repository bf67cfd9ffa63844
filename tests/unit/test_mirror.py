"""Mirroring the stable's traffic to a canary (plan/mirror.py): the share that fills a canary replica to a stable
one's load, the orders per stable pod, and the pass that stops them. Pure."""

from __future__ import annotations

import json

import pytest

from deepseek_operator.frontend import mirror as frontend_mirror
from deepseek_operator.plan import mirror
from deepseek_operator.providers import mirror as providers_mirror


@pytest.mark.parametrize(("weight", "canary", "stable", "fraction"), [
    (10, 1, 4, 0.1389),  # 10% + 13.9% of the stable's 90% = 22.5%: a stable replica's 90% / 4
    (20, 1, 4, 0.0),     # 20% on 1 of 5: already a stable replica's load
    (10, 1, 3, 0.2222),
    (50, 3, 2, 0.5),
    (10, 4, 1, 1.0),     # capped: every stable request is mirrored
    (0, 1, 4, 0.0),      # no traffic yet: nothing to fill
    (100, 4, 0, 0.0),
    (10, 0, 4, 0.0),     # no Ready canary pod
])
def test_the_fill_share_gives_a_canary_replica_a_stable_replicas_load(weight: int, canary: int, stable: int,
                                                                        fraction: float) -> None:
    assert mirror.fill_fraction(weight, canary, stable) == fraction
    if 0 < fraction < 1:
        w = weight / 100
        per_canary = (w + fraction * (1 - w)) / canary
        assert per_canary == pytest.approx((1 - w) / stable, rel=1e-3)


def test_each_stable_pod_mirrors_to_a_canary_pod_round_robin_and_is_told_to_stop() -> None:
    told = mirror.orders(fraction=0.25, stable_ips=("10.0.0.1", "10.0.0.2", "10.0.0.3"),
                         canary_ips=("10.0.1.1", "10.0.1.2"), interval_s=10, stop=False)
    assert [(o.pod_ip, o.target, o.fraction) for o in told] == [
        ("10.0.0.1", "http://10.0.1.1:8000", 0.25), ("10.0.0.2", "http://10.0.1.2:8000", 0.25),
        ("10.0.0.3", "http://10.0.1.1:8000", 0.25)]
    assert all(o.ttl_seconds == mirror.MIRROR_TTL_FLOOR_S for o in told)  # renewed every pass, outlives none
    assert mirror.orders(fraction=0.0, stable_ips=("10.0.0.1",), canary_ips=("10.0.1.1",), interval_s=10,
                         stop=False) == ()
    stopped = mirror.orders(fraction=0.0, stable_ips=("10.0.0.1",), canary_ips=(), interval_s=60, stop=True)
    assert [(o.pod_ip, o.fraction, o.ttl_seconds) for o in stopped] == [("10.0.0.1", 0.0, 180.0)]


@pytest.mark.parametrize(("stable_ip", "canary_ip", "interval_s", "stop"), [
    ("10.0.0.1", "10.0.1.1", 10, False),
    ("fd00::1", "fd00::2", 10, False),   # IPv6 pod IPs go in brackets
    ("10.0.0.1", "10.0.1.1", 7200, False),  # a long interval: the order's life is capped where the door caps it
    ("10.0.0.1", "10.0.1.1", 7200, True),
])
def test_every_order_the_operator_sends_is_one_the_front_door_takes(stable_ip: str, canary_ip: str,
                                                                    interval_s: float, stop: bool) -> None:
    [order] = mirror.orders(fraction=0.3, stable_ips=(stable_ip,), canary_ips=(canary_ip,), interval_s=interval_s,
                            stop=stop)
    sent = json.loads(providers_mirror.body(order))
    taken = frontend_mirror.parse_order(sent)
    assert taken.fraction == order.fraction and taken.ttl_seconds == order.ttl_seconds
    assert taken.target == (None if stop else order.target)
    host = f"[{stable_ip}]" if ":" in stable_ip else stable_ip
    assert providers_mirror.control_url(order) == f"http://{host}:8003/mirror"
