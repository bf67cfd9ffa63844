"""The Kubernetes objects one DeepSeekDeployment becomes, as dicts ready for server-side apply. Pure.

Every child carries our labels and an owner reference to the resource (the quantize Job and the cache PVC
are shared between resources and are the exceptions, see render/quantize.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from deepseek_operator.api.spec import GROUP, KIND, VERSION, DeepSeekDeploymentSpec
from deepseek_operator.render import naming, nccl, security, triton, weights
from deepseek_operator.render.catalog import GpuSpec

MODEL_REPO_MOUNT = "/srv/model-repository"
MODEL_REPO_SOURCE_MOUNT = "/srv/model-repository-src"
# The pod's front door (deepseek_operator.frontend, a sidecar of Triton) takes every HTTP API on the `http` port,
# the OpenAI API and Triton's own, and counts what clients got; it forwards Triton's to TRITON_HTTP_PORT. gRPC
# and Triton's metrics stay Triton's own ports.
HTTP_PORT, GRPC_PORT, METRICS_PORT = 8000, 8001, 8002
FRONTEND_METRICS_PORT = 8003
TRITON_HTTP_PORT = 8080
SSH_PORT = 2222  # a multi-node replica's workers: the leader's mpirun starts their ranks over SSH
# The startup probe: every 5 s, so that a server up in seconds takes traffic in seconds (it stops once passed).
PROBE_PERIOD_S = 5
# On deletion a pod keeps serving this long before Triton is told to stop, so gateways and Services drop its
# endpoint first: without it a scale-down or promotion turns in-flight routing into 502s and "model not found".
DRAIN_SECONDS = 10
# The pod's grace period: the preStop sleep, then Triton's own drain of the requests in flight, then a margin for
# the process to exit before the kubelet's SIGKILL.
GRACE_PERIOD_SECONDS = 60
EXIT_TIMEOUT_SECONDS = GRACE_PERIOD_SECONDS - DRAIN_SECONDS - 10
# A multi-node replica's worker runs ranks of its leader's model: were it to stop with the leader, the leader's
# mpirun would lose them mid-drain and its Triton would die under the requests still routed to it. The worker
# outlives the leader's drain and Triton's exit, within the grace period.
WORKER_DRAIN_SECONDS = DRAIN_SECONDS + EXIT_TIMEOUT_SECONDS + 5
# NCCL and the TensorRT-LLM runtime share tensors across ranks through /dev/shm; the container default (64 MiB)
# is far too small for tensor parallelism.
SHM_PER_GPU_GI = 8


@dataclass(frozen=True)
class Owner:
    name: str
    namespace: str
    uid: str

    def reference(self) -> dict[str, Any]:
        return {"apiVersion": f"{GROUP}/{VERSION}", "kind": KIND, "name": self.name, "uid": self.uid,
                "controller": True, "blockOwnerDeletion": True}


@dataclass(frozen=True)
class RevisionPods:
    """One revision as its pods see it: whose they are, the spec that made them, and what rendering it decided."""

    owner: Owner
    spec: DeepSeekDeploymentSpec
    gpu: GpuSpec
    revision: str
    checkpoint_key: str
    mount_model_cache: bool  # it serves a quantized checkpoint of the model cache
    stream_interval: int = 1  # tokens per streamed response, which the front door's latency figures divide


# The Gateway API Inference Extension's endpoint picker reads a pod's queue figures by the engine this label names
# (gateway-api-inference-extension: pkg/epp "engine-type" label; the front door exports that engine's names).
ENGINE_TYPE_LABEL, ENGINE_TYPE = "inference.networking.k8s.io/engine-type", "triton-tensorrt-llm"


def child_metadata(owner: Owner, name: str, component: str,
                   extra_labels: dict[str, str] | None = None) -> dict[str, Any]:
    return {"name": name, "namespace": owner.namespace,
            "labels": {**naming.common_labels(owner.name, component), **(extra_labels or {})},
            "ownerReferences": [owner.reference()]}


def gpu_node_affinity(gpu: GpuSpec, extra_selector: dict[str, str]) -> dict[str, Any]:
    """Nodes whose GPU Feature Discovery product label names this GPU type (any of its variants)."""
    expressions = [{"key": "nvidia.com/gpu.product", "operator": "In", "values": list(gpu.product_labels)}]
    expressions += [{"key": k, "operator": "In", "values": [v]} for k, v in sorted(extra_selector.items())]
    terms = [{"matchExpressions": expressions}]
    return {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}


def tolerations(spec: DeepSeekDeploymentSpec) -> list[dict[str, Any]]:
    gpu_taint = {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    return [gpu_taint, *(t.model_dump(by_alias=True, exclude_none=True) for t in spec.serving.tolerations)]


CHECKPOINT_MOUNT = "/checkpoint"


def checkpoint_dir(spec: DeepSeekDeploymentSpec) -> str:
    """Where a pod that mounts checkpoint_volume finds the checkpoint."""
    src = spec.model.source
    return f"{CHECKPOINT_MOUNT}{src.pvc.path}".rstrip("/") if src.pvc else CHECKPOINT_MOUNT


def checkpoint_volume(spec: DeepSeekDeploymentSpec) -> tuple[dict[str, Any], dict[str, Any]]:
    """The checkpoint, read-only at /checkpoint: the user's PVC, or the downloaded folder of the model cache."""
    src = spec.model.source
    mount: dict[str, Any] = {"name": "checkpoint", "mountPath": CHECKPOINT_MOUNT, "readOnly": True}
    if src.pvc:
        volume = {"name": "checkpoint", "persistentVolumeClaim": {"claimName": src.pvc.claim_name, "readOnly": True}}
    else:
        volume = {"name": "checkpoint",
                  "persistentVolumeClaim": {"claimName": spec.runtime.cache.pvc, "readOnly": True}}
        mount["subPath"] = weights.cache_subpath(weights.key(spec))
    return volume, mount


def cache_pvc(spec: DeepSeekDeploymentSpec, namespace: str) -> dict[str, Any]:
    cache = spec.runtime.cache
    pvc: dict[str, Any] = {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": cache.pvc, "namespace": namespace,
                     "labels": {naming.LABEL_MANAGED_BY: naming.MANAGED_BY,
                                naming.LABEL_COMPONENT: naming.COMPONENT_MODEL_CACHE}},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": cache.size}}},
    }
    if cache.storage_class_name:
        pvc["spec"]["storageClassName"] = cache.storage_class_name
    return pvc


def model_repo_configmap(owner: Owner, revision: str, data: dict[str, str]) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": child_metadata(owner, naming.model_repo_configmap_name(owner.name, revision),
                              naming.COMPONENT_MODEL_REPO, {naming.LABEL_REVISION: revision}),
            "immutable": True,
            "data": data}


def shm_size(gpus: int) -> str:
    return f"{SHM_PER_GPU_GI * gpus}Gi"


def _layout_script() -> str:
    """The init container: the image's own `llmapi` model folder laid out whole (its model.py imports helpers.py
    from beside it: triton_backend/all_models/llmapi/tensorrt_llm/1/), then the rendered files over it (the
    ConfigMap volume restores their paths through `items`; the rendered model.yaml replaces the image's sample),
    in the writable repository Triton loads."""
    version_dir = f"{MODEL_REPO_MOUNT}/{triton.MODEL_NAME}/{triton.VERSION_DIR}"
    return "\n".join([
        "set -eu",
        f"mkdir -p {version_dir}",
        f"cp -R {triton.IMAGE_MODEL_DIR}/. {version_dir}/",
        f"cp -R {MODEL_REPO_SOURCE_MOUNT}/. {MODEL_REPO_MOUNT}/",
    ])


GRPC_TLS_MOUNT = "/etc/triton/grpc-tls"


def _grpc_tls_args(spec: DeepSeekDeploymentSpec) -> list[str]:
    """tritonserver's flags for TLS on its gRPC port, from the Secret a serving pod mounts."""
    tls = spec.serving.grpc_tls
    if tls is None:
        return []
    args = ["--grpc-use-ssl=true", f"--grpc-server-cert={GRPC_TLS_MOUNT}/tls.crt",
            f"--grpc-server-key={GRPC_TLS_MOUNT}/tls.key"]
    if tls.mutual:
        args += ["--grpc-use-ssl-mutual=true", f"--grpc-root-cert={GRPC_TLS_MOUNT}/ca.crt"]
    return args


def _grpc_tls_volume(spec: DeepSeekDeploymentSpec) -> tuple[tuple[dict[str, Any], dict[str, Any]], ...]:
    tls = spec.serving.grpc_tls
    if tls is None:
        return ()
    return (({"name": "grpc-tls", "secret": {"secretName": tls.secret_name, "defaultMode": 0o440}},
             {"name": "grpc-tls", "mountPath": GRPC_TLS_MOUNT, "readOnly": True}),)


def triton_command(spec: DeepSeekDeploymentSpec) -> list[str]:
    """tritonserver itself, the container's main process: its crash is the container's crash, and the kubelet's
    SIGTERM reaches it, which Triton traps to finish the requests in flight (`--exit-timeout-secs`) before it
    exits. Not under `trtllm-llmapi-launch`: that script keeps the server in a background subshell and an MPI
    leader in the foreground (tensorrt_llm/llmapi/trtllm-llmapi-launch), and the `llmapi` model of TensorRT-LLM
    1.2 clears any MPI job it inherits and has `LLM()` spawn its tensor x pipeline ranks itself on this node
    (NVIDIA's own single-node launch, triton_backend/scripts/launch_triton_server.py, is a world of one).
    Latency histograms are on, so time to first response and p99 are measurable."""
    return ["tritonserver", f"--model-repository={MODEL_REPO_MOUNT}", f"--http-port={TRITON_HTTP_PORT}",
            f"--grpc-port={GRPC_PORT}", f"--metrics-port={METRICS_PORT}",
            "--metrics-config=histogram_latencies=true", f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
            *_grpc_tls_args(spec)]


def _ports_and_probes(startup_timeout_seconds: int, serves: bool) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Triton's ports and health probes (a startup probe as long as the startup timeout); a multi-node worker's
    sshd, which is ready once it takes the leader's MPI launch."""
    if not serves:
        return ([{"name": "ssh", "containerPort": SSH_PORT}],
                {"readinessProbe": {"tcpSocket": {"port": "ssh"}, "periodSeconds": 5, "failureThreshold": 3}})
    startup_failures = max(1, -(-startup_timeout_seconds // PROBE_PERIOD_S))  # rounded up
    ports = [{"name": "triton-http", "containerPort": TRITON_HTTP_PORT}, {"name": "grpc", "containerPort": GRPC_PORT},
             {"name": "metrics", "containerPort": METRICS_PORT}]
    return ports, {
        "startupProbe": {"httpGet": {"path": "/v2/health/ready", "port": "triton-http"},
                         "periodSeconds": PROBE_PERIOD_S, "failureThreshold": startup_failures},
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "triton-http"},
                           "periodSeconds": 5, "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/v2/health/live", "port": "triton-http"},
                          "periodSeconds": 15, "failureThreshold": 4},
    }


def _server_volumes(owner: Owner, spec: DeepSeekDeploymentSpec, revision: str, gpus: int,
                    mount_model_cache: bool, checkpoint: dict[str, Any]) -> list[dict[str, Any]]:
    """The model repository (rendered, and the writable copy Triton loads), the model cache read-only when the
    revision serves a quantized checkpoint, the checkpoint, and /dev/shm for NCCL."""
    return [
        {"name": "model-repository-src", "configMap": {
            "name": naming.model_repo_configmap_name(owner.name, revision), "items": triton.configmap_volume_items()}},
        {"name": "model-repository", "emptyDir": {}},
        *([{"name": "model-cache", "persistentVolumeClaim": {"claimName": spec.runtime.cache.pvc, "readOnly": True}}]
          if mount_model_cache else []),
        checkpoint,
        {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": shm_size(gpus)}},
        security.tmp_volume(),
    ]


def frontend_container(r: RevisionPods, checkpoint_mount: dict[str, Any]) -> dict[str, Any]:
    """The pod's front door beside Triton: the OpenAI API and Triton's HTTP API on the pod's `http` port, forwarded
    to Triton on localhost and counted as clients got them (deepseek_operator.frontend). It reads the checkpoint's
    tokenizer (token counts, the chat template), so it needs the checkpoint and nothing else."""
    spec, revision = r.spec, r.revision
    frontend = spec.serving.openai
    args = ["--port", str(HTTP_PORT), "--metrics-port", str(FRONTEND_METRICS_PORT),
            "--triton-url", f"http://127.0.0.1:{TRITON_HTTP_PORT}", "--triton-model", triton.MODEL_NAME,
            "--served-model", frontend.served_model_name or spec.model.name, "--revision", revision,
            "--checkpoint", checkpoint_dir(spec), "--reasoning-parser", frontend.reasoning_parser,
            # No answer is longer than the sequence the runtime holds.
            "--default-max-tokens", str(min(frontend.default_max_tokens, spec.runtime.max_seq_len)),
            "--max-seq-len", str(spec.runtime.max_seq_len), "--stream-interval", str(r.stream_interval)]
    if spec.serving.streaming:
        args.append("--decoupled")
    if not frontend.enabled:
        args.append("--no-openai")
    return {
        "name": "frontend",
        "image": frontend.image,
        "args": args,
        "ports": [{"name": "http", "containerPort": HTTP_PORT},
                  {"name": "fe-metrics", "containerPort": FRONTEND_METRICS_PORT}],
        "readinessProbe": {"httpGet": {"path": "/health/ready", "port": "http"}, "periodSeconds": 5,
                           "failureThreshold": 3},
        "livenessProbe": {"httpGet": {"path": "/health/live", "port": "http"}, "periodSeconds": 15,
                          "failureThreshold": 4},
        # It keeps answering while the endpoint is dropped, as Triton does (DRAIN_SECONDS), then finishes what
        # is in flight.
        "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS}}},
        "resources": {"requests": {"cpu": "250m", "memory": "256Mi"}, "limits": {"memory": "1Gi"}},
        "securityContext": security.container_context(),  # it writes nothing
        "volumeMounts": [checkpoint_mount],
    }


def server_pod_template(r: RevisionPods, *, gpus: int, command: list[str], component: str = "",
                        extra_labels: dict[str, str] | None = None,
                        extra_volumes: tuple[tuple[dict[str, Any], dict[str, Any]], ...] = (),
                        serves: bool = True, spans_nodes: bool = False) -> dict[str, Any]:
    """The pod of one node of a replica: Triton and its front door (or, `serves` False, a multi-node replica's
    worker, which runs ranks for its leader and answers no client), with the node's GPUs, the fabric and the model
    repository."""
    owner, spec, revision = r.owner, r.spec, r.revision
    serving = spec.serving
    if serves:  # the pod whose Triton answers clients holds its gRPC certificate
        extra_volumes = (*extra_volumes, *_grpc_tls_volume(spec))
    net = nccl.pod_network(spec.network, spans_nodes=spans_nodes)
    labels = {**naming.common_labels(owner.name, component or naming.COMPONENT_SERVER), **serving.pod_labels,
              naming.LABEL_REVISION: revision, naming.LABEL_CHECKPOINT_KEY: r.checkpoint_key,
              **({ENGINE_TYPE_LABEL: ENGINE_TYPE} if serves else {}), **(extra_labels or {})}
    annotations = {**serving.pod_annotations, **net.annotations, f"{GROUP}/revision": revision}
    ckpt_volume, ckpt_mount = checkpoint_volume(spec)
    resources = serving.resources.model_dump()
    resources["limits"] = {**resources["limits"], **net.resources, "nvidia.com/gpu": str(gpus)}
    if net.resources:
        resources["requests"] = {**resources["requests"], **net.resources}
    ports, probes = _ports_and_probes(serving.startup_timeout_seconds, serves)
    return {
        "metadata": {"labels": labels, "annotations": annotations},
        "spec": {
            "affinity": {"nodeAffinity": gpu_node_affinity(r.gpu, serving.node_selector)},
            **({"hostNetwork": True, "dnsPolicy": "ClusterFirstWithHostNet"} if net.host_network else {}),
            "tolerations": tolerations(spec),
            "terminationGracePeriodSeconds": GRACE_PERIOD_SECONDS,
            **security.pod_fields(spec, gpu=True),
            "initContainers": [{
                "name": "model-repository",
                "image": spec.runtime.image,
                "command": ["/bin/sh", "-c", _layout_script()],
                "securityContext": security.container_context(),
                "volumeMounts": [{"name": "model-repository-src", "mountPath": MODEL_REPO_SOURCE_MOUNT},
                                 {"name": "model-repository", "mountPath": MODEL_REPO_MOUNT}],
            }],
            "containers": [{
                "name": "triton",
                "image": spec.runtime.image,
                "command": command,
                # HOME under /tmp: the CUDA, Triton-kernel and Hugging Face caches, under a read-only root.
                "env": [{"name": k, "value": v} for k, v in sorted({**net.env, "HOME": security.TMP_MOUNT}.items())],
                "securityContext": security.container_context(net.capabilities),
                "ports": ports,
                "resources": resources,
                "lifecycle": {"preStop": {"sleep": {"seconds": DRAIN_SECONDS if serves else WORKER_DRAIN_SECONDS}}},
                **probes,
                "volumeMounts": [
                    {"name": "model-repository", "mountPath": MODEL_REPO_MOUNT},
                    *([{"name": "model-cache", "mountPath": weights.CACHE_MOUNT, "readOnly": True}]
                      if r.mount_model_cache else []),
                    ckpt_mount,
                    {"name": "dshm", "mountPath": "/dev/shm"},
                    security.tmp_mount(),
                    *(mount for _, mount in extra_volumes),
                ],
            }, *([frontend_container(r, dict(ckpt_mount))] if serves else [])],
            "volumes": [*_server_volumes(owner, spec, revision, gpus, r.mount_model_cache, ckpt_volume),
                        *(volume for volume, _ in extra_volumes)],
        },
    }


def server_deployment(r: RevisionPods, *, world_size: int, replicas: int) -> dict[str, Any]:
    """A revision whose replicas each fit one node."""
    owner, spec, revision = r.owner, r.spec, r.revision
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": child_metadata(owner, naming.server_deployment_name(owner.name, revision),
                                   naming.COMPONENT_SERVER, {naming.LABEL_REVISION: revision}),
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": naming.revision_selector_labels(owner.name, revision)},
            # GPUs are scarce: surge one replica at a time, never drop below the desired count.
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "progressDeadlineSeconds": spec.serving.startup_timeout_seconds + 600,
            "template": server_pod_template(r, gpus=world_size, command=triton_command(spec)),
        },
    }


def _service_ports() -> list[dict[str, Any]]:
    return [{"name": "http", "port": HTTP_PORT, "targetPort": "http"},
            {"name": "grpc", "port": GRPC_PORT, "targetPort": "grpc"},
            {"name": "metrics", "port": METRICS_PORT, "targetPort": "metrics"}]


def service(owner: Owner) -> dict[str, Any]:
    """`<name>`: every serving pod of every live revision (the replica-ratio router's traffic split)."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": child_metadata(owner, owner.name, naming.COMPONENT_SERVER),
            "spec": {"selector": naming.selector_labels(owner.name), "ports": _service_ports()}}


def revision_service(owner: Owner, name: str, revision: str) -> dict[str, Any]:
    """`<name>-stable` / `<name>-canary`: the pods of one revision, for HTTPRoute backends and for clients that
    must reach one version."""
    return {"apiVersion": "v1", "kind": "Service",
            "metadata": child_metadata(owner, name, naming.COMPONENT_SERVER),
            "spec": {"selector": naming.revision_selector_labels(owner.name, revision), "ports": _service_ports()}}


def disruption_budget(owner: Owner) -> dict[str, Any]:
    # One replica at a time: a drained node must not take several model replicas (and their GPUs) down at once.
    return {"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": child_metadata(owner, owner.name, naming.COMPONENT_SERVER),
            "spec": {"maxUnavailable": 1, "selector": {"matchLabels": naming.selector_labels(owner.name)}}}
