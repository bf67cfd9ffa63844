"""One reconcile pass: observe (from the in-memory indexes the watches keep) → plan (pure) → apply → status."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from deepseek_operator.api.sources import MetricSource
from deepseek_operator.api.status import Phase, Reason
from deepseek_operator.k8s import metrics
from deepseek_operator.k8s.client import Kube
from deepseek_operator.k8s.scheduler import PassResult
from deepseek_operator.plan import Observed, PassContext, Plan, download_progress_request, run, start
from deepseek_operator.plan.pods import WARNING
from deepseek_operator.plan.rollout import analysis_request
from deepseek_operator.plan.status import (
    POLICY_HOLD,
    fail_closed,
    rejected_children_message,
    retry_after,
    with_trouble,
)
from deepseek_operator.providers import download_progress, mirror, provider_for
from deepseek_operator.render import naming, weights
from deepseek_operator.rollout.machine import Event

LOG = logging.getLogger(__name__)
# A child as the indexes keep it: enough to plan with, small enough for thousands of resources.
Summary = dict[str, Any]


def summarize(body: Mapping[str, Any]) -> Summary:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                     "generation": meta.get("generation", 0), "labels": dict(meta.get("labels") or {}),
                     "creationTimestamp": meta.get("creationTimestamp"),
                     # A pod being deleted drains: no longer one to measure or to call in trouble.
                     **({"deletionTimestamp": meta["deletionTimestamp"]} if meta.get("deletionTimestamp") else {}),
                     "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                     if k == naming.ANNOTATION_APPLIED_HASH}},
        "status": dict(body.get("status") or {}),
        # Only what drift checks need of the spec: the replica count someone may have scaled by hand.
        "spec": {"replicas": body["spec"]["replicas"]} if "replicas" in (body.get("spec") or {}) else {},
    }


def event_summary(body: Mapping[str, Any]) -> Summary:
    """A Warning event about a pod, as the events index keeps it: which pod (its uid), why, and when last."""
    meta, involved = body.get("metadata") or {}, body.get("involvedObject") or {}
    return {"uid": involved.get("uid"), "reason": body.get("reason"), "message": body.get("message") or "",
            "count": body.get("count") or 1,
            "last": body.get("lastTimestamp") or body.get("eventTime") or meta.get("creationTimestamp") or ""}


def with_warnings(pods: Sequence[Summary], warnings: Mapping[str, Sequence[Summary]]) -> list[Summary]:
    """The pods, each with the newest Warning event the kubelet posted on it (the same pod: its uid) under
    plan.pods.WARNING."""
    out = []
    for pod in pods:
        meta = pod["metadata"]
        mine = [w for w in warnings.get(meta["name"], ()) if w.get("uid") in (None, meta.get("uid"))]
        if mine:
            newest = max(mine, key=lambda w: str(w.get("last") or ""))
            pod = {**pod, WARNING: {"reason": newest["reason"], "message": newest["message"]}}
        out.append(pod)
    return out


def _by_job(pods: Sequence[Summary]) -> dict[str, tuple[Summary, ...]]:
    out: dict[str, list[Summary]] = {}
    for pod in pods:
        if job_name := pod["metadata"]["labels"].get("batch.kubernetes.io/job-name"):
            out.setdefault(job_name, []).append(pod)
    return {name: tuple(found) for name, found in out.items()}


def observe(body: Mapping[str, Any], owned: Mapping[str, list[Summary]], pvcs: list[Summary],
            jobs: list[Summary], lws_installed: bool = False, keda_installed: bool = False,
            compute_domains_installed: bool = False,
            download_jobs: Sequence[Summary] = (),
            download_pods: Sequence[Summary] = (), metric_sources: Mapping[str, MetricSource] | None = None,
            operator_namespace: str | None = None, quantize_pods: Sequence[Summary] = (),
            pod_warnings: Mapping[str, Sequence[Summary]] | None = None) -> Observed:
    """Turns what the indexes hold for one resource (and its namespace's shared objects) into the planner's input;
    `pod_warnings` are the kubelet's Warning events of the namespace's pods, by pod name (event_summary)."""
    hashes: dict[tuple[str, str], str] = {}
    warnings = pod_warnings or {}
    for item in [*(i for kind, items in owned.items() if not kind.endswith("Pod") for i in items), *pvcs, *jobs,
                 *download_jobs]:
        applied = item["metadata"]["annotations"].get(naming.ANNOTATION_APPLIED_HASH)
        if applied:
            hashes[(item["kind"], item["metadata"]["name"])] = applied
    return Observed(
        deployments={d["metadata"]["name"]: d for d in owned.get("Deployment", [])
                     if d["metadata"]["labels"].get(naming.LABEL_COMPONENT) == naming.COMPONENT_SERVER},
        http_routes=tuple(sorted(r["metadata"]["name"] for r in owned.get("HTTPRoute", []))),
        routes={r["metadata"]["name"]: r for r in owned.get("HTTPRoute", [])},
        pods=tuple(with_warnings(owned.get("Pod", []), warnings)),
        model_repo_configmaps=tuple(sorted(c["metadata"]["name"] for c in owned.get("ConfigMap", [])
                                           if c["metadata"]["labels"].get(naming.LABEL_COMPONENT)
                                           == naming.COMPONENT_MODEL_REPO)),
        pvc_uids={p["metadata"]["name"]: p["metadata"]["uid"] for p in pvcs},
        quantize_jobs={j["metadata"]["name"]: j for j in jobs},
        download_jobs={j["metadata"]["name"]: j for j in download_jobs},
        download_pods=_by_job(with_warnings(download_pods, warnings)),
        quantize_pods=_by_job(with_warnings(quantize_pods, warnings)),
        statefulsets={s["metadata"]["name"]: s for s in owned.get("StatefulSet", [])},
        leader_worker_sets={s["metadata"]["name"]: s for s in owned.get("LeaderWorkerSet", [])},
        lws_installed=lws_installed,
        keda_installed=keda_installed,
        compute_domains_installed=compute_domains_installed,
        scalers={kind: items[0] for kind in ("ScaledObject", "HorizontalPodAutoscaler")
                 if (items := owned.get(kind))},
        metric_sources=metric_sources or {},
        operator_namespace=operator_namespace,
        network_policies=tuple(sorted(p["metadata"]["name"] for p in owned.get("NetworkPolicy", []))),
        preflight_jobs={j["metadata"]["name"]: j for j in owned.get("Job", [])},
        preflight_pods=tuple(with_warnings(owned.get("PreflightPod", []), warnings)),
        applied_hashes=hashes,
    )


def now_rfc3339() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def measure(kube: Kube, body: Mapping[str, Any], ctx: PassContext) -> PassContext:
    """The reads a pass makes beyond the indexes: the download pod's progress while the weights download, and
    the metric provider's figures for the canary when the analysis is due."""
    observed = ctx.observed
    if (asked := download_progress_request(body, observed)) is not None:
        job_name, pod_ip = asked
        if (progress := download_progress.read(pod_ip, weights.PROGRESS_PORT)) is not None:
            observed = replace(observed, download_progress={job_name: progress})
    request = analysis_request(ctx)
    if request is not None:
        provider = provider_for(request.provider)
        observed = replace(observed, measurement=provider.measure(request))
    return ctx.with_observed(observed)


# What the API server answers when it refuses an object as written (invalid, forbidden by a policy or a quota, its
# API not served): the pass goes on with the other children and reports it. Other errors (5xx, connection
# errors) fail the pass, which the scheduler retries.
REFUSED = frozenset({400, 403, 404, 409, 422})


def _refusal(err: ApiException) -> str:
    try:
        message = json.loads(err.body or "{}").get("message")
    except (TypeError, ValueError):
        message = None
    return str(message or f"{err.status} {err.reason}")


def reconcile(kube: Kube, body: Mapping[str, Any], observed: Observed) -> PassResult:
    """Runs one pass: observe the metrics it needs, plan, apply, delete, post events, write the status.

    A child the API server refuses is reported in status (Degraded, reason ChildRejected, quoting the API server)
    while the other children are still applied; a pass that raises (a bug in planning) is reported as
    ReconcileError. Both are retried with back-off and said in a Warning event once per distinct message."""
    began = time.monotonic()
    meta = body["metadata"]
    old_status = dict(body.get("status") or {})
    now = now_rfc3339()
    generation = int(meta.get("generation", 1))
    try:
        try:
            observed = replace(observed, pod_security=kube.pod_security(meta["namespace"]))
            context = start(dict(body), observed, now)
            result = context if isinstance(context, Plan) else run(measure(kube, body, context))
        except ApiException:
            raise  # a read of measure(): the API server's trouble, not the plan's
        except Exception as err:  # a bug: this resource says so, the others go on
            LOG.exception("the pass of %s/%s failed", meta.get("namespace"), meta["name"])
            metrics.RECONCILE_ERRORS.inc()
            message = (f"the operator's pass failed: {type(err).__name__}: {err}; it is retried with back-off "
                       "(see the operator's log)")[:2048]
            status, event = with_trouble(old_status or {"phase": Phase.PENDING}, old_status, Reason.RECONCILE_ERROR,
                                         message, generation, now)
            status["observedGeneration"] = generation
            events = [event] if event else []
            wrote = _write(kube, body, old_status, status, events)
            return PassResult(retry_after(old_status, Reason.RECONCILE_ERROR, now), wrote)
        for secret in result.ssh_secrets:  # before the pods that mount it
            kube.ensure_ssh_secret(secret)
        refused: list[tuple[str, str]] = []
        # The NetworkPolicies first: while one is refused, nothing that starts a pod it should guard is applied.
        policies = [o for o in result.apply if o["kind"] == "NetworkPolicy"]
        others = [o for o in result.apply if o["kind"] != "NetworkPolicy"]
        for obj in policies:
            _apply(kube, obj, refused)
        held: list[str] = []
        if refused:
            others, held = fail_closed(others, observed)
        for obj in others:
            _apply(kube, obj, refused)
        for ref in result.delete:
            kube.delete(ref.api_version, ref.kind, meta["namespace"], ref.name)
        mirror.send_all(result.mirror)  # the stable pods' share of traffic to the canary (best effort)
        status, events, requeue = result.status, list(result.events), result.requeue_after
        if refused:
            message = rejected_children_message(refused) + (
                f"{POLICY_HOLD} (held back: {', '.join(held)})" if held else "")
            status, event = with_trouble(status, old_status, Reason.CHILD_REJECTED, message, generation, now)
            events = [e for e in events if e.type != "Warning"] + ([event] if event else [])
            requeue = retry_after(old_status, Reason.CHILD_REJECTED, now)  # no sooner: nothing moves meanwhile
        wrote = _write(kube, body, old_status, status, events)
        metrics.record_rollout(meta["namespace"], meta["name"], result.typed, result.outcome, result.verdict)
        return PassResult(requeue, wrote)
    except Exception:
        metrics.RECONCILE_ERRORS.inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - began)


def _apply(kube: Kube, obj: dict[str, Any], refused: list[tuple[str, str]]) -> None:
    try:
        kube.apply(obj)
    except ApiException as err:
        if err.status not in REFUSED:
            raise
        refused.append((f"{obj['kind']} {obj['metadata']['name']}", _refusal(err)))


def _write(kube: Kube, body: Mapping[str, Any], old_status: dict[str, Any], status: dict[str, Any],
           events: list[Event]) -> bool:
    """Posts the events and writes the status when it changed; whether the write changed the resource."""
    meta = body["metadata"]
    for event in events:
        kube.event(dict(body), event.type, event.reason, event.message)
    if _comparable(old_status) == _comparable(status):
        return False
    try:
        version = kube.write_status(meta["namespace"], meta["name"], old_status, status)
    except ApiException as e:
        if e.status != 404:  # deleted meanwhile: nothing to report to
            raise
        return False
    # A write the server found to change nothing keeps the version and sends no watch event: the body of this
    # pass is then not stale, and treating it so would wait for an event that never comes.
    return bool(version != meta.get("resourceVersion"))


def _comparable(status: Mapping[str, Any]) -> Any:
    return {k: v for k, v in status.items() if v is not None}
