"""Small helpers the end-to-end tests share: the API client, waiting, and load through real endpoints."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

import requests
import yaml
from kubernetes import client, config, utils

from deepseek_operator.api import images
from deepseek_operator.render import triton
from testbed import checkpoints, cluster, network
from tests.e2e import leftovers
from tests.e2e.secret_scan import leaks

T = TypeVar("T")


@dataclass
class TestbedClient:
    __test__ = False  # not a test class, whatever its name
    kubeconfig: str
    gateway: str
    gateway_tls: str  # the Gateway's HTTPS listener (127.0.0.1:<port>)
    prometheus: str
    traefik_metrics: str
    api: client.ApiClient

    @classmethod
    def from_state(cls, state: cluster.State) -> TestbedClient:
        return cls(
            kubeconfig=str(cluster.KUBECONFIG),
            gateway=f"http://127.0.0.1:{state.ports['gateway']}",
            gateway_tls=f"127.0.0.1:{state.ports.get('gateway-tls', 0)}",
            prometheus=f"http://127.0.0.1:{state.ports['prometheus']}",
            traefik_metrics=f"http://{network.HOST_IP}:{state.ports['traefik-metrics']}",
            api=config.new_client_from_config(str(cluster.KUBECONFIG)),
        )

    @property
    def core(self) -> client.CoreV1Api:
        return client.CoreV1Api(self.api)

    def namespace(self, prefix: str = "t", pod_security: str | None = None) -> str:
        """A fresh namespace, labelled with this session; `pod_security` (restricted, baseline, privileged) is the
        Pod Security Standard the API server enforces on its pods."""
        name = f"{prefix}-{uuid.uuid4().hex[:6]}"
        labels = {"pod-security.kubernetes.io/enforce": pod_security,
                  "pod-security.kubernetes.io/enforce-version": "latest"} if pod_security else {}
        labels[leftovers.SESSION_LABEL] = leftovers.this_session()  # the next session deletes it if this one dies
        self.core.create_namespace({"metadata": {"name": name, "labels": labels}})
        return name

    def delete_namespace(self, name: str) -> None:
        """Deletes a test's namespace, after checking that none of its Secrets' values is readable elsewhere."""
        try:
            found = leaks(self.api, name, cluster.LOGS)
        finally:
            self.core.delete_namespace(name)
        assert not found, f"Secret values in the open: {found}"

    def apply(self, manifest: str | list[dict[str, Any]], namespace: str) -> None:
        docs = list(yaml.safe_load_all(manifest)) if isinstance(manifest, str) else manifest
        utils.create_from_yaml(self.api, yaml_objects=[d for d in docs if d], namespace=namespace)

    def prom_query(self, query: str) -> list[dict[str, Any]]:
        r = requests.get(f"{self.prometheus}/api/v1/query", params={"query": query}, timeout=5)
        r.raise_for_status()
        return list(r.json()["data"]["result"])

    def ready_pods(self, namespace: str, selector: str) -> list[Any]:
        pods = self.core.list_namespaced_pod(namespace, label_selector=selector).items
        return [p for p in pods if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])]


def eventually(what: str, fn: Callable[[], T | None], timeout: float = 90, interval: float = 0.5) -> T:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = fn()
        except Exception as e:  # keep polling through transient API errors; report the last one
            last = e
        if last and not isinstance(last, Exception):
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


TRITON_IMAGE = images.TRITON_IMAGE
# A hand-written llmapi deployment of the Triton image, as a user without the operator would write it: the
# rendered model files in a ConfigMap, an init container that lays out the repository with the image's own
# model folder and a (tiny, made-up) checkpoint, and tritonserver in the foreground.
_LAYOUT = ("set -eu; mkdir -p /srv/repo/tensorrt_llm/1 /srv/ckpt; "
           f"cp -R {triton.IMAGE_MODEL_DIR}/. /srv/repo/tensorrt_llm/1/; cp /src/config.pbtxt /srv/repo/tensorrt_llm/; "
           "cp /src/model.yaml /srv/repo/tensorrt_llm/1/; echo '{}' > /srv/ckpt/config.json; "
           "cp /src/tokenizer.json /src/tokenizer_config.json /srv/ckpt/")  # the checkpoint's tokenizer, as upstream
           # loads it before anything else (testbed/checkpoints.py)


def triton_deployment(name: str, replicas: int = 1, annotations: dict[str, str] | None = None,
                      gpus: int = 1, labels: dict[str, str] | None = None) -> list[dict[str, Any]]:
    """A Deployment of the Triton image on a GPU node, and a Service in front of it."""
    pod_labels = {"app": name, **(labels or {})}
    params = triton.LlmApiParams(checkpoint_dir="/srv/ckpt", tensor_parallel=gpus, pipeline_parallel=1,
                                 max_batch_size=8, max_num_tokens=512, max_seq_len=1024, free_gpu_memory_fraction=0.9,
                                 batch_scheduler_policy="guaranteedNoEvict", decoupled=False)
    files = triton.render_model_repository(params)
    volumes = [{"name": "src", "configMap": {"name": f"{name}-model"}}, {"name": "repo", "emptyDir": {}}]
    mounts = [{"name": "src", "mountPath": "/src"}, {"name": "repo", "mountPath": "/srv"}]
    return [
        {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": f"{name}-model"},
         "data": {"config.pbtxt": files[f"{triton.MODEL_NAME}/{triton.CONFIG_FILE}"],
                  "model.yaml": files[triton.MODEL_YAML], **checkpoints.tokenizer_files()}},
        {"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": name},
         "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}},
                  "template": {"metadata": {"labels": pod_labels, "annotations": annotations or {}},
                               "spec": {"tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists",
                                                         "effect": "NoSchedule"}],
                                        "initContainers": [{"name": "layout", "image": TRITON_IMAGE,
                                                            "command": ["sh", "-c", _LAYOUT], "volumeMounts": mounts}],
                                        "containers": [{"name": "triton", "image": TRITON_IMAGE,
                                                        "command": ["tritonserver", "--model-repository=/srv/repo"],
                                                        "ports": [{"name": "http", "containerPort": 8000},
                                                                  {"name": "grpc", "containerPort": 8001},
                                                                  {"name": "metrics", "containerPort": 8002}],
                                                        "readinessProbe": {"httpGet": {"path": "/v2/health/ready",
                                                                                       "port": "http"},
                                                                           "periodSeconds": 2},
                                                        "resources": {"limits": {"nvidia.com/gpu": str(gpus)}},
                                                        "volumeMounts": mounts}],
                                        "volumes": volumes}}}},
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
         "spec": {"selector": {"app": name}, "ports": [{"name": "http", "port": 8000, "targetPort": 8000}]}},
    ]


def generate(base_url: str, prompt: str, headers: dict[str, str] | None = None,
             session: requests.Session | None = None) -> requests.Response:
    s = session or requests
    return s.post(f"{base_url}/v2/models/tensorrt_llm/generate",
                  json={"text_input": prompt, "sampling_param_max_tokens": 8,
                        # without it the llmapi model echoes the prompt (helpers.py's default, as docs/serving.md says)
                        "sampling_param_exclude_input_from_output": True}, headers=headers or {}, timeout=10)


def fire(n: int, call: Callable[[requests.Session], T], workers: int = 8) -> list[T]:
    """Sends n requests with a bounded pool; each worker keeps its own connection."""
    local = threading.local()
    sessions: list[requests.Session] = []

    def one(_: int) -> T:
        if not hasattr(local, "session"):
            local.session = requests.Session()
            sessions.append(local.session)
        return call(local.session)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        results = list(pool.map(one, range(n)))
    for s in sessions:
        s.close()
    return results
