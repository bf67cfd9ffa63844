"""What a kubelet derives from a pod spec before it runs anything, as pure functions over the pod (a dict in
the API's camelCase shape): container env with `$(VAR)` expansion, probes with their defaults, restart
back-off, the container states and pod conditions it reports. The pod runner (testbed/podrunner.py) does the
I/O; everything here is table-tested in tests/unit/test_testbed_kubelet.py.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

# The kubelet's crash-loop back-off: 10 s, doubled per restart, at most 5 minutes; reset after a container ran
# 10 minutes without failing (pkg/kubelet/kuberuntime, `backOffPeriod`/`MaxContainerBackOff`).
BACKOFF_INITIAL_S = 10.0
BACKOFF_MAX_S = 300.0
BACKOFF_RESET_S = 600.0
# FallbackToLogsOnError keeps the last 80 lines, at most 2048 bytes; a termination message is at most 4096.
FALLBACK_LOG_LINES = 80
FALLBACK_LOG_BYTES = 2048
TERMINATION_MESSAGE_BYTES = 4096
DEFAULT_TERMINATION_PATH = "/dev/termination-log"

_FIELD_LABEL = re.compile(r"^metadata\.(annotations|labels)\['([^']+)'\]$")
_QUANTITY = re.compile(r"^([0-9.]+)([a-zA-Z]*)$")
_SUFFIX = {"": 1.0, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2.0**10, "Mi": 2.0**20,
           "Gi": 2.0**30, "Ti": 2.0**40}


class SpecError(ValueError):
    """A pod the kubelet cannot start as written (the message is what a kubelet reports)."""


def quantity(text: str) -> float:
    """A resource quantity as a number ("500m" -> 0.5, "2Gi" -> 2147483648)."""
    m = _QUANTITY.match(str(text).strip())
    if not m or m.group(2) not in _SUFFIX:
        raise SpecError(f"quantity {text!r} is not valid")
    return float(m.group(1)) * _SUFFIX[m.group(2)]


def field_value(pod: Mapping[str, Any], path: str) -> str:
    """A downward-API `fieldRef` value (the ones the kubelet supports for env and volumes)."""
    meta, spec, status = pod.get("metadata") or {}, pod.get("spec") or {}, pod.get("status") or {}
    if m := _FIELD_LABEL.match(path):
        return str((meta.get(m.group(1)) or {}).get(m.group(2), ""))
    values = {
        "metadata.name": meta.get("name", ""), "metadata.namespace": meta.get("namespace", ""),
        "metadata.uid": meta.get("uid", ""), "spec.nodeName": spec.get("nodeName", ""),
        "spec.serviceAccountName": spec.get("serviceAccountName", "default"),
        "status.podIP": status.get("podIP", ""), "status.hostIP": status.get("hostIP", ""),
        "status.podIPs": ",".join(p["ip"] for p in status.get("podIPs") or []),
    }
    if path in ("metadata.labels", "metadata.annotations"):
        return "\n".join(f'{k}="{v}"' for k, v in sorted((meta.get(path.split(".")[1]) or {}).items()))
    if path not in values:
        raise SpecError(f"fieldRef {path!r} is not supported")
    return str(values[path])


def resource_value(container: Mapping[str, Any], ref: Mapping[str, Any]) -> str:
    """A `resourceFieldRef` value: the container's limit (or request), divided by the divisor, rounded up."""
    kind, _, name = ref["resource"].partition(".")
    resources = container.get("resources") or {}
    value = (resources.get(kind) or {}).get(name)
    if value is None and kind == "requests":
        value = (resources.get("limits") or {}).get(name)
    if value is None:  # no limit: the node's allocatable, which for a fake node is "plenty"
        return "0"
    divisor = quantity(ref.get("divisor") or "1")
    result = quantity(value) / divisor
    return str(int(-(-result // 1)))


def expand(text: str, env: Mapping[str, str]) -> str:
    """`$(VAR)` as the kubelet expands it in env values, commands and args (`$$` escapes; unknown names stay)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


Lookup = Callable[[str, str, str, bool], str | None]
"""(kind "configmap"|"secret", object name, key, optional) -> value, None when optional and missing."""
LookupAll = Callable[[str, str, bool], dict[str, str]]
"""(kind, object name, optional) -> every key of the object."""


def container_env(pod: Mapping[str, Any], container: Mapping[str, Any], *, base: Mapping[str, str],
                  lookup: Lookup, lookup_all: LookupAll) -> dict[str, str]:
    """The container's environment in the kubelet's order: the image's env, the service env (`base`), then
    envFrom, then env; each env value may refer to what came before it with `$(VAR)`."""
    env: dict[str, str] = dict(base)
    for source in container.get("envFrom") or []:
        prefix = source.get("prefix", "")
        for kind, key in (("configmap", "configMapRef"), ("secret", "secretRef")):
            if ref := source.get(key):
                for name, value in lookup_all(kind, ref["name"], bool(ref.get("optional"))).items():
                    env[prefix + name] = value
    for var in container.get("env") or []:
        name = var["name"]
        if "value" in var:
            env[name] = expand(str(var["value"]), env)
            continue
        source = var.get("valueFrom") or {}
        if "fieldRef" in source:
            env[name] = field_value(pod, source["fieldRef"]["fieldPath"])
        elif "resourceFieldRef" in source:
            env[name] = resource_value(container, source["resourceFieldRef"])
        elif "configMapKeyRef" in source or "secretKeyRef" in source:
            kind, ref = (("configmap", source["configMapKeyRef"]) if "configMapKeyRef" in source
                         else ("secret", source["secretKeyRef"]))
            value = lookup(kind, ref["name"], ref["key"], bool(ref.get("optional")))
            if value is not None:
                env[name] = value
        else:
            env[name] = ""
    return env


def argv(container: Mapping[str, Any], image_entrypoint: list[str], image_cmd: list[str],
         env: Mapping[str, str]) -> list[str]:
    """What runs: `command` replaces the image's entrypoint and drops its cmd; `args` replaces the cmd."""
    command = container.get("command")
    args = container.get("args")
    parts = [*command, *(args or [])] if command else [*image_entrypoint, *(args if args is not None else image_cmd)]
    if not parts:
        raise SpecError("no command specified")
    return [expand(str(p), env) for p in parts]


GPU_RESOURCE = "nvidia.com/gpu"
NVIDIA_VISIBLE_DEVICES = "NVIDIA_VISIBLE_DEVICES"


def gpu_count(container: Mapping[str, Any]) -> int:
    """The container's `nvidia.com/gpu` (an extended resource: its request equals its limit, either may be given)."""
    resources = container.get("resources") or {}
    value = (resources.get("limits") or {}).get(GPU_RESOURCE) or (resources.get("requests") or {}).get(GPU_RESOURCE)
    return int(quantity(value)) if value else 0


def gpu_devices(pod: Mapping[str, Any], container: Mapping[str, Any], init: bool) -> list[str]:
    """The GPUs NVIDIA's device plugin gives the container, as ids stable for the pod (`GPU-<uid prefix>-<n>`; the
    plugin's default DEVICE_ID_STRATEGY is uuid): the containers of a pod get distinct devices, each init container
    (they run one at a time) starts from the first. None for a container without an `nvidia.com/gpu` limit. The
    plugin (default DEVICE_LIST_STRATEGY envvar) passes them as NVIDIA_VISIBLE_DEVICES, and the container toolkit
    mounts those devices and the driver into the container; the pod runner writes them to /run/testbed/gpus there
    (testbed/images/tritonserver/python/testbed_gpus.py reads that), where every process of the container, one
    started over ssh too, sees them."""
    count = gpu_count(container)
    if not count:
        return []
    offset = 0
    if not init:
        for other in pod["spec"]["containers"]:
            if other.get("name") == container.get("name"):
                break
            offset += gpu_count(other)
    prefix = str(pod["metadata"]["uid"]).split("-")[0]
    return [f"GPU-{prefix}-{offset + i}" for i in range(count)]


@dataclass(frozen=True)
class RunAs:
    """Who a container's processes are: the kubelet's reading of the pod's and the container's securityContext."""

    uid: int
    gid: int
    groups: tuple[int, ...]  # supplementalGroups and fsGroup


def run_as(pod: Mapping[str, Any], container: Mapping[str, Any], image_user: int) -> RunAs:
    """The container's user (its securityContext over the pod's, over the image's USER); a runAsNonRoot
    container that would run as root is refused, as the kubelet refuses it (CreateContainerConfigError)."""
    pod_sc = pod["spec"].get("securityContext") or {}
    sc = {**pod_sc, **(container.get("securityContext") or {})}
    uid = int(sc.get("runAsUser", image_user))
    if sc.get("runAsNonRoot") and uid == 0:
        meta = pod["metadata"]
        raise SpecError(f'container has runAsNonRoot and image will run as root (pod: "{meta["namespace"]}/'
                        f'{meta["name"]}", container: {container["name"]})')
    groups = [int(g) for g in pod_sc.get("supplementalGroups") or []]
    if "fsGroup" in pod_sc:
        groups.append(int(pod_sc["fsGroup"]))
    # The primary group: runAsGroup, else the image's (our images' USER is uid:gid alike), else root's.
    gid = int(sc.get("runAsGroup", 0 if "runAsUser" in sc else image_user))
    return RunAs(uid, gid, tuple(groups))


# ------------------------------------------------------------------------------------------------ probes


@dataclass(frozen=True)
class Probe:
    """One probe of a container with the kubelet's defaults."""

    kind: str  # startup | readiness | liveness
    action: Mapping[str, Any]  # {"httpGet": ...} | {"tcpSocket": ...} | {"exec": ...}
    initial_delay_s: float = 0.0
    period_s: float = 10.0
    timeout_s: float = 1.0
    success_threshold: int = 1
    failure_threshold: int = 3

    @classmethod
    def of(cls, container: Mapping[str, Any], kind: str) -> Probe | None:
        spec = container.get(f"{kind}Probe")
        if not spec:
            return None
        action = {k: v for k, v in spec.items() if k in ("httpGet", "tcpSocket", "exec", "grpc")}
        return cls(kind, action, float(spec.get("initialDelaySeconds", 0)), float(spec.get("periodSeconds", 10)),
                   float(spec.get("timeoutSeconds", 1)), int(spec.get("successThreshold", 1)),
                   int(spec.get("failureThreshold", 3)))


def named_port(container: Mapping[str, Any], port: int | str) -> int:
    if isinstance(port, int) or str(port).isdigit():
        return int(port)
    for p in container.get("ports") or []:
        if p.get("name") == port:
            return int(p["containerPort"])
    raise SpecError(f"port {port!r} is not a port of container {container.get('name')!r}")


@dataclass
class ProbeState:
    """The running tally of one probe: a result flips only after its threshold of results in a row."""

    probe: Probe
    successes: int = 0
    failures: int = 0
    result: bool | None = None  # None: not yet decided (readiness starts False, liveness/startup start passing)

    def record(self, ok: bool) -> bool | None:
        """Counts one result; returns the new result when it flipped, else None."""
        if ok:
            self.successes, self.failures = self.successes + 1, 0
            if self.successes >= self.probe.success_threshold and self.result is not True:
                self.result = True
                return True
        else:
            self.successes, self.failures = 0, self.failures + 1
            if self.failures >= self.probe.failure_threshold and self.result is not False:
                self.result = False
                return False
        return None


def backoff_s(backoffs: int) -> float:
    """The wait before a crashed container's restart, the `backoffs`-th (from 1) that has to wait: the kubelet
    restarts a first crash at once, then waits 10 s, 20 s, 40 s, ... up to 5 minutes."""
    return min(BACKOFF_MAX_S, BACKOFF_INITIAL_S * 2 ** max(backoffs - 1, 0))


def should_restart(policy: str, exit_code: int) -> bool:
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)


def termination_message(policy: str, exit_code: int, message: str, log_tail: str) -> str:
    """What the terminated state's message says: the file at terminationMessagePath, or with
    FallbackToLogsOnError and a failure and no message, the end of the container's log."""
    if message.strip() or policy != "FallbackToLogsOnError" or exit_code == 0:
        return message[:TERMINATION_MESSAGE_BYTES]
    lines = log_tail.splitlines()[-FALLBACK_LOG_LINES:]
    return "\n".join(lines)[-FALLBACK_LOG_BYTES:]


def exit_reason(exit_code: int) -> str:
    """No cgroups here, so never OOMKilled."""
    return "Completed" if exit_code == 0 else "Error"


def pod_phase(initializing: bool, final_exit_codes: list[int | None]) -> str:
    """Pending until the containers start; Succeeded/Failed once every container ended for good (an entry is
    None while its container runs or will be restarted)."""
    if initializing:
        return "Pending"
    if final_exit_codes and all(code is not None for code in final_exit_codes):
        return "Succeeded" if all(code == 0 for code in final_exit_codes) else "Failed"
    return "Running"
