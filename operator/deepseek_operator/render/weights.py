"""Where a checkpoint's weights come from, and the Job that downloads an hf: or s3: one. Pure.

A `pvc:` checkpoint is read in place. An hf: or s3: checkpoint is downloaded once per key (source location and
revision) into `checkpoints/<key>` of the namespace's model cache PVC by a download Job, which the cache PVC
owns: every DeepSeekDeployment naming the same checkpoint waits for the same Job and mounts the folder
read-only, and deleting one resource deletes no weights (the policy: weights stay in the cache until the PVC is
deleted, or until their folder is removed by hand; see the README). Serving pods never download. The Job's
program (deepseek_operator.download) makes the folder visible only once every file is complete and verified;
its progress endpoint and termination message feed `status.model`.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.spec import GROUP, DeepSeekDeploymentSpec
from deepseek_operator.api.status import WeightsState
from deepseek_operator.render import naming, reports, security

CACHE_MOUNT = "/model-cache"
CHECKPOINTS_DIR = "checkpoints"
PROGRESS_PORT = 8080
EXIT_PERMANENT = 2  # the downloader's exit code for a failure another try cannot mend (download/cli.py)
BACKOFF_LIMIT = 4  # retries of a transient failure; the Job controller waits 10 s, 20 s, 40 s, 80 s between
RETRY_AFTER_S = 600.0  # a failed download is tried again this long after it failed (a fixed Secret, a grown PVC)


def downloads(spec: DeepSeekDeploymentSpec) -> bool:
    return spec.model.source.pvc is None


def location(spec: DeepSeekDeploymentSpec) -> str:
    """The source as one line, for status and events (never a secret: only references exist in the spec)."""
    src = spec.model.source
    if src.pvc:
        return f"pvc:{src.pvc.claim_name}{src.pvc.path}"
    if src.hf:
        return f"hf:{src.hf.repo}@{src.hf.revision}" + (f" via {src.hf.endpoint}" if src.hf.endpoint else "")
    assert src.s3 is not None
    return src.s3.uri + (f" via {src.s3.endpoint_url}" if src.s3.endpoint_url else "")


def key(spec: DeepSeekDeploymentSpec) -> str:
    """What identifies the downloaded bytes: where they come from and which revision. Credentials and the
    downloader's settings are not part of it (the same checkpoint fetched with other keys is the same)."""
    src = spec.model.source
    where: dict[str, Any]
    if src.hf:
        where = {"hf": src.hf.repo, "commit": src.hf.revision, "endpoint": src.hf.endpoint}
    else:
        assert src.s3 is not None
        where = {"s3": src.s3.uri, "endpoint": src.s3.endpoint_url}
    return naming.digest({**where, "revision": spec.model.revision}, 16)


def cache_subpath(download_key: str) -> str:
    return f"{CHECKPOINTS_DIR}/{download_key}"


def _args(spec: DeepSeekDeploymentSpec, download_key: str) -> list[str]:
    src, settings = spec.model.source, spec.model.download
    args = ["--dest", f"{CACHE_MOUNT}/{cache_subpath(download_key)}", "--progress-port", str(PROGRESS_PORT)]
    if src.hf:
        args += ["--hf-repo", src.hf.repo, "--hf-revision", src.hf.revision]
        args += ["--endpoint-url", src.hf.endpoint] if src.hf.endpoint else []
    else:
        assert src.s3 is not None
        args += ["--s3-uri", src.s3.uri]
        args += ["--endpoint-url", src.s3.endpoint_url] if src.s3.endpoint_url else []
        args += ["--region", src.s3.region] if src.s3.region else []
        args += ["--path-style"] if src.s3.path_style else []
    if settings.max_bytes_per_second:
        args += ["--max-bytes-per-second", str(settings.max_bytes_per_second)]
    return args


def _secret_env(spec: DeepSeekDeploymentSpec) -> list[dict[str, Any]]:
    """The credentials, by reference only: the kubelet resolves them into this container's environment."""
    src = spec.model.source
    env: list[dict[str, Any]] = [{"name": "HF_HOME", "value": f"{security.TMP_MOUNT}/hf"},
                                 {"name": "HF_HUB_DISABLE_TELEMETRY", "value": "1"}]
    if src.hf and src.hf.token_secret_ref:
        token = src.hf.token_secret_ref
        env.append({"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": token.name, "key": token.key}}})
    if src.s3 and src.s3.credentials_secret_ref:
        name = src.s3.credentials_secret_ref
        for var, optional in (("AWS_ACCESS_KEY_ID", False), ("AWS_SECRET_ACCESS_KEY", False),
                              ("AWS_SESSION_TOKEN", True)):
            ref: dict[str, Any] = {"name": name, "key": var}
            if optional:
                ref["optional"] = True
            env.append({"name": var, "valueFrom": {"secretKeyRef": ref}})
    return env


def job(*, spec: DeepSeekDeploymentSpec, download_key: str, namespace: str, cr_name: str,
        cache_pvc_uid: str) -> dict[str, Any]:
    """The download Job of one key: on any node (no GPU), owned by the cache PVC it fills."""
    labels = {naming.LABEL_MANAGED_BY: naming.MANAGED_BY, naming.LABEL_COMPONENT: naming.COMPONENT_DOWNLOAD,
              naming.LABEL_WEIGHTS_KEY: download_key, "app.kubernetes.io/instance": spec.runtime.cache.pvc}
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": naming.download_job_name(download_key),
            "namespace": namespace,
            "labels": labels,
            "annotations": {f"{GROUP}/requested-by": cr_name, f"{GROUP}/source": location(spec)},
            "ownerReferences": [{"apiVersion": "v1", "kind": "PersistentVolumeClaim", "name": spec.runtime.cache.pvc,
                                 "uid": cache_pvc_uid, "blockOwnerDeletion": False}],
        },
        "spec": {
            "backoffLimit": BACKOFF_LIMIT,
            # Credentials, a missing bucket, a corrupt object or a full volume: no retry will mend them.
            "podFailurePolicy": {"rules": [
                {"action": "FailJob",
                 "onExitCodes": {"containerName": "download", "operator": "In", "values": [EXIT_PERMANENT]}},
                {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget"}]},
            ]},
            "template": {
                "metadata": {"labels": labels},
                "spec": {
                    "restartPolicy": "Never",
                    # A non-root user; fsGroup makes a fresh cache volume writable by it.
                    **security.pod_fields(spec, gpu=False),
                    "containers": [{
                        "name": "download",
                        "image": spec.model.download.image,
                        "args": _args(spec, download_key),
                        "env": _secret_env(spec),
                        "ports": [{"name": "progress", "containerPort": PROGRESS_PORT}],
                        "resources": {"requests": {"cpu": "1", "memory": "512Mi"}, "limits": {"memory": "2Gi"}},
                        "securityContext": security.container_context(),
                        "volumeMounts": [{"name": "model-cache", "mountPath": CACHE_MOUNT},
                                         security.tmp_mount()],
                    }],
                    "volumes": [{"name": "model-cache",
                                 "persistentVolumeClaim": {"claimName": spec.runtime.cache.pvc}},
                                security.tmp_volume()],
                },
            },
        },
    }


@dataclass(frozen=True)
class Download:
    """What the Job, its newest pod and that pod's progress endpoint say, as `status.model` shows it."""

    state: WeightsState
    message: str
    bytes_done: int = 0
    bytes_total: int = 0
    bytes_per_second: int = 0
    failed_at: str = ""  # when the Job failed (its Failed condition), for the retry
    key: str = ""
    job: str = ""

    def status_fields(self) -> dict[str, Any]:
        """The fields of status.model (ModelStatus, by name) this download sets."""
        out: dict[str, Any] = {"state": self.state, "message": self.message, "bytes_done": self.bytes_done,
                               "bytes_total": self.bytes_total, "bytes_per_second": self.bytes_per_second}
        out.update({k: v for k, v in (("key", self.key), ("job", self.job)) if v})
        if self.bytes_total:
            out["progress"] = f"{gigabytes(self.bytes_done)}/{gigabytes(self.bytes_total)} GB"
        return out


def gigabytes(n: int) -> str:
    return f"{n / 1e9:.2f}" if n < 10e9 else f"{n / 1e9:.0f}"


def _termination(pod: Mapping[str, Any]) -> dict[str, Any]:
    """The downloader's JSON outcome from its terminated container, if any."""
    if not (message := reports.termination_message(pod, "download")):
        return {}
    try:
        parsed = json.loads(message)
    except ValueError:
        return {"error": message.strip()[-500:]}
    return parsed if isinstance(parsed, dict) else {}


def _failure(pods: list[Mapping[str, Any]]) -> dict[str, Any]:
    """The newest failed pod's outcome: the store's own error."""
    for pod in sorted(pods, key=lambda p: str((p.get("status") or {}).get("startTime") or ""), reverse=True):
        outcome = _termination(pod)
        if outcome.get("error"):
            return outcome
    return {}


def _completed(pods: list[Mapping[str, Any]]) -> Download:
    outcome = next((o for o in map(_termination, pods) if o.get("state") == WeightsState.READY), {})
    if not outcome:
        return Download(WeightsState.READY, "downloaded and verified")
    total = int(outcome.get("bytes") or 0)
    rate, resumed = int(outcome.get("bytesPerSecond") or 0), int(outcome.get("resumedBytes") or 0)
    how = (f" at {rate / 1e6:.1f} MB/s" if rate else "") + \
          (f", resumed from {resumed / 1e6:.1f} MB an earlier pod wrote" if resumed else "")
    return Download(WeightsState.READY, f"downloaded and verified {outcome.get('files', '?')} files, "
                                        f"{gigabytes(total)} GB{how}", total, total, 0)


def observe(job: Mapping[str, Any], pods: list[Mapping[str, Any]], progress: Mapping[str, Any] | None) -> Download:
    """The download as the Job, its pods and the running pod's progress endpoint report it."""
    if (ended := reports.finished_condition(job)) is not None:
        if ended["type"] == "Complete":
            return _completed(pods)
        outcome = _failure(pods)
        error = outcome.get("error") or f"{ended.get('reason', '')}: {ended.get('message', '')}".strip(": ")
        return Download(WeightsState.FAILED, str(error), int(outcome.get("bytesDone") or 0),
                        int(outcome.get("bytesTotal") or 0), 0, str(ended.get("lastTransitionTime") or ""))
    if progress:
        done, total = int(progress.get("bytesDone") or 0), int(progress.get("bytesTotal") or 0)
        rate = int(progress.get("bytesPerSecond") or 0)
        return Download(WeightsState.DOWNLOADING, f"downloading {progress.get('file') or 'the file list'}"
                        + (f" at {rate / 1e6:.1f} MB/s" if rate else ""), done, total, rate)
    retried = _failure(pods)
    if retried:  # a transient failure; the Job controller starts the next pod after its back-off
        return Download(WeightsState.DOWNLOADING, f"retrying after: {retried['error']}",
                        int(retried.get("bytesDone") or 0), int(retried.get("bytesTotal") or 0))
    state = WeightsState.DOWNLOADING if (job.get("status") or {}).get("active") else WeightsState.PENDING
    return Download(state, "waiting for the download pod")
