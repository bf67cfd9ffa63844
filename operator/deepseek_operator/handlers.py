"""kopf registrations only: watches keep in-memory indexes, and every change reconciles the resource it concerns.

Events of the DeepSeekDeployment itself and of its children (Deployments, ConfigMaps, engine Jobs, ...) all
lead to the same reconcile; the indexes make `observe` free of API reads, and unchanged children and status
are never re-sent, so a resync with nothing new writes nothing.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

import kopf
from kubernetes import client, config

from deepseek_operator import __version__
from deepseek_operator.api.spec import GROUP, PLURAL, VERSION
from deepseek_operator.k8s.client import Kube
from deepseek_operator.k8s.reconcile import Summary, observe, reconcile, summarize
from deepseek_operator.render import naming

LOG = logging.getLogger(__name__)
OURS = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY}
_locks: defaultdict[tuple[str, str], asyncio.Lock] = defaultdict(asyncio.Lock)
_kube: Kube | None = None


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
    logger.info("deepseek-operator %s starting", __version__)


# ------------------------------------------------------------------ indexes


@kopf.index(GROUP, VERSION, PLURAL)
def resources(**kw: Any) -> dict[Any, Any]:
    return {(kw["namespace"], kw["name"]): dict(kw["body"])}


def _owned(kw: Mapping[str, Any]) -> dict[Any, Any] | None:
    owner = kw["labels"].get(naming.LABEL_DEPLOYMENT)
    return {(kw["namespace"], owner): summarize(kw["body"])} if owner else None


@kopf.index("apps", "v1", "deployments", labels=OURS)
def owned_deployments(**kw: Any) -> Any:
    return _owned(kw)


@kopf.index("", "v1", "configmaps", labels=OURS)
def owned_configmaps(**kw: Any) -> Any:
    return _owned(kw)


@kopf.index("", "v1", "services", labels=OURS)
def owned_services(**kw: Any) -> Any:
    return _owned(kw)


@kopf.index("policy", "v1", "poddisruptionbudgets", labels=OURS)
def owned_pdbs(**kw: Any) -> Any:
    return _owned(kw)


SERVING_PODS = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_SERVER}


@kopf.index("", "v1", "pods", labels=SERVING_PODS)
def owned_pods(**kw: Any) -> Any:
    return _owned(kw)


@kopf.index("batch", "v1", "jobs", labels={naming.LABEL_COMPONENT: naming.COMPONENT_ENGINE_BUILD})
def engine_jobs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


@kopf.index("", "v1", "persistentvolumeclaims")
def pvcs(**kw: Any) -> dict[Any, Any]:
    return {kw["namespace"]: summarize(kw["body"])}


# ------------------------------------------------------------------ reconcile triggers


async def _reconcile(key: tuple[str, str], indexes: Mapping[str, kopf.Index[Any, Any]]) -> None:
    async with _locks[key]:
        store = indexes["resources"].get(key)
        if not store:
            return
        body = next(iter(store))
        if body["metadata"].get("deletionTimestamp"):
            return
        owned: dict[str, list[Summary]] = {
            kind: list(indexes[index].get(key, []))
            for kind, index in (("Deployment", "owned_deployments"), ("ConfigMap", "owned_configmaps"),
                                ("Service", "owned_services"), ("PodDisruptionBudget", "owned_pdbs"),
                                ("Pod", "owned_pods"))
        }
        namespace = key[0]
        observed = observe(body, owned, list(indexes["pvcs"].get(namespace, [])),
                           list(indexes["engine_jobs"].get(namespace, [])))
        assert _kube is not None
        await asyncio.to_thread(reconcile, _kube, body, observed)


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    names = ("resources", "owned_deployments", "owned_configmaps", "owned_services", "owned_pdbs", "owned_pods",
             "engine_jobs", "pvcs")
    return {n: kwargs[n] for n in names}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    if kwargs["type"] == "DELETED":
        _locks.pop((namespace, name), None)
        return  # children carry owner references: the garbage collector removes them
    await _reconcile((namespace, name), _indexes(kwargs))


@kopf.on.event("apps", "v1", "deployments", labels=OURS)
@kopf.on.event("", "v1", "configmaps", labels=OURS)
@kopf.on.event("", "v1", "services", labels=OURS)
@kopf.on.event("policy", "v1", "poddisruptionbudgets", labels=OURS)
@kopf.on.event("", "v1", "pods", labels=SERVING_PODS)
async def child_changed(**kwargs: Any) -> None:
    if owner := kwargs["labels"].get(naming.LABEL_DEPLOYMENT):
        await _reconcile((kwargs["namespace"], owner), _indexes(kwargs))


@kopf.on.event("batch", "v1", "jobs", labels={naming.LABEL_COMPONENT: naming.COMPONENT_ENGINE_BUILD})
@kopf.on.event("", "v1", "persistentvolumeclaims", labels={naming.LABEL_MANAGED_BY: naming.MANAGED_BY})
async def shared_child_changed(**kwargs: Any) -> None:
    namespace = kwargs["namespace"]
    # Engines and caches are shared: every resource of the namespace waiting on one takes another look.
    indexes = _indexes(kwargs)
    waiting = [key for key, store in indexes["resources"].items() if key[0] == namespace
               and any((b.get("status") or {}).get("phase") in (None, "Pending", "Building", "Degraded")
                       for b in store)]
    for key in waiting:
        await _reconcile(key, indexes)
