"""One reconcile pass: observe (from the in-memory indexes the watches keep) → plan (pure) → apply → status."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from kubernetes.client.exceptions import ApiException

from deepseek_operator.k8s import metrics
from deepseek_operator.k8s.client import Kube
from deepseek_operator.k8s.scheduler import PassResult
from deepseek_operator.plan import Observed, PassContext, Plan, download_progress_request, run, start
from deepseek_operator.plan.rollout import analysis_request
from deepseek_operator.providers import download_progress, provider_for
from deepseek_operator.render import naming, weights

# A child as the indexes keep it: enough to plan with, small enough for thousands of resources.
Summary = dict[str, Any]


def summarize(body: Mapping[str, Any]) -> Summary:
    meta = body["metadata"]
    return {
        "apiVersion": body.get("apiVersion"), "kind": body.get("kind"),
        "metadata": {"name": meta["name"], "namespace": meta.get("namespace"), "uid": meta.get("uid"),
                     "generation": meta.get("generation", 0), "labels": dict(meta.get("labels") or {}),
                     "annotations": {k: v for k, v in (meta.get("annotations") or {}).items()
                                     if k == naming.ANNOTATION_APPLIED_HASH}},
        "status": dict(body.get("status") or {}),
        # Only what drift checks need of the spec: the replica count someone may have scaled by hand.
        "spec": {"replicas": body["spec"]["replicas"]} if "replicas" in (body.get("spec") or {}) else {},
    }


def observe(body: Mapping[str, Any], owned: Mapping[str, list[Summary]], pvcs: list[Summary],
            jobs: list[Summary], lws_installed: bool = False, download_jobs: Sequence[Summary] = (),
            download_pods: Sequence[Summary] = ()) -> Observed:
    """Turns what the indexes hold for one resource (and its namespace's shared objects) into the planner's input."""
    hashes: dict[tuple[str, str], str] = {}
    pods_by_job: dict[str, list[Summary]] = {}
    for pod in download_pods:
        if job_name := pod["metadata"]["labels"].get("batch.kubernetes.io/job-name"):
            pods_by_job.setdefault(job_name, []).append(pod)
    for item in [*(i for kind, items in owned.items() if not kind.endswith("Pod") for i in items), *pvcs, *jobs,
                 *download_jobs]:
        applied = item["metadata"]["annotations"].get(naming.ANNOTATION_APPLIED_HASH)
        if applied:
            hashes[(item["kind"], item["metadata"]["name"])] = applied
    return Observed(
        deployments={d["metadata"]["name"]: d for d in owned.get("Deployment", [])
                     if d["metadata"]["labels"].get(naming.LABEL_COMPONENT) == naming.COMPONENT_SERVER},
        http_routes=tuple(sorted(r["metadata"]["name"] for r in owned.get("HTTPRoute", []))),
        pods=tuple(owned.get("Pod", [])),
        model_repo_configmaps=tuple(sorted(c["metadata"]["name"] for c in owned.get("ConfigMap", [])
                                           if c["metadata"]["labels"].get(naming.LABEL_COMPONENT)
                                           == naming.COMPONENT_MODEL_REPO)),
        pvc_uids={p["metadata"]["name"]: p["metadata"]["uid"] for p in pvcs},
        quantize_jobs={j["metadata"]["name"]: j for j in jobs},
        download_jobs={j["metadata"]["name"]: j for j in download_jobs},
        download_pods={name: tuple(pods) for name, pods in pods_by_job.items()},
        statefulsets={s["metadata"]["name"]: s for s in owned.get("StatefulSet", [])},
        leader_worker_sets={s["metadata"]["name"]: s for s in owned.get("LeaderWorkerSet", [])},
        lws_installed=lws_installed,
        preflight_jobs={j["metadata"]["name"]: j for j in owned.get("Job", [])},
        preflight_pods=tuple(owned.get("PreflightPod", [])),
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
        provider = provider_for(request.provider, kube.read_secret)
        observed = replace(observed, measurement=provider.measure(request))
    return ctx.with_observed(observed)


def reconcile(kube: Kube, body: Mapping[str, Any], observed: Observed) -> PassResult:
    """Runs one pass: observe the metrics it needs, plan, apply, delete, post events, write the status."""
    began = time.monotonic()
    try:
        context = start(dict(body), observed, now_rfc3339())
        result = context if isinstance(context, Plan) else run(measure(kube, body, context))
        meta = body["metadata"]
        for secret in result.ssh_secrets:  # before the pods that mount it
            kube.ensure_ssh_secret(secret)
        for obj in result.apply:
            kube.apply(obj)
        for ref in result.delete:
            kube.delete(ref.api_version, ref.kind, meta["namespace"], ref.name)
        for event in result.events:
            kube.event(dict(body), event.type, event.reason, event.message)
        old_status = dict(body.get("status") or {})
        wrote = False
        if _comparable(old_status) != _comparable(result.status):
            try:
                version = kube.write_status(meta["namespace"], meta["name"], old_status, result.status)
                # A write the server found to change nothing keeps the version and sends no watch event: the body
                # of this pass is then not stale, and treating it so would wait for an event that never comes.
                wrote = version != meta.get("resourceVersion")
            except ApiException as e:
                if e.status != 404:  # deleted meanwhile: nothing to report to
                    raise
        metrics.record_rollout(meta["namespace"], meta["name"], result.typed, result.outcome, result.verdict)
        return PassResult(result.requeue_after, wrote)
    except Exception:
        metrics.RECONCILE_ERRORS.inc()
        raise
    finally:
        metrics.RECONCILE_SECONDS.observe(time.monotonic() - began)


def _comparable(status: Mapping[str, Any]) -> Any:
    return {k: v for k, v in status.items() if v is not None}
