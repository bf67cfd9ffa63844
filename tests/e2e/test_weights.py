"""Weights in: s3: checkpoints downloaded by the operator's download Job from a real S3-compatible store
(versitygw, testbed/objectstore.py) into the model cache, once per checkpoint, resumably and verified, with the
store's own words when it fails, and the credentials never leaving the downloader's environment."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client

from testbed import checkpoints, cluster
from testbed.objectstore import ObjectStore
from tests.e2e.kube import TestbedClient, eventually
from tests.e2e.operator_proc import OperatorProcess
from tests.e2e.test_serving import Resources, _docs, kubectl_apply

pytestmark = pytest.mark.e2e
BUCKET = "models"
BIG = 40 << 20  # the weights file: tens of MB, so that a download takes seconds at a capped rate


def checkpoint_files() -> dict[str, bytes]:
    config = {"model_type": "testbed-tiny", "_name_or_path": "s3", "architectures": ["Tiny"]}
    tokenizer = {name: text.encode() for name, text in checkpoints.tokenizer_files().items()}  # what TRT-LLM loads
    return {"config.json": json.dumps(config).encode(), **tokenizer,
            "model-00001-of-00001.safetensors": os.urandom(BIG)}


@pytest.fixture(scope="module")
def store(testbed: TestbedClient) -> Iterator[tuple[ObjectStore, dict[str, bytes]]]:
    files = checkpoint_files()
    with ObjectStore() as s3:
        s3.create_bucket(BUCKET)
        for prefix in ("qwen-7b", "corrupt", "resume", "small"):
            for name, data in files.items():
                s3.put(BUCKET, f"{prefix}/{name}", data)
        yield s3, files


@pytest.fixture
def ns(testbed: TestbedClient, operator: OperatorProcess, store: tuple[ObjectStore, dict[str, bytes]]) -> Iterator[str]:
    name = testbed.namespace("weights", pod_security="restricted")
    s3, _ = store
    # The example's Secret with the store's keys, and one with a wrong secret key.
    [example_secret] = [d for d in _docs("r1-distill-qwen-7b-s3.yaml", name) if d["kind"] == "Secret"]
    example_secret["stringData"] = {"AWS_ACCESS_KEY_ID": s3.access_key, "AWS_SECRET_ACCESS_KEY": s3.secret_key}
    wrong = {**example_secret["stringData"], "AWS_SECRET_ACCESS_KEY": "not-" + s3.secret_key}
    assert kubectl_apply([example_secret]).returncode == 0
    testbed.core.create_namespaced_secret(name, client.V1Secret(
        metadata=client.V1ObjectMeta(name="wrong-credentials"), string_data=wrong))
    yield name
    testbed.delete_namespace(name)


def s3_resource(namespace: str, name: str, s3: ObjectStore, prefix: str, bucket: str = BUCKET,
                secret: str = "s3-credentials", **model: Any) -> dict[str, Any]:
    """examples/r1-distill-qwen-7b-s3.yaml pointed at the testbed's store: endpoint, bucket and prefix."""
    doc = next(d for d in _docs("r1-distill-qwen-7b-s3.yaml", namespace) if d["kind"] == "DeepSeekDeployment")
    doc["metadata"]["name"] = name
    doc["spec"]["model"]["source"]["s3"].update(uri=f"s3://{bucket}/{prefix}", endpointUrl=s3.endpoint,
                                                credentialsSecretRef=secret)
    doc["spec"]["model"].pop("download")
    doc["spec"]["model"].update(model)
    doc["spec"]["serving"]["replicas"] = 1
    return doc


def download_jobs(res: Resources) -> list[Any]:
    return res.batch.list_namespaced_job(res.ns, label_selector="app.kubernetes.io/component=download").items


def files_on_the_cache(testbed: TestbedClient, ns: str, key: str, pvc: str = "deepseek-model-cache") -> dict[str, str]:
    """sha256 of each file of the downloaded checkpoint, read by a pod that mounts the cache read-only."""
    script = f"cd /cache/checkpoints/{key} && sha256sum $(find . -type f ! -name .complete | sort) " \
             "> /dev/termination-log"
    testbed.apply([{"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"check-{key[:8]}"},
                    "spec": {"restartPolicy": "Never",
                             # The namespace enforces `restricted`: a reader as the servers are.
                             "securityContext": {"runAsNonRoot": True, "runAsUser": 1000,
                                                 "seccompProfile": {"type": "RuntimeDefault"}},
                             "containers": [{
                        "name": "check", "image": "busybox:1.36", "command": ["sh", "-c", script],
                        "securityContext": {"allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}},
                        "volumeMounts": [{"name": "cache", "mountPath": "/cache", "readOnly": True}]}],
                        "volumes": [{"name": "cache", "persistentVolumeClaim": {"claimName": pvc}}]}}], ns)

    def finished() -> str | None:
        status = testbed.core.read_namespaced_pod_status(f"check-{key[:8]}", ns).status
        for cs in status.container_statuses or []:
            if cs.state.terminated:
                return str(cs.state.terminated.message)
        return None
    out = eventually("the checksum pod", finished, timeout=60)
    return {line.split()[1].removeprefix("./"): line.split()[0] for line in out.splitlines() if line.strip()}


def test_two_resources_naming_one_s3_checkpoint_cause_one_download_and_serve_it_byte_for_byte(
        testbed: TestbedClient, ns: str, store: tuple[ObjectStore, dict[str, bytes]],
        operator: OperatorProcess) -> None:
    s3, files = store
    res = Resources(testbed, ns)
    log_start = operator.log_path.stat().st_size
    assert kubectl_apply([s3_resource(ns, "first", s3, "qwen-7b"), s3_resource(ns, "second", s3, "qwen-7b")]
                         ).returncode == 0
    for name in ("first", "second"):
        res.wait_phase(name, "Healthy", timeout=240)
    [job] = download_jobs(res)
    models = [res.get(name)["status"]["model"] for name in ("first", "second")]
    assert models[0]["key"] == models[1]["key"] and job.metadata.name == models[0]["job"]
    total = sum(len(d) for d in files.values())
    assert models[0]["state"] == "Ready" and models[0]["bytesTotal"] == total, models[0]
    assert res.condition("first", "WeightsReady")["reason"] == "Downloaded"
    assert {c["type"]: c["status"] for c in [res.condition("second", "WeightsReady")]} == {"WeightsReady": "True"}

    wide = subprocess.run([str(cluster.BIN / "kubectl"), f"--kubeconfig={cluster.KUBECONFIG}", "-n", ns, "get",
                           "dsd", "first", "-o", "wide"], text=True, capture_output=True, check=True).stdout
    header, row = wide.splitlines()[:2]
    assert "WEIGHTS" in header and "DOWNLOADED" in header and "Ready" in row and models[0]["progress"] in row

    on_cache = files_on_the_cache(testbed, ns, models[0]["key"])
    assert on_cache == {name: hashlib.sha256(data).hexdigest() for name, data in files.items()}

    # The serving pods read the checkpoint read-only from the cache and never download.
    [pod] = testbed.ready_pods(ns, "app.kubernetes.io/instance=first")
    [mount] = [m for m in pod.spec.containers[0].volume_mounts if m.name == "checkpoint"]
    assert (mount.sub_path, mount.read_only) == (f"checkpoints/{models[0]['key']}", True)

    # The secret's value is in no status, event, operator log line or pod spec; the downloader's pod names it
    # by reference only.
    needles = [s3.secret_key, base64.b64encode(s3.secret_key.encode()).decode()]
    haystacks = {"status": json.dumps([res.get(n)["status"] for n in ("first", "second")]),
                 "events": json.dumps(testbed.api.sanitize_for_serialization(
                     testbed.core.list_namespaced_event(ns).items)),
                 "operator log": operator.log_path.read_bytes()[log_start:].decode(errors="replace"),
                 "pods": json.dumps(testbed.api.sanitize_for_serialization(
                     testbed.core.list_namespaced_pod(ns).items))}
    for where, text in haystacks.items():
        assert not any(n in text for n in needles), f"the secret leaked into the {where}"
    [downloader] = testbed.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=download").items
    refs = {e.name: e.value_from.secret_key_ref.name for e in downloader.spec.containers[0].env
            if e.value_from and e.value_from.secret_key_ref}
    assert refs == {"AWS_ACCESS_KEY_ID": "s3-credentials", "AWS_SECRET_ACCESS_KEY": "s3-credentials",
                    "AWS_SESSION_TOKEN": "s3-credentials"}
    serving_env = [e.name for p in testbed.core.list_namespaced_pod(
        ns, label_selector="app.kubernetes.io/component=server").items for c in p.spec.containers for e in c.env or []]
    assert not any(name.startswith("AWS_") for name in serving_env)


def test_a_downloader_killed_mid_file_resumes_and_the_result_verifies(
        testbed: TestbedClient, ns: str, store: tuple[ObjectStore, dict[str, bytes]]) -> None:
    s3, files = store
    res = Resources(testbed, ns)
    # 3 MB/s: the 40 MB file takes about 14 s, long enough to watch (the operator polls every 3 s) and to kill.
    doc = s3_resource(ns, "resumed", s3, "resume", download={"maxBytesPerSecond": 3_000_000})
    assert kubectl_apply([doc]).returncode == 0

    def midway() -> dict[str, Any] | None:
        model = (res.get("resumed").get("status") or {}).get("model") or {}
        return model if model.get("state") == "Downloading" and 0 < model.get("bytesDone", 0) < BIG // 2 else None
    seen = eventually("the download to report progress", midway, timeout=90, interval=0.2)
    assert seen["bytesTotal"] == sum(len(d) for d in files.values()) and seen["bytesPerSecond"] > 0
    assert res.condition("resumed", "WeightsReady")["reason"] == "Downloading"
    [pod] = testbed.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=download").items
    testbed.core.delete_namespaced_pod(pod.metadata.name, ns, grace_period_seconds=0)

    res.wait_phase("resumed", "Healthy", timeout=240)
    model = res.get("resumed")["status"]["model"]
    assert model["state"] == "Ready" and "resumed from" in model["message"], model
    assert len(download_jobs(res)) == 1
    assert files_on_the_cache(testbed, ns, model["key"]) == {
        name: hashlib.sha256(data).hexdigest() for name, data in files.items()}


def _failed(res: Resources, name: str) -> dict[str, Any]:
    def failed() -> dict[str, Any] | None:
        found = res.condition(name, "WeightsReady")
        return found if found and found["reason"] == "DownloadFailed" else None
    return eventually(f"{name} to report its failed download", failed, timeout=120)


def test_wrong_credentials_a_missing_bucket_a_corrupt_object_and_a_full_volume_say_what_the_store_said(
        testbed: TestbedClient, ns: str, store: tuple[ObjectStore, dict[str, bytes]]) -> None:
    s3, _ = store
    res = Resources(testbed, ns)
    damaged = s3.object_file(BUCKET, "corrupt/model-00001-of-00001.safetensors")
    with damaged.open("r+b") as f:  # behind the store's back: its ETag still names the original bytes
        f.seek(1000)
        f.write(b"\xff" * 16)
    small = s3_resource(ns, "full", s3, "small")
    small["spec"]["runtime"]["cache"] = {"pvc": "small-cache", "size": "16Mi"}
    assert kubectl_apply([s3_resource(ns, "wrong-key", s3, "qwen-7b", secret="wrong-credentials"),
                          s3_resource(ns, "no-bucket", s3, "qwen-7b", bucket="no-such-bucket"),
                          s3_resource(ns, "corrupt", s3, "corrupt"), small]).returncode == 0
    expected = {"wrong-key": "SignatureDoesNotMatch", "no-bucket": "NoSuchBucket",
                "corrupt": "checksum mismatch for model-00001-of-00001.safetensors",
                "full": "No space left on device"}
    for name, words in expected.items():
        condition = _failed(res, name)
        assert words in condition["message"], condition
        status = res.get(name)["status"]
        assert status["phase"] == "Degraded" and status["model"]["state"] == "Failed"
        degraded = res.condition(name, "Degraded")
        assert degraded["status"] == "True" and "tried again at" in degraded["message"]
        events = testbed.core.list_namespaced_event(ns, field_selector=f"involvedObject.name={name}").items
        assert any(e.reason == "DownloadFailed" and e.type == "Warning" and words in e.message for e in events)
    # A failure no retry mends fails its Job at once (podFailurePolicy), not after the Job's back-off: one pod each.
    def failed_jobs() -> list[Any] | None:
        jobs = download_jobs(res)
        done = len(jobs) == len(expected) and all(any(c.type == "Failed" for c in j.status.conditions or [])
                                                   for j in jobs)
        return jobs if done else None

    for job in eventually("each download Job to fail", failed_jobs, timeout=30):
        failed = next(c for c in job.status.conditions if c.type == "Failed")
        assert (failed.reason, job.status.failed or 0) == ("PodFailurePolicy", 1), job.metadata.name
    # No serving pod was made for any of them.
    assert not testbed.core.list_namespaced_pod(ns, label_selector="app.kubernetes.io/component=server").items
