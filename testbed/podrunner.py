"""The testbed's stand-in for a kubelet's container runtime.

kwok moves pods on fake nodes to Running with a pod IP (not Ready). This process watches those pods and,
for each, looks its image up in launchers.yaml: a `service` launcher runs a real process inside a network
namespace holding the pod IP and marks the pod Ready while its readiness URLs answer (unready, as under a
kubelet, only after the pod's readinessProbe failureThreshold); a `job` launcher
runs to completion and sets the pod's phase from the exit code. A pod that goes away loses its process and
its namespace. Status writes are the pod's own `status` subresource, as a kubelet's are.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import fnmatch
import logging
import os
import re
import signal
import subprocess
import sys
import sysconfig
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from testbed import network
from testbed.cluster import CACHE, http_ok

LOG = logging.getLogger("pod-runner")
LAUNCHERS = Path(__file__).with_name("launchers.yaml")
ERROR_RATE = "testbed.deepseek.ai/error-rate"
LATENCY_MS = "testbed.deepseek.ai/latency-ms"
BUILD_EXIT_CODE = "testbed.deepseek.ai/engine-build-exit-code"
RESTART_BACKOFF_S = 2.0
ADDRESS_WAIT_S = 30.0  # longest wait for a reused pod IP to be released by the namespace that held it
DNS_WAIT_S = 120.0  # longest wait for the pod a cluster DNS name in a command names to get its IP
REPO = Path(__file__).resolve().parent.parent
SA_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
SA_TOKEN_SECONDS = 3600
# The NCCL preflight's PyTorch lives in its own environment (gigabytes; testbed/lib.sh ensure_preflight_venv).
PREFLIGHT_PYTHON = os.environ.get("DEEPSEEK_TESTBED_PREFLIGHT_PYTHON") or str(
    CACHE / "preflight-venv" / "bin" / "python")
# `<hostname>.<subdomain>.<namespace>.svc[.cluster.local]`: a pod's own DNS name, as CoreDNS would answer it.
POD_DNS_NAME = re.compile(r"\b([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.([a-z0-9]([-a-z0-9]*[a-z0-9])?)\."
                          r"([a-z0-9]([-a-z0-9]*[a-z0-9])?)\.svc(\.cluster\.local)?\b")


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Launcher:
    name: str
    image: str
    kind: str
    command: list[str]
    readiness: list[str] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)
    env: dict[str, str] = field(default_factory=dict)  # added to the container's env
    # For `{args}`: options of the container's args replaced by the given value, or dropped (null).
    replace_args: dict[str, str | None] = field(default_factory=dict)
    # For `{args}`: numeric options multiplied by the given factor.
    scale_args: dict[str, float] = field(default_factory=dict)
    # Give the process the pod's service account, as a kubelet does: a token bound to the pod at the standard
    # path, the cluster CA and KUBERNETES_SERVICE_HOST/PORT (for a program that runs as the pod, e.g. an operator).
    service_account: bool = False


def load_launchers() -> list[Launcher]:
    return [Launcher(**entry) for entry in yaml.safe_load(LAUNCHERS.read_text())["launchers"]]


def pick_launcher(launchers: list[Launcher], image: str, labels: dict[str, str] | None = None) -> Launcher | None:
    return next((launcher for launcher in launchers if fnmatch.fnmatch(image, launcher.image)
                 and all((labels or {}).get(k) == v for k, v in launcher.labels.items())), None)


def prestop_sleep_seconds(pod: Any) -> int:
    """The first container's `lifecycle.preStop.sleep` (the kubelet's native sleep action), or 0."""
    lifecycle = pod.spec.containers[0].lifecycle
    sleep = lifecycle.pre_stop.sleep if lifecycle and lifecycle.pre_stop else None
    return int(sleep.seconds) if sleep else 0


@dataclass(frozen=True)
class ReadinessProbe:
    """What of the first container's readinessProbe the runner honours, with the kubelet's defaults."""

    period_s: float = 10.0
    failure_threshold: int = 3
    timeout_s: float = 1.0

    @classmethod
    def of(cls, pod: Any) -> ReadinessProbe:
        probe = pod.spec.containers[0].readiness_probe
        if probe is None:
            return cls()
        return cls(float(probe.period_seconds or 10), int(probe.failure_threshold or 3),
                   float(probe.timeout_seconds or 1))

    def unready_after(self, failing_since: float, failures: int, now: float) -> bool:
        """A Ready pod turns unready only after failure_threshold failed probes a period apart, as under a
        kubelet; the runner probes every second so that a new pod becomes Ready quickly, but one slow answer
        on a busy machine must not take a serving pod out of its Service."""
        return failures >= self.failure_threshold and \
            now - failing_since >= (self.failure_threshold - 1) * self.period_s


def is_job_pod(pod: Any) -> bool:
    return any(ref.kind == "Job" for ref in pod.metadata.owner_references or [])


_FIELD_PATH = re.compile(r"^metadata\.(annotations|labels)\['([^']+)'\]$")


def container_env(pod: Any) -> dict[str, str]:
    """The container's env as a kubelet resolves it: literal values and fieldRef (the Job controller's
    JOB_COMPLETION_INDEX is a fieldRef to an annotation)."""
    env = {}
    for e in pod.spec.containers[0].env or []:
        if e.value is not None:
            env[e.name] = e.value
        elif e.value_from is not None and e.value_from.field_ref is not None:
            path = e.value_from.field_ref.field_path
            meta = pod.metadata
            if m := _FIELD_PATH.match(path):
                env[e.name] = (getattr(meta, m.group(1)) or {}).get(m.group(2), "")
            else:
                env[e.name] = {"metadata.name": meta.name, "metadata.namespace": meta.namespace,
                               "status.podIP": pod.status.pod_ip or "", "spec.nodeName": pod.spec.node_name or ""
                               }.get(path, "")
    return env


def expand(text: str, env: dict[str, str]) -> str:
    """`$(VAR)` in a command or argument, as the kubelet expands it (`$$` escapes; unknown names stay)."""
    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)",
                  lambda m: "$" if m.group(0) == "$$" else env.get(m.group(1), m.group(0)), text)


def rewrite_args(args: list[str], replace: dict[str, str | None], scale: dict[str, float]) -> list[str]:
    """`--name=value` options replaced, dropped or scaled as a launcher asks (the testbed has no GPUs)."""
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name in replace:
            if replace[name] is not None:
                out.append(f"{name}={replace[name]}")
        elif eq and name in scale:
            out.append(f"{name}={float(value) * scale[name]:g}")
        else:
            out.append(arg)
    return out


@dataclass
class Running:
    """One launched pod: its process, namespace and readiness as last written."""

    pod_uid: str
    namespace: str
    name: str
    launcher: Launcher
    netns: str
    ip: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    termination_log: Path
    hostname: str
    service_account_dir: Path | None = None
    proc: subprocess.Popen[bytes] | None = None
    ready: bool | None = None
    failing_since: float | None = None  # monotonic time of the first of the current run of failed probes
    failures: int = 0
    restarts: int = 0
    stopping: threading.Event = field(default_factory=threading.Event)


class PodRunner:
    def __init__(self, api: client.CoreV1Api, logs: Path) -> None:
        self.api = api
        self.logs = logs
        self.launchers = load_launchers()
        self.running: dict[str, Running] = {}
        self.lock = threading.Lock()
        self.settled: set[str] = set()  # uids of pods with no process whose status we already wrote
        self.draining: set[str] = set()  # uids of deleted pods waiting out their preStop sleep
        self.addresses: dict[str, str] = {}  # pod uid -> the IP its namespace holds, until the namespace is gone
        self.python = sys.executable
        self.libdir = sysconfig.get_config_var("LIBDIR") or ""

    # ------------------------------------------------------------ status writes

    def _patch_status(self, pod_uid: str, namespace: str, name: str, status: dict[str, Any]) -> None:
        try:
            current = self.api.read_namespaced_pod_status(name, namespace)
        except ApiException as e:
            if e.status != 404:
                LOG.warning("read %s/%s: %s", namespace, name, e.reason)
            return
        if current.metadata.uid != pod_uid:
            return
        body = {"metadata": {"resourceVersion": current.metadata.resource_version}, "status": status}
        try:
            self.api.patch_namespaced_pod_status(name, namespace, body)
        except ApiException as e:
            if e.status == 409:  # raced with kwok or a newer event: the next event retries
                LOG.info("conflict writing %s/%s status; will retry", namespace, name)
                return
            if e.status != 404:
                LOG.warning("patch %s/%s: %s", namespace, name, e.reason)

    def _container_statuses(self, pod: Any, ready: bool, restarts: int, state: dict[str, Any]) -> list[dict[str, Any]]:
        return [{"name": c.name, "image": c.image, "imageID": "", "containerID": f"testbed://{pod.metadata.uid}",
                 "ready": ready, "started": "running" in state, "restartCount": restarts, "state": state}
                for c in pod.spec.containers]

    def _conditions(self, pod: Any, ready: bool) -> list[dict[str, Any]]:
        stamp = now()
        old = {c.type: c for c in pod.status.conditions or []}
        wanted = {"PodScheduled": True, "Initialized": True, "ContainersReady": ready, "Ready": ready}
        out = []
        for ctype, value in wanted.items():
            status = "True" if value else "False"
            prev = old.get(ctype)
            ltt = prev.last_transition_time.strftime("%Y-%m-%dT%H:%M:%SZ") if prev and prev.status == status \
                and prev.last_transition_time else stamp
            out.append({"type": ctype, "status": status, "lastTransitionTime": ltt})
        return out

    def write_readiness(self, pod: Any, ready: bool, restarts: int) -> None:
        state = {"running": {"startedAt": now()}}
        self._patch_status(pod.metadata.uid, pod.metadata.namespace, pod.metadata.name, {
            "conditions": self._conditions(pod, ready),
            "containerStatuses": self._container_statuses(pod, ready, restarts, state),
        })

    def write_terminated(self, pod: Any, exit_code: int, reason: str, message: str = "") -> None:
        state = {"terminated": {"exitCode": exit_code, "reason": reason, "startedAt": now(), "finishedAt": now(),
                                **({"message": message[:4096]} if message else {})}}
        self._patch_status(pod.metadata.uid, pod.metadata.namespace, pod.metadata.name, {
            "phase": "Succeeded" if exit_code == 0 else "Failed",
            "conditions": self._conditions(pod, False),
            "containerStatuses": self._container_statuses(pod, False, 0, state),
        })

    # ------------------------------------------------------------ pod events

    def handle(self, pod: Any, deleted: bool) -> None:
        uid = pod.metadata.uid
        if deleted:
            self.stop(uid)
            self.settled.discard(uid)
            return
        if pod.metadata.deletion_timestamp:
            # As a kubelet does: the preStop sleep first (the process keeps serving while load balancers drop
            # the terminating endpoint), then SIGTERM; never longer than the grace period.
            with self.lock:
                if uid in self.draining:
                    return
                self.draining.add(uid)
            drain = min(prestop_sleep_seconds(pod), pod.spec.termination_grace_period_seconds or 30)
            threading.Timer(drain, self._drained, args=(uid,)).start()
            return
        if pod.status.phase != "Running" or not pod.status.pod_ip or not pod.spec.node_name:
            return
        with self.lock:
            if uid in self.running or uid in self.settled:
                return
        launcher = pick_launcher(self.launchers, pod.spec.containers[0].image, pod.metadata.labels or {})
        if launcher is None:
            if is_job_pod(pod):
                self.write_terminated(pod, 0, "Completed")
            else:
                self.write_readiness(pod, True, 0)
            self.settled.add(uid)
            return
        self.launch(pod, launcher)

    def _drained(self, uid: str) -> None:
        self.stop(uid)
        with self.lock:
            self.draining.discard(uid)
            self.settled.discard(uid)

    def launch(self, pod: Any, launcher: Launcher) -> None:
        meta, ip = pod.metadata, pod.status.pod_ip
        annotations = meta.annotations or {}
        env = container_env(pod)
        values = {
            "python": self.python, "pod_ip": ip, "namespace": meta.namespace, "pod": meta.name,
            "node": pod.spec.node_name, "error_rate": annotations.get(ERROR_RATE, "0"),
            "latency_ms": annotations.get(LATENCY_MS, "0"), "env": env,
            "build_exit_code": annotations.get(BUILD_EXIT_CODE, "0"),
            "preflight_python": PREFLIGHT_PYTHON, "repo": str(REPO),
        }
        self.logs.mkdir(parents=True, exist_ok=True)
        termination_log = self.logs / f"{meta.namespace}_{meta.name}.termination"
        argv = []
        for part in launcher.command:
            if part == "{args}":  # the container's own args, as the kubelet would pass them
                container = pod.spec.containers[0]
                args = [expand(a, env) for a in container.args or []]
                # The kubelet mounts a file at terminationMessagePath; here it is a file of the runner's.
                path = container.termination_message_path or "/dev/termination-log"
                args = [a.replace(path, str(termination_log)) for a in args]
                argv += rewrite_args(args, launcher.replace_args, launcher.scale_args)
            else:
                argv.append(part.format(**values))
        netns = network.names_for(meta.uid)[0]  # created by supervise once the address is free
        extra = {k: v.format(**values) for k, v in launcher.env.items()}
        proc_env = {**env, **extra, "POD_IP": ip, "POD_NAME": meta.name,
                    "POD_NAMESPACE": meta.namespace, "LD_LIBRARY_PATH": self.libdir, "PYTHONUNBUFFERED": "1"}
        run = Running(meta.uid, meta.namespace, meta.name, launcher, netns, ip, argv, proc_env,
                      self.logs / f"{meta.namespace}_{meta.name}.log", termination_log,
                      (pod.spec.hostname or meta.name)[:63])
        with self.lock:
            self.running[meta.uid] = run
        LOG.info("launching %s for %s/%s at %s", launcher.name, meta.namespace, meta.name, ip)
        threading.Thread(target=self.supervise, args=(run, pod), daemon=True, name=meta.name).start()

    def _service_account(self, pod: Any, run: Running) -> None:
        """The pod's projected service-account volume: a token the API server binds to this pod."""
        account = pod.spec.service_account_name or "default"
        request = {"spec": {"expirationSeconds": SA_TOKEN_SECONDS, "boundObjectRef": {
            "kind": "Pod", "apiVersion": "v1", "name": pod.metadata.name, "uid": pod.metadata.uid}}}
        token = self.api.create_namespaced_service_account_token(account, pod.metadata.namespace, request)
        folder = self.logs / f"{pod.metadata.namespace}_{pod.metadata.name}.serviceaccount"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / "token").write_text(token.status.token)
        (folder / "namespace").write_text(pod.metadata.namespace)
        (folder / "ca.crt").write_text(Path(self.api.api_client.configuration.ssl_ca_cert).read_text())
        Path(SA_MOUNT).mkdir(parents=True, exist_ok=True)  # the mount point, empty on the host
        host = self.api.api_client.configuration.host.removeprefix("https://")
        run.env = {**run.env, "KUBERNETES_SERVICE_HOST": host.rsplit(":", 1)[0],
                   "KUBERNETES_SERVICE_PORT": host.rsplit(":", 1)[1]}
        run.service_account_dir = folder

    def _start(self, run: Running) -> None:
        log = open(run.log_path, "ab")  # noqa: SIM115 - owned by the child
        # A pod has its own hostname (spec.hostname, else its name), as a process in its UTS namespace sees, and
        # its own mounts: the service-account volume where a kubelet would put it.
        mounts = f'mount --bind "$1" {SA_MOUNT} && ' if run.service_account_dir else ""
        run.proc = subprocess.Popen(
            ["ip", "netns", "exec", run.netns, "unshare", "--uts", "--mount", "--", "sh", "-c",
             f'hostname "$0" && {mounts}shift && exec "$@"', run.hostname, str(run.service_account_dir or ""),
             *run.argv], stdout=log, stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL, start_new_session=True, env={**os.environ, **run.env},
            cwd=REPO,
        )
        log.close()

    def _claim_address(self, run: Running) -> bool:
        """Creates the pod's namespace once no other namespace holds its IP; False if the pod went meanwhile.

        kwok frees a pod's IP when it deletes the pod, which is when the runner starts stopping that pod's
        process: a new pod can be given the address while the old namespace still holds it, and two hosts with
        one address on the bridge garble each other's connections.
        """
        deadline = time.monotonic() + ADDRESS_WAIT_S
        while True:
            with self.lock:  # stop() takes the lock too: a namespace is never created for a pod being stopped
                if run.stopping.is_set():
                    return False
                holder = next((uid for uid, ip in self.addresses.items() if ip == run.ip and uid != run.pod_uid),
                              None)
                if holder is None or time.monotonic() > deadline:
                    if holder is not None:
                        LOG.warning("%s/%s: %s still held by pod %s; starting anyway", run.namespace, run.name,
                                    run.ip, holder)
                    network.create_pod_netns(run.pod_uid, run.ip)
                    self.addresses[run.pod_uid] = run.ip
                    return True
            time.sleep(0.2)

    def _resolve_pod_dns(self, text: str, run: Running) -> str:
        """Cluster DNS for the pods of a headless Service (`<hostname>.<subdomain>.<ns>.svc`): the testbed has no
        CoreDNS, and a process in a pod's namespace resolves names through the host. Waits for the pod's IP, as
        a client retrying its lookup would."""
        def address(m: re.Match[str]) -> str:
            hostname, subdomain, namespace = m.group(1), m.group(3), m.group(5)
            deadline = time.monotonic() + DNS_WAIT_S
            while not run.stopping.is_set():
                for p in self.api.list_namespaced_pod(namespace).items:
                    if p.spec.hostname == hostname and p.spec.subdomain == subdomain and p.status.pod_ip:
                        return str(p.status.pod_ip)
                if time.monotonic() > deadline:
                    break
                time.sleep(1.0)
            raise TimeoutError(f"{m.group(0)} did not resolve to a pod IP within {DNS_WAIT_S:.0f}s")
        return POD_DNS_NAME.sub(address, text)

    def _release_address(self, uid: str) -> None:
        network.delete_pod_netns(uid)
        with self.lock:
            self.addresses.pop(uid, None)

    def supervise(self, run: Running, pod: Any) -> None:
        """Keeps one pod's process running and its readiness true to what the process answers."""
        if not self._claim_address(run):
            return
        try:
            run.argv = [self._resolve_pod_dns(part, run) for part in run.argv]
            if run.launcher.service_account:
                self._service_account(pod, run)
        except TimeoutError as e:
            LOG.warning("%s/%s: %s", run.namespace, run.name, e)
            if run.launcher.kind == "job":
                self.write_terminated(pod, 1, "Error", str(e))
            return
        self._start(run)
        probe = ReadinessProbe.of(pod)
        while not run.stopping.is_set():
            assert run.proc is not None
            code = run.proc.poll()
            if code is not None:
                if run.launcher.kind == "job":
                    message = run.termination_log.read_text() if run.termination_log.exists() else ""
                    self.write_terminated(pod, code, "Completed" if code == 0 else "Error", message)
                    with self.lock:
                        self.running.pop(run.pod_uid, None)
                        self.settled.add(run.pod_uid)
                    self._release_address(run.pod_uid)
                    return
                LOG.warning("%s/%s exited with %s; restarting", run.namespace, run.name, code)
                run.restarts += 1
                self._set_ready(run, pod, False)
                if run.stopping.wait(RESTART_BACKOFF_S):
                    return
                self._start(run)
                continue
            if run.launcher.kind == "service":
                self._probe(run, pod, probe)
            run.stopping.wait(1.0)

    def _probe(self, run: Running, pod: Any, probe: ReadinessProbe) -> None:
        if all(http_ok(u.format(pod_ip=pod.status.pod_ip), timeout=probe.timeout_s) for u in run.launcher.readiness):
            run.failing_since, run.failures = None, 0
            self._set_ready(run, pod, True)
            return
        now = time.monotonic()
        run.failing_since = run.failing_since if run.failing_since is not None else now
        run.failures += 1
        if not run.ready or probe.unready_after(run.failing_since, run.failures, now):
            self._set_ready(run, pod, False)

    def _set_ready(self, run: Running, pod: Any, ready: bool) -> None:
        if run.ready is ready:
            return
        run.ready = ready
        self.write_readiness(pod, ready, run.restarts)

    def stop(self, uid: str) -> None:
        with self.lock:
            run = self.running.pop(uid, None)
        if run is None:
            return
        LOG.info("stopping %s/%s", run.namespace, run.name)
        run.stopping.set()
        if run.proc is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(run.proc.pid, signal.SIGTERM)
            try:
                run.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(run.proc.pid, signal.SIGKILL)
                run.proc.wait()
        self._release_address(uid)

    def stop_all(self) -> None:
        for uid in list(self.running):
            self.stop(uid)

    # ------------------------------------------------------------ watch loop

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pods = self.api.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
                live = {p.metadata.uid for p in pods.items}
                for uid in list(self.running):
                    if uid not in live:
                        self.stop(uid)
                self.settled &= live
                for p in pods.items:
                    self.handle(p, deleted=False)
                w = watch.Watch()
                for event in w.stream(self.api.list_pod_for_all_namespaces, field_selector="spec.nodeName!=",
                                      resource_version=pods.metadata.resource_version, timeout_seconds=30):
                    self.handle(event["object"], deleted=event["type"] == "DELETED")
                    if stop.is_set():
                        w.stop()
                        break
            except Exception as e:  # the API going away for a moment must not kill the runner
                if stop.is_set():
                    break
                LOG.warning("watch interrupted: %s", e, exc_info=not isinstance(e, ApiException))
                stop.wait(1.0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="testbed pod runner")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--logs", required=True, type=Path)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    runner = PodRunner(client.CoreV1Api(), args.logs)
    stop = threading.Event()

    def _stop(signum: int, _frame: Any) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    worker = threading.Thread(target=runner.run_forever, args=(stop,), daemon=True)
    worker.start()
    stop.wait()
    runner.stop_all()
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
