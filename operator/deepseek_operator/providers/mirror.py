"""Tells a stable pod's front door what to mirror to the canary (plan/mirror.py's orders): a PUT to its control
endpoint on the metrics port. Best effort: an order that does not arrive expires in the front door, and the next
pass sends it again."""

from __future__ import annotations

import json
import logging
import urllib.request
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from deepseek_operator.plan.mirror import MirrorOrder, pod_url
from deepseek_operator.render.children import FRONTEND_METRICS_PORT

LOG = logging.getLogger(__name__)
TIMEOUT_S = 2.0
MAX_PARALLEL = 16  # pods told at once: a pass with unreachable pods waits TIMEOUT_S, not TIMEOUT_S per pod


def send_all(orders: Sequence[MirrorOrder]) -> int:
    """Sends every order; returns how many front doors took theirs."""
    if not orders:
        return 0
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(orders))) as pool:
        return sum(pool.map(send, orders))


def body(order: MirrorOrder) -> bytes:
    """The PUT's JSON: a stop names neither target nor anything but its life."""
    fields = {"target": order.target, "fraction": order.fraction, "ttl_seconds": order.ttl_seconds} \
        if order.fraction > 0 else {"fraction": 0.0, "ttl_seconds": order.ttl_seconds}
    return json.dumps(fields).encode()


def control_url(order: MirrorOrder) -> str:
    return f"{pod_url(order.pod_ip, FRONTEND_METRICS_PORT)}/mirror"


def send(order: MirrorOrder) -> bool:
    request = urllib.request.Request(control_url(order), method="PUT", data=body(order),
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S):
            return True
    except (OSError, ValueError) as err:
        LOG.debug("mirror order to %s not taken: %s", order.pod_ip, err)
        return False
