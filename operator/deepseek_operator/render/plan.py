"""plan(resource, observed, now) -> Plan: every decision of one reconcile pass, with no I/O.

The k8s/ layer observes once, calls plan, applies `Plan.apply` with server-side apply, deletes `Plan.delete`,
posts `Plan.events` and writes `Plan.status` only when it differs from what the resource already has.
A spec that cannot work changes nothing that already runs: it is reported in conditions and events only.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from pydantic import ValidationError

from deepseek_operator.api import status as st
from deepseek_operator.api.spec import DeepSeekDeploymentSpec, GatewayProvider, PrometheusProvider, duration_seconds
from deepseek_operator.api.status import Reason
from deepseek_operator.render import catalog, children, multinode, naming, preflight, routing, sizing, triton, weights
from deepseek_operator.render import quantize as quantization
from deepseek_operator.render import runtime as runtimes
from deepseek_operator.rollout import analysis, machine
from deepseek_operator.rollout.machine import Event


@dataclass(frozen=True)
class Observed:
    """What one pass saw of the resource's world, read once before planning."""

    deployments: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # serving Deployments, by name
    # Multi-node revisions: StatefulSets (leaders and workers) or LeaderWorkerSets, by name; the SSH Secrets.
    statefulsets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    leader_worker_sets: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    lws_installed: bool = False  # the LeaderWorkerSet API is served: multi-node revisions become LWS
    model_repo_configmaps: tuple[str, ...] = ()
    http_routes: tuple[str, ...] = ()
    pods: tuple[dict[str, Any], ...] = ()  # the serving pods, as summaries (labels, status)
    pvc_uids: Mapping[str, str] = field(default_factory=dict)  # PVCs of the namespace, by name
    quantize_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # quantize Jobs, by name
    download_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # download Jobs, by name
    download_pods: Mapping[str, tuple[dict[str, Any], ...]] = field(default_factory=dict)  # by their Job's name
    # What the running download pod's progress endpoint answered this pass (see download_progress_request).
    download_progress: Mapping[str, dict[str, Any]] = field(default_factory=dict)
    preflight_jobs: Mapping[str, dict[str, Any]] = field(default_factory=dict)  # the resource's, by name
    preflight_pods: tuple[dict[str, Any], ...] = ()  # their pods, as summaries (rank 0's termination message)
    # (kind, name) -> the applied-hash annotation of each child as it is now: unchanged children are not re-applied.
    applied_hashes: Mapping[tuple[str, str], str] = field(default_factory=dict)
    measurement: analysis.Measurement | None = None  # the canary measured this pass, when the analysis was due


@dataclass(frozen=True)
class AnalysisRequest:
    """What a metric provider is asked to measure (see providers/)."""

    provider: str
    namespace: str
    name: str
    canary_revision: str
    stable_revision: str
    window_seconds: float
    previous_counters: Mapping[str, float]
    canary_pod_ips: tuple[str, ...]
    stable_pod_ips: tuple[str, ...]
    canary_service: str
    stable_service: str
    prometheus: PrometheusProvider | None = None
    gateway: GatewayProvider | None = None


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
    # The SSH key Secrets of live multi-node revisions: the k8s layer creates those missing, generating the keys.
    ssh_secrets: list[dict[str, Any]] = field(default_factory=list)
    requeue_after: float | None = None  # seconds until a pass is due even if nothing changes (pauses, analysis)
    outcome: str = ""  # promoted | rolled_back | aborted when this pass ended a rollout
    verdict: str = ""  # the analysis verdict taken this pass


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
    if (ended := children.finished_condition(job)) is not None:
        if ended["type"] == "Complete":
            return "Complete", "quantized checkpoint in the cache"
        return "Failed", f"quantize Job failed: {ended.get('reason', '')} {ended.get('message', '')}".strip()
    active = job.get("status", {}).get("active", 0)
    return "Running", f"quantize Job running ({active} pod{'s' if active != 1 else ''} active)"


_PHASE_CONDITION = {"Degraded": st.DEGRADED, "Preparing": st.CHECKPOINT_READY, "Progressing": st.READY,
                    "Healthy": st.READY, "Pending": st.READY, "Paused": st.PROGRESSING, "RolledBack": st.DEGRADED}


def _events(old: dict[str, Any], new: dict[str, Any]) -> list[Event]:
    """What was decided, said once: the hardware verdict when it changes, and every change of phase with the
    condition that explains it (a Warning when the resource is Degraded)."""
    out = []
    before = {c["type"]: c for c in old.get("conditions") or []}
    after = {c["type"]: c for c in new.get("conditions") or []}
    fits, fitted = after.get(st.FITS_HARDWARE), before.get(st.FITS_HARDWARE)
    # A fit is said when it is news: a model that does not fit, or one that fits again. A first fit is in the
    # FitsHardware condition; an event per new resource only loads the API server (500 resources: 500 writes).
    first_fit = fitted is None and fits is not None and fits["status"] == "True"
    if fits and not first_fit and (fitted is None or (fitted["status"], fitted["reason"]) !=
                                   (fits["status"], fits["reason"])):
        out.append(Event("Normal" if fits["status"] == "True" else "Warning", fits["reason"], fits["message"]))
    phase = new["phase"]
    explained = after.get(_PHASE_CONDITION[phase])
    said_by_verdict = fits is not None and fits["status"] == "False" and explained is not None \
        and explained["reason"] == fits["reason"]
    if explained and (old.get("phase") != phase or _reason_changed(before, explained)) and not said_by_verdict \
            and explained["reason"] != Reason.AS_EXPECTED:
        message = f"{phase}: {explained['message']}" if explained["message"] else phase
        degraded = explained["type"] == st.DEGRADED and explained["status"] == "True"
        out.append(Event("Warning" if degraded else "Normal", explained["reason"], message))
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
    """A hand edit the hash cannot see: `kubectl scale` of a serving workload is put back."""
    workloads = {"Deployment": observed.deployments, "StatefulSet": observed.statefulsets,
                 "LeaderWorkerSet": observed.leader_worker_sets}
    live = workloads.get(obj["kind"], {}).get(obj["metadata"]["name"])
    if live is None:
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


# Status fields a pass that changes nothing (bad spec, no fit, failed quantize Job) carries over as they are.
DOWNLOAD_POLL_S = 3.0  # how often a resource waiting for its weights reads the download's progress
KEPT_KEYS = ("revision", "replicas", "readyReplicas", "ready", "preflight", "stableRevision", "canaryRevision",
             "canaryWeight",
             "canaryReplicas", "currentStep", "stepStartedAt", "paused", "pauseReason", "rolloutKind",
             "heldRevision", "heldReason", "analysis", "history", "lastAction")


def epoch(text: str) -> float:
    """RFC 3339 (as status holds it) to seconds; the empty string is the epoch."""
    if not text:
        return 0.0
    return dt.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def rfc3339(seconds: float) -> str:
    return dt.datetime.fromtimestamp(seconds, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class RevisionRender:
    """Everything needed to render one revision's pods, from the spec that made it."""

    name: str
    spec: DeepSeekDeploymentSpec
    gpu: catalog.GpuSpec
    quantize: bool  # served from a quantized checkpoint the quantize Job of `key` makes
    key: str
    world: int
    repo_data: dict[str, str]
    parallelism: dict[str, int]

    @property
    def label(self) -> str:
        return f"{self.spec.model.name}@{self.spec.model.precision.value}"


def snapshot(spec: DeepSeekDeploymentSpec) -> dict[str, Any]:
    """The part of a spec that shapes pods: what a revision is, and what rollback-to renders again.

    Fields at their defaults are left out, so an operator upgrade that adds a field (with a default) leaves
    every revision as it was instead of rolling out all resources again."""
    dumped = spec.model_dump(mode="json", by_alias=True, exclude_defaults=True)
    dumped.pop("rollout", None)
    dumped["serving"].pop("replicas", None)
    return dumped


def _model(spec: DeepSeekDeploymentSpec) -> catalog.ModelSpec:
    return catalog.custom_model(spec.model.custom) if spec.model.custom else catalog.MODELS[spec.model.name]


def _resolve(spec: DeepSeekDeploymentSpec, model: catalog.ModelSpec) -> runtimes.Runtime:
    return runtimes.resolve(spec, model, catalog.GPUS[spec.serving.gpu.type])


# Every pass renders every live revision; equal parameters render an equal repository (a pure function), so the
# protobuf rendering runs once per distinct set of parameters.
_repository = functools.lru_cache(maxsize=512)(triton.configmap_data)


def _render(spec: DeepSeekDeploymentSpec, model: catalog.ModelSpec, rt: runtimes.Runtime) -> RevisionRender:
    key = quantization.checkpoint_key(spec)
    quantize = quantization.needs_quantize(spec, model.native_precision)
    fit = rt.fit
    repo_params = triton.LlmApiParams(
        checkpoint_dir=quantization.quantized_dir(key) if quantize else quantization.checkpoint_dir(spec),
        tensor_parallel=fit.tensor_parallel, pipeline_parallel=fit.pipeline_parallel,
        max_batch_size=rt.max_batch_size, max_num_tokens=rt.max_num_tokens, max_seq_len=rt.max_seq_len,
        free_gpu_memory_fraction=rt.free_gpu_memory_fraction, batch_scheduler_policy=rt.scheduler_policy,
        decoupled=spec.serving.streaming, enable_block_reuse=rt.enable_block_reuse,
        expert_parallel=rt.expert if model.moe else None, attention_dp=rt.attention_dp, kv_fp8=rt.kv_fp8,
        moe_backend=rt.moe_backend, mtp_layers=rt.mtp_layers,
        cuda_graph_max_batch_size=rt.cuda_graph_max_batch_size if rt.cuda_graphs else None,
        cuda_graph_padding=rt.cuda_graph_padding)
    repo_data = dict(_repository(repo_params))
    parallelism = {"tensor": fit.tensor_parallel, "pipeline": fit.pipeline_parallel, "expert": rt.expert,
                   "nodesPerReplica": fit.nodes_per_replica, "gpusPerReplica": fit.gpus_per_replica}
    # The revision: everything that changes pods, and the rendered model repository (a renderer change that
    # alters config.pbtxt is a new revision too, like Flagger's config tracker).
    revision = naming.digest({"spec": snapshot(spec), "repository": repo_data, "layout": parallelism}, 10)
    return RevisionRender(revision, spec, catalog.GPUS[spec.serving.gpu.type], quantize, key, fit.gpus_per_replica,
                          repo_data, parallelism)


def _runtime_status(rt: runtimes.Runtime) -> dict[str, Any]:
    return {"recipe": rt.recipe.name, "source": rt.recipe.source, "reason": rt.reason,
            "maxBatchSize": rt.max_batch_size, "maxNumTokens": rt.max_num_tokens,
            "attentionDataParallel": rt.attention_dp, "kvCacheDtype": "fp8" if rt.kv_fp8 else "auto",
            "mtpLayers": rt.mtp_layers, **({"moeBackend": rt.moe_backend} if rt.moe_backend else {})}


def render_revision(spec: DeepSeekDeploymentSpec) -> RevisionRender | None:
    """The revision a valid spec makes; None when it does not fit or its runtime settings cannot apply."""
    model = _model(spec)
    if runtimes.problems(spec, model):
        return None
    rt = _resolve(spec, model)
    return _render(spec, model, rt) if rt.fit.fits else None


def _render_snapshot(entry: Mapping[str, Any]) -> RevisionRender | None:
    """An earlier revision from its history entry; None when it no longer parses or fits (an operator upgrade)."""
    try:
        return render_revision(DeepSeekDeploymentSpec.model_validate(entry.get("spec") or {}))
    except (ValidationError, ValueError):
        return None


def _workload(owner: children.Owner, r: RevisionRender, replicas: int, lws: bool) -> list[dict[str, Any]]:
    """A revision's serving workload: a Deployment when a replica fits one node, else its groups."""
    nodes, cache = r.parallelism["nodesPerReplica"], r.quantize
    if nodes == 1:
        return [children.server_deployment(owner=owner, spec=r.spec, gpu=r.gpu, revision=r.name, checkpoint_key=r.key,
                                           world_size=r.world, replicas=replicas, mount_model_cache=cache)]
    layout = multinode.Layout(nodes=nodes, gpus_per_node=r.world // nodes, world_size=r.world)
    if lws:
        return [multinode.leader_worker_set(owner=owner, spec=r.spec, gpu=r.gpu, revision=r.name, checkpoint_key=r.key,
                                            layout=layout, replicas=replicas, mount_model_cache=cache)]
    return [multinode.headless_service(owner, r.name),
            *multinode.statefulsets(owner=owner, spec=r.spec, gpu=r.gpu, revision=r.name, checkpoint_key=r.key,
                                    layout=layout, replicas=replicas, mount_model_cache=cache)]


def rollout_settings(spec: DeepSeekDeploymentSpec) -> machine.Rollout:
    r = spec.rollout
    steps = tuple(machine.Step(weight=s.weight,
                               pause_seconds=None if s.pause in (None, machine.INDEFINITE)
                               else duration_seconds(str(s.pause)))
                  for s in r.steps)
    a = r.analysis
    policy = analysis.Policy(a.max_error_rate, a.min_requests, a.max_p99_latency_seconds) if a else None
    return machine.Rollout(
        strategy=r.strategy, steps=steps, router="gatewayAPI" if r.traffic_routing.gateway_api else "service",
        policy=policy, interval_seconds=duration_seconds(a.interval) if a else 30,
        failure_limit=a.failure_limit if a else 1, on_inconclusive=a.on_inconclusive if a else "pause",
        history_limit=r.revision_history_limit)


def rollout_state(status: Mapping[str, Any]) -> machine.State:
    a = status.get("analysis")
    last = machine.LastAnalysis(a["revision"], epoch(a["at"]), a["result"], int(a.get("failures", 0)),
                                a.get("message", ""), int(a.get("step", -1))) if a else None
    return machine.State(
        stable=status.get("stableRevision", ""), canary=status.get("canaryRevision", ""),
        weight=int(status.get("canaryWeight", 0)), canary_replicas=int(status.get("canaryReplicas", 0)),
        step=int(status.get("currentStep", 0)), step_started_at=epoch(status.get("stepStartedAt", "")),
        paused=bool(status.get("paused", False)), pause_reason=status.get("pauseReason", ""),
        kind=status.get("rolloutKind", ""), held=status.get("heldRevision", ""),
        held_reason=status.get("heldReason", ""), analysis=last,
        history=tuple(h["revision"] for h in status.get("history") or []))


def ready_by_revision(deployments: Mapping[str, dict[str, Any]],
                      statefulsets: Mapping[str, dict[str, Any]] | None = None,
                      leader_worker_sets: Mapping[str, dict[str, Any]] | None = None,
                      ) -> tuple[dict[str, int], dict[str, int]]:
    """Ready replicas of each revision (at most its desired count), and each one's desired count.

    A replica is one pod of a Deployment; of a multi-node revision, a group: a LeaderWorkerSet counts its groups
    itself; with StatefulSets it is a Ready leader whose group's workers are all Ready."""
    sets = (statefulsets or {}).values()
    component = naming.LABEL_COMPONENT
    leaders = [s for s in sets if s["metadata"]["labels"].get(component) == naming.COMPONENT_SERVER]
    ready, desired = {}, {}
    for d in [*deployments.values(), *(leader_worker_sets or {}).values(), *leaders]:
        revision = (d["metadata"].get("labels") or {}).get(naming.LABEL_REVISION)
        if not revision:
            continue
        desired[revision] = int((d.get("spec") or {}).get("replicas", 0))
        status = d.get("status") or {}
        # Not yet caught up with a scale we just applied: the pods it counted are still there and Ready.
        ready[revision] = min(status.get("updatedReplicas", 0), status.get("readyReplicas", 0), desired[revision])
    # With StatefulSets a Ready leader counts only once its group's workers are all Ready too.
    full_groups = Counter(
        s["metadata"]["labels"][naming.LABEL_REVISION] for s in sets
        if s["metadata"]["labels"].get(component) == naming.COMPONENT_SERVER_WORKER
        and min((s.get("status") or {}).get("readyReplicas", 0), (s.get("status") or {}).get("updatedReplicas", 0))
        >= int((s.get("spec") or {}).get("replicas", 0)))
    for s in leaders:
        revision = s["metadata"]["labels"].get(naming.LABEL_REVISION)
        if revision in ready:
            ready[revision] = min(ready[revision], full_groups[revision])
    return ready, desired


def _analysis_status(previous: Mapping[str, Any] | None, state: machine.State, observed: Observed,
                     provider: str, now: str) -> dict[str, Any] | None:
    last = state.analysis
    if last is None:
        return None
    m = observed.measurement
    if m is None or rfc3339(last.at) != now:
        return dict(previous) if previous else None
    return {"revision": last.revision, "at": now, "windowSeconds": round(m.window_seconds, 1),
            "requests": int(m.requests) if m.requests == m.requests else 0,
            "errors": int(m.errors) if m.errors == m.errors else 0,
            "errorRate": None if m.error_rate is None else round(m.error_rate, 4),
            "p99LatencySeconds": None if m.p99_seconds is None else round(m.p99_seconds, 4),
            "stableErrorRate": None if m.stable_error_rate is None else round(m.stable_error_rate, 4),
            "result": last.result, "message": last.message, "failures": last.failures, "step": last.step,
            "provider": provider, "counters": dict(m.counters)}


def plan(body: dict[str, Any], observed: Observed, now: str) -> Plan:
    meta = body["metadata"]
    generation = int(meta.get("generation", 1))
    old_status = body.get("status") or {}
    conds = _Conditions(generation, now, {c["type"]: c for c in old_status.get("conditions") or []})
    keep = {k: old_status[k] for k in KEPT_KEYS if k in old_status}

    try:
        spec = DeepSeekDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError as err:
        message = validation_message(err)
        conds.set(st.READY, False, Reason.INVALID_SPEC, message)
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
        return _finish(body, conds, {**keep, "phase": "Degraded"}, {})

    try:
        model = _model(spec)
    except ValueError as err:  # custom figures that no model can have
        message = f"spec.model.custom: {err}"
        conds.set(st.READY, False, Reason.INVALID_SPEC, message)
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
        return _finish(body, conds, {**keep, "phase": "Degraded"}, {})
    problems = runtimes.problems(spec, model)
    if problems:
        message = "; ".join(problems)
        conds.set(st.READY, False, Reason.INVALID_SPEC, message)
        conds.set(st.DEGRADED, True, Reason.INVALID_SPEC, message)
        return _finish(body, conds, {**keep, "phase": "Degraded"}, {})
    rt = _resolve(spec, model)
    fit = rt.fit
    base = {**keep, "model": {"name": f"{spec.model.name}@{spec.model.precision.value}",
                              "source": weights.location(spec)},
            "sizing": {"weightsGb": round(fit.weights_gb, 1), "kvCacheGb": round(fit.kv_cache_gb, 1),
                       "needPerGpuGb": round(fit.need_per_gpu_gb, 1),
                       "budgetPerGpuGb": round(fit.budget_per_gpu_gb, 1)}}
    if not fit.fits:
        conds.set(st.FITS_HARDWARE, False, fit.reason, fit.message)
        conds.set(st.READY, False, fit.reason, "the model does not fit the requested GPUs; nothing was changed")
        conds.set(st.DEGRADED, True, fit.reason, fit.message)
        return _finish(body, conds, {**base, "phase": "Degraded"}, {})
    conds.set(st.FITS_HARDWARE, True, Reason.FITS, f"{fit.message}; {rt.reason}")
    target = _render(spec, model, rt)
    base["parallelism"] = target.parallelism
    base["runtime"] = _runtime_status(rt)

    owner = children.Owner(meta["name"], meta["namespace"], meta["uid"])
    base["revision"] = target.name
    apply: list[dict[str, Any]] = []
    events: list[Event] = []
    affinity = children.gpu_node_affinity(target.gpu, spec.serving.node_selector)
    serving = bool(old_status.get("stableRevision"))
    delete: list[ChildRef] = []
    download = _weights(spec, owner, observed, now, old_status, apply, events, delete)
    base["model"] = {**base["model"], **download.status()}
    if download.state == "Failed":
        retry = rfc3339(epoch(download.failed_at) + weights.RETRY_AFTER_S) if download.failed_at else "later"
        conds.set(st.WEIGHTS_READY, False, Reason.DOWNLOAD_FAILED, download.message)
        conds.set(st.READY, serving, Reason.DOWNLOAD_FAILED,
                  f"revision {target.name} has no weights and gets no pods"
                  + (f"; {old_status['stableRevision']} keeps serving" if serving else ""))
        conds.set(st.DEGRADED, True, Reason.DOWNLOAD_FAILED,
                  f"downloading {weights.location(spec)} failed: {download.message}; tried again at {retry}, "
                  f"or at once when Job {base['model']['job']} is deleted")
        wait = max(1.0, epoch(retry) - epoch(now)) if download.failed_at else None
        return _finish(body, conds, {**base, "phase": "Degraded"},
                       {"apply": apply, "events": events, "delete": delete, "requeue_after": wait}, observed)
    if download.state != "Ready":
        reason = Reason.DOWNLOADING if download.state == "Downloading" else Reason.DOWNLOAD_PENDING
        conds.set(st.WEIGHTS_READY, False, reason, download.message)
        if not serving:
            conds.set(st.READY, False, reason, "waiting for the weights")
            conds.set(st.PROGRESSING, True, reason, download.message)
            conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
            return _finish(body, conds, {**base, "phase": "Preparing"},
                           {"apply": apply, "events": events, "delete": delete,
                            "requeue_after": DOWNLOAD_POLL_S}, observed)
    else:
        conds.set(st.WEIGHTS_READY, True, Reason.DOWNLOADED if weights.downloads(spec) else Reason.ON_VOLUME,
                  download.message)
    weights_ready = download.state == "Ready"
    key = target.key
    if not target.quantize:
        quantize_state, quantize_msg, job_name = "NotRequired", "served from the checkpoint by the PyTorch backend", ""
    elif not weights_ready:
        quantize_state, quantize_msg, job_name = "Pending", "waiting for the weights to quantize", ""
    elif (cache_pvc_uid := observed.pvc_uids.get(spec.runtime.cache.pvc)) is None:
        apply.append(children.cache_pvc(spec, owner.namespace))
        quantize_state, job_name = "Pending", ""
        quantize_msg = f"waiting for the model cache PVC {spec.runtime.cache.pvc}"
    elif (quantize_job := observed.quantize_jobs.get(naming.quantize_job_name(key))) is None:
        ckpt_volume, ckpt_mount = children.checkpoint_volume(spec)
        job = quantization.job(
            spec=spec, key=key, namespace=owner.namespace, cr_name=owner.name,
            # Quantization calibrates on one node's GPUs, whatever the serving layout.
            cache_pvc_uid=cache_pvc_uid, gpus=target.world // fit.nodes_per_replica, node_affinity=affinity,
            tolerations=children.tolerations(spec),
            volumes=[{"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.runtime.cache.pvc}},
                     ckpt_volume],
            volume_mounts=[{"name": "model-cache", "mountPath": quantization.CACHE_MOUNT}, ckpt_mount],
            pod_annotations=dict(spec.serving.pod_annotations))
        apply.append(job)
        job_name = job["metadata"]["name"]
        quantize_state, quantize_msg = "Running", "quantize Job created"
        events.append(Event("Normal", "QuantizeStarted",
                            f"quantizing the checkpoint to {spec.model.precision.value} as {key} with Job {job_name}"))
    else:
        job_name = quantize_job["metadata"]["name"]
        quantize_state, quantize_msg = _job_state(quantize_job)
    base["quantization"] = {"key": key, "state": quantize_state, "job": job_name, "message": quantize_msg}

    if quantize_state == "Failed":
        conds.set(st.CHECKPOINT_READY, False, Reason.QUANTIZE_FAILED, quantize_msg)
        conds.set(st.READY, serving, Reason.QUANTIZE_FAILED,
                  f"revision {target.name} has no quantized checkpoint and gets no pods"
                  + (f"; {old_status['stableRevision']} keeps serving" if serving else ""))
        conds.set(st.DEGRADED, True, Reason.QUANTIZE_FAILED,
                  f"{quantize_msg}; delete Job {job_name} to retry once the cause is fixed")
        return _finish(body, conds, {**base, "phase": "Degraded"}, {"apply": apply, "events": events}, observed)
    if quantize_state in ("Running", "Pending"):
        reason = Reason.QUANTIZING if quantize_state == "Running" else Reason.QUANTIZE_PENDING
        conds.set(st.CHECKPOINT_READY, False, reason, quantize_msg)
        if not serving:
            conds.set(st.READY, False, reason, "waiting for the quantized checkpoint")
            conds.set(st.PROGRESSING, True, reason, quantize_msg)
            conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
            return _finish(body, conds, {**base, "phase": "Preparing"}, {"apply": apply, "events": events}, observed)
    else:
        reason = Reason.QUANTIZED if quantize_state == "Complete" else Reason.AS_PUBLISHED
        conds.set(st.CHECKPOINT_READY, True, reason, quantize_msg)
    servable = weights_ready and quantize_state in ("Complete", "NotRequired")
    waiting: dict[str, str] = {}
    checked = _preflight(spec, target, fit, owner, observed, old_status, affinity, servable)
    verdict: dict[str, Any] | None = None
    if checked is not None:
        objects, verdict = checked
        apply += objects
        base["preflight"] = verdict
    # The check of the revision rolled out now, or the last one recorded (that revision serves).
    _preflight_condition(conds, base.get("preflight"))
    if verdict is not None and verdict["state"] == "Failed":
        message = (f"revision {target.name} failed its NCCL preflight: {verdict['message']}; fix the nodes or "
                   f"spec.network.preflight, then delete Job {verdict['job']} to run it again")
        conds.set(st.READY, serving, Reason.PREFLIGHT_FAILED,
                  f"revision {target.name} gets no pods"
                  + (f"; {old_status['stableRevision']} keeps serving" if serving else ""))
        conds.set(st.DEGRADED, True, Reason.PREFLIGHT_FAILED, message)
        return _finish(body, conds, {**base, "phase": "Degraded"},
                       {"apply": apply, "events": events, "delete": _stale_preflights(observed, verdict["job"])},
                       observed)
    if verdict is not None and verdict["state"] == "Running":
        servable = False
        waiting = {"waiting_for": "its NCCL preflight", "wait_reason": Reason.PREFLIGHT_RUNNING}
    rolled = _roll(body, spec, target, observed, now, conds, base, apply, events, servable=servable, waiting=waiting)
    return replace(rolled, delete=[*delete, *rolled.delete]) if delete else rolled


def _weights(spec: DeepSeekDeploymentSpec, owner: children.Owner, observed: Observed, now: str,
             old_status: Mapping[str, Any], apply: list[dict[str, Any]], events: list[Event],
             delete: list[ChildRef]) -> weights.Download:
    """The weights of the revision: read in place from a PVC, or the download Job of their key, created when
    missing and started again RETRY_AFTER_S after it failed."""
    where = weights.location(spec)
    if not weights.downloads(spec):
        return weights.Download("Ready", f"read in place from {where}")
    download_key, pvc = weights.key(spec), spec.runtime.cache.pvc
    job_name = naming.download_job_name(download_key)
    before = old_status.get("model")
    before = before if isinstance(before, Mapping) else {}
    if (pvc_uid := observed.pvc_uids.get(pvc)) is None:
        apply.append(children.cache_pvc(spec, owner.namespace))
        download = weights.Download("Pending", f"waiting for the model cache PVC {pvc}")
    elif (job := observed.download_jobs.get(job_name)) is None:
        apply.append(weights.job(spec=spec, download_key=download_key, namespace=owner.namespace,
                                 cr_name=owner.name, cache_pvc_uid=pvc_uid))
        events.append(Event("Normal", "DownloadStarted", f"downloading {where} into PVC {pvc} at "
                                                         f"{weights.cache_subpath(download_key)} with Job {job_name}"))
        download = weights.Download("Pending", f"download Job {job_name} created")
    else:
        download = weights.observe(job, list(observed.download_pods.get(job_name, ())),
                                   observed.download_progress.get(job_name))
        if download.state == "Failed" and download.failed_at and \
                epoch(now) - epoch(download.failed_at) >= weights.RETRY_AFTER_S:
            delete.append(ChildRef("batch/v1", "Job", job_name))
            download = weights.Download("Pending", f"trying again after: {download.message}")
    # A failure is said by the phase change to Degraded (a Warning with reason DownloadFailed).
    if download.state == "Ready" and before.get("state") != "Ready":
        events.append(Event("Normal", "DownloadComplete", f"{where}: {download.message}"))
    return replace(download, key=download_key, job=job_name)


def _preflight(spec: DeepSeekDeploymentSpec, target: RevisionRender, fit: sizing.SizingResult,
               owner: children.Owner, observed: Observed, old_status: Mapping[str, Any],
               affinity: dict[str, Any], servable: bool) -> tuple[list[dict[str, Any]], dict[str, Any]] | None:
    """The preflight Job of a new multi-GPU revision and its verdict so far; None when none is due: one GPU,
    turned off, the revision already serves or was rolled back, or its checkpoint is not quantized yet
    (the quantize Job holds the GPUs the check needs)."""
    if not servable or not preflight.required(spec, target.world) \
            or target.name in (old_status.get("stableRevision"), old_status.get("heldRevision")):
        return None
    check = preflight.check_for(spec, target.gpu, target.world, fit.nodes_per_replica)
    name = preflight.job_name(owner.name, target.name)
    verdict = preflight.status(name=name, revision=target.name, check=check,
                               job_obj=observed.preflight_jobs.get(name), pods=observed.preflight_pods,
                               previous=old_status.get("preflight"))
    objects = [preflight.rendezvous_service(owner, target.name),
               preflight.job(owner=owner, spec=spec, gpu=target.gpu, revision=target.name, check=check,
                             node_affinity=affinity, tolerations=children.tolerations(spec),
                             shm_size=children.shm_size(check.gpus_per_node))]
    return objects, verdict


_PREFLIGHT_REASONS = {"Passed": (True, Reason.PREFLIGHT_PASSED), "Failed": (False, Reason.PREFLIGHT_FAILED),
                      "Running": (None, Reason.PREFLIGHT_RUNNING)}


def _preflight_condition(conds: _Conditions, verdict: Mapping[str, Any] | None) -> None:
    if verdict:
        value, reason = _PREFLIGHT_REASONS[verdict["state"]]
        conds.set(st.PREFLIGHT, value, reason, f"revision {verdict['revision']}: {verdict['message']}")


def _stale_preflights(observed: Observed, keep: str) -> list[ChildRef]:
    """Preflight Jobs (and their rendezvous Services, of the same name) of revisions no longer rolled out."""
    return [ChildRef(api, kind, name) for name in sorted(observed.preflight_jobs) if name != keep
            for api, kind in (("batch/v1", "Job"), ("v1", "Service"))]


def _roll(body: dict[str, Any], spec: DeepSeekDeploymentSpec, target: RevisionRender, observed: Observed, now: str,
          conds: _Conditions, base: dict[str, Any], apply: list[dict[str, Any]], events: list[Event], *,
          servable: bool, waiting: Mapping[str, str]) -> Plan:
    """The rollout pass: what the machine decides, and the children of every live revision."""
    meta = body["metadata"]
    old_status = body.get("status") or {}
    owner = children.Owner(meta["name"], meta["namespace"], meta["uid"])
    rollout = rollout_settings(spec)
    state = rollout_state(old_status)
    handled = (old_status.get("lastAction") or {}).get("nonce", "")
    parsed = machine.parse_action(meta.get("annotations") or {}, naming.ANNOTATION_ACTION,
                                  naming.ANNOTATION_ACTION_NONCE, handled)
    action = parsed if isinstance(parsed, machine.Action) else None
    ready, desired = ready_by_revision(observed.deployments, observed.statefulsets, observed.leader_worker_sets)
    stable_now = desired.get(state.stable) if state.canary else None
    replicas = spec.serving.replicas
    decision = machine.decide(rollout, state, machine.World(
        target=target.name, target_servable=servable, replicas=replicas, now=epoch(now), ready=ready,
        stable_replicas=stable_now, measurement=observed.measurement, action=action, **waiting))
    new = decision.state
    events += decision.events

    # The spec of every revision we may render: the target's own, the others' from their history entries.
    old_history = {h["revision"]: h for h in old_status.get("history") or []}
    renders: dict[str, RevisionRender | None] = {r: _render_snapshot(h) for r, h in old_history.items()}
    renders[target.name] = target
    live = [*decision.replicas, *new.history, *([target.name] if servable and new.held == target.name else [])]
    keep_names: set[str] = set()
    ssh_secrets: list[dict[str, Any]] = []
    for revision in dict.fromkeys(live):
        rendered = renders.get(revision)
        if rendered is None:
            continue
        objects = _workload(owner, rendered, decision.replicas.get(revision, 0), observed.lws_installed)
        apply += [children.model_repo_configmap(owner, revision, rendered.repo_data), *objects]
        keep_names |= {o["metadata"]["name"] for o in objects}
        if rendered.parallelism["nodesPerReplica"] > 1:
            ssh_secrets.append(multinode.ssh_secret(owner, revision))
    serving_revision = new.stable or next(iter(decision.replicas), "")
    if serving_revision:
        router = routing.router_for(spec.rollout.traffic_routing)
        split = routing.Split(canary_active=(bool(new.canary) and new.weight > 0) or decision.ab_routing,
                              canary_weight=new.weight,
                              ab_matches=tuple(spec.rollout.match) if decision.ab_routing else ())
        apply += [children.service(owner), children.disruption_budget(owner)]
        if spec.rollout.traffic_routing.gateway_api is not None:  # the HTTPRoute's two backends
            apply += [
                children.revision_service(owner, naming.stable_service_name(owner.name), serving_revision),
                children.revision_service(owner, naming.canary_service_name(owner.name),
                                          new.canary or serving_revision),
            ]
        apply += router.objects(owner, split)
    delete = [ChildRef("apps/v1", "Deployment", n) for n in sorted(observed.deployments) if n not in keep_names]
    delete += [ChildRef("apps/v1", "StatefulSet", n) for n in sorted(observed.statefulsets) if n not in keep_names]
    delete += [ChildRef(multinode.LWS_API_VERSION, "LeaderWorkerSet", n) for n in sorted(observed.leader_worker_sets)
               if n not in keep_names]
    # A multi-node revision that goes takes its headless Service (the fallback's; LWS makes its own) and its keys.
    gone = [n for n, s in sorted(observed.statefulsets.items()) if n not in keep_names
            and s["metadata"]["labels"].get(naming.LABEL_COMPONENT) == naming.COMPONENT_SERVER]
    delete += [ChildRef("v1", "Service", n) for n in gone]
    gone += [n for n in sorted(observed.leader_worker_sets) if n not in keep_names]
    delete += [ChildRef("v1", "Secret", multinode.ssh_secret_name_of(n)) for n in gone]
    delete += [ChildRef("v1", "ConfigMap", cm) for cm in observed.model_repo_configmaps
               if cm not in {naming.model_repo_configmap_name(owner.name, r) for r in live}]
    if spec.rollout.traffic_routing.gateway_api is None:
        delete += [ChildRef(routing.GATEWAY_API_VERSION, "HTTPRoute", r) for r in observed.http_routes]
    delete += _stale_preflights(observed, (base.get("preflight") or {}).get("job", ""))

    history = []
    for revision in new.history:
        entry = old_history.get(revision)
        if entry is None or (revision == new.stable and revision != state.stable):  # promoted in this pass
            source = {"model": target.label, "spec": snapshot(target.spec)} if revision == target.name else entry
            entry = {"revision": revision, "model": (source or {}).get("model", ""), "promotedAt": now,
                     "spec": (source or {}).get("spec", {})}
        history.append(entry)

    n_ready = ready.get(new.stable, 0) if new.stable else ready.get(target.name, 0)
    provider = spec.rollout.analysis.provider if spec.rollout.analysis else ""
    status = {
        **base, "phase": decision.phase, "replicas": replicas, "readyReplicas": min(n_ready, replicas),
        "ready": f"{min(n_ready, replicas)}/{replicas}",
        "stableRevision": new.stable, "canaryRevision": new.canary, "canaryWeight": new.weight,
        "canaryReplicas": new.canary_replicas if new.canary else 0, "currentStep": new.step,
        "stepStartedAt": rfc3339(new.step_started_at) if new.step_started_at else "",
        "paused": new.paused, "pauseReason": new.pause_reason, "rolloutKind": new.kind,
        "heldRevision": new.held, "heldReason": new.held_reason,
        "analysis": _analysis_status(old_status.get("analysis"), new, observed, provider, now),
        "history": history,
    }
    if isinstance(parsed, str) or action is not None:
        nonce = (meta.get("annotations") or {}).get(naming.ANNOTATION_ACTION_NONCE, "")
        name = (meta.get("annotations") or {}).get(naming.ANNOTATION_ACTION, "")
        result = decision.action_result if action is not None else f"refused: {parsed}"
        status["lastAction"] = {"nonce": nonce, "action": name, "at": now, "result": result}
        if isinstance(parsed, str):
            events.append(Event("Warning", "ActionRefused", f"action {name!r}: {parsed}"))

    rolling_revision = new.canary or (target.name if not new.stable else "")
    stuck = unschedulable_pods(observed.pods, rolling_revision) if rolling_revision else []
    message = decision.message
    reason = decision.reason
    if stuck and decision.phase == "Progressing":
        # The truth a user needs when GPUs run out: the scheduler's own words, not an endless "rolling out".
        message += f"; {len(stuck)} pod(s) cannot be scheduled: {stuck[0]}"
        reason = Reason.CANARY_UNSCHEDULABLE if new.stable else Reason.UNSCHEDULABLE
    failing = failing_pods(observed.pods, rolling_revision) if rolling_revision else []
    if failing and decision.phase == "Progressing":
        # What the kubelet reports (CrashLoopBackOff with the container's last words, a failed startup probe, an
        # image that cannot be pulled), not "waiting for pods"; a Warning event once per distinct failure.
        message += f"; {len(failing)} pod(s) failing: {failing[0]}"
        reason = Reason.CANARY_CONTAINERS_FAILING if new.stable else Reason.CONTAINERS_FAILING
        which = failing[0].split(" (exit code")[0]  # the pod, container and reason: not the restart count
        if not any(which in str(c.get("message", "")) for c in old_status.get("conditions") or []):
            events.append(Event("Warning", "PodFailing", failing[0]))
    stable_ready = bool(new.stable) and ready.get(new.stable, 0) >= replicas
    if stable_ready:
        conds.set(st.READY, True, Reason.SCALED_TO_ZERO if replicas == 0 else Reason.REPLICAS_READY,
                  f"{min(n_ready, replicas)}/{replicas} replicas of revision {new.stable} ready")
    else:
        conds.set(st.READY, False, reason if decision.phase == "Progressing" else Reason.REPLICAS_NOT_READY, message)
    if decision.phase in ("Progressing", "Paused", "Preparing"):
        conds.set(st.PROGRESSING, True, reason, message)
    else:
        conds.set(st.PROGRESSING, False, Reason.AS_EXPECTED, "")
    if decision.degraded:
        conds.set(st.DEGRADED, True, decision.reason, _with_figures(message, status.get("analysis")))
    else:
        conds.set(st.DEGRADED, False, Reason.AS_EXPECTED)
    return _finish(body, conds, status, {"apply": apply, "delete": delete, "events": events,
                                         "ssh_secrets": ssh_secrets,
                                         "requeue_after": decision.requeue_after, "outcome": decision.outcome,
                                         "verdict": decision.verdict.result if decision.verdict else ""},
                   observed)


def _with_figures(message: str, analysis_status: Mapping[str, Any] | None) -> str:
    if not analysis_status or analysis_status.get("result") != "Failed":
        return message
    return f"{message}; last analysis: {analysis_status.get('message', '')}"


def analysis_request(body: Mapping[str, Any], observed: Observed, now: str) -> AnalysisRequest | None:
    """What the provider must measure this pass, if the rollout's analysis is due; None otherwise."""
    status = body.get("status") or {}
    if not status.get("canaryRevision"):  # no rollout: nothing to measure, and no second parse of the spec
        return None
    try:
        spec = DeepSeekDeploymentSpec.model_validate(body.get("spec") or {})
    except ValidationError:
        return None
    a = spec.rollout.analysis
    state = rollout_state(status)
    if a is None:
        return None
    rollout = rollout_settings(spec)
    ready, _ = ready_by_revision(observed.deployments, observed.statefulsets, observed.leader_worker_sets)
    if not machine.analysis_due(rollout, state, epoch(now), ready.get(state.canary, 0) >= 1):
        return None
    last = state.analysis
    previous = (status.get("analysis") or {}).get("counters", {}) if last and last.revision == state.canary else {}
    meta = body["metadata"]
    return AnalysisRequest(
        provider=a.provider, namespace=meta["namespace"], name=meta["name"], canary_revision=state.canary,
        stable_revision=state.stable, window_seconds=max(1.0, epoch(now) - machine.window_start(state)),
        previous_counters=dict(previous),
        canary_pod_ips=ready_pod_ips(observed.pods, state.canary),
        stable_pod_ips=ready_pod_ips(observed.pods, state.stable),
        canary_service=naming.canary_service_name(meta["name"]),
        stable_service=naming.stable_service_name(meta["name"]),
        prometheus=a.prometheus, gateway=a.gateway)


def download_progress_request(body: Mapping[str, Any], observed: Observed) -> tuple[str, str] | None:
    """(Job name, pod IP) of the running download pod whose progress the resource shows, if there is one."""
    model = (body.get("status") or {}).get("model")
    if not isinstance(model, Mapping) or model.get("state") not in ("Pending", "Downloading") or not model.get("job"):
        return None
    for pod in observed.download_pods.get(model["job"], ()):
        status = pod.get("status") or {}
        if status.get("phase") == "Running" and status.get("podIP"):
            return model["job"], status["podIP"]
    return None


def ready_pod_ips(pods: tuple[dict[str, Any], ...], revision: str) -> tuple[str, ...]:
    out = []
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(naming.LABEL_REVISION) != revision:
            continue
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP"):
            out.append(str(status["podIP"]))
    return tuple(sorted(out))


# Container states a pod does not get out of by waiting (the kubelet's reasons).
FAILING_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff",
                                     "CreateContainerConfigError", "CreateContainerError", "RunContainerError"})


def failing_pods(pods: tuple[dict[str, Any], ...], revision: str) -> list[str]:
    """`<pod>/<container>: <reason> ...` for this revision's pods whose containers (init containers included)
    keep failing, with the last exit code, restarts and message the kubelet recorded."""
    out = []
    for pod in pods:
        meta = pod["metadata"]
        if (meta.get("labels") or {}).get(naming.LABEL_REVISION) != revision or meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        for c in [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in FAILING_WAITING_REASONS:
                continue
            last = (c.get("lastState") or {}).get("terminated") or {}
            detail = (f" (exit code {last['exitCode']}, {c.get('restartCount', 0)} restarts)"
                      if "exitCode" in last else "")
            words = str(last.get("message") or waiting.get("message") or "").strip().splitlines()
            tail = f": {words[-1][:300]}" if words else ""
            out.append(f"{meta['name']}/{c.get('name')}: {waiting['reason']}{detail}{tail}")
    return out


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
