"""Rollouts on a GPU pool with nothing to spare: one resource holds both H100 nodes of the testbed (2 replicas of
8 GPUs, tensor parallel 8), rolls out with `maxSurge: 0`, under steady load through the gateway. The new revision's
NCCL preflight and then the canary grow only into GPUs a drained stable replica gave back, so no pod waits Pending
for GPUs; a drained replica finishes the requests it holds."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_rollout import FAULT_SEED, NAME, Load, canary_cr, serve_first_revision, status, watch
from tests.e2e.test_serving import Resources, model_store_namespace

pytestmark = pytest.mark.e2e
H100_NODES = ("h100-0", "h100-1")
POLL_S = 0.25


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess) -> Iterator[str]:
    def pool_free() -> bool:  # an earlier test's pods (still terminating) would hold GPUs this one needs
        pods = testbed.core.list_pod_for_all_namespaces().items
        return not [p for p in pods if p.spec.node_name in H100_NODES]
    eventually("the H100 pool to be free", pool_free, timeout=180)
    yield from model_store_namespace(testbed, "pool")


def full_pool_cr(ns: str) -> dict[str, Any]:
    cr = canary_cr(ns, replicas=2, steps=[{"weight": 50}, {"pause": "6s"}],
                   analysis={"interval": "3s", "maxErrorRate": 0.05, "minRequests": 10, "failureLimit": 2})
    cr["spec"]["model"] = {"name": "deepseek-r1-distill-llama-8b", "revision": "2025-01-20", "precision": "bf16",
                           "source": {"pvc": {"claimName": "model-store",
                                              "path": "/models/DeepSeek-R1-Distill-Llama-8B"}}}
    cr["spec"]["runtime"]["parallelism"] = {"tensor": 8, "pipeline": 1}
    cr["spec"]["serving"]["gpu"] = {"type": "H100-80GB", "perNode": 8}
    cr["spec"]["rollout"].update({"maxSurge": 0, "maxUnavailable": 1})
    return cr


class PendingWatch:
    """Polls the resource's pods; for each, how long it was Pending without a node (waiting for GPUs)."""

    def __init__(self, testbed: TestbedClient, ns: str) -> None:
        self._testbed, self._ns = testbed, ns
        self.unscheduled_s: dict[str, float] = {}
        self._since: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 600
        while not self._stop.is_set() and time.monotonic() < deadline:
            now = time.monotonic()
            pods = self._testbed.core.list_namespaced_pod(self._ns, label_selector=(
                f"serving.deepseek.ai/deployment={NAME},app.kubernetes.io/component in (server,preflight)")).items
            for p in pods:
                name = p.metadata.name
                if not p.spec.node_name and p.metadata.deletion_timestamp is None:
                    self._since.setdefault(name, now)
                    self.unscheduled_s[name] = now - self._since[name]
            time.sleep(POLL_S)

    def __enter__(self) -> PendingWatch:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)

    def longest(self) -> float:
        return max(self.unscheduled_s.values(), default=0.0)


def held_gpus(testbed: TestbedClient, ns: str) -> int:
    """GPUs the resource's pods hold: bound and not finished (a completed preflight pod holds none)."""
    pods = testbed.core.list_namespaced_pod(ns, label_selector=f"serving.deepseek.ai/deployment={NAME}").items
    return sum(int(c.resources.limits.get("nvidia.com/gpu", 0)) for p in pods
               if p.spec.node_name and p.status.phase not in ("Succeeded", "Failed")
               for c in p.spec.containers if c.resources and c.resources.limits)


def test_on_a_full_pool_a_canary_is_promoted_and_a_broken_one_rolled_back_without_pending_pods(
        testbed: TestbedClient, ns: str) -> None:
    res = Resources(testbed, ns)
    old = serve_first_revision(res, full_pool_cr(ns), testbed)
    assert held_gpus(testbed, ns) == 16  # both nodes, whole

    peak = 0
    with PendingWatch(testbed, ns) as pending, Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/latency-ms": "1"}}})
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            peak = max(peak, held_gpus(testbed, ns))
            s = status(res)
            if s.get("phase") == "Healthy" and s.get("stableRevision") != old and not s.get("canaryRevision"):
                break
            time.sleep(POLL_S)
        promoted = watch(res, "Healthy", timeout=30)[-1]
    new = promoted["stableRevision"]
    codes = Counter(code for code, _ in load.outcomes)
    print(f"\npromotion on a full pool: {len(load.outcomes)} requests, {codes}; longest unscheduled pod "
          f"{pending.longest():.1f}s; peak GPUs held {peak}")
    assert new != old and peak <= 16
    assert pending.longest() < 5, pending.unscheduled_s
    assert set(codes) == {200}, Counter(o for o in load.outcomes if o[0] != 200)

    with PendingWatch(testbed, ns) as pending, Load(testbed.gateway, f"{ns}.llm.test") as load:
        res.patch(NAME, {"serving": {"podAnnotations": {"testbed.deepseek.ai/error-rate": "0.3", FAULT_SEED: "1"}}})
        seen = watch(res, "RolledBack", timeout=300)
        # The stable grows back into the GPUs the canary gave up: both replicas Ready again.
        eventually("the stable back at 2 Ready replicas", lambda: len(testbed.ready_pods(
            ns, f"serving.deepseek.ai/revision={new}")) == 2, timeout=120)
    final = seen[-1]
    failed = [o for o in load.outcomes if o[0] != 200]
    print(f"rollback on a full pool: {len(load.outcomes)} requests, {len(failed)} failed "
          f"({Counter(code for code, _ in failed)}); longest unscheduled pod {pending.longest():.1f}s")
    assert final["stableRevision"] == new and final["analysis"]["result"] == "Failed"
    assert pending.longest() < 5, pending.unscheduled_s
    # Only the canary's share failed (at its 30%): none from a drained or regrown stable replica.
    assert failed and not [o for o in failed if o[0] in (0, 502, 503, 504)], Counter(o for o in failed)
    assert held_gpus(testbed, ns) <= 16
