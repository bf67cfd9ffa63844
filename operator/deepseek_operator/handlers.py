"""kopf registrations only: watches keep in-memory indexes, and every change reconciles the resource it concerns.

Events of the DeepSeekDeployment itself and of its children (Deployments, ConfigMaps, engine Jobs, ...) all
lead to the same reconcile; the indexes make `observe` free of API reads, and unchanged children and status
are never re-sent, so a resync with nothing new writes nothing.
"""

from __future__ import annotations

import asyncio
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


SERVING_PODS = {**OURS, naming.LABEL_COMPONENT: naming.COMPONENT_SERVER}
# Children each resource owns, indexed by (namespace, owner): kind -> (group, plural, label selector, index id).
OWNED = {
    "Deployment": ("apps", "deployments", OURS, "owned_deployments"),
    "ConfigMap": ("", "configmaps", OURS, "owned_configmaps"),
    "Service": ("", "services", OURS, "owned_services"),
    "PodDisruptionBudget": ("policy", "poddisruptionbudgets", OURS, "owned_pdbs"),
    "Pod": ("", "pods", SERVING_PODS, "owned_pods"),
}


def _owned(**kw: Any) -> dict[Any, Any] | None:
    owner = kw["labels"].get(naming.LABEL_DEPLOYMENT)
    return {(kw["namespace"], owner): summarize(kw["body"])} if owner else None


for _group, _plural, _labels, _index in OWNED.values():
    kopf.index(_group, "v1", _plural, labels=_labels, id=_index)(_owned)


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
        owned: dict[str, list[Summary]] = {kind: list(indexes[index].get(key, []))
                                           for kind, (_, _, _, index) in OWNED.items()}
        namespace = key[0]
        observed = observe(body, owned, list(indexes["pvcs"].get(namespace, [])),
                           list(indexes["engine_jobs"].get(namespace, [])))
        assert _kube is not None
        await asyncio.to_thread(reconcile, _kube, body, observed)


def _indexes(kwargs: Mapping[str, Any]) -> dict[str, kopf.Index[Any, Any]]:
    names = ("resources", "engine_jobs", "pvcs", *(index for _, _, _, index in OWNED.values()))
    return {n: kwargs[n] for n in names}


@kopf.on.event(GROUP, VERSION, PLURAL)
async def resource_changed(**kwargs: Any) -> None:
    namespace, name = kwargs["namespace"], kwargs["name"]
    if kwargs["type"] == "DELETED":
        _locks.pop((namespace, name), None)
        return  # children carry owner references: the garbage collector removes them
    await _reconcile((namespace, name), _indexes(kwargs))


async def child_changed(**kwargs: Any) -> None:
    if owner := kwargs["labels"].get(naming.LABEL_DEPLOYMENT):
        await _reconcile((kwargs["namespace"], owner), _indexes(kwargs))


for _group, _plural, _labels, _index in OWNED.values():
    kopf.on.event(_group, "v1", _plural, labels=_labels, id=f"{_index}_changed")(child_changed)


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
