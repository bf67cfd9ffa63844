"""Weights of hf: and s3: checkpoints: one download Job per key, what status.model says at each step, the
store's error on failure and the retry, credentials by reference only. Pure: plan() driven pass by pass."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from pydantic import ValidationError

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.plan import DOWNLOAD_POLL_S, Observed, Plan, download_progress_request, plan
from deepseek_operator.render import naming, weights
from tests.unit.test_plan import T1, T2, cond, edited, example

QWEN_7B = "r1-distill-qwen-7b-a100"
S3 = {"s3": {"uri": "s3://models/qwen-7b", "endpointUrl": "http://minio.storage:9000", "pathStyle": True,
             "credentialsSecretRef": "s3-credentials"}}
HF = {"hf": {"repo": "deepseek-ai/DeepSeek-R1-Distill-Qwen-7B", "revision": "916b56a44061fd5cd7d6a8fb632557ed4f724f60",
             "tokenSecretRef": {"name": "hf", "key": "token"}}}
CACHE_UID = {"deepseek-model-cache": "uid-cache", "model-store": "uid-model-store"}


def body(source: dict[str, Any] = S3, **changes: Any) -> dict[str, Any]:
    return edited(example(QWEN_7B), {"model.source": copy.deepcopy(source), **changes})


def spec(doc: dict[str, Any]) -> DeepSeekDeploymentSpec:
    return DeepSeekDeploymentSpec.model_validate(doc["spec"])


def job_of(p: Plan) -> dict[str, Any]:
    [job] = [o for o in p.apply if o["kind"] == "Job"]
    return job


def terminated(message: dict[str, Any], start: str = T1) -> dict[str, Any]:
    return {"metadata": {"labels": {}}, "status": {"phase": "Succeeded", "startTime": start, "containerStatuses": [
        {"name": "download", "state": {"terminated": {"exitCode": 0, "message": json.dumps(message)}}}]}}


def passes(doc: dict[str, Any], *observed: Observed, now: str = T1) -> Plan:
    p = None
    for seen in observed:
        p = plan(copy.deepcopy(doc), seen, now)
        doc["status"] = p.status
    assert p is not None
    return p


def test_the_key_names_the_bytes_not_who_fetches_them() -> None:
    base = weights.key(spec(body()))
    same = [body(**{"model.source.s3.credentialsSecretRef": "other"}), body(**{"model.download": {
        "maxBytesPerSecond": 10_000_000}}), edited(body(), {"serving.replicas": 5})]
    assert {weights.key(spec(d)) for d in same} == {base}
    other = [body(**{"model.source.s3.uri": "s3://models/qwen-7b-v2"}), body(**{"model.revision": "2025-02-01"}),
             body(**{"model.source.s3.endpointUrl": "http://ceph.storage"})]
    assert base not in {weights.key(spec(d)) for d in other}


def test_an_s3_checkpoint_waits_for_the_cache_then_gets_one_download_job_with_secrets_by_reference() -> None:
    doc = body()
    first = passes(doc, Observed(pvc_uids={"model-store": "uid"}))
    assert [o["kind"] for o in first.apply] == ["PersistentVolumeClaim"]
    assert first.status["phase"] == "Preparing"
    assert (cond(first, "WeightsReady")["status"], cond(first, "WeightsReady")["reason"]) == ("False",
                                                                                             "DownloadPending")
    second = passes(doc, Observed(pvc_uids=CACHE_UID))
    job = job_of(second)
    key = weights.key(spec(doc))
    assert job["metadata"]["name"] == naming.download_job_name(key) == second.status["model"]["job"]
    # Owned by the cache PVC: deleting the resource deletes no weights another resource uses.
    assert job["metadata"]["ownerReferences"][0]["kind"] == "PersistentVolumeClaim"
    pod = job["spec"]["template"]["spec"]
    [container] = pod["containers"]
    assert pod["automountServiceAccountToken"] is False and "nvidia.com/gpu" not in json.dumps(pod)
    assert container["args"][:2] == ["--dest", f"/model-cache/checkpoints/{key}"]
    assert {"--s3-uri", "s3://models/qwen-7b", "--endpoint-url", "http://minio.storage:9000",
            "--path-style"} <= set(container["args"])
    secret_env = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in container["env"] if "valueFrom" in e}
    assert secret_env == {"AWS_ACCESS_KEY_ID": {"name": "s3-credentials", "key": "AWS_ACCESS_KEY_ID"},
                          "AWS_SECRET_ACCESS_KEY": {"name": "s3-credentials", "key": "AWS_SECRET_ACCESS_KEY"},
                          "AWS_SESSION_TOKEN": {"name": "s3-credentials", "key": "AWS_SESSION_TOKEN",
                                                "optional": True}}
    [fail_job, _] = job["spec"]["podFailurePolicy"]["rules"]
    assert fail_job == {"action": "FailJob", "onExitCodes": {"containerName": "download", "operator": "In",
                                                              "values": [weights.EXIT_PERMANENT]}}
    assert [e.reason for e in second.events] == ["DownloadStarted"]
    assert second.requeue_after == DOWNLOAD_POLL_S and second.status["phase"] == "Preparing"
    assert not [o for o in second.apply if o["kind"] == "Deployment"]


def test_progress_is_read_from_the_running_pod_and_shown_then_the_checkpoint_is_mounted_read_only() -> None:
    doc = body()
    key = weights.key(spec(doc))
    name = naming.download_job_name(key)
    created = passes(doc, Observed(pvc_uids=CACHE_UID))
    job = job_of(created)
    running_pod = {"metadata": {"labels": {}}, "status": {"phase": "Running", "podIP": "10.244.130.7"}}
    running = Observed(pvc_uids=CACHE_UID, download_jobs={name: {**job, "status": {"active": 1}}},
                       download_pods={name: (running_pod,)})
    assert download_progress_request(doc, running) == (name, "10.244.130.7")
    progress = {"bytesDone": 21_000_000_000, "bytesTotal": 61_000_000_000, "bytesPerSecond": 350_000_000,
                "file": "model-00002-of-00004.safetensors"}
    p = passes(doc, Observed(**{**running.__dict__, "download_progress": {name: progress}}))
    model = p.status["model"]
    assert (model["state"], model["bytesDone"], model["bytesTotal"], model["bytesPerSecond"], model["progress"]) == (
        "Downloading", 21_000_000_000, 61_000_000_000, 350_000_000, "21/61 GB")
    assert "model-00002-of-00004.safetensors at 350.0 MB/s" in cond(p, "WeightsReady")["message"]

    done = {"state": "Ready", "bytes": 61_000_000_000, "files": 9, "resumedBytes": 0, "bytesPerSecond": 400_000_000}
    finished = Observed(pvc_uids=CACHE_UID, download_jobs={name: {**job, "status": {
        "conditions": [{"type": "Complete", "status": "True"}]}}}, download_pods={name: (terminated(done),)})
    p = passes(doc, finished, finished)
    assert p.status["model"]["state"] == "Ready" and cond(p, "WeightsReady")["reason"] == "Downloaded"
    assert "9 files, 61 GB at 400.0 MB/s" in cond(p, "WeightsReady")["message"]
    [deployment] = [o for o in p.apply if o["kind"] == "Deployment"]
    pod = deployment["spec"]["template"]["spec"]
    [mount] = [m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "checkpoint"]
    [volume] = [v for v in pod["volumes"] if v["name"] == "checkpoint"]
    assert mount == {"name": "checkpoint", "mountPath": "/checkpoint", "readOnly": True,
                     "subPath": f"checkpoints/{key}"}
    assert volume["persistentVolumeClaim"] == {"claimName": "deepseek-model-cache", "readOnly": True}
    assert "AWS_" not in json.dumps(deployment) and "secretKeyRef" not in json.dumps(deployment)


def test_a_failed_download_degrades_with_the_stores_words_and_is_tried_again_later() -> None:
    doc = body()
    name = naming.download_job_name(weights.key(spec(doc)))
    job = job_of(passes(doc, Observed(pvc_uids=CACHE_UID)))
    error = {"state": "Failed", "error": "NoSuchBucket: The specified bucket does not exist.", "permanent": True}
    failed = Observed(pvc_uids=CACHE_UID, download_jobs={name: {**job, "status": {"conditions": [
        {"type": "Failed", "status": "True", "reason": "PodFailurePolicy", "lastTransitionTime": T1}]}}},
        download_pods={name: (terminated(error),)})
    p = passes(doc, failed, now=T1)
    assert p.status["phase"] == "Degraded" and p.status["model"]["state"] == "Failed"
    assert cond(p, "WeightsReady")["message"] == "NoSuchBucket: The specified bucket does not exist."
    assert "tried again at 2025-01-20T10:15:00Z, or at once when Job" in cond(p, "Degraded")["message"]
    assert [(e.type, e.reason) for e in p.events if e.reason.startswith("Download")] == [("Warning", "DownloadFailed")]
    assert not p.delete and p.requeue_after == pytest.approx(weights.RETRY_AFTER_S)
    again = passes(doc, failed, now=T1)
    assert not [e for e in again.events if e.reason == "DownloadFailed"]  # said once
    later = passes(doc, failed, now=T2)
    assert [(r.kind, r.name) for r in later.delete] == [("Job", name)]


def test_a_pvc_checkpoint_is_read_in_place_without_a_job() -> None:
    p = passes(example(QWEN_7B), Observed(pvc_uids={"model-store": "uid"}))
    assert cond(p, "WeightsReady")["reason"] == "OnVolume" and p.status["model"]["state"] == "Ready"
    assert not [o for o in p.apply if o["kind"] in ("Job", "PersistentVolumeClaim")]


def test_an_hf_checkpoint_is_fetched_at_its_commit_with_the_token_by_reference() -> None:
    doc = body(HF, **{"model.source.hf.endpoint": "https://hf-mirror.example"})
    [container] = job_of(passes(doc, Observed(pvc_uids=CACHE_UID)))["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--hf-revision") + 1] == HF["hf"]["revision"]
    assert args[args.index("--endpoint-url") + 1] == "https://hf-mirror.example"
    assert [e for e in container["env"] if e["name"] == "HF_TOKEN"] == [
        {"name": "HF_TOKEN", "valueFrom": {"secretKeyRef": {"name": "hf", "key": "token"}}}]


@pytest.mark.parametrize("revision", ["main", "v1.0", "916b56a"])
def test_an_hf_revision_must_be_a_commit(revision: str) -> None:
    with pytest.raises(ValidationError, match="revision"):
        spec(body({"hf": {"repo": "deepseek-ai/DeepSeek-R1", "revision": revision}}))


def test_two_resources_of_one_checkpoint_share_the_job_and_an_unrelated_job_does_not_count() -> None:
    first, second = body(), edited(body(), {"serving.replicas": 1})
    second["metadata"]["name"] = "other"
    job = job_of(passes(first, Observed(pvc_uids=CACHE_UID)))
    name = job["metadata"]["name"]
    seen = Observed(pvc_uids=CACHE_UID, download_jobs={name: {**job, "status": {"active": 1}},
                                                       "download-0123456789abcdef": {"status": {"active": 1}}})
    p = passes(second, seen)
    assert not [o for o in p.apply if o["kind"] == "Job"] and p.status["model"]["job"] == name
