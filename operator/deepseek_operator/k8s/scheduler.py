"""When passes run: one at a time per resource, a bounded number at once, again when a pass asked for a time
(a pause ends, an analysis is due, a download's progress) or failed, and never from a body older than the
status the last pass wrote.

- A pass requested while one for the same resource is queued and not started is covered by it: it reads the
  newest body and indexes when it starts (a rollout's pods and Deployments send dozens of events).
- Read-your-own-writes: after a pass wrote the status, a body of the version it started from is stale until
  the watch delivers the newer one; planning from it would undo the pass (a rollback flapping back to the
  canary it had just dropped). Such a request waits `stale_retry_s` instead.
- A pass that fails (the API server unreachable, a conflict) is tried again after `retry_s`, doubling with each
  consecutive failure up to `max_retry_s`, even if no event comes.
- Timed passes are kept in memory and lost on restart by design: the first pass after a restart computes them
  again from status.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

Key = tuple[str, str]  # (namespace, name)
LOG = logging.getLogger(__name__)


@dataclass(frozen=True)
class PassResult:
    requeue_after: float | None  # seconds after which the resource wants another pass, if it does
    wrote_status: bool  # the status changed: a body of this resourceVersion is stale from now on


# The current body of a resource (None once it is gone), and the pass over a body: both get the latest
# `context` a request brought (kopf's live indexes) and run in the event loop; the pass they prepare (observed
# from the indexes there) runs in a worker thread, since it waits on the API server.
Read = Callable[[Key, Any], Mapping[str, Any] | None]
Prepare = Callable[[Key, Mapping[str, Any], Any], Callable[[], PassResult]]


class PassScheduler:
    def __init__(self, read: Read, prepare: Prepare, *, parallel: int, retry_s: float, stale_retry_s: float,
                 tick_s: float = 1.0, max_retry_s: float = 300.0, clock: Callable[[], float] = time.monotonic) -> None:
        self._read, self._prepare, self._clock = read, prepare, clock
        self.retry_s, self.stale_retry_s, self.tick_s, self.max_retry_s = retry_s, stale_retry_s, tick_s, max_retry_s
        self._failures: defaultdict[Key, int] = defaultdict(int)  # consecutive failed passes
        # One lock per resource while a request holds or waits for it: dropped by the last of them, never by
        # `forget`, so a resource deleted and made again under the same name still gets one pass at a time.
        self._locks: dict[Key, tuple[asyncio.Lock, int]] = {}
        self._slots = asyncio.Semaphore(parallel)
        # Passes wait on the API server most of the time: one thread each, however few cores the pod has.
        self._executor = concurrent.futures.ThreadPoolExecutor(max_workers=parallel, thread_name_prefix="pass")
        self._queued: set[Key] = set()
        self._written_from: dict[Key, str] = {}
        self.wakeups: dict[Key, float] = {}  # resource -> the clock's time its timed pass is due
        self._context: Any = None
        self._task: asyncio.Task[None] | None = None
        self._rescheduled = asyncio.Event()

    def _now(self) -> float:
        return self._clock()

    async def request(self, key: Key, context: Any) -> None:
        """A pass for `key`, now (or covered by one queued); returns when it ran or was found not needed."""
        self._context = context
        if key in self._queued:
            return
        self._queued.add(key)
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock, self._slots:
                await self._run(key, context)
        finally:
            lock, users = self._locks[key]
            if users == 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)

    async def _run(self, key: Key, context: Any) -> None:
        """One pass of `key`, under its lock: the newest body, unless it is gone or stale."""
        self._queued.discard(key)
        body = self._read(key, context)
        if not body or body["metadata"].get("deletionTimestamp"):
            return
        version = body["metadata"].get("resourceVersion", "")
        if version and self._written_from.get(key) == version:
            # Our own status write has not come back through the watch yet; its event brings the next pass.
            if key not in self.wakeups:
                self._wake(key, self._now() + self.stale_retry_s)
            return
        started = self._now()
        try:
            work = self._prepare(key, body, context)
            result = await asyncio.get_running_loop().run_in_executor(self._executor, work)
        except Exception:
            # A failed pass (API error, conflict) is tried again even if no event comes, later each time.
            self._failures[key] += 1
            delay = min(self.max_retry_s, self.retry_s * 2 ** (self._failures[key] - 1))
            self._wake(key, self._now() + delay)
            raise
        self._failures.pop(key, None)
        if result.wrote_status and version:
            self._written_from[key] = version
        if result.requeue_after is None:
            self.wakeups.pop(key, None)
        else:
            # Counted from when the pass looked, not when its writes ended: an analysis every 1 s stays 1 s.
            self._wake(key, started + result.requeue_after)

    def _wake(self, key: Key, at: float) -> None:
        """A timed pass for `key` at the clock's time `at`; the loop, maybe asleep past it, looks again."""
        self.wakeups[key] = at
        self._rescheduled.set()

    def forget(self, key: Key) -> None:
        """The resource is gone: its timed pass and written version with it (its lock goes with its last user)."""
        self._failures.pop(key, None)
        self.wakeups.pop(key, None)
        self._written_from.pop(key, None)

    async def run_due(self) -> list[Key]:
        """The timed passes that are due, concurrently; a failed one is logged (and retried by `request`)."""
        now = self._now()
        due = [key for key, at in self.wakeups.items() if at <= now]
        for key in due:
            self.wakeups.pop(key, None)
        results = await asyncio.gather(*(self.request(key, self._context) for key in due), return_exceptions=True)
        for key, result in zip(due, results, strict=True):
            if isinstance(result, Exception):
                LOG.warning("timed pass of %s/%s failed: %s", *key, result)
        return due

    def next_wait_s(self) -> float:
        """How long the loop waits before it looks again: until the next timed pass is due, tick_s at most."""
        earliest = min(self.wakeups.values(), default=math.inf)
        return max(0.01, min(self.tick_s, earliest - self._now()))

    async def _loop(self) -> None:
        while True:
            # Until the next timed pass is due or one is set.
            self._rescheduled.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._rescheduled.wait(), self.next_wait_s())
            if self._context is not None:
                await self.run_due()

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._loop())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
