"""What every pod the operator makes carries: its identity (ServiceAccount, pull Secrets, no API token unless
asked), priority and runtime class, and the Pod Security Standard `restricted` profile (a non-root user, no
privilege escalation, every capability dropped, the runtime's default seccomp profile, a read-only root with a
writable /tmp). The one exception is RDMA: NCCL's InfiniBand/RoCE transport pins memory and needs IPC_LOCK,
which only the `privileged` profile admits (PSA's `baseline` allows no added capability)."""

from __future__ import annotations

from typing import Any

from deepseek_operator.api.spec import DeepSeekDeploymentSpec
from deepseek_operator.render import nccl

LEVELS = ("restricted", "baseline", "privileged")  # Pod Security Standards, strictest first
ENFORCE_LABEL = "pod-security.kubernetes.io/enforce"

TMP_MOUNT = "/tmp"


def tmp_volume() -> dict[str, Any]:
    """Scratch space under a read-only root: mpirun's hostfile and session directory, Python's and the CUDA/HF
    caches (HOME points here), the downloader's partial files."""
    return {"name": "tmp", "emptyDir": {"sizeLimit": "4Gi"}}


def tmp_mount() -> dict[str, Any]:
    return {"name": "tmp", "mountPath": TMP_MOUNT}


def home_env() -> dict[str, str]:
    return {"name": "HOME", "value": TMP_MOUNT}


def pod_fields(spec: DeepSeekDeploymentSpec, *, gpu: bool) -> dict[str, Any]:
    """The pod-level fields of spec.pods and the non-root security context; `gpu` pods get the runtime class."""
    pods = spec.pods
    return {
        **({"serviceAccountName": pods.service_account_name} if pods.service_account_name else {}),
        "automountServiceAccountToken": pods.automount_service_account_token,
        **({"imagePullSecrets": [{"name": n} for n in pods.image_pull_secrets]} if pods.image_pull_secrets else {}),
        **({"priorityClassName": pods.priority_class_name} if pods.priority_class_name else {}),
        **({"runtimeClassName": pods.runtime_class_name} if gpu and pods.runtime_class_name else {}),
        # One user and group for every pod: the model cache is written by one Job and read by the servers.
        "securityContext": {"runAsNonRoot": True, "runAsUser": pods.run_as_user, "runAsGroup": pods.run_as_group,
                            "fsGroup": pods.fs_group, "fsGroupChangePolicy": "OnRootMismatch",
                            "seccompProfile": {"type": "RuntimeDefault"}},
    }


def container_context(capabilities: tuple[str, ...] = ()) -> dict[str, Any]:
    """A container's security context: `restricted`, plus exactly the `capabilities` RDMA needs, if any."""
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"], **({"add": list(capabilities)} if capabilities else {})}}


def needed_level(spec: DeepSeekDeploymentSpec, nodes_per_replica: int) -> tuple[str, str]:
    """The strictest Pod Security Standard that admits every pod of this layout (what its pods get of the network
    spec decides it), and why it is not stricter."""
    net = nccl.pod_network(spec.network, spans_nodes=nodes_per_replica > 1)
    if net.host_network:
        return "privileged", "spec.network.hostNetwork puts the pods in the host's network namespace"
    if net.capabilities:
        return "privileged", (f"each replica spans {nodes_per_replica} nodes over {spec.network.fabric.value}, "
                              f"whose NCCL transport pins memory ({', '.join(net.capabilities)}); no stricter "
                              "level admits an added capability")
    return "restricted", ""


def pod_security_problem(spec: DeepSeekDeploymentSpec, nodes_per_replica: int, enforced: str | None) -> str | None:
    """Why the namespace's enforced level (its pod-security.kubernetes.io/enforce label) admits none of this
    layout's pods, or None."""
    level, why = needed_level(spec, nodes_per_replica)
    if enforced not in LEVELS or LEVELS.index(enforced) >= LEVELS.index(level):
        return None
    return (f"the namespace enforces the {enforced!r} Pod Security Standard, which would refuse every pod: {why}. "
            f"Label the namespace {ENFORCE_LABEL}={level}, or serve a layout that fits one node (or Ethernet)")
