"""A pod's volumes made real on the host, as a kubelet's volume manager makes them: ConfigMap and Secret keys as
files (with `items` and modes), `emptyDir` (a tmpfs of its `sizeLimit` for `medium: Memory`), PVCs through the
PersistentVolume they are bound to (the controller manager's host-path provisioner), projected volumes
(service-account tokens bound to the pod by the TokenRequest API, ConfigMaps, Secrets, downward API),
`downwardAPI` and `hostPath`. Each volume is a folder under the pod's folder in the cache; the container's
entry process (testbed/container.py) bind-mounts them at their mount paths.
"""

from __future__ import annotations

import base64
import contextlib
import os
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from testbed import podspec

DEFAULT_MODE = 0o644
# Volume types whose content the kubelet always mounts read-only.
ALWAYS_READ_ONLY = ("configMap", "secret", "projected", "downwardAPI")
TOKEN_SECONDS = 3607  # what the ServiceAccount admission plugin asks for (kube-api-access-*)


class VolumeNotReady(RuntimeError):
    """A volume (or an env source) that cannot be set up yet (missing ConfigMap or Secret or key, unbound PVC), in
    the kubelet's words for its source: the kubelet retries."""


class ClaimNotReady(VolumeNotReady):
    """A PersistentVolumeClaim that is missing or not bound yet. A real cluster's scheduler keeps such a pod off the
    nodes (FailedScheduling); kwok binds it anyway, so the testbed's kubelet waits for the claim without a word."""


class MountFailed(RuntimeError):
    """A pod volume the kubelet cannot set up: the message of its FailedMount event (pkg/kubelet/volumemanager's
    `MountVolume.SetUp failed for volume "<volume>" : <error>`). The pod stays in ContainerCreating meanwhile."""

    def __init__(self, volume: str, error: VolumeNotReady) -> None:
        super().__init__(f'MountVolume.SetUp failed for volume "{volume}" : {error}')
        self.volume = volume


@dataclass(frozen=True)
class Volume:
    name: str
    kind: str
    path: Path
    read_only: bool


class VolumeSetup:
    """Materialises one pod's volumes under `root` (one folder per volume) and tears them down."""

    def __init__(self, core: client.CoreV1Api, pod: Mapping[str, Any], root: Path) -> None:
        self.core = core
        self.pod = pod
        self.ns = pod["metadata"]["namespace"]
        self.root = root
        self.tmpfs: list[Path] = []
        # The kubelet gives a volume's files to the pod's fsGroup (and makes them group-readable), so that the
        # container's user reads a Secret's 0400 file; without fsGroup they stay root's.
        self.fs_group: int | None = (pod["spec"].get("securityContext") or {}).get("fsGroup")

    # ---------------------------------------------------------------- API reads

    def object_data(self, kind: str, name: str, optional: bool) -> dict[str, bytes] | None:
        try:
            if kind == "configmap":
                cm = self.core.read_namespaced_config_map(name, self.ns)
                data = {k: v.encode() for k, v in (cm.data or {}).items()}
                data.update({k: base64.b64decode(v) for k, v in (cm.binary_data or {}).items()})
                return data
            secret = self.core.read_namespaced_secret(name, self.ns)
            return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}
        except ApiException as e:
            if e.status != 404:
                raise
            if optional:
                return None
            raise VolumeNotReady(f'{"configmap" if kind == "configmap" else "secret"} "{name}" not found') from e

    def lookup(self, kind: str, name: str, key: str, optional: bool) -> str | None:
        data = self.object_data(kind, name, optional)
        if data is None or key not in data:
            if optional:
                return None
            # The kubelet's words (pkg/kubelet/kubelet_pods.go, makeEnvironmentVariables).
            what = "ConfigMap" if kind == "configmap" else "Secret"
            raise VolumeNotReady(f"couldn't find key {key} in {what} {self.ns}/{name}")
        return data[key].decode()

    def lookup_all(self, kind: str, name: str, optional: bool) -> dict[str, str]:
        return {k: v.decode() for k, v in (self.object_data(kind, name, optional) or {}).items()}

    # ---------------------------------------------------------------- volumes

    def set_up(self) -> dict[str, Volume]:
        out = {}
        for spec in self.pod["spec"].get("volumes") or []:
            try:
                out[spec["name"]] = self._set_up(spec)
            except ClaimNotReady:
                raise
            except VolumeNotReady as e:
                raise MountFailed(spec["name"], e) from e
        return out

    def _set_up(self, spec: Mapping[str, Any]) -> Volume:
        kind = next(k for k in spec if k != "name")
        folder = self.root / spec["name"]
        folder.mkdir(parents=True, exist_ok=True)
        read_only = kind in ALWAYS_READ_ONLY
        if kind == "emptyDir":
            self._empty_dir(folder, spec["emptyDir"] or {})
        elif kind in ("configMap", "secret"):
            self._keys(folder, kind, spec[kind])
        elif kind == "projected":
            self._projected(folder, spec["projected"])
        elif kind == "downwardAPI":
            self._downward(folder, spec["downwardAPI"].get("items") or [],
                           spec["downwardAPI"].get("defaultMode", DEFAULT_MODE))
        elif kind == "persistentVolumeClaim":
            folder, pvc_read_only = self._claim(spec["persistentVolumeClaim"])
            read_only = read_only or pvc_read_only
        elif kind == "hostPath":
            folder = Path(spec["hostPath"]["path"])
            if spec["hostPath"].get("type") in ("DirectoryOrCreate", "", None):
                folder.mkdir(parents=True, exist_ok=True)
        else:
            raise podspec.SpecError(f"volume {spec['name']}: type {kind} is not supported by the testbed")
        return Volume(spec["name"], kind, folder, read_only)

    def tear_down(self) -> None:
        for folder in self.tmpfs:
            subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        self.tmpfs.clear()

    def _empty_dir(self, folder: Path, spec: Mapping[str, Any]) -> None:
        folder.chmod(0o777)  # as the kubelet makes an emptyDir: writable by whichever user the containers run as
        if spec.get("medium") == "Memory" and not any(folder == t for t in self.tmpfs):
            size = int(podspec.quantity(spec["sizeLimit"])) if spec.get("sizeLimit") else 0
            options = f"size={size}" if size else "defaults"
            subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)], check=True,
                           capture_output=True)
            self.tmpfs.append(folder)

    def _write(self, folder: Path, rel: str, content: bytes, mode: int) -> None:
        target = folder / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileNotFoundError):
            target.chmod(0o600)
        target.write_bytes(content)
        if self.fs_group is not None:
            os.chown(target, 0, self.fs_group)
            mode |= 0o440
        target.chmod(mode)

    def _keys(self, folder: Path, kind: str, spec: Mapping[str, Any]) -> None:
        name = spec.get("name") or spec.get("secretName")
        data = self.object_data("configmap" if kind == "configMap" else "secret", name, bool(spec.get("optional")))
        self._write_items(folder, data or {}, spec.get("items"), spec.get("defaultMode", DEFAULT_MODE),
                          kind, bool(spec.get("optional")))

    def _write_items(self, folder: Path, data: Mapping[str, bytes], items: list[dict[str, Any]] | None,
                     default_mode: int, kind: str, optional: bool) -> None:
        if items is None:
            for key, value in data.items():
                self._write(folder, key, value, default_mode)
            return
        for item in items:
            if item["key"] not in data:
                if optional:
                    continue
                raise VolumeNotReady(missing_key_message(kind, item["key"]))
            self._write(folder, item["path"], data[item["key"]], item.get("mode", default_mode))

    def _downward(self, folder: Path, items: list[dict[str, Any]], default_mode: int) -> None:
        containers = {c["name"]: c for c in self.pod["spec"]["containers"]}
        for item in items:
            if "fieldRef" in item:
                value = podspec.field_value(self.pod, item["fieldRef"]["fieldPath"])
            else:
                ref = item["resourceFieldRef"]
                value = podspec.resource_value(containers[ref.get("containerName") or next(iter(containers))], ref)
            self._write(folder, item["path"], value.encode(), item.get("mode", default_mode))

    def _projected(self, folder: Path, spec: Mapping[str, Any]) -> None:
        mode = spec.get("defaultMode", DEFAULT_MODE)
        for source in spec.get("sources") or []:
            if "serviceAccountToken" in source:
                token = source["serviceAccountToken"]
                self._write(folder, token["path"], self._token(token).encode(), mode)
            elif "configMap" in source or "secret" in source:
                kind = "configMap" if "configMap" in source else "secret"
                ref = source[kind]
                data = self.object_data("configmap" if kind == "configMap" else "secret", ref["name"],
                                        bool(ref.get("optional")))
                self._write_items(folder, data or {}, ref.get("items"), mode, kind, bool(ref.get("optional")))
            elif "downwardAPI" in source:
                self._downward(folder, source["downwardAPI"].get("items") or [], mode)

    def _token(self, spec: Mapping[str, Any]) -> str:
        meta = self.pod["metadata"]
        request: dict[str, Any] = {"spec": {
            "expirationSeconds": int(spec.get("expirationSeconds") or TOKEN_SECONDS),
            "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": meta["name"], "uid": meta["uid"]}}}
        if spec.get("audience"):
            request["spec"]["audiences"] = [spec["audience"]]
        account = self.pod["spec"].get("serviceAccountName") or "default"
        return str(self.core.create_namespaced_service_account_token(account, self.ns, request).status.token)

    def _claim(self, spec: Mapping[str, Any]) -> tuple[Path, bool]:
        name = spec["claimName"]
        try:
            pvc = self.core.read_namespaced_persistent_volume_claim(name, self.ns)
        except ApiException as e:
            if e.status == 404:
                raise ClaimNotReady(f'persistentvolumeclaim "{name}" not found') from e
            raise
        if not pvc.spec.volume_name or (pvc.status and pvc.status.phase != "Bound"):
            raise ClaimNotReady(f'persistentvolumeclaim "{name}" is not bound')
        pv = self.core.read_persistent_volume(pvc.spec.volume_name)
        source = pv.spec.host_path or pv.spec.local
        if source is None:
            raise podspec.SpecError(f"PersistentVolume {pv.metadata.name} is neither hostPath nor local")
        folder = Path(source.path)
        folder.mkdir(parents=True, exist_ok=True)
        hold_to_capacity(folder, (pv.spec.capacity or {}).get("storage"))
        return folder, bool(spec.get("readOnly"))


def missing_key_message(kind: str, key: str) -> str:
    """The kubelet's words for a key a volume's `items` names and its ConfigMap or Secret lacks
    (pkg/volume/configmap and pkg/volume/secret, makePayload)."""
    if kind == "configMap":
        return f"configmap references non-existent config key: {key}"
    return f"references non-existent secret key: {key}"


def hold_to_capacity(folder: Path, capacity: str | None) -> None:
    """A volume holds what its PersistentVolume's capacity says, as a real disk does: a tmpfs of that size on the
    host-path folder, mounted once for the PV's life (every pod that mounts the claim shares it), so a writer
    past the capacity gets ENOSPC. `testbed down` unmounts them (`release_capacity_mounts`)."""
    if not capacity or os.path.ismount(folder):
        return
    size = int(podspec.quantity(capacity))
    subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0777", "testbed-pv", str(folder)], check=True,
                   capture_output=True)


def release_capacity_mounts() -> None:
    for line in Path("/proc/mounts").read_text().splitlines():
        device, target = line.split()[:2]
        if device == "testbed-pv":
            subprocess.run(["umount", "-l", target], capture_output=True)


def container_mounts(container: Mapping[str, Any], volumes: Mapping[str, Volume]) -> list[dict[str, Any]]:
    """The bind mounts of one container (testbed/container.py's `mounts`), subPath resolved."""
    out = []
    for m in container.get("volumeMounts") or []:
        volume = volumes.get(m["name"])
        if volume is None:
            raise podspec.SpecError(f'volumeMount "{m["name"]}": no volume of that name')
        source = volume.path
        if sub := m.get("subPath"):
            if sub.startswith("/") or ".." in Path(sub).parts:
                raise podspec.SpecError(f"subPath {sub!r} must be a relative path without '..'")
            source = source / sub
            if not source.exists():  # the kubelet creates a missing subPath as a directory
                source.mkdir(parents=True, exist_ok=True)
        out.append({"type": "bind", "source": str(source), "target": m["mountPath"],
                    "readOnly": bool(m.get("readOnly")) or volume.read_only})
    return out
