"""The gates a new revision passes before it gets pods: its weights are on the cluster, its checkpoint has the
served precision, its fabric passed the NCCL preflight. Each gate is a step of the pass: it adds what it needs
to the context (the Job, the status, the condition) and returns the Plan that ends the pass when the revision
cannot go on; a revision already serving keeps serving meanwhile. Pure."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from deepseek_operator.api import status as st
from deepseek_operator.api.status import Phase, PreflightState, QuantizationState, Reason, WeightsState
from deepseek_operator.plan.context import PassContext, said_before
from deepseek_operator.plan.observed import ChildRef, Plan
from deepseek_operator.plan.pods import pods_holding_gpus, troubled_pods, unschedulable_pods
from deepseek_operator.render import children, imex, naming, network_policy, preflight, reports, weights
from deepseek_operator.render import quantize as quantization
from deepseek_operator.rollout.clock import epoch, rfc3339
from deepseek_operator.rollout.machine import Event, budget

DOWNLOAD_POLL_S = 3.0  # how often a resource waiting for its weights reads the download's progress


def _held(ctx: PassContext, reason: str, lacking: str = "") -> None:
    """Ready as the serving revision is, and why the new one gets no pods."""
    serving = ctx.old_status.get("stableRevision")
    ctx.conds.set(st.READY, ctx.serving, reason, f"revision {ctx.target.name} {lacking}gets no pods"
                  + (f"; {serving} keeps serving" if serving else ""))


def _waiting(ctx: PassContext, reason: str, ready_message: str, message: str, **plan_kw: Any) -> Plan | None:
    """A gate still open: the new revision gets no pods; the pass ends in Preparing unless a revision serves
    (then the rollout goes on, holding the new revision)."""
    ctx.servable = False
    if ctx.serving:
        return None
    ctx.conds.set(st.READY, False, reason, ready_message)
    ctx.conds.set(st.PROGRESSING, True, reason, message)
    ctx.conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
    return ctx.finish(Phase.PREPARING, **plan_kw)


WAITING_FOR_GPUS = "waiting for one replica's GPUs: a stable replica drains to make room (maxSurge is used up)"


def _room_for_a_job(ctx: PassContext) -> bool:
    """Whether a Job of the new revision that needs one replica's GPUs (quantize, NCCL preflight) may be created
    now: no revision serves yet, or the replicas holding GPUs leave one replica's room within maxSurge. Else the
    rollout drains a stable replica for it first (rollout/capacity.py room_for_a_job) and the Job is created once
    that pod has gone, so its pods never wait Pending behind one that is draining."""
    if not ctx.serving:
        return True
    held = sum(pods_holding_gpus(ctx.observed.pods).values())
    return held + 1 <= budget(ctx.rollout, ctx.spec.serving.replicas).room


def _pod_trouble(ctx: PassContext, pods: Any) -> str:
    """What the kubelet says against the first of a Job's pods that cannot run (a Secret or ConfigMap it mounts
    missing, an image it cannot pull, a crash loop), said once in a Warning event; "" when none is in trouble."""
    trouble = troubled_pods(list(pods))
    if not trouble:
        return ""
    if not said_before(ctx, trouble[0].split(" (exit code")[0]):
        ctx.events.append(Event("Warning", "PodFailing", trouble[0]))
    return trouble[0]


def weights_gate(ctx: PassContext) -> Plan | None:
    download = _download(ctx)
    pending = download.state in (WeightsState.PENDING, WeightsState.DOWNLOADING) and bool(download.job)
    if stuck := (_pod_trouble(ctx, ctx.observed.download_pods.get(download.job, ())) if pending else ""):
        download = replace(download, message=f"{download.message}; its pod cannot run: {stuck}")
    assert ctx.status.model is not None  # set by start
    ctx.status.model = ctx.status.model.model_copy(update=download.status_fields())
    if download.state == WeightsState.FAILED:
        retry = rfc3339(epoch(download.failed_at) + weights.RETRY_AFTER_S) if download.failed_at else "later"
        ctx.conds.set(st.WEIGHTS_READY, False, Reason.DOWNLOAD_FAILED, download.message)
        _held(ctx, Reason.DOWNLOAD_FAILED, "has no weights and ")
        ctx.conds.set(st.DEGRADED, True, Reason.DOWNLOAD_FAILED,
                      f"downloading {weights.location(ctx.spec)} failed: {download.message}; tried again at "
                      f"{retry}, or at once when Job {download.job} is deleted")
        wait = max(1.0, epoch(retry) - epoch(ctx.now)) if download.failed_at else None
        return ctx.finish(Phase.DEGRADED, requeue_after=wait)
    if download.state != WeightsState.READY:
        reason = Reason.DOWNLOADING if download.state == WeightsState.DOWNLOADING else Reason.DOWNLOAD_PENDING
        reason = Reason.CONTAINERS_FAILING if stuck else reason
        ctx.conds.set(st.WEIGHTS_READY, False, reason, download.message)
        return _waiting(ctx, reason, "waiting for the weights", download.message, requeue_after=DOWNLOAD_POLL_S)
    reason = Reason.DOWNLOADED if weights.downloads(ctx.spec) else Reason.ON_VOLUME
    ctx.conds.set(st.WEIGHTS_READY, True, reason, download.message)
    return None


def _download(ctx: PassContext) -> weights.Download:
    """The weights of the revision: read in place from a PVC, or the download Job of their key, created when
    missing and started again RETRY_AFTER_S after it failed."""
    spec, observed = ctx.spec, ctx.observed
    where = weights.location(spec)
    if not weights.downloads(spec):
        return weights.Download(WeightsState.READY, f"read in place from {where}")
    download_key, pvc = weights.key(spec), spec.runtime.cache.pvc
    job_name = naming.download_job_name(download_key)
    before = ctx.old_status.get("model")
    before = before if isinstance(before, Mapping) else {}
    if (pvc_uid := observed.pvc_uids.get(pvc)) is None:
        ctx.apply.append(children.cache_pvc(spec, ctx.owner.namespace))
        download = weights.Download(WeightsState.PENDING, f"waiting for the model cache PVC {pvc}")
    elif (job := observed.download_jobs.get(job_name)) is None:
        ctx.apply.append(weights.job(spec=spec, download_key=download_key, namespace=ctx.owner.namespace,
                                     cr_name=ctx.owner.name, cache_pvc_uid=pvc_uid))
        ctx.events.append(Event("Normal", "DownloadStarted", f"downloading {where} into PVC {pvc} at "
                                f"{weights.cache_subpath(download_key)} with Job {job_name}"))
        download = weights.Download(WeightsState.PENDING, f"download Job {job_name} created")
    else:
        download = weights.observe(job, list(observed.download_pods.get(job_name, ())),
                                   observed.download_progress.get(job_name))
        if download.state == WeightsState.FAILED and download.failed_at and \
                epoch(ctx.now) - epoch(download.failed_at) >= weights.RETRY_AFTER_S:
            ctx.delete.append(ChildRef("batch/v1", "Job", job_name))
            download = weights.Download(WeightsState.PENDING, f"trying again after: {download.message}")
    # A failure is said by the phase change to Degraded (a Warning with reason DownloadFailed).
    if download.state == WeightsState.READY and before.get("state") != WeightsState.READY:
        ctx.events.append(Event("Normal", "DownloadComplete", f"{where}: {download.message}"))
    return replace(download, key=download_key, job=job_name)


def _quantize_job_state(job: dict[str, Any]) -> tuple[QuantizationState, str]:
    if (ended := reports.finished_condition(job)) is not None:
        if ended["type"] == "Complete":
            return QuantizationState.COMPLETE, "quantized checkpoint in the cache"
        detail = f"{ended.get('reason', '')} {ended.get('message', '')}".strip()
        return QuantizationState.FAILED, f"quantize Job failed: {detail}"
    active = job.get("status", {}).get("active", 0)
    return QuantizationState.RUNNING, f"quantize Job running ({active} pod{'s' if active != 1 else ''} active)"


def _quantize(ctx: PassContext) -> tuple[QuantizationState, str, str]:
    """(state, message, Job name) of the checkpoint at the served precision; the quantize Job when it is due."""
    spec, target, key = ctx.spec, ctx.target, ctx.target.key
    if not target.quantize:
        return QuantizationState.NOT_REQUIRED, "served from the checkpoint by the PyTorch backend", ""
    if ctx.status.model is None or ctx.status.model.state != WeightsState.READY:
        return QuantizationState.PENDING, "waiting for the weights to quantize", ""
    if (cache_pvc_uid := ctx.observed.pvc_uids.get(spec.runtime.cache.pvc)) is None:
        ctx.apply.append(children.cache_pvc(spec, ctx.owner.namespace))
        return QuantizationState.PENDING, f"waiting for the model cache PVC {spec.runtime.cache.pvc}", ""
    if (existing := ctx.observed.quantize_jobs.get(naming.quantize_job_name(key))) is not None:
        name = existing["metadata"]["name"]
        state, message = _quantize_job_state(existing)
        pods = ctx.observed.quantize_pods.get(name, ())
        if state == QuantizationState.RUNNING and (stuck := _pod_trouble(ctx, pods)):
            return state, f"{message}; its pod cannot run: {stuck}", name
        return state, message, name
    if not _room_for_a_job(ctx):
        return QuantizationState.RUNNING, f"quantize Job {WAITING_FOR_GPUS}", ""
    target_pods = children.RevisionPods(owner=ctx.owner, spec=spec, gpu=target.gpu, revision=target.name,
                                        checkpoint_key=key, mount_model_cache=True)
    job = quantization.job(target_pods, gpus=target.world // ctx.fit.nodes_per_replica, cache_pvc_uid=cache_pvc_uid)
    ctx.apply.append(job)
    job_name = job["metadata"]["name"]
    ctx.events.append(Event("Normal", "QuantizeStarted",
                            f"quantizing the checkpoint to {spec.model.precision.value} as {key} with Job {job_name}"))
    return QuantizationState.RUNNING, "quantize Job created", job_name


def quantize_gate(ctx: PassContext) -> Plan | None:
    state, message, job_name = _quantize(ctx)
    ctx.status.quantization = st.QuantizationStatus(key=ctx.target.key, state=state, job=job_name, message=message)
    if state == QuantizationState.FAILED:
        ctx.conds.set(st.CHECKPOINT_READY, False, Reason.QUANTIZE_FAILED, message)
        _held(ctx, Reason.QUANTIZE_FAILED, "has no quantized checkpoint and ")
        ctx.conds.set(st.DEGRADED, True, Reason.QUANTIZE_FAILED,
                      f"{message}; delete Job {job_name} to retry once the cause is fixed")
        return ctx.finish(Phase.DEGRADED)
    if state in (QuantizationState.RUNNING, QuantizationState.PENDING):
        reason = Reason.QUANTIZING if state == QuantizationState.RUNNING else Reason.QUANTIZE_PENDING
        reason = Reason.CONTAINERS_FAILING if "its pod cannot run: " in message else reason
        ctx.conds.set(st.CHECKPOINT_READY, False, reason, message)
        if state == QuantizationState.RUNNING:  # its Job needs GPUs a full pool has to make room for
            ctx.waiting["job_running"] = True
        return _waiting(ctx, reason, "waiting for the quantized checkpoint", message)
    reason = Reason.QUANTIZED if state == QuantizationState.COMPLETE else Reason.AS_PUBLISHED
    ctx.conds.set(st.CHECKPOINT_READY, True, reason, message)
    return None


_PREFLIGHT_REASONS = {PreflightState.PASSED: (True, Reason.PREFLIGHT_PASSED),
                      PreflightState.FAILED: (False, Reason.PREFLIGHT_FAILED),
                      PreflightState.RUNNING: (None, Reason.PREFLIGHT_RUNNING)}


def _preflight_verdict(ctx: PassContext) -> dict[str, Any] | None:
    """The preflight Job of a new multi-GPU revision and its verdict so far; None when none is due: one GPU,
    turned off, the revision already serves or was rolled back, or its checkpoint is not ready yet (the
    quantize Job holds the GPUs the check needs)."""
    spec, target = ctx.spec, ctx.target
    if not ctx.servable or not preflight.required(spec, target.world) \
            or target.name in (ctx.old_status.get("stableRevision"), ctx.old_status.get("heldRevision")):
        return None
    check = preflight.check_for(spec, target.gpu, target.world, ctx.fit.nodes_per_replica)
    name = preflight.job_name(ctx.owner.name, target.name)
    if name not in ctx.observed.preflight_jobs and not _room_for_a_job(ctx):
        waiting = preflight.status(name=name, revision=target.name, check=check, job_obj=None, pods=(),
                                   previous=None)
        return {**waiting, "message": f"preflight Job {WAITING_FOR_GPUS}"}
    job = preflight.job(owner=ctx.owner, spec=spec, gpu=target.gpu, revision=target.name, check=check,
                        node_affinity=ctx.affinity, tolerations=children.tolerations(spec),
                        shm_size=children.shm_size(check.gpus_per_node))
    if imex.needed(target.gpu, check.nodes):  # the check runs over the same multi-node NVLink as the replica
        imex.claim_pod(job["spec"]["template"]["spec"], ctx.owner.name, target.name)
        ctx.apply.append(imex.compute_domain(ctx.owner, target.name, check.nodes))
    ctx.apply += [preflight.rendezvous_service(ctx.owner, target.name), job]
    if check.nodes > 1 and spec.serving.network_policy.enabled:  # its ranks reach each other across nodes
        ctx.apply.append(network_policy.group_policy(ctx.owner, target.name))
    return preflight.status(name=name, revision=target.name, check=check,
                            job_obj=ctx.observed.preflight_jobs.get(name), pods=ctx.observed.preflight_pods,
                            previous=ctx.old_status.get("preflight"))


def stale_preflights(ctx: PassContext) -> list[ChildRef]:
    """Preflight Jobs (and their rendezvous Services, of the same name) of revisions no longer rolled out."""
    keep = ctx.status.preflight.job if ctx.status.preflight else ""
    return [ChildRef(api, kind, name) for name in sorted(ctx.observed.preflight_jobs) if name != keep
            for api, kind in (("batch/v1", "Job"), ("v1", "Service"))]


def preflight_gate(ctx: PassContext) -> Plan | None:
    verdict = _preflight_verdict(ctx)
    if verdict is not None:
        ctx.status.preflight = verdict  # type: ignore[assignment]  # validated on assignment
    # The check of the revision rolled out now, or the last one recorded (that revision serves).
    if shown := ctx.status.preflight:
        value, reason = _PREFLIGHT_REASONS[shown.state]
        ctx.conds.set(st.PREFLIGHT, value, reason, f"revision {shown.revision}: {shown.message}")
    if verdict is not None and verdict["state"] == PreflightState.FAILED:
        _held(ctx, Reason.PREFLIGHT_FAILED)
        ctx.conds.set(st.DEGRADED, True, Reason.PREFLIGHT_FAILED,
                      f"revision {ctx.target.name} failed its NCCL preflight: {verdict['message']}; fix the nodes "
                      f"or spec.network.preflight, then delete Job {verdict['job']} to run it again")
        ctx.delete += stale_preflights(ctx)
        return ctx.finish(Phase.DEGRADED)
    if verdict is not None and verdict["state"] == PreflightState.RUNNING:
        ctx.servable = False
        ctx.waiting = {"waiting_for": "its NCCL preflight", "wait_reason": Reason.PREFLIGHT_RUNNING,
                       "job_running": True}
        pods = [p for p in ctx.observed.preflight_pods
                if (p["metadata"].get("labels") or {}).get("batch.kubernetes.io/job-name") == verdict["job"]]
        if stuck := _pod_trouble(ctx, pods):
            ctx.waiting = {"waiting_for": f"its NCCL preflight, whose pod cannot run: {stuck}",
                           "wait_reason": Reason.CONTAINERS_FAILING, "job_running": True}
            ctx.conds.set(st.PREFLIGHT, None, Reason.CONTAINERS_FAILING,
                          f"revision {verdict['revision']}: its pod cannot run: {stuck}")
        elif unplaced := unschedulable_pods(tuple(pods), verdict["revision"]):
            # The surge's GPUs may not exist (a full pool with maxSurge above 0): the scheduler's words, not "running".
            ctx.waiting = {"waiting_for": f"its NCCL preflight, whose pod the scheduler cannot place: {unplaced[0]}",
                           "wait_reason": Reason.UNSCHEDULABLE, "job_running": True}
            ctx.conds.set(st.PREFLIGHT, None, Reason.UNSCHEDULABLE,
                          f"revision {verdict['revision']}: its pod is not scheduled: {unplaced[0]}")
    return None
