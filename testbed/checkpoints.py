"""Tiny stand-in checkpoints in a model-store PVC, written the way a platform team fills one: a Job that mounts
the PVC and writes each model folder (here a Hugging Face layout of a config.json and a tokenizer.json, no
weights: the testbed's TensorRT-LLM stand-in loads nothing more).

Usage: python -m testbed.checkpoints NAMESPACE [--claim model-store] [PATH ...]
(default paths: every `spec.model.source.pvc.path` the examples name).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time

import yaml
from kubernetes import client, config
from kubernetes.client.rest import ApiException

from testbed.cluster import KUBECONFIG, REPO

LOADER_IMAGE = "busybox:1.36"
JOB_NAME = "model-store-loader"


def example_paths(claim: str) -> list[str]:
    paths = set()
    for example in sorted((REPO / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(example.read_text()):
            pvc = (((doc or {}).get("spec") or {}).get("model") or {}).get("source", {}).get("pvc") or {}
            if pvc.get("claimName") == claim:
                paths.add(pvc.get("path", "/"))
    return sorted(paths)


def loader_job(claim: str, paths: list[str]) -> dict[str, object]:
    lines = ["set -eu"]
    for path in paths:
        folder = "/store" + path.rstrip("/")
        config_json = json.dumps({"model_type": "testbed-tiny", "_name_or_path": path, "architectures": ["Tiny"]})
        lines += [f"mkdir -p {shlex.quote(folder)}",
                  f"printf '%s' {shlex.quote(config_json)} > {shlex.quote(folder + '/config.json')}",
                  f"printf '%s' '{{\"version\": \"1.0\"}}' > {shlex.quote(folder + '/tokenizer.json')}"]
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": JOB_NAME},
            "spec": {"backoffLimit": 2, "template": {"spec": {
                "restartPolicy": "Never",
                "automountServiceAccountToken": False,
                # The servers' user (spec.pods' default) writes the store: the namespace enforces `restricted`.
                "securityContext": {"runAsNonRoot": True, "runAsUser": 1000, "runAsGroup": 1000, "fsGroup": 1000,
                                    "seccompProfile": {"type": "RuntimeDefault"}},
                "containers": [{"name": "load", "image": LOADER_IMAGE, "command": ["sh", "-c", "\n".join(lines)],
                                "securityContext": {"allowPrivilegeEscalation": False,
                                                    "readOnlyRootFilesystem": True,
                                                    "capabilities": {"drop": ["ALL"]}},
                                "volumeMounts": [{"name": "store", "mountPath": "/store"}]}],
                "volumes": [{"name": "store", "persistentVolumeClaim": {"claimName": claim}}]}}}}


def seed(namespace: str, claim: str = "model-store", paths: list[str] | None = None,
         api: client.ApiClient | None = None, timeout: float = 120) -> None:
    """Runs the loader Job in `namespace` and waits for it to complete."""
    api = api or config.new_client_from_config(str(KUBECONFIG))
    batch = client.BatchV1Api(api)
    job = loader_job(claim, paths if paths is not None else example_paths(claim))
    try:
        batch.create_namespaced_job(namespace, job)
    except ApiException as e:
        if e.status != 409:
            raise
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = batch.read_namespaced_job_status(JOB_NAME, namespace).status
        if status.succeeded:
            return
        if status.failed and status.failed > 2:
            raise RuntimeError(f"{namespace}/{JOB_NAME} failed; see its pod's status")
        time.sleep(0.5)
    raise TimeoutError(f"{namespace}/{JOB_NAME} did not complete within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("namespace")
    parser.add_argument("--claim", default="model-store")
    parser.add_argument("paths", nargs="*")
    args = parser.parse_args(argv)
    seed(args.namespace, args.claim, args.paths or None)
    print(f"checkpoints written to {args.namespace}/{args.claim}: {', '.join(args.paths or example_paths(args.claim))}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

