"""kopf registrations only: watches keep in-memory indexes, and every change reconciles the resource it concerns.

Events of the DeepSeekDeployment itself and of its children (Deployments, ConfigMaps, quantize Jobs, ...) all
lead to the same reconcile; the indexes make `observe` free of API reads, and unchanged children and status
are never re-sent, so a resync with nothing new writes nothing.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config

from deepseek_operator import __version__
from deepseek_operator.api.spec import DEFAULT_MODEL_CACHE_PVC, GROUP, PLURAL, VERSION
from deepseek_operator.k8s.client import Kube
from deepseek_operator.k8s.reconcile import Summary, observe, reconcile, summarize
from deepseek_operator.render import multinode, naming

OURS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
# Passes running at once: API round trips overlap, memory stays bounded (an unbounded fan-out over 500
# resources doubled the operator's RSS).
PARALLEL_PASSES = 8
RETRY_SECONDS = 10.0
LOG = logging.getLogger(__name__)
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_kube: Kube | None = None
_passes: asyncio.Semaphore | None = None
# Passes wait on the API server most of the time: one thread each, however few cores the pod has.
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=PARALLEL_PASSES, thread_name_prefix="pass")
# Timed passes (pause steps, analysis intervals): resource -> loop time it is due. Lost on restart by design:
# the first pass after a restart computes it again from status.
_wakeups: dict[tuple[str, str], float] = {}
# Read-your-own-writes: the resourceVersion each resource had when a pass last wrote its status. Until the watch
# delivers the newer object, a body of that version is stale, and planning from its old status would undo the
# pass (a rollback flapping back to the canary it had just dropped).
_written_from: dict[tuple[str, str], str] = {}
# Resources with a pass queued that has not started: it reads the indexes when it starts, so it covers every event
# that arrives meanwhile, and those events need no pass of their own (a rollout's pods and Deployments send dozens).
_queued: set[tuple[str, str]] = set()
STALE_RETRY_SECONDS = 2.0
_live_indexes: dict[str, kopf.Index[Any, Any]] | None = None
_wake_task: asyncio.Task[None] | None = None


def load() -> None:
    """Importing this module registers the handlers; the function makes that explicit at start-up."""


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    global _kube
    settings.posting.enabled = False  # our own events say what was decided; kopf's log lines are not events
    settings.watching.server_timeout = 300
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    _kube = Kube(client.ApiClient())
    global _lws_installed
    _lws_installed = _kube.serves(multinode.LWS_API_VERSION, "leaderworkersets")
    logger.info("deepseek-operator %s starting; multi-node revisions become %s", __version__,
                "LeaderWorkerSets" if _lws_installed else "StatefulSets (no LeaderWorkerSet API)")


@kopf.on.startup()
async def start_wake_loop(**_: Any) -> None:
    global _wake_task, _passes
    _passes = asyncio.Semaphore(PARALLEL_PASSES)
    _wake_task = asyncio.create_task(_wake_loop())


@kopf.on.cleanup()
async def stop_wake_loop(**_: Any) -> None:
    if _wake_task is not None:
        _wake_task.cancel()


async def _wake_loop() -> None:
    """Reconciles resources whose rollout asked for a pass at a time (a pause ends, an analysis is due)."""
    loop = asyncio.get_running_loop()
    while True:
        await asyncio.sleep(1.0)
        if _live_indexes is None:
            continue
        now = loop.time()
        due = [key for key, at in _wakeups.items() if at <= now]
        for key in due:
            _wakeups.pop(key, None)
        results = await asyncio.gather(*(_reconcile(key, _live_indexes) for key in due), return_exceptions=True)
        for key, result in zip(due, results, strict=True):
            if isinstance(result, Exception):  # already rescheduled by _reconcile; the loop must live on
                LOG.warning("timed pass of %s/%s failed: %s", *key, result)


# ------------------------------------------------------------------ indexes


@kopf.index(GROUP, VERSION, PLURAL)
def resources(**kw: Any) -> dict[Any, Any]:
    return {(kw["namespace"], kw["name"]): dict(kw["body"])}


SERVING_PODS = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_SERVER}
PREFLIGHT = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_PREFLIGHT}
# Children each resource owns, indexed by (namespace, owner): kind -> (group, plural, label selector, index id).
OWNED = {
    "Deployment": ("apps", "deployments", OURS, "owned_deployments"),
    "ConfigMap": ("", "configmaps", OURS, "owned_configmaps"),
    "Service": ("", "services", OURS, "owned_services"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", OURS, "owned_pdbs"),
    "Pod": ("", "pods", SERVING_PODS, "owned_pods"),
    "HTTPRoute": ("gateway.networking.k8s.io", "httproutes", OURS, "owned_httproutes"),
    "Job": ("batch", "jobs", PREFLIGHT, "owned_preflight_jobs"),
    "PreflightPod": ("", "pods", PREFLIGHT, "owned_preflight_pods"),
    "StatefulSet": ("apps", "statefulsets", OURS, "owned_statefulsets"),
    "LeaderWorkerSet": (multinode.LWS_API_VERSION.split("/")[0], "leaderworkersets", OURS, "owned_leaderworkersets"),
}
# Multi-node revisions become LeaderWorkerSets where the LWS API is served (checked at start-up: installing LWS
# later takes an operator restart), StatefulSets elsewhere.
_lws_installed = False


def _owned(**kw: Any) -> dict[Any, Any] | None:
    owner = kw["labels"].get(naming.LABEL_DEPLOYMENT)
    return {(kw["namespace"], owner): summarize(kw["body"])} if owner else None


for _group, _plural, _labels, _index in OWNED.values():
    kopf.index(_group, "v1", _plural, labels=_labels, id=_index)(_owned)


@kopf.index("batch", "v1", "jobs", labels={naming.LABEL_COMPONENT: naming.COMPONENT_QUANTIZE})
def quantize_jobs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


DOWNLOADS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_COMPONENT: naming.COMPONENT_DOWNLOAD}


@kopf.index("batch", "v1", "jobs", labels=DOWNLOADS)
def download_jobs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


@kopf.index("", "v1", "pods", labels=DOWNLOADS)
def download_pods(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


@kopf.index("", "v1", "persistentvolumeclaims")
def pvcs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


# ------------------------------------------------------------------ reconcile triggers


async def _reconcile(key: tuple[str, str], indexes: Mapping[str, kopf.Index[Any, Any]]) -> None:
    global _live_indexes
    _live_indexes = dict(indexes)  # kopf's indexes are live views: the wake loop reuses them
    assert _passes is not None
    if key in _queued:
        return
    _queued.add(key)
    async with _locks[key], _passes:
        _queued.discard(key)
        store = indexes["resources"].get(key)
        if not store:
            return
        body = next(iter(store))
        if body["metadata"].get("deletionTimestamp"):
            return
        version = body["metadata"].get("resourceVersion", "")
        if version and _written_from.get(key) == version:
            # Our own status write has not come back through the watch yet; its event brings the next pass.
            _wakeups.setdefault(key, asyncio.get_running_loop().time() + STALE_RETRY_SECONDS)
            return
        owned: dict[str, list[Summary]] = {kind: list(indexes[index].get(key, []))
                                           for kind, (_, _, _, index) in OWNED.items()}
        namespace = key[0]
        observed = observe(body, owned, list(indexes["pvcs"].get(namespace, [])),
                           list(indexes["quantize_jobs"].get(namespace, [])), lws_installed=_lws_installed,
                           download_jobs=list(indexes["download_jobs"].get(namespace, [])),
                           download_pods=list(indexes["download_pods"].get(namespace, [])))
        assert _kube is not None
        try:
            result = await asyncio.get_running_loop().run_in_executor(_executor, reconcile, _kube, body, observed)
        except Exception:
            # A failed pass (API error, conflict) is tried again soon even if no event comes.
            _wakeups[key] = asyncio.get_running_loop().time() + RETRY_SECONDS
            raise
        if result.wrote_status and version:
            _written_from[key] = version
        if result.requeue_after is None:
            _wakeups.pop(key, None)
        else:
            _wakeups[key] = asyncio.get_running_loop().time() + result.requeue_after


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    names = ("resources", "quantize_jobs", "download_jobs", "download_pods", "pvcs",
             *(index for _, _, _, index in OWNED.values()))
    return {n: kwargs[n] for n in names}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    if kwargs["type"] == "DELETED":
        _locks.pop((namespace, name), None)
        _wakeups.pop((namespace, name), None)
        _written_from.pop((namespace, name), None)
        return  # children carry owner references: the garbage collector removes them
    await _reconcile((namespace, name), _indexes(kwargs))


async def child_changed(**kwargs: Any) -> None:
    if owner := kwargs["labels"].get(naming.LABEL_DEPLOYMENT):
        await _reconcile((kwargs["namespace"], owner), _indexes(kwargs))


for _group, _plural, _labels, _index in OWNED.values():
    kopf.on.event(_group, "v1", _plural, labels=_labels, id=f"{_index}_changed")(child_changed)


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_COMPONENT: naming.COMPONENT_QUANTIZE})
@kopf.on.event("batch", "v1", "jobs", labels=DOWNLOADS, id="download_jobs_changed")
@kopf.on.event("", "v1", "pods", labels=DOWNLOADS, id="download_pods_changed")
@kopf.on.event("", "v1", "persistentvolumeclaims", labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY})
async def shared_child_changed(**kwargs: Any) -> None:
    namespace, labels = kwargs["namespace"], kwargs["labels"]
    # Downloads, quantized checkpoints and caches are shared: the resources of the namespace that wait on this
    # one take another look, concurrently (bounded by PARALLEL_PASSES).
    indexes = _indexes(kwargs)
    checkpoint_key = labels.get(naming.LABEL_CHECKPOINT_KEY)
    weights_key = labels.get(naming.LABEL_WEIGHTS_KEY)
    waiting = [key for key, store in indexes["resources"].items() if key[0] == namespace
               and any(_waits_on(b, kwargs["name"], checkpoint_key, weights_key) for b in store)]
    await asyncio.gather(*(_reconcile(key, indexes) for key in waiting))


def _waits_on(body: Mapping[str, Any], pvc: str, checkpoint_key: str | None, weights_key: str | None) -> bool:
    status = body.get("status") or {}
    if status.get("phase") not in (None, "Pending", "Preparing", "Degraded") and not status.get("canaryRevision"):
        return False
    if weights_key is not None:  # a download Job or its pod: those waiting for those weights (or not yet knowing)
        model = status.get("model")
        return (model.get("key") if isinstance(model, Mapping) else None) in (None, weights_key)
    if checkpoint_key is not None:  # a quantize Job: those waiting for that checkpoint (or not yet knowing which)
        return (status.get("quantization") or {}).get("key") in (None, checkpoint_key)
    cache = ((body.get("spec") or {}).get("runtime") or {}).get("cache") or {}
    return bool(cache.get("pvc", DEFAULT_MODEL_CACHE_PVC) == pvc)
