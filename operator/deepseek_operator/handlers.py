"""kopf registrations only: watches keep in-memory indexes, and every change reconciles the resource it concerns.

Events of the DeepSeekDeployment itself and of its children (Deployments, ConfigMaps, quantize Jobs, ...) all
lead to the same reconcile; the indexes make `observe` free of API reads, and unchanged children and status
are never re-sent, so a resync with nothing new writes nothing.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Mapping
from typing import Any, cast

import kopf
from kubernetes import client, config

from deepseek_operator import __version__
from deepseek_operator.api.sources import MetricSource, parse_sources
from deepseek_operator.api.spec import DEFAULT_MODEL_CACHE_PVC
from deepseek_operator.api.status import Phase
from deepseek_operator.k8s import kinds
from deepseek_operator.k8s.client import Kube
from deepseek_operator.k8s.reconcile import Summary, event_summary, observe, reconcile, summarize
from deepseek_operator.k8s.scheduler import Key, PassResult, PassScheduler
from deepseek_operator.plan.pods import POD_WARNING_REASONS
from deepseek_operator.render import naming

# Passes running at once: API round trips overlap, memory stays bounded (an unbounded fan-out over 500
# resources doubled the operator's RSS).
PARALLEL_PASSES = 8
RETRY_SECONDS = 10.0
STALE_RETRY_SECONDS = 2.0
LOG = logging.getLogger(__name__)
_kube: Kube | None = None
_scheduler: PassScheduler | None = None
_metric_sources: dict[str, MetricSource] = {}
_operator_namespace: str | None = None


def load(metric_sources_file: str | None = None, operator_namespace: str | None = None) -> None:
    """Importing this module registers the handlers; the function makes that explicit at start-up, and reads
    the operator's metric sources (the only addresses and credentials the analysis may use) and where the
    operator runs (its namespace may scrape the pods through their NetworkPolicies)."""
    global _metric_sources, _operator_namespace
    _operator_namespace = operator_namespace or None
    if metric_sources_file:
        with open(metric_sources_file) as f:
            _metric_sources = parse_sources(f.read())
    LOG.info("metric sources: %s", ", ".join(f"{n} ({s.provider})" for n, s in _metric_sources.items()) or "none")


class NoDiffBase(kopf.DiffBaseStorage):
    """kopf keeps each object's "essence" (a deep copy of its body) to tell on.create/on.update handlers what
    changed. Every handler here is an event or an index handler, so that copy, built on every watch event, was
    built for nothing: a tenth of the operator's CPU with 500 resources. Nothing is built, stored or read."""

    def build(self, *, body: kopf.Body, extra_fields: Any = None) -> kopf.BodyEssence:
        return cast(kopf.BodyEssence, {})

    def fetch(self, *, body: kopf.Body) -> kopf.BodyEssence | None:
        return cast(kopf.BodyEssence, {})

    def store(self, *, body: kopf.Body, patch: kopf.Patch, essence: kopf.BodyEssence) -> None:
        pass


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, logger: Any, **_: Any) -> None:
    global _kube
    settings.posting.enabled = False  # our own events say what was decided; kopf's log lines are not events
    settings.persistence.diffbase_storage = NoDiffBase()
    settings.watching.server_timeout = 300
    try:
        config.load_incluster_config()  # type: ignore[no-untyped-call]
    except config.ConfigException:
        config.load_kube_config()  # type: ignore[no-untyped-call]
    _kube = Kube(client.ApiClient())
    global _lws_installed, _keda_installed, _compute_domains_installed
    _lws_installed = _serves(_kube, kinds.LEADER_WORKER_SETS)
    _keda_installed = _serves(_kube, kinds.SCALED_OBJECTS)
    _compute_domains_installed = _serves(_kube, kinds.COMPUTE_DOMAINS)
    logger.info("deepseek-operator %s starting; multi-node revisions become %s; autoscaling %s", __version__,
                "LeaderWorkerSets" if _lws_installed else "StatefulSets (no LeaderWorkerSet API)",
                "renders KEDA ScaledObjects" if _keda_installed else "renders HPAs only (no KEDA API)")


def _serves(kube: Kube, resource: kinds.Resource) -> bool:
    return kube.serves(resource.api_version, resource.plural)


@kopf.on.startup()
async def start_scheduler(**_: Any) -> None:
    global _scheduler
    _scheduler = PassScheduler(_body_of, _prepare, parallel=PARALLEL_PASSES, retry_s=RETRY_SECONDS,
                               stale_retry_s=STALE_RETRY_SECONDS)
    _scheduler.start()


@kopf.on.cleanup()
async def stop_scheduler(**_: Any) -> None:
    if _scheduler is not None:
        _scheduler.stop()


# ------------------------------------------------------------------ indexes


def _watched(resource: kinds.Resource) -> tuple[str, str, str]:
    """What kopf watches: the group, version and plural of one of the table's resources."""
    return resource.group, resource.version, resource.plural


def _kopf_labels(labels: Mapping[str, str | None]) -> dict[str, Any]:
    """kinds' label filters as kopf takes them: None (the label must be absent) is kopf.ABSENT."""
    return {k: kopf.ABSENT if v is None else v for k, v in labels.items()}


@kopf.index(*_watched(kinds.DEEPSEEK_DEPLOYMENTS))
def resources(**kw: Any) -> dict[Any, Any]:
    return {(kw["namespace"], kw["name"]): dict(kw["body"])}


# Multi-node revisions become LeaderWorkerSets where the LWS API is served, autoscaling a KEDA ScaledObject where
# KEDA's is, and replicas across GB200 trays get IMEX channels where NVIDIA's DRA driver serves ComputeDomains
# (each checked at start-up: installing one later takes an operator restart).
_lws_installed = False
_keda_installed = False
_compute_domains_installed = False


# Children each resource owns, indexed by (namespace, owner): kinds.OWNED, where the chart's RBAC rules come from too.
def _owned(**kw: Any) -> dict[Any, Any] | None:
    owner = kw["labels"].get(naming.LABEL_DEPLOYMENT)
    return {(kw["namespace"], owner): summarize(kw["body"])} if owner else None


for _watch in kinds.OWNED.values():
    kopf.index(*_watched(_watch.resource), labels=_kopf_labels(_watch.labels), id=_watch.index)(_owned)


@kopf.index(*_watched(kinds.JOBS), labels={naming.LABEL_COMPONENT: naming.COMPONENT_QUANTIZE})
def quantize_jobs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


DOWNLOADS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_COMPONENT: naming.COMPONENT_DOWNLOAD}


@kopf.index(*_watched(kinds.JOBS), labels=DOWNLOADS)
def download_jobs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


@kopf.index(*_watched(kinds.PODS), labels=DOWNLOADS)
def download_pods(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


QUANTIZE_PODS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_COMPONENT: naming.COMPONENT_QUANTIZE}


@kopf.index(*_watched(kinds.PODS), labels=QUANTIZE_PODS)
def quantize_pods(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


@kopf.index(*_watched(kinds.PERSISTENT_VOLUME_CLAIMS))
def pvcs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


def _pod_warning(body: kopf.Body, **_: Any) -> bool:
    """The kubelet's Warning events that keep a pod in ContainerCreating (a volume it cannot mount, a sandbox it
    cannot create, an image pull Secret it cannot find): all the index keeps of the cluster's events."""
    involved = body.get("involvedObject") or {}
    return bool(body.get("type") == "Warning" and body.get("reason") in POD_WARNING_REASONS
                and involved.get("kind") == "Pod")


@kopf.index(*_watched(kinds.EVENTS), when=_pod_warning)
def pod_warnings(**kw: Any) -> dict[Any, Any]:
    """By (namespace, pod name): a small summary per event (the kubelet makes one Event per distinct message and
    bumps its count, and the API server drops it an hour after its last bump), the newest read per pod."""
    involved = kw["body"].get("involvedObject") or {}
    return {(kw["namespace"], involved.get("name")): event_summary(kw["body"])}


# ------------------------------------------------------------------ reconcile triggers


def _body_of(key: Key, indexes: Mapping[str, kopf.Index[Any, Any]]) -> Mapping[str, Any] | None:
    store = indexes["resources"].get(key)
    return next(iter(store)) if store else None


def _prepare(key: Key, body: Mapping[str, Any], indexes: Mapping[str, kopf.Index[Any, Any]]
             ) -> Callable[[], PassResult]:
    """What the pass sees, read from the indexes in the event loop; the pass itself runs in a worker."""
    owned: dict[str, list[Summary]] = {kind: list(indexes[watch.index].get(key, []))
                                       for kind, watch in kinds.OWNED.items()}
    namespace = key[0]
    download_pods = list(indexes["download_pods"].get(namespace, []))
    quantizing = list(indexes["quantize_pods"].get(namespace, []))
    pods = [*owned["Pod"], *owned["PreflightPod"], *download_pods, *quantizing]
    warnings = {p["metadata"]["name"]: list(found) for p in pods
                if (found := indexes["pod_warnings"].get((namespace, p["metadata"]["name"])))}
    observed = observe(body, owned, list(indexes["pvcs"].get(namespace, [])),
                       list(indexes["quantize_jobs"].get(namespace, [])), lws_installed=_lws_installed,
                       keda_installed=_keda_installed, compute_domains_installed=_compute_domains_installed,
                       download_jobs=list(indexes["download_jobs"].get(namespace, [])),
                       download_pods=download_pods, metric_sources=_metric_sources,
                       operator_namespace=_operator_namespace, quantize_pods=quantizing, pod_warnings=warnings)
    assert _kube is not None
    return functools.partial(reconcile, _kube, body, observed)


async def _reconcile(key: Key, indexes: Mapping[str, kopf.Index[Any, Any]]) -> None:
    assert _scheduler is not None
    # kopf's indexes are live views: the scheduler keeps the newest for its timed passes.
    await _scheduler.request(key, dict(indexes))


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    names = ("resources", "quantize_jobs", "download_jobs", "download_pods", "quantize_pods", "pvcs", "pod_warnings",
             *(watch.index for watch in kinds.OWNED.values()))
    return {n: kwargs[n] for n in names}


@kopf.on.event(*_watched(kinds.DEEPSEEK_DEPLOYMENTS))
async def resource_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    if kwargs["type"] == "DELETED":
        if _scheduler is not None:
            _scheduler.forget((namespace, name))
        return  # children carry owner references: the garbage collector removes them
    await _reconcile((namespace, name), _indexes(kwargs))


async def child_changed(**kwargs: Any) -> None:
    if owner := kwargs["labels"].get(naming.LABEL_DEPLOYMENT):
        await _reconcile((kwargs["namespace"], owner), _indexes(kwargs))


for _watch in kinds.OWNED.values():
    kopf.on.event(*_watched(_watch.resource), labels=_kopf_labels(_watch.labels), id=f"{_watch.index}_changed"
                  )(child_changed)


@kopf.on.event(*_watched(kinds.JOBS), labels={naming.LABEL_COMPONENT: naming.COMPONENT_QUANTIZE})
@kopf.on.event(*_watched(kinds.JOBS), labels=DOWNLOADS, id="download_jobs_changed")
@kopf.on.event(*_watched(kinds.PODS), labels=DOWNLOADS, id="download_pods_changed")
@kopf.on.event(*_watched(kinds.PODS), labels=QUANTIZE_PODS, id="quantize_pods_changed")
@kopf.on.event(*_watched(kinds.PERSISTENT_VOLUME_CLAIMS), labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY})
async def shared_child_changed(**kwargs: Any) -> None:
    await _shared_changed(kwargs["namespace"], kwargs["name"], kwargs["labels"], _indexes(kwargs))


async def _shared_changed(namespace: str, name: str, labels: Mapping[str, str],
                          indexes: Mapping[str, kopf.Index[Any, Any]]) -> None:
    # Downloads, quantized checkpoints and caches are shared: the resources of the namespace that wait on this
    # one take another look, concurrently (bounded by PARALLEL_PASSES).
    checkpoint_key = labels.get(naming.LABEL_CHECKPOINT_KEY)
    weights_key = labels.get(naming.LABEL_WEIGHTS_KEY)
    waiting = [key for key, store in indexes["resources"].items() if key[0] == namespace
               and any(_waits_on(b, name, checkpoint_key, weights_key) for b in store)]
    await asyncio.gather(*(_reconcile(key, indexes) for key in waiting))


@kopf.on.event(*_watched(kinds.EVENTS), when=_pod_warning)
async def pod_warned(**kwargs: Any) -> None:
    """The kubelet said why a pod does not start: the resource the pod is of takes another look (its own pods and
    preflight pods by their owner label, a shared download's or quantize Job's pods as their Job's waiters)."""
    if kwargs["type"] == "DELETED":  # an hour after its last repeat: the pod's status has long said the rest
        return
    namespace = kwargs["namespace"]
    pod = (kwargs["body"].get("involvedObject") or {}).get("name")
    indexes = _indexes(kwargs)
    owners = {key for index in ("owned_pods", "owned_preflight_pods") for key, store in indexes[index].items()
              if key[0] == namespace and any(p["metadata"]["name"] == pod for p in store)}
    for key in sorted(owners):
        await _reconcile(key, indexes)
    for index in ("download_pods", "quantize_pods"):
        for summary in indexes[index].get(namespace, []):
            if summary["metadata"]["name"] == pod:
                await _shared_changed(namespace, pod, summary["metadata"]["labels"], indexes)


def _waits_on(body: Mapping[str, Any], pvc: str, checkpoint_key: str | None, weights_key: str | None) -> bool:
    status = body.get("status") or {}
    if status.get("phase") not in (None, Phase.PENDING, Phase.PREPARING, Phase.DEGRADED) \
            and not status.get("canaryRevision"):
        return False
    if weights_key is not None:  # a download Job or its pod: those waiting for those weights (or not yet knowing)
        model = status.get("model")
        return (model.get("key") if isinstance(model, Mapping) else None) in (None, weights_key)
    if checkpoint_key is not None:  # a quantize Job: those waiting for that checkpoint (or not yet knowing which)
        return (status.get("quantization") or {}).get("key") in (None, checkpoint_key)
    cache = ((body.get("spec") or {}).get("runtime") or {}).get("cache") or {}
    return bool(cache.get("pvc", DEFAULT_MODEL_CACHE_PVC) == pvc)
