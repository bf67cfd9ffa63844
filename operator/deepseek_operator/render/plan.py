"""plan(resource, observed, now) -> Plan: every decision of one reconcile pass, with no I/O.

The k8s/ layer observes once, calls plan, applies `Plan.apply` with server-side apply, deletes `Plan.delete`,
posts `Plan.events` and writes `Plan.status` only when it differs from what the resource already has.
A spec that cannot work changes nothing that already runs: it is reported in conditions and events only.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import status as st
from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.api.status import Reason
from deepseek_operator.render import catalog, children, naming, sizing, triton
from deepseek_operator.render import engine as engines


@dataclass(frozen=True)
class Observed:
    """What one pass saw of the resource's world, read once before planning."""

    deployment: dict[str, Any] | None = None
    model_repo_configmaps: tuple[str, ...] = ()
    pods: tuple[dict[str, Any], ...] = ()  # the serving pods, as summaries (labels, status)
    pvc_uids: Mapping[str, str] = field(default_factory=dict)  # PVCs of the namespace, by name
    engine_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # engine build Jobs, by name
    # (kind, name) -> the applied-hash annotation of each child as it is now: unchanged children are not re-applied.
    applied_hashes: Mapping[tuple[str, str], str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    type: str  # Normal | Warning
    reason: str
    message: str


@dataclass(frozen=True)
class ChildRef:
    api_version: str
    kind: str
    name: str


@dataclass(frozen=True)
class Plan:
    status: dict[str, Any]
    apply: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ChildRef] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


@dataclass
class _Conditions:
    """Builds the condition list, keeping lastTransitionTime of conditions whose status did not change."""

    generation: int
    now: str
    previous: dict[str, dict[str, Any]]
    items: list[dict[str, Any]] = field(default_factory=list)

    def set(self, ctype: str, value: bool | None, reason: str, message: str = "") -> None:
        status = "Unknown" if value is None else ("True" if value else "False")
        prev = self.previous.get(ctype)
        since = prev["lastTransitionTime"] if prev and prev.get("status") == status else self.now
        self.items.append({"type": ctype, "status": status, "observedGeneration": self.generation,
                           "lastTransitionTime": since, "reason": reason, "message": message})


def validation_message(err: ValidationError) -> str:
    parts = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"])
        parts.append(f"spec.{path}: {e['msg']}" if path else f"spec: {e['msg']}")
    return "; ".join(parts)


def _job_state(job: dict[str, Any]) -> tuple[str, str]:
    for cond in job.get("status", {}).get("conditions") or []:
        if cond.get("status") != "True":
            continue
        if cond.get("type") == "Complete":
            return "Cached", "engine built"
        if cond.get("type") == "Failed":
            return "Failed", f"build Job failed: {cond.get('reason', '')} {cond.get('message', '')}".strip()
    active = job.get("status", {}).get("active", 0)
    return "Building", f"build Job running ({active} pod{'s' if active != 1 else ''} active)"


_PHASE_CONDITION = {"Degraded": st.DEGRADED, "Building": st.ENGINE_READY, "Progressing": st.READY,
                    "Healthy": st.READY, "Pending": st.READY}


def _events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """What was decided, said once: the hardware verdict when it changes, and every change of phase with the
    condition that explains it (a Warning when the resource is Degraded)."""
    out = []
    before = {c["type"]: c for c in old.get("conditions") or []}
    after = {c["type"]: c for c in new.get("conditions") or []}
    fits, fitted = after.get(st.FITS_HARDWARE), before.get(st.FITS_HARDWARE)
    if fits and (fitted is None or (fitted["status"], fitted["reason"]) != (fits["status"], fits["reason"])):
        out.append(Event("Normal" if fits["status"] == "True" else "Warning", fits["reason"], fits["message"]))
    phase = new["phase"]
    explained = after.get(_PHASE_CONDITION[phase])
    said_by_verdict = fits is not None and fits["status"] == "False" and explained is not None \
        and explained["reason"] == fits["reason"]
    if explained and (old.get("phase") != phase or _reason_changed(before, explained)) and not said_by_verdict:
        message = f"{phase}: {explained['message']}" if explained["message"] else phase
        out.append(Event("Warning" if phase == "Degraded" else "Normal", explained["reason"], message))
    return out


def _reason_changed(before: dict[str, dict[str, Any]], condition: dict[str, Any]) -> bool:
    prev = before.get(condition["type"])
    return prev is None or prev["reason"] != condition["reason"]


def with_applied_hash(obj: dict[str, Any]) -> dict[str, Any]:
    """The object with an annotation hashing its desired state, so an unchanged child is never re-sent."""
    meta = obj["metadata"]
    hashed = {**obj, "metadata": {k: v for k, v in meta.items() if k != "annotations"}}
    annotations = {**meta.get("annotations", {}), naming.ANNOTATION_APPLIED_HASH: naming.digest(hashed, 16)}
    return {**obj, "metadata": {**meta, "annotations": annotations}}


def _changed(objects: list[dict[str, Any]], observed: Observed) -> list[dict[str, Any]]:
    out = []
    for obj in map(with_applied_hash, objects):
        key = (obj["kind"], obj["metadata"]["name"])
        if observed.applied_hashes.get(key) != obj["metadata"]["annotations"][naming.ANNOTATION_APPLIED_HASH] \
                or _drifted(obj, observed):
            out.append(obj)
    return out


def _drifted(obj: dict[str, Any], observed: Observed) -> bool:
    """A hand edit the hash cannot see: `kubectl scale` of the serving Deployment is put back."""
    live = observed.deployment
    if obj["kind"] != "Deployment" or live is None or live["metadata"]["name"] != obj["metadata"]["name"]:
        return False
    return bool((live.get("spec") or {}).get("replicas") != obj["spec"]["replicas"])


def _finish(body: dict[str, Any], conds: _Conditions, status: dict[str, Any], plan_kw: dict[str, Any],
            observed: Observed | None = None) -> Plan:
    if "apply" in plan_kw:
        plan_kw["apply"] = _changed(plan_kw["apply"], observed or Observed())
    status = {**status, "observedGeneration": conds.generation, "conditions": conds.items}
    checked = st.DeepSeekDeploymentStatus.model_validate(status)
    rendered = checked.model_dump(by_alias=True, exclude_none=True)
    return Plan(status=rendered, events=[*plan_kw.pop("events", []), *_events(body.get("status") or {}, rendered)],
                **plan_kw)


def plan(body: dict[str, Any], observed: Observed, now: str) -> Plan:
    meta = body["metadata"]
    generation = int(meta.get("generation", 1))
    old_status = body.get("status") or {}
    conds = _Conditions(generation, now, {c["type"]: c for c in old_status.get("conditions") or []})
    keep = {k: old_status[k] for k in ("revision", "replicas", "readyReplicas", "ready") if k in old_status}

    try:
        spec = DeepSeekDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        message = validation_message(err)
        conds.set(st.READY, False, Reason.INVALID_SPEC, message)
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
        return _finish(body, conds, {**keep, "phase": "Degraded"}, {})

    try:
        model = catalog.custom_model(spec.model.custom) if spec.model.custom else catalog.MODELS[spec.model.name]
    except ValueError as err:  # custom figures that no model can have
        message = f"spec.model.custom: {err}"
        conds.set(st.READY, False, Reason.INVALID_SPEC, message)
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
        return _finish(body, conds, {**keep, "phase": "Degraded"}, {})
    gpu = catalog.GPUS[spec.serving.gpu.type]
    tp, pp = spec.engine.tensor_parallel, spec.engine.pipeline_parallel
    fit = sizing.size(sizing.SizingRequest(
        model=model, precision=spec.model.precision, gpu=gpu, gpus_per_node=spec.serving.gpu.per_node,
        max_batch_size=spec.engine.max_batch_size, max_seq_len=spec.engine.max_seq_len,
        kv_cache_free_gpu_mem_fraction=spec.serving.batching.kv_cache_free_gpu_mem_fraction,
        tensor_parallel=None if tp == "auto" else tp, pipeline_parallel=None if pp == "auto" else pp))
    base = {**keep, "model": f"{spec.model.name}@{spec.model.precision.value}",
            "sizing": {"weightsGb": round(fit.weights_gb, 1), "kvCacheGb": round(fit.kv_cache_gb, 1),
                       "needPerGpuGb": round(fit.need_per_gpu_gb, 1),
                       "budgetPerGpuGb": round(fit.budget_per_gpu_gb, 1)}}
    if not fit.fits:
        conds.set(st.FITS_HARDWARE, False, fit.reason, fit.message)
        conds.set(st.READY, False, fit.reason, "the model does not fit the requested GPUs; nothing was changed")
        conds.set(st.DEGRADED, True, fit.reason, fit.message)
        return _finish(body, conds, {**base, "phase": "Degraded"}, {})
    conds.set(st.FITS_HARDWARE, True, Reason.FITS, fit.message)
    layout = engines.EngineLayout(model.architecture, fit.tensor_parallel, fit.pipeline_parallel)
    base["parallelism"] = {"tensor": fit.tensor_parallel, "pipeline": fit.pipeline_parallel,
                           "nodesPerReplica": fit.nodes_per_replica, "gpusPerReplica": fit.gpus_per_replica}
    if fit.nodes_per_replica > 1:
        message = (f"needs {fit.nodes_per_replica} nodes per replica (pipelineParallel {fit.pipeline_parallel}); "
                   "multi-node serving is not implemented yet: use a GPU type where one node fits")
        conds.set(st.READY, False, Reason.BLOCKED, message)
        conds.set(st.DEGRADED, True, Reason.BLOCKED, message)
        return _finish(body, conds, {**base, "phase": "Degraded"}, {})

    owner = children.Owner(meta["name"], meta["namespace"], meta["uid"])
    key = engines.engine_key(spec, layout)
    repo_params = triton.TritonRepoParams(
        max_batch_size=spec.engine.max_batch_size, decoupled=spec.serving.streaming,
        kv_cache_free_gpu_mem_fraction=spec.serving.batching.kv_cache_free_gpu_mem_fraction,
        batch_scheduler_policy=spec.serving.batching.batch_scheduler_policy,
        engine_dir=engines.engine_dir(key) if engines.needs_build(layout) else engines.checkpoint_dir(spec),
        tokenizer_dir=engines.checkpoint_dir(spec),
        max_queue_delay_microseconds=spec.serving.batching.max_queue_delay_microseconds)
    repo_data = triton.configmap_data(repo_params)
    pod_spec_inputs = spec.model_dump(mode="json", by_alias=True)
    pod_spec_inputs["serving"].pop("replicas")
    revision = naming.digest({"spec": pod_spec_inputs, "repository": repo_data, "layout": base["parallelism"]}, 10)
    base["revision"] = revision

    apply: list[dict[str, Any]] = []
    events: list[Event] = []
    world = fit.gpus_per_replica
    affinity = children.gpu_node_affinity(gpu, spec.serving.node_selector)
    if not engines.needs_build(layout):
        engine_state, engine_msg, job_name = "NotRequired", "served from the checkpoint by the PyTorch backend", ""
    elif (cache_pvc_uid := observed.pvc_uids.get(spec.engine.cache.pvc)) is None:
        apply.append(children.cache_pvc(spec, owner.namespace))
        engine_state, engine_msg, job_name = "Pending", f"waiting for the engine cache PVC {spec.engine.cache.pvc}", ""
    elif (engine_job := observed.engine_jobs.get(naming.engine_job_name(key))) is None:
        ckpt_volume, ckpt_mount = children.checkpoint_volume(spec)
        job = engines.build_job(
            spec=spec, layout=layout, key=key, namespace=owner.namespace, cr_name=owner.name,
            cache_pvc_uid=cache_pvc_uid, gpus=world, node_affinity=affinity,
            tolerations=children.tolerations(spec),
            volumes=[{"name": "engine-cache", "persistentVolumeClaim": {"claimName": spec.engine.cache.pvc}},
                     ckpt_volume],
            volume_mounts=[{"name": "engine-cache", "mountPath": engines.ENGINE_MOUNT}, ckpt_mount],
            pod_annotations=dict(spec.serving.pod_annotations))
        apply.append(job)
        job_name = job["metadata"]["name"]
        engine_state, engine_msg = "Building", "build Job created"
        events.append(Event("Normal", "EngineBuildStarted", f"building engine {key} with Job {job_name}"))
    else:
        job_name = engine_job["metadata"]["name"]
        engine_state, engine_msg = _job_state(engine_job)
    base["engine"] = {"key": key, "state": engine_state, "job": job_name, "message": engine_msg}

    if engine_state == "Failed":
        conds.set(st.ENGINE_READY, False, Reason.ENGINE_BUILD_FAILED, engine_msg)
        conds.set(st.READY, False, Reason.ENGINE_BUILD_FAILED, "no serving pods for a revision without an engine")
        conds.set(st.DEGRADED, True, Reason.ENGINE_BUILD_FAILED,
                  f"{engine_msg}; delete Job {job_name} to retry once the cause is fixed")
        return _finish(body, conds, {**base, "phase": "Degraded"}, {"apply": apply, "events": events}, observed)
    if engine_state in ("Building", "Pending"):
        reason = Reason.ENGINE_BUILDING if engine_state == "Building" else Reason.ENGINE_PENDING
        conds.set(st.ENGINE_READY, False, reason, engine_msg)
        conds.set(st.READY, False, reason, "waiting for the engine")
        conds.set(st.PROGRESSING, True, reason, engine_msg)
        conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
        return _finish(body, conds, {**base, "phase": "Building"}, {"apply": apply, "events": events}, observed)
    conds.set(st.ENGINE_READY, True, Reason.ENGINE_CACHED, engine_msg)

    replicas = spec.serving.replicas
    apply += [
        children.model_repo_configmap(owner, revision, repo_data),
        children.server_deployment(owner=owner, spec=spec, gpu=gpu, revision=revision, engine_key=key,
                                   world_size=world, replicas=replicas,
                                   mount_engine_cache=engines.needs_build(layout)),
        children.service(owner),
        children.disruption_budget(owner),
    ]
    ready, rolled_out = _deployment_progress(observed.deployment, revision, replicas)
    delete = [ChildRef("v1", "ConfigMap", cm) for cm in observed.model_repo_configmaps
              if rolled_out and cm != naming.model_repo_configmap_name(owner.name, revision)]
    base |= {"replicas": replicas, "readyReplicas": ready, "ready": f"{ready}/{replicas}"}
    if rolled_out:
        reason = Reason.SCALED_TO_ZERO if replicas == 0 else Reason.REPLICAS_READY
        conds.set(st.READY, True, reason, f"{ready}/{replicas} replicas of revision {revision} ready")
        conds.set(st.PROGRESSING, False, Reason.AS_EXPECTED, "")
        phase = "Healthy"
    else:
        message = f"{ready}/{replicas} replicas of revision {revision} ready"
        stuck = unschedulable_pods(observed.pods, revision)
        if stuck:
            # The truth a user needs when GPUs run out: the scheduler's own words, not an endless "rolling out".
            message += f"; {len(stuck)} pod(s) cannot be scheduled: {stuck[0]}"
        reason = Reason.UNSCHEDULABLE if stuck else Reason.REPLICAS_NOT_READY
        conds.set(st.READY, False, reason, message)
        conds.set(st.PROGRESSING, True, reason if stuck else Reason.ROLLING_OUT, message)
        phase = "Progressing"
    conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
    return _finish(body, conds, {**base, "phase": phase}, {"apply": apply, "delete": delete, "events": events},
                   observed)


def unschedulable_pods(pods: tuple[dict[str, Any], ...], revision: str) -> list[str]:
    """The scheduler's messages for this revision's pods that it could not place."""
    out = []
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(naming.LABEL_REVISION) != revision:
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable":
                out.append(str(cond.get("message", "")).strip())
    return out


def _deployment_progress(deployment: dict[str, Any] | None, revision: str, replicas: int) -> tuple[int, bool]:
    """Ready replicas of this revision, and whether the Deployment has fully rolled out to it."""
    if deployment is None:
        return 0, False
    labels = deployment["metadata"].get("labels") or {}
    if labels.get(naming.LABEL_REVISION) != revision:
        return 0, False
    status = deployment.get("status") or {}
    if status.get("observedGeneration", 0) < deployment["metadata"].get("generation", 0):
        return 0, False
    updated = status.get("updatedReplicas", 0)
    ready = min(updated, status.get("readyReplicas", 0))
    rolled_out = updated == replicas and status.get("replicas", 0) == replicas and ready == replicas
    return ready, rolled_out
