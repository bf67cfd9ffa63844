"""What the serving workloads and pods say: ready replicas per revision, ready pod IPs, and the kubelet's and
the scheduler's words for pods that will not come up. Pure."""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from deepseek_operator.render import naming


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


def ready_pod_ips(pods: tuple[dict[str, Any], ...], revision: str) -> tuple[str, ...]:
    """The revision's Ready pods' addresses, less those being deleted (draining: their front door stops soon)."""
    out = []
    for pod in pods:
        if (pod["metadata"].get("labels") or {}).get(naming.LABEL_REVISION) != revision \
                or pod["metadata"].get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        ready = any(c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions") or [])
        if ready and status.get("podIP"):
            out.append(str(status["podIP"]))
    return tuple(sorted(out))


# Container states a pod does not get out of by waiting (the kubelet's reasons).
FAILING_WAITING_REASONS = frozenset({"CrashLoopBackOff", "ErrImagePull", "ImagePullBackOff", "InvalidImageName",
                                     "ErrImageNeverPull", "ImageInspectError", "CreateContainerConfigError",
                                     "CreateContainerError", "RunContainerError"})
# What a pod waits in while the kubelet sets it up (its volumes, its sandbox): only its Events say why it stays.
SETTING_UP_REASONS = frozenset({"ContainerCreating", "PodInitializing"})
# The kubelet's (and the attach/detach controller's) Warning events that leave a pod in ContainerCreating: the only
# place Kubernetes says that a Secret, a ConfigMap or a key a pod mounts is missing. The k8s layer keeps the newest
# of these per pod and hands it over as the pod summary's WARNING key.
POD_WARNING_REASONS = frozenset({"FailedMount", "FailedAttachVolume", "FailedCreatePodSandBox",
                                 "FailedToRetrieveImagePullSecret"})
WARNING = "warning"  # {"reason", "message"} of the pod's newest such event
PULL_REASONS = frozenset({"ErrImagePull", "ImagePullBackOff"})


def _revision_of(pod: dict[str, Any]) -> str | None:
    return (pod["metadata"].get("labels") or {}).get(naming.LABEL_REVISION)


def failing_pods(pods: tuple[dict[str, Any], ...], revision: str) -> list[str]:
    """`<pod>/<container>: <reason> ...` for this revision's pods whose containers (init containers included)
    keep failing, with the last exit code, restarts and message the kubelet recorded; and `<pod>: <event reason>:
    <message>` for a pod the kubelet cannot set up (a volume it cannot mount), in the words of its Warning event."""
    return troubled_pods(tuple(p for p in pods if _revision_of(p) == revision))


def troubled_pods(pods: tuple[dict[str, Any], ...] | list[dict[str, Any]]) -> list[str]:
    """failing_pods for any pods (a download's, a quantize Job's, a preflight's)."""
    out = []
    for pod in pods:
        meta = pod["metadata"]
        if meta.get("deletionTimestamp"):
            continue
        status = pod.get("status") or {}
        statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
        for c in statuses:
            waiting = (c.get("state") or {}).get("waiting") or {}
            if waiting.get("reason") not in FAILING_WAITING_REASONS:
                continue
            last = (c.get("lastState") or {}).get("terminated") or {}
            detail = (f" (exit code {last['exitCode']}, {c.get('restartCount', 0)} restarts)"
                      if "exitCode" in last else "")
            words = str(last.get("message") or waiting.get("message") or "").strip().splitlines()
            tail = f": {words[-1][:300]}" if words else ""
            warning = pod.get(WARNING) or {}
            if waiting["reason"] in PULL_REASONS and warning.get("reason") == "FailedToRetrieveImagePullSecret":
                tail += f" ({warning.get('message', '')})"  # the pull went ahead without the Secret named
            out.append(f"{meta['name']}/{c.get('name')}: {waiting['reason']}{detail}{tail}")
        if (warning := setting_up_warning(pod)) is not None:
            out.append(f"{meta['name']}: {warning}")
    return out


def setting_up_warning(pod: dict[str, Any]) -> str | None:
    """`<reason>: <message>` of the kubelet's newest Warning event on a pod it is still setting up (no container
    running, or ever run): a volume it cannot mount, a sandbox it cannot create. None for a pod that runs, or one
    the kubelet has said nothing against."""
    warning = pod.get(WARNING) or {}
    status = pod.get("status") or {}
    if warning.get("reason") not in POD_WARNING_REASONS or status.get("phase") not in (None, "Pending"):
        return None
    statuses = [*(status.get("initContainerStatuses") or []), *(status.get("containerStatuses") or [])]
    if any("running" in (c.get("state") or {}) or "terminated" in (c.get("state") or {})
           or "terminated" in (c.get("lastState") or {}) for c in statuses):
        return None  # it got past the set-up: the event is history
    if any(((c.get("state") or {}).get("waiting") or {}).get("reason") not in SETTING_UP_REASONS
           for c in statuses):
        return None  # waiting for something else (an image, a crash loop): said above
    message = " ".join(str(warning.get("message", "")).split())[:400]
    return f"{warning['reason']}: {message}"


def unschedulable_pods(pods: tuple[dict[str, Any], ...], revision: str) -> list[str]:
    """The scheduler's messages for this revision's pods that it could not place."""
    out = []
    for pod in pods:
        if _revision_of(pod) != revision:
            continue
        for cond in (pod.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False" \
                    and cond.get("reason") == "Unschedulable":
                out.append(str(cond.get("message", "")).strip())
    return out


def refused_pods(deployments: Mapping[str, dict[str, Any]], revision: str) -> str:
    """What the API server answered the ReplicaSet that could not create this revision's pods (a ResourceQuota,
    Pod Security admission, a policy webhook), as the Deployment's ReplicaFailure condition carries it; empty
    when nothing was refused."""
    for deployment in deployments.values():
        if (deployment["metadata"].get("labels") or {}).get(naming.LABEL_REVISION) != revision:
            continue
        for cond in (deployment.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                return str(cond.get("message", "")).strip()
    return ""


def pods_holding_gpus(pods: tuple[dict[str, Any], ...]) -> dict[str, int]:
    """Serving pods (a group's leader, for a layout across nodes) per revision that hold their GPUs: created and
    not yet gone, those draining after their deletion too; finished ones hold none."""
    held: Counter[str] = Counter()
    for pod in pods:
        revision = (pod["metadata"].get("labels") or {}).get(naming.LABEL_REVISION)
        if revision and (pod.get("status") or {}).get("phase") not in ("Succeeded", "Failed"):
            held[revision] += 1
    return dict(held)
