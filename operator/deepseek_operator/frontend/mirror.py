"""Mirroring: a stable pod's front door also sends a share of its clients' inference requests to the canary, and
throws the canary's answers away (why: the package's docstring).

The order, from the operator, on the METRICS port only (server.py; the client port has no /mirror):

    PUT    /mirror  {"target": "http://<host>:<port>", "fraction": 0..1, "ttl_seconds": (0, 3600]}
                    -> 200 with the accepted order {target, fraction, ttl_seconds} (the target without a trailing
                    slash); 400 {"error", "field"} naming the field that is wrong ("body": not a JSON object).
                    "fraction": 0 stops mirroring (target and ttl_seconds may then be left out).
    DELETE /mirror  -> 200 with the state below: mirroring stopped
    GET    /mirror  -> 200 {"order": {target, fraction, ttl_seconds, expires_in_seconds} | null, "revision",
                            "in_flight", "max_in_flight", "sent", "dropped", "failed"}

An order lasts `ttl_seconds` from its arrival (a monotonic clock) unless a new one comes: the operator sends it
again every analysis interval, so a crashed or removed operator cannot leave mirroring on. A change of target or
fraction, a stop and an expiry are logged once each; a refresh of the same order is not.

While an order is live, each client request of a generating API (chat, completions, generate, generate_stream;
never infer, other routes, or a request that is itself mirrored) is chosen with probability `fraction` and sent
again to `target` + the same path and query, with the same method and body, the client's Content-Type and
`x-deepseek-mirror-of: <this pod's revision>`, and nothing else of the client's (no Authorization). It is a task
of its own on the frontend's ClientSession: the client's request never waits for it. The answer (a stream too)
is read to its end and discarded. At most MAX_IN_FLIGHT are in flight per pod; a request chosen beyond that is
dropped. Each is given TIMEOUT_S. On drain none is started and those in flight are cancelled. Every chosen request
ends in one outcome of deepseek_frontend_mirrored_total (metrics.py): sent, dropped or failed.
"""

from __future__ import annotations

import asyncio
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import ClientSession, ClientTimeout
from yarl import URL

from deepseek_operator.frontend.metrics import MIRROR_OUTCOMES, Metrics

log = logging.getLogger("deepseek_operator.frontend")

MIRROR_HEADER = "x-deepseek-mirror-of"  # its value: the sending pod's revision
MAX_IN_FLIGHT = 64
TIMEOUT_S = 300.0  # a mirrored request's whole life, its answer read to the end included
MAX_TTL_S = 3600.0
FIELDS = ("target", "fraction", "ttl_seconds")


class OrderError(ValueError):
    """A field of a mirror order is wrong: answered 400 naming it."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class Order:
    """An accepted order. With a fraction of 0 it stops mirroring, and target and ttl_seconds may be left out."""

    target: str | None  # http://host:port, without a trailing slash
    fraction: float
    ttl_seconds: float | None

    def as_json(self) -> dict[str, Any]:
        return {"target": self.target, "fraction": self.fraction, "ttl_seconds": self.ttl_seconds}


def parse_order(payload: Any) -> Order:
    """The order of a PUT /mirror body, or OrderError naming the field that is wrong."""
    if not isinstance(payload, dict):
        raise OrderError("body", "the body must be a JSON object: {\"target\": \"http://<host>:<port>\", "
                                 "\"fraction\": 0..1, \"ttl_seconds\": seconds}")
    for name in payload:
        if name not in FIELDS:
            raise OrderError(str(name), f"unknown field {name!r}: an order has {', '.join(FIELDS)}")
    fraction = _number(payload, "fraction", required=True)
    assert fraction is not None
    if not 0 <= fraction <= 1:
        raise OrderError("fraction", f"fraction must be between 0 and 1, got {fraction!r}")
    required = fraction > 0  # a stop needs neither where nor how long
    target = _target(payload.get("target"), required)
    ttl = _number(payload, "ttl_seconds", required=required)
    if ttl is not None and not 0 < ttl <= MAX_TTL_S:
        raise OrderError("ttl_seconds", f"ttl_seconds must be over 0 and at most {MAX_TTL_S:g}, got {ttl!r}")
    return Order(target, float(fraction), None if ttl is None else float(ttl))


def _number(payload: dict[str, Any], name: str, *, required: bool) -> float | None:
    value = payload.get(name)
    if value is None:
        if required:
            raise OrderError(name, f"{name} is required")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise OrderError(name, f"{name} must be a number, got {value!r}")
    return float(value)


def _target(value: Any, required: bool) -> str | None:
    if value is None:
        if required:
            raise OrderError("target", "target is required")
        return None
    if not isinstance(value, str):
        raise OrderError("target", f"target must be a string http://<host>:<port>, got {value!r}")
    try:
        url = URL(value)
        port = url.explicit_port
    except ValueError as err:
        raise OrderError("target", f"target {value!r} is not a URL: {err}") from err
    why = None
    if url.scheme != "http":
        why = "its scheme must be http"
    elif not url.raw_host:
        why = "it has no host"
    elif port is None or not 0 < port < 65536:
        why = "it must name a port"
    elif url.raw_user is not None or url.raw_password is not None:
        why = "it may not carry user information"
    elif url.raw_path not in ("", "/") or url.raw_query_string or url.raw_fragment or "?" in value or "#" in value:
        why = "it may have no path beyond /, no query and no fragment"
    if why is not None:
        raise OrderError("target", f"target {value!r}: {why} (http://<host>:<port>)")
    return f"http://{url.raw_authority}"


@dataclass(frozen=True)
class _Live:
    target: str
    fraction: float
    ttl_seconds: float
    expires: float


class Mirror:
    """The pod's mirror order and the mirrored requests in flight. `clock` (monotonic) times the order's life;
    `rng` chooses the requests (seeded per process unless a test gives its own)."""

    def __init__(self, metrics: Metrics, session: Callable[[], ClientSession], *,
                 clock: Callable[[], float] = time.monotonic, rng: random.Random | None = None,
                 max_in_flight: int = MAX_IN_FLIGHT, timeout_s: float = TIMEOUT_S) -> None:
        self.revision = metrics.revision
        self.max_in_flight = max_in_flight
        self._outcomes = metrics.mirror_outcomes
        self._session = session
        self._clock = clock
        self._rng = rng if rng is not None else random.Random()
        self._timeout = ClientTimeout(total=timeout_s, sock_connect=10)
        self._live: _Live | None = None
        self._tasks: set[asyncio.Task[str]] = set()
        self._closed = False
        self._failure_logged = False
        self.counts = dict.fromkeys(MIRROR_OUTCOMES, 0)

    # ------------------------------------------------------------------------------------------ the order

    def live(self) -> _Live | None:
        """The order in force, None once it expired (logged once)."""
        live = self._live
        if live is not None and self._clock() >= live.expires:
            log.warning("mirroring to %s stopped: its order expired, not renewed within %g s", live.target,
                        live.ttl_seconds)
            self._live = live = None
        return live

    def put(self, order: Order) -> None:
        before = self.live()
        if order.fraction == 0 or order.target is None or order.ttl_seconds is None:
            self.stop("a fraction of 0")
            return
        self._live = _Live(order.target, order.fraction, order.ttl_seconds, self._clock() + order.ttl_seconds)
        if before is None or (before.target, before.fraction) != (order.target, order.fraction):
            self._failure_logged = False
            log.info("mirroring %g of the inference requests to %s (revision %s's order, for %g s unless renewed)",
                     order.fraction, order.target, self.revision or "-", order.ttl_seconds)

    def stop(self, why: str) -> None:
        before = self.live()
        self._live = None
        if before is not None:
            log.info("mirroring to %s stopped by %s", before.target, why)

    def status(self) -> dict[str, Any]:
        live = self.live()
        order = None if live is None else {
            "target": live.target, "fraction": live.fraction, "ttl_seconds": live.ttl_seconds,
            "expires_in_seconds": max(0.0, live.expires - self._clock())}
        return {"order": order, "revision": self.revision, "in_flight": len(self._tasks),
                "max_in_flight": self.max_in_flight, **self.counts}

    # ------------------------------------------------------------------------------------------ requests

    def offer(self, method: str, path_qs: str, content_type: str | None, body: bytes) -> None:
        """A client's request of a generating API, its body read: mirrored if an order is live and the draw
        chooses it. Returns at once (the request goes out in a task of its own)."""
        if self._closed:
            return
        live = self.live()
        if live is None or self._rng.random() >= live.fraction:
            return
        if len(self._tasks) >= self.max_in_flight:
            self._count("dropped")
            return
        headers = {MIRROR_HEADER: self.revision}
        if content_type is not None:
            headers["Content-Type"] = content_type
        url = URL(live.target + path_qs, encoded=True)
        task = asyncio.get_running_loop().create_task(self._send(method, url, headers, body))
        self._tasks.add(task)
        task.add_done_callback(self._done)

    async def _send(self, method: str, url: URL, headers: dict[str, str], body: bytes) -> str:
        try:
            async with self._session().request(method, url, data=body, headers=headers, allow_redirects=False,
                                               timeout=self._timeout) as response:
                async for _ in response.content.iter_any():  # read to the end (a stream too), discarded
                    pass
            return "sent"
        except Exception as err:  # fire and forget: counted, never raised
            if not self._failure_logged:
                self._failure_logged = True
                log.warning("a mirrored request to %s failed (%s: %s); more failures of this order are only "
                            "counted", url.origin(), type(err).__name__, err)
            return "failed"

    def _done(self, task: asyncio.Task[str]) -> None:
        self._tasks.discard(task)
        self._count("failed" if task.cancelled() or task.exception() is not None else task.result())

    def _count(self, outcome: str) -> None:
        self.counts[outcome] += 1
        self._outcomes[outcome].inc()

    async def close(self) -> None:
        """The drain: no new mirrored request, and those in flight cancelled (counted failed)."""
        self._closed = True
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
