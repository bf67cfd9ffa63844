"""When passes run (k8s/scheduler.py): one at a time per resource, a bounded number at once, covered when
queued, retried after a failure, timed when asked, and never from a body older than the last status write."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import pytest

from deepseek_operator.k8s.scheduler import Key, PassResult, PassScheduler

A, B = ("ns", "a"), ("ns", "b")
NOTHING_MORE = PassResult(None, False)


class Clock:
    """The scheduler's clock, driven by the test: passes of a World take their time on it, and the test moves it
    on as the scheduler's loop would sleep."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class World:
    """Resources by key (their bodies) and the passes run, with what each pass returns. A pass holds its thread
    `hold_s` (real seconds, for the tests of what overlaps) and takes `takes_s` on the clock."""

    def __init__(self, result: PassResult = NOTHING_MORE, hold_s: float = 0.0, takes_s: float = 0.0) -> None:
        self.bodies: dict[Key, dict[str, Any]] = {k: self.body("1") for k in (A, B)}
        self.result, self.hold_s = result, hold_s
        self.clock, self.takes_s = Clock(), takes_s
        self.started_at: list[float] = []  # the clock's time as each pass began
        self.passes: list[tuple[Key, str]] = []
        self.running = 0
        self.most_at_once = 0
        self.running_per_key: dict[Key, int] = {}
        self.overlap = False
        self.fail = False
        self._lock = threading.Lock()

    @staticmethod
    def body(version: str, deleting: bool = False) -> dict[str, Any]:
        meta: dict[str, Any] = {"resourceVersion": version}
        if deleting:
            meta["deletionTimestamp"] = "2025-01-20T10:00:00Z"
        return {"metadata": meta}

    def read(self, key: Key, context: Any) -> Mapping[str, Any] | None:
        return self.bodies.get(key)

    def prepare(self, key: Key, body: Mapping[str, Any], context: Any) -> Callable[[], PassResult]:
        def work() -> PassResult:
            self.started_at.append(self.clock.now)
            with self._lock:
                self.running += 1
                self.running_per_key[key] = self.running_per_key.get(key, 0) + 1
                self.overlap |= self.running_per_key[key] > 1
                self.most_at_once = max(self.most_at_once, self.running)
            time.sleep(self.hold_s)
            self.clock.now += self.takes_s
            with self._lock:
                self.running -= 1
                self.running_per_key[key] -= 1
                self.passes.append((key, body["metadata"]["resourceVersion"]))
            if self.fail:
                raise RuntimeError("conflict")
            return self.result
        return work


def scheduler(world: World, parallel: int = 8, tick_s: float = 0.01) -> PassScheduler:
    return PassScheduler(world.read, world.prepare, parallel=parallel, retry_s=10.0, stale_retry_s=2.0, tick_s=tick_s,
                         clock=world.clock)


async def run_loop_until(s: PassScheduler, clock: Clock, until: float) -> None:
    """What the scheduler's loop does, on the test's clock: wait as long as it would, then run what is due."""
    while clock.now < until:
        clock.now += s.next_wait_s()
        await s.run_due()


def test_requests_queued_behind_a_running_pass_are_covered_by_one_more_pass() -> None:
    async def scenario() -> list[tuple[Key, str]]:
        world = World(hold_s=0.05)
        s = scheduler(world)
        await asyncio.gather(*(s.request(A, None) for _ in range(10)))
        assert not world.overlap
        return world.passes
    # The first runs; the second queues behind it; the other eight are covered by the queued one.
    assert asyncio.run(scenario()) == [(A, "1"), (A, "1")]


def test_passes_of_different_resources_run_at_once_up_to_the_bound() -> None:
    async def scenario() -> int:
        world = World(hold_s=0.05)
        world.bodies = {("ns", str(i)): World.body("1") for i in range(12)}
        s = scheduler(world, parallel=3)
        await asyncio.gather(*(s.request(key, None) for key in world.bodies))
        assert len(world.passes) == 12
        return world.most_at_once
    assert asyncio.run(scenario()) == 3


def test_a_gone_or_deleting_resource_gets_no_pass() -> None:
    async def scenario() -> list[tuple[Key, str]]:
        world = World()
        world.bodies = {A: World.body("1", deleting=True)}
        s = scheduler(world)
        await s.request(A, None)
        await s.request(B, None)
        return world.passes
    assert asyncio.run(scenario()) == []


def test_a_failed_pass_is_tried_again_after_the_retry_interval() -> None:
    async def scenario() -> tuple[float, list[tuple[Key, str]]]:
        world = World(takes_s=0.5)
        world.fail = True
        s = scheduler(world, tick_s=0.25)
        with pytest.raises(RuntimeError, match="conflict"):
            await s.request(A, None)
        due = s.wakeups[A]
        world.fail = False
        await run_loop_until(s, world.clock, 10.25)
        assert len(world.passes) == 1, "tried again before the retry interval"
        await run_loop_until(s, world.clock, 10.5)
        return due, world.passes
    # 10 s after the failure (the pass took 0.5 s), with no event to bring it.
    assert asyncio.run(scenario()) == (10.5, [(A, "1"), (A, "1")])


def test_consecutive_failures_back_off_and_a_success_resets_the_delay() -> None:
    async def scenario() -> list[float]:
        world = World()
        world.fail = True
        s = scheduler(world)
        delays = []
        for _ in range(7):
            with pytest.raises(RuntimeError):
                await s.request(A, None)
            delays.append(s.wakeups[A] - world.clock.now)
        world.fail = False
        await s.request(A, None)
        world.fail = True
        with pytest.raises(RuntimeError):
            await s.request(A, None)
        delays.append(s.wakeups[A] - world.clock.now)
        return delays
    assert asyncio.run(scenario()) == [10, 20, 40, 80, 160, 300, 300, 10]


def test_a_pass_that_asks_for_a_time_gets_one_and_runs_when_it_is_due() -> None:
    async def scenario() -> tuple[int, int, bool]:
        world = World(result=PassResult(0.5, False))
        s = scheduler(world, tick_s=0.125)
        await s.request(A, "indexes")
        assert s.wakeups[A] == 0.5
        world.result = NOTHING_MORE  # the timed pass asks for nothing more
        await run_loop_until(s, world.clock, 0.375)
        early = len(world.passes)
        await run_loop_until(s, world.clock, 2.0)
        return early, len(world.passes), A in s.wakeups
    assert asyncio.run(scenario()) == (1, 2, False)


def test_timed_passes_keep_the_cadence_asked_for_whatever_the_tick_and_the_pass_duration() -> None:
    """A sequential analysis every 0.25 s, passes that take 0.125 s and a tick of 1 s: still one pass per 0.25 s
    (counted from when each pass started, run when due rather than at the next tick)."""
    async def scenario() -> list[float]:
        world = World(result=PassResult(0.25, False), takes_s=0.125)
        s = scheduler(world, tick_s=1.0)
        await s.request(A, "indexes")
        await run_loop_until(s, world.clock, 1.0)
        return world.started_at
    # At 0, 0.25, ..., 1.0 s. A tick-bound loop gets 0 and 1.0; one counted from each pass's end 0, 0.375, 0.75.
    assert asyncio.run(scenario()) == [0.0, 0.25, 0.5, 0.75, 1.0]


def test_a_body_older_than_the_status_just_written_waits_for_the_watch() -> None:
    async def scenario() -> tuple[list[tuple[Key, str]], bool]:
        world = World(result=PassResult(None, True))
        s = scheduler(world)
        await s.request(A, None)  # writes the status from version 1
        await s.request(A, None)  # the watch has not brought version 2 yet: no pass from version 1
        stale_wait = A in s.wakeups
        world.bodies[A] = World.body("2")
        await s.request(A, None)
        return world.passes, stale_wait
    assert asyncio.run(scenario()) == ([(A, "1"), (A, "2")], True)


def test_a_deleted_resource_is_forgotten() -> None:
    async def scenario() -> bool:
        world = World(result=PassResult(30.0, True))
        s = scheduler(world)
        await s.request(A, None)
        s.forget(A)
        return A in s.wakeups
    assert asyncio.run(scenario()) is False


def test_a_resource_made_again_while_its_pass_runs_waits_for_that_pass() -> None:
    # Deleted and made again under the same name while a pass of the old one still runs: the new one's pass
    # is prepared only once that pass is over, never beside it.
    release = threading.Event()
    running: list[str] = []
    prepared_beside: list[bool] = []

    def read(key: Key, context: Any) -> Mapping[str, Any]:
        return World.body("1")

    def prepare(key: Key, body: Mapping[str, Any], context: Any) -> Callable[[], PassResult]:
        prepared_beside.append(bool(running))
        running.append("pass")

        def work() -> PassResult:
            release.wait()
            running.pop()
            return NOTHING_MORE
        return work

    async def scenario() -> None:
        s = PassScheduler(read, prepare, parallel=4, retry_s=1.0, stale_retry_s=1.0)
        first = asyncio.create_task(s.request(A, None))
        await asyncio.sleep(0)  # the first pass is prepared and running in its thread
        s.forget(A)  # the resource is deleted...
        second = asyncio.create_task(s.request(A, None))  # ...and made again
        for _ in range(3):
            await asyncio.sleep(0)
        release.set()
        await asyncio.gather(first, second)
    asyncio.run(scenario())
    assert prepared_beside == [False, False], "the second pass was prepared while the first ran"
