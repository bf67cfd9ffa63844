"""The testbed's kubelet: runs every pod on a kwok node as its spec is written.

kwok binds pods to fake GPU nodes and gives them an IP (phase Pending). For each such pod this process:
- makes the pod's network namespace holding its IP (testbed/network.py) and the pod's volumes
  (testbed/volumes.py), and writes the pod's /etc/hosts, which also stands in for cluster DNS: it names every
  pod that has a hostname and subdomain (`<host>.<subdomain>.<ns>.svc.cluster.local`), kept current;
- runs the init containers in order, each to completion, retried with the kubelet's back-off;
- starts each container's own command and args (else the image's entrypoint and cmd from testbed/images.yaml)
  with its env resolved as a kubelet does, in the pod's network namespace and a private mount and PID
  namespace with the image's files and the volumes at their mount paths (testbed/container.py);
- runs the startup, readiness and liveness probes from the spec (httpGet, tcpSocket, exec) at their periods,
  thresholds and timeouts; readiness sets the pod's Ready condition (and so its EndpointSlices), a failed
  liveness or startup probe restarts the container;
- restarts containers by `restartPolicy` with exponential back-off (CrashLoopBackOff), and reports
  `state`/`lastState`, exit codes, termination messages and `restartCount` as a kubelet does;
- on deletion runs `preStop`, sends SIGTERM, and SIGKILL after the grace period, then removes the pod.

Logs: each container's output goes to `$CACHE/logs/pods/<ns>_<pod>_<uid>/<container>/<restart>.log`, the
kubelet's own layout (`/var/log/pods`); `python -m testbed.podrunner logs NS POD [-c C] [--previous]` prints it.
There is no kubelet API, so `kubectl logs` does not reach it.

What stands in for a node: the host's filesystem is every image's base layer; no cgroups (resources are not
enforced); no user namespaces (a container runs as its runAsUser/runAsGroup/fsGroup, or its image's USER, on
the host's user ids); Service ClusterIPs are not routed (there is no kube-proxy: KUBERNETES_SERVICE_HOST points
at the API server's own address).
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import logging
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client, config, watch
from kubernetes.client.rest import ApiException

from testbed import images, network, podspec, volumes
from testbed.cluster import CACHE, DOWNLOADER_PYTHON, PREFLIGHT_PYTHON

LOG = logging.getLogger("pod-runner")
REPO = Path(__file__).resolve().parent.parent
# What every container runs from: the checkout (its venv, the stand-ins) and Python's own prefix. A volume mounted
# over a folder above one of them (an emptyDir at /tmp, with the checkout under /tmp) must not hide it.
HOST_PATHS = sorted({str(REPO), sys.base_prefix, sys.prefix})
PODS = CACHE / "pods"
POD_LOGS = CACHE / "logs" / "pods"
ADDRESS_WAIT_S = 30.0  # longest wait for a reused pod IP to be released by the namespace that held it
TICK_S = 0.25
RETRY_S = 2.0  # a volume or object not there yet: tried again this often (the kubelet's pod sync)
# A Warning event that repeats (a volume still failing to mount) is one Event whose count and lastTimestamp the
# kubelet's recorder bumps (client-go's EventCorrelator); bumped here at most this often.
EVENT_REPEAT_S = 10.0
# Where the testbed tells its stand-ins which pod they are in and what faults to inject (the pod's own
# annotations: testbed.deepseek.ai/error-rate, testbed.deepseek.ai/latency-ms). A testbed-only file.
TESTBED_POD_FILE = "/run/testbed/pod.json"
# The GPUs a container was given (NVIDIA's device plugin and container toolkit), read by the image stand-ins.
TESTBED_GPUS_FILE = "/run/testbed/gpus"
CLUSTER_DOMAIN = "cluster.local"


def now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def log_dir(namespace: str, name: str, uid: str, container: str) -> Path:
    return POD_LOGS / f"{namespace}_{name}_{uid}" / container


def container_pid1(uid: str, container: str) -> int | None:
    """The host PID of a running container's first process (what `kill 1` inside it signals), for tests that
    kill a container's process as a crash would; None when it does not run."""
    running = f"{PODS / uid}/containers/{container}-"
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError):
            argv = (proc / "cmdline").read_bytes().split(b"\0")
            if b"testbed.container" in argv and any(a.decode().startswith(running) for a in argv):
                children = (proc / "task" / proc.name / "children").read_text().split()
                return int(children[0]) if children else None
    return None


# ------------------------------------------------------------------------------------------------ one container


@dataclass
class Container:
    """One container of a pod: its process, probes and the status a kubelet reports for it."""

    spec: dict[str, Any]
    init: bool
    image: images.Image | None
    restarts: int = 0
    proc: subprocess.Popen[bytes] | None = None
    started_at: str = ""
    started_mono: float = 0.0
    state: dict[str, Any] = field(default_factory=lambda: {"waiting": {"reason": "ContainerCreating"}})
    last_state: dict[str, Any] = field(default_factory=dict)
    started: bool = False  # the startup probe passed (or there is none)
    ready: bool = False
    final_exit: int | None = None  # set once the container ended and will not be restarted
    probes: dict[str, podspec.ProbeState] = field(default_factory=dict)
    next_probe: dict[str, float] = field(default_factory=dict)
    restart_at: float | None = None
    kill_reason: str = ""
    crashes: int = 0  # crashes since the back-off was last reset
    runs: int = 0  # times started
    env: dict[str, str] = field(default_factory=dict)
    user: podspec.RunAs = field(default_factory=lambda: podspec.RunAs(0, 0, ()))  # exec handlers run as it too
    run_dir: Path | None = None

    @property
    def name(self) -> str:
        return str(self.spec["name"])

    def status(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name, "image": self.spec.get("image", ""),
            "imageID": f"testbed://{self.image.name}" if self.image else "", "ready": self.ready,
            "restartCount": self.restarts, "state": self.state,
        }
        if self.proc is not None or "terminated" in self.state:
            out["containerID"] = f"testbed://{self.name}-{self.restarts}"
        if not self.init:
            out["started"] = self.started
        if self.last_state:
            out["lastState"] = self.last_state
        return out


# ------------------------------------------------------------------------------------------------ one pod


class Pod:
    """One pod's lifecycle, on its own thread."""

    def __init__(self, runner: PodRunner, pod: dict[str, Any]) -> None:
        self.runner = runner
        self.pod = pod
        meta = pod["metadata"]
        self.uid, self.ns, self.name = meta["uid"], meta["namespace"], meta["name"]
        self.ip = pod["status"]["podIP"]
        self.dir = PODS / self.uid
        self.netns = network.names_for(self.uid)[0]
        self.stopping = threading.Event()
        self.terminated = threading.Event()
        self.lock = threading.Lock()
        self.volumes: dict[str, volumes.Volume] = {}
        self.setup = volumes.VolumeSetup(runner.api, pod, self.dir / "volumes")
        self.init = [Container(c, True, runner.image_of(c)) for c in pod["spec"].get("initContainers") or []]
        self.containers = [Container(c, False, runner.image_of(c)) for c in pod["spec"]["containers"]]
        self.initializing = bool(self.init)
        # Its volumes mounted: until then the kubelet keeps a pod Pending, init containers or not (Kubernetes'
        # pkg/kubelet/kubelet_pods.go getPhase at v1.36.3, testbed/versions.env: Pending while no container has run).
        self.set_up = False
        self.last_written: dict[str, Any] | None = None
        self.conditions: dict[str, dict[str, Any]] = {}
        self.hostname = (pod["spec"].get("hostname") or self.name)[:63]
        self.policy = pod["spec"].get("restartPolicy", "Always")

    # ---------------------------------------------------------------- status

    def _condition(self, ctype: str, value: bool, reason: str = "") -> dict[str, Any]:
        status = "True" if value else "False"
        prev = self.conditions.get(ctype)
        stamp = prev["lastTransitionTime"] if prev and prev["status"] == status else now()
        cond = {"type": ctype, "status": status, "lastTransitionTime": stamp, **({"reason": reason} if reason
                                                                                 and not value else {})}
        self.conditions[ctype] = cond
        return cond

    def publish(self) -> None:
        """Writes the pod's status when it changed (the kubelet's status manager)."""
        with self.lock:
            ready = (not self.initializing and all(c.ready for c in self.containers))
            phase = podspec.pod_phase(self.initializing or not self.set_up, [c.final_exit for c in self.containers])
            if any(c.final_exit is not None and c.final_exit != 0 for c in self.init):
                phase = "Failed"
            status = {
                "phase": phase,
                "conditions": [
                    self._condition("PodReadyToStartContainers", True),
                    self._condition("Initialized", not self.initializing, "ContainersNotInitialized"),
                    self._condition("ContainersReady", ready, "ContainersNotReady"),
                    self._condition("Ready", ready, "ContainersNotReady"),
                    self._condition("PodScheduled", True),
                ],
                "containerStatuses": [c.status() for c in self.containers],
                **({"initContainerStatuses": [c.status() for c in self.init]} if self.init else {}),
            }
            if status == self.last_written:
                return
        if self.runner.write_status(self.uid, self.ns, self.name, status):
            self.last_written = status

    # ---------------------------------------------------------------- set-up

    def prepare(self) -> bool:
        """Network, volumes and the pod's own files; False if the pod went meanwhile."""
        if not self.runner.claim_address(self):
            return False
        self.dir.mkdir(parents=True, exist_ok=True)
        self.check_pull_secrets()
        while not self.stopping.is_set():
            try:
                self.volumes = self.setup.set_up()
                break
            except volumes.MountFailed as e:
                # As the kubelet: the containers wait in ContainerCreating, and only a FailedMount Warning event on
                # the pod says why, repeated while the volume manager retries.
                self._set_waiting_all("ContainerCreating", "")
                self.runner.warn(self, "FailedMount", str(e))
            except volumes.ClaimNotReady:
                self._set_waiting_all("ContainerCreating", "")
            except (podspec.SpecError, ApiException, subprocess.CalledProcessError) as e:
                self._set_waiting_all("CreateContainerConfigError", str(e))
            self.publish()
            self.stopping.wait(RETRY_S)
        if self.stopping.is_set():
            return False
        (self.dir / "hostname").write_text(self.hostname + "\n")
        self.write_hosts(self.runner.dns_snapshot())
        testbed_file = self.dir / "testbed-pod.json"
        testbed_file.write_text(json.dumps({"namespace": self.ns, "name": self.name,
                                            "annotations": self.pod["metadata"].get("annotations") or {}}))
        return True

    def _set_waiting_all(self, reason: str, message: str) -> None:
        with self.lock:
            for c in [*self.init, *self.containers]:
                if c.proc is None:
                    c.state = {"waiting": {"reason": reason, **({"message": message} if message else {})}}

    def check_pull_secrets(self) -> None:
        """The kubelet reads the pod's imagePullSecrets before it pulls; one it cannot find is a Warning event, and
        the pull goes ahead without it (here every image is local, so it succeeds)."""
        missing = []
        for ref in self.pod["spec"].get("imagePullSecrets") or []:
            try:
                self.runner.api.read_namespaced_secret(ref["name"], self.ns)
            except ApiException as e:
                if e.status != 404:
                    raise
                missing.append(ref["name"])
        if missing:
            self.runner.warn(self, "FailedToRetrieveImagePullSecret",
                             f"Unable to retrieve some image pull secrets ({', '.join(missing)}); attempting to pull "
                             "the image may not succeed.")

    def write_hosts(self, entries: Mapping[str, str]) -> None:
        """/etc/hosts as the kubelet writes it, plus every pod DNS name of the cluster (no CoreDNS here);
        rewritten in place so that running containers see new names."""
        subdomain = self.pod["spec"].get("subdomain")
        own = f"{self.hostname}.{subdomain}.{self.ns}.svc.{CLUSTER_DOMAIN} " if subdomain else ""
        lines = ["# Kubernetes-managed hosts file (testbed: with the cluster's pod DNS names).",
                 "127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback",
                 f"{self.ip}\t{own}{self.hostname}"]
        lines += [f"{ip}\t{name} {name.removesuffix('.' + CLUSTER_DOMAIN)}" for name, ip in sorted(entries.items())
                  if ip != self.ip]
        path = self.dir / "hosts"
        text = "\n".join(lines) + "\n"
        if path.exists():
            with path.open("r+") as f:  # same inode: the bind mounts in running containers see the change
                if f.read() == text:
                    return
                f.seek(0)
                f.write(text)
                f.truncate()
        else:
            path.write_text(text)

    def service_env(self) -> dict[str, str]:
        host, _, port = self.runner.api_host.rpartition(":")
        return {"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port,
                "KUBERNETES_SERVICE_PORT_HTTPS": port, "KUBERNETES_PORT": f"tcp://{host}:{port}",
                "HOSTNAME": self.hostname}

    # ---------------------------------------------------------------- containers

    def start(self, c: Container) -> bool:
        """Starts one container; False (and a waiting state) when it cannot be started as written."""
        if c.image is None:
            with self.lock:
                c.state = {"waiting": {"reason": "ErrImagePull", "message":
                                       f'image "{c.spec.get("image")}" is not in the testbed\'s image table '
                                       f"(testbed/images.yaml)"}}
            return False
        try:
            env = podspec.container_env(self.pod, c.spec, base={**c.image.env, **self.service_env()},
                                        lookup=self.setup.lookup, lookup_all=self.setup.lookup_all)
            argv = podspec.argv(c.spec, c.image.entrypoint, c.image.cmd, env)
            mounts = volumes.container_mounts(c.spec, self.volumes)
            user = podspec.run_as(self.pod, c.spec, c.image.user)
        except (podspec.SpecError, volumes.VolumeNotReady, ApiException) as e:
            with self.lock:
                c.state = {"waiting": {"reason": "CreateContainerConfigError", "message": str(e)}}
            return False
        # NVIDIA's device plugin: the container's GPUs as NVIDIA_VISIBLE_DEVICES (its env wins over the image's and
        # the spec's, and is not there for $(VAR) expansion); none for a container without an nvidia.com/gpu limit.
        gpus = podspec.gpu_devices(self.pod, c.spec, c.init)
        if gpus:
            env[podspec.NVIDIA_VISIBLE_DEVICES] = ",".join(gpus)
        if c.runs:  # the kubelet counts a restart when it starts the container again
            c.restarts += 1
        c.runs += 1
        run_dir = self.dir / "containers" / f"{c.name}-{c.restarts}"
        shutil.rmtree(run_dir, ignore_errors=True)
        upper, work = run_dir / "upper", run_dir / "work"
        work.mkdir(parents=True)
        images.copy_tree(self.runner.tree(c.image), upper)
        # The host's /root (700) holds the testbed's programs (the venv, Triton's build): the image layer opens
        # it to other users, so that a container running as one reaches them, as an image's own files would be.
        (upper / "root").mkdir(exist_ok=True)
        (upper / "root").chmod(0o755)
        # The devices the container toolkit mounts (what CUDA finds), one id a line, empty without GPUs.
        (run_dir / "gpus").write_text("".join(f"{g}\n" for g in gpus))
        termination = run_dir / "termination-log"
        termination.touch()
        termination.chmod(0o666)  # the kubelet's file: writable by whichever user the container runs as
        files = [("hosts", "/etc/hosts"), ("hostname", "/etc/hostname"), ("testbed-pod.json", TESTBED_POD_FILE)]
        mounts = [*({"type": "bind", "source": str(self.dir / src), "target": dst, "readOnly": False}
                    for src, dst in files),
                  {"type": "bind", "source": str(termination),
                   "target": c.spec.get("terminationMessagePath") or podspec.DEFAULT_TERMINATION_PATH,
                   "readOnly": False},
                  {"type": "bind", "source": str(run_dir / "gpus"), "target": TESTBED_GPUS_FILE, "readOnly": True},
                  *mounts]
        security = c.spec.get("securityContext") or {}
        spec = {"rootfs": {"upper": str(upper), "work": str(work), "merged": str(run_dir / "root"),
                           "readOnly": bool(security.get("readOnlyRootFilesystem"))},
                "user": {"uid": user.uid, "gid": user.gid, "groups": list(user.groups)},
                "hostname": self.hostname, "mounts": mounts, "hostPaths": HOST_PATHS,
                "workingDir": c.spec.get("workingDir") or c.image.working_dir, "argv": argv, "env": env}
        (run_dir / "spec.json").write_text(json.dumps(spec))
        logs = log_dir(self.ns, self.name, self.uid, c.name)
        logs.mkdir(parents=True, exist_ok=True)
        with open(logs / f"{c.restarts}.log", "ab") as log:
            c.proc = subprocess.Popen(
                ["ip", "netns", "exec", self.netns, "unshare", "--mount", "--uts", "--pid",
                 "--propagation", "private", "--", sys.executable, "-m", "testbed.container",
                 str(run_dir / "spec.json")],
                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                cwd=REPO, env={"PATH": os.environ.get("PATH", "/usr/bin:/bin")})
        with self.lock:
            c.started_at, c.started_mono = now(), time.monotonic()
            c.state = {"running": {"startedAt": c.started_at}}
            c.env, c.run_dir, c.user = env, run_dir, user
            c.probes = {k: podspec.ProbeState(p) for k in ("startup", "readiness", "liveness")
                        if (p := podspec.Probe.of(c.spec, k)) is not None}
            c.next_probe = {k: c.started_mono + s.probe.initial_delay_s for k, s in c.probes.items()}
            c.started = "startup" not in c.probes
            c.ready = c.started and "readiness" not in c.probes and not c.init
            c.kill_reason = ""
        LOG.info("%s/%s: started container %s (restart %d): %s", self.ns, self.name, c.name, c.restarts,
                 " ".join(argv)[:300])
        return True

    def exited(self, c: Container, code: int) -> None:
        """Records a container's exit and decides whether (and when) it restarts."""
        assert c.proc is not None and c.run_dir is not None
        run_dir = c.run_dir
        message = (run_dir / "termination-log").read_text(errors="replace") \
            if (run_dir / "termination-log").exists() else ""
        log_file = log_dir(self.ns, self.name, self.uid, c.name) / f"{c.restarts}.log"
        tail = log_file.read_bytes()[-8192:].decode(errors="replace") if log_file.exists() else ""
        policy = c.spec.get("terminationMessagePolicy", "File")
        message = podspec.termination_message(policy, code, message, tail)
        if c.kill_reason and not message:
            message = c.kill_reason
        terminated = {"exitCode": code, "reason": podspec.exit_reason(code), "startedAt": c.started_at,
                      "finishedAt": now(), "containerID": f"testbed://{c.name}-{c.restarts}",
                      **({"message": message} if message else {})}
        shutil.rmtree(run_dir / "work", ignore_errors=True)
        restart_policy = "OnFailure" if c.init and self.policy == "Always" else self.policy
        with self.lock:
            c.proc = None
            c.ready = False
            c.started = False
            if self.stopping.is_set() or not podspec.should_restart(restart_policy, code):
                c.state = {"terminated": terminated}
                c.final_exit = code
                return
            ran = time.monotonic() - c.started_mono
            c.crashes = 1 if ran > podspec.BACKOFF_RESET_S else c.crashes + 1
            # The first restart is immediate; then 10 s, 20 s, ... as the kubelet's back-off.
            delay = podspec.backoff_s(c.crashes - 1) if c.crashes > 1 else 0.0
            c.last_state = {"terminated": terminated}
            c.restart_at = time.monotonic() + delay
            c.state = ({"waiting": {"reason": "CrashLoopBackOff", "message":
                                    f"back-off {delay:.0f}s restarting failed container={c.name} "
                                    f"pod={self.name}_{self.ns}({self.uid})"}}
                       if delay else {"waiting": {"reason": "ContainerCreating"}})
        LOG.warning("%s/%s: container %s exited with %d; restart in %.0fs", self.ns, self.name, c.name, code, delay)

    def pid1(self, c: Container) -> int | None:
        """The container's first process (forked by testbed/container.py)."""
        if c.proc is None:
            return None
        with contextlib.suppress(OSError, ValueError):
            children = Path(f"/proc/{c.proc.pid}/task/{c.proc.pid}/children").read_text().split()
            return int(children[0]) if children else None
        return None

    def signal(self, c: Container, sig: int) -> None:
        pid = self.pid1(c)
        with contextlib.suppress(ProcessLookupError, TypeError):
            if pid is not None:
                os.kill(pid, sig)
            elif c.proc is not None and sig == signal.SIGKILL:
                os.killpg(c.proc.pid, sig)

    def kill(self, c: Container, grace_s: float, reason: str) -> None:
        """Stops a container as the kubelet does: SIGTERM, then SIGKILL after the grace period."""
        c.kill_reason = reason
        self.signal(c, signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        while c.proc is not None and c.proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.1)
        if c.proc is not None and c.proc.poll() is None:
            self.signal(c, signal.SIGKILL)
            with contextlib.suppress(subprocess.TimeoutExpired):
                c.proc.wait(timeout=5)

    # ---------------------------------------------------------------- probes and hooks

    def run_action(self, c: Container, action: Mapping[str, Any], timeout_s: float) -> bool:
        """A probe's or hook's handler: httpGet, tcpSocket or exec; True on success."""
        try:
            if "httpGet" in action:
                get = action["httpGet"]
                port = podspec.named_port(c.spec, get["port"])
                scheme = get.get("scheme", "HTTP").lower()
                url = f"{scheme}://{get.get('host') or self.ip}:{port}{get.get('path', '/')}"
                headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
                request = urllib.request.Request(url, headers=headers)
                context = ssl._create_unverified_context() if scheme == "https" else None  # as the kubelet
                with urllib.request.urlopen(request, timeout=timeout_s, context=context) as r:
                    return 200 <= r.status < 400
            if "tcpSocket" in action:
                port = podspec.named_port(c.spec, action["tcpSocket"]["port"])
                socket.create_connection((action["tcpSocket"].get("host") or self.ip, port), timeout_s).close()
                return True
            if "exec" in action:
                pid = self.pid1(c)
                if pid is None:
                    return False
                user = ["-S", str(c.user.uid), "-G", str(c.user.gid)] if c.user.uid or c.user.gid else []
                res = subprocess.run(["nsenter", "-t", str(pid), "-m", "-u", "-n", "-p", "-r", "-w", *user, "--",
                                      *action["exec"]["command"]], capture_output=True,
                                     timeout=timeout_s, env=c.env)
                return res.returncode == 0
        except (urllib.error.URLError, OSError, subprocess.TimeoutExpired, podspec.SpecError):
            return False
        return False

    def probe(self, c: Container) -> None:
        t = time.monotonic()
        for kind in ("startup", "liveness", "readiness"):
            state = c.probes.get(kind)
            if state is None or t < c.next_probe[kind] or c.proc is None:
                continue
            if kind != "startup" and not c.started:
                continue
            if kind == "startup" and c.started:
                continue
            c.next_probe[kind] = t + state.probe.period_s
            flipped = state.record(self.run_action(c, state.probe.action, state.probe.timeout_s))
            if kind == "startup" and flipped is True:
                with self.lock:
                    c.started = True
                    c.ready = "readiness" not in c.probes
                # Liveness and readiness start once the startup probe passed.
                c.next_probe = {k: t for k in c.next_probe}
            elif kind == "readiness" and flipped is not None:
                with self.lock:
                    c.ready = flipped
            elif kind in ("startup", "liveness") and flipped is False:
                LOG.warning("%s/%s: %s probe of %s failed; restarting it", self.ns, self.name, kind, c.name)
                grace = float(self.pod["spec"].get("terminationGracePeriodSeconds", 30))
                threading.Thread(target=self.kill, args=(c, grace, f"{kind.capitalize()} probe failed"),
                                 daemon=True).start()
                return

    def pre_stop(self, c: Container, budget_s: float) -> None:
        hook = ((c.spec.get("lifecycle") or {}).get("preStop")) or {}
        if "sleep" in hook:
            time.sleep(max(min(float(hook["sleep"]["seconds"]), budget_s), 0.0))
        elif hook:
            self.run_action(c, hook, budget_s)

    # ---------------------------------------------------------------- the pod's life

    def run(self) -> None:
        try:
            if not self.prepare():
                return
            with self.lock:
                self.set_up = True
            if not self.run_init():
                return
            with self.lock:
                self.initializing = False
            for c in self.containers:
                self.start(c)
            self.publish()
            self.supervise()
        except Exception:
            LOG.exception("%s/%s: pod worker failed", self.ns, self.name)
        finally:
            self.terminated.set()

    def run_init(self) -> bool:
        for c in self.init:
            while not self.stopping.is_set():
                if c.proc is None and (c.restart_at is None or time.monotonic() >= c.restart_at):
                    c.restart_at = None
                    if not self.start(c):
                        self.publish()
                        self.stopping.wait(RETRY_S)
                        continue
                    self.publish()
                if c.proc is not None and (code := c.proc.poll()) is not None:
                    self.exited(c, _exit_code(code))
                    self.publish()
                    if c.final_exit == 0:
                        break
                    if c.final_exit is not None:  # restartPolicy Never: the pod has failed
                        return False
                self.stopping.wait(TICK_S)
            if self.stopping.is_set():
                return False
        return True

    def supervise(self) -> None:
        while not self.stopping.is_set():
            for c in self.containers:
                if c.proc is not None:
                    code = c.proc.poll()
                    if code is not None:
                        self.exited(c, _exit_code(code))
                    else:
                        self.probe(c)
                elif (c.final_exit is None and (c.restart_at is None or time.monotonic() >= c.restart_at)
                      and not self.start(c)):
                    c.restart_at = time.monotonic() + RETRY_S
            self.publish()
            if all(c.final_exit is not None for c in self.containers):
                self.runner.release(self)
                return
            self.stopping.wait(TICK_S)

    def terminate(self, grace_s: float) -> None:
        """Deletion: preStop hooks, SIGTERM, SIGKILL at the end of the grace period, for all containers at once."""
        deadline = time.monotonic() + grace_s

        def one(c: Container) -> None:
            if c.proc is None:
                return
            self.pre_stop(c, deadline - time.monotonic())
            self.kill(c, max(deadline - time.monotonic(), 0.0), "")

        self.stopping.set()
        threads = [threading.Thread(target=one, args=(c,), daemon=True) for c in [*self.init, *self.containers]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        self.terminated.wait(10)
        # As the kubelet does before the pod object goes: each container's last state, its exit code telling a
        # drained exit (0) from one killed at the end of the grace period (137).
        for c in [*self.init, *self.containers]:
            if c.proc is not None and (code := c.proc.poll()) is not None:
                self.exited(c, _exit_code(code))
        self.publish()

    def clean_up(self) -> None:
        self.setup.tear_down()
        shutil.rmtree(self.dir, ignore_errors=True)


def _exit_code(returncode: int) -> int:
    """testbed/container.py exits with its PID 1's code (128 + signal when a signal ended it); a signal that
    ended testbed/container.py itself reads the same way."""
    return 128 - returncode if returncode < 0 else returncode


# ------------------------------------------------------------------------------------------------ the runner


class PodRunner:
    def __init__(self, api: client.CoreV1Api) -> None:
        self.api = api
        self.values = images.placeholders(PREFLIGHT_PYTHON, DOWNLOADER_PYTHON)
        self.images = images.load(self.values)
        self.pods: dict[str, Pod] = {}
        self.lock = threading.Lock()
        self.addresses: dict[str, str] = {}  # pod uid -> the IP its namespace holds, until the namespace is gone
        self.dns: dict[str, str] = {}  # pod DNS name -> IP (pods with a hostname and subdomain)
        self.api_host = api.api_client.configuration.host.removeprefix("https://")
        self.trees: dict[str, Path] = {}
        # (pod uid, reason, message) -> [Event name, count, when last posted (monotonic)]
        self.events: dict[tuple[str, str, str], list[Any]] = {}

    def image_of(self, container: Mapping[str, Any]) -> images.Image | None:
        return images.find(self.images, str(container.get("image") or ""))

    def tree(self, image: images.Image) -> Path:
        with self.lock:
            if image.name not in self.trees:
                self.trees[image.name] = images.lay_out(image, CACHE / "images", self.values)
            return self.trees[image.name]

    def dns_snapshot(self) -> dict[str, str]:
        with self.lock:
            return dict(self.dns)

    # ---------------------------------------------------------------- status writes

    def write_status(self, uid: str, namespace: str, name: str, status: dict[str, Any]) -> bool:
        try:
            current = self.api.read_namespaced_pod_status(name, namespace)
        except ApiException as e:
            if e.status != 404:
                LOG.warning("read %s/%s: %s", namespace, name, e.reason)
            return False
        if current.metadata.uid != uid:
            return False
        body = {"metadata": {"resourceVersion": current.metadata.resource_version}, "status": status}
        try:
            self.api.patch_namespaced_pod_status(name, namespace, body)
            return True
        except ApiException as e:
            if e.status not in (404, 409):
                LOG.warning("patch %s/%s: %s %s", namespace, name, e.reason, (e.body or "")[:300])
            return False

    # ---------------------------------------------------------------- events

    def warn(self, pod: Pod, reason: str, message: str) -> None:
        """A Warning event on the pod, as the kubelet's recorder posts it: a core/v1 Event named
        `<pod>.<hex nanoseconds>` from component kubelet; the same reason and message again bump its count and
        lastTimestamp (at most every EVENT_REPEAT_S) instead of making another."""
        key = (pod.uid, reason, message)
        stamp = now()
        with self.lock:
            seen = self.events.get(key)
            if seen is not None and time.monotonic() - seen[2] < EVENT_REPEAT_S:
                return
            if seen is not None:
                seen[1], seen[2] = seen[1] + 1, time.monotonic()
                name, count = seen[0], seen[1]
            else:
                name, count = f"{pod.name}.{time.time_ns():x}", 1
                self.events[key] = [name, count, time.monotonic()]
        try:
            if count > 1:
                self.api.patch_namespaced_event(name, pod.ns, {"count": count, "lastTimestamp": stamp})
                return
            node = pod.pod["spec"].get("nodeName", "")
            self.api.create_namespaced_event(pod.ns, {
                "metadata": {"name": name, "namespace": pod.ns},
                "involvedObject": {"apiVersion": "v1", "kind": "Pod", "namespace": pod.ns, "name": pod.name,
                                   "uid": pod.uid},
                "reason": reason, "message": message, "type": "Warning", "count": 1,
                "firstTimestamp": stamp, "lastTimestamp": stamp,
                "source": {"component": "kubelet", "host": node},
                "reportingComponent": "kubelet", "reportingInstance": node})
        except ApiException as e:  # the namespace going away, say: an event is never worth failing a pod for
            LOG.warning("event %s on %s/%s: %s", reason, pod.ns, pod.name, e.reason)

    def forget_events(self, uid: str) -> None:
        with self.lock:
            for key in [k for k in self.events if k[0] == uid]:
                del self.events[key]

    # ---------------------------------------------------------------- addresses

    def claim_address(self, pod: Pod) -> bool:
        """Creates the pod's namespace once no other namespace holds its IP; False if the pod went meanwhile.

        kwok frees a pod's IP when it deletes the pod, which can be before the runner stopped that pod's
        processes: two hosts with one address on the bridge garble each other's connections.
        """
        deadline = time.monotonic() + ADDRESS_WAIT_S
        while True:
            with self.lock:
                if pod.stopping.is_set():
                    return False
                holder = next((u for u, ip in self.addresses.items() if ip == pod.ip and u != pod.uid), None)
                if holder is None or time.monotonic() > deadline:
                    if holder is not None:
                        LOG.warning("%s/%s: %s still held by pod %s; starting anyway", pod.ns, pod.name, pod.ip,
                                    holder)
                    network.create_pod_netns(pod.uid, pod.ip)
                    self.addresses[pod.uid] = pod.ip
                    return True
            time.sleep(0.2)

    def release(self, pod: Pod) -> None:
        """A pod whose containers all ended (a Job's pod): its namespace and volumes go, its status stays."""
        pod.clean_up()
        network.delete_pod_netns(pod.uid)
        with self.lock:
            self.addresses.pop(pod.uid, None)
        self.forget_events(pod.uid)

    # ---------------------------------------------------------------- pod events

    def handle(self, obj: Any, deleted: bool) -> None:
        pod = self.api.api_client.sanitize_for_serialization(obj)
        meta, spec, status = pod["metadata"], pod.get("spec") or {}, pod.get("status") or {}
        uid = meta["uid"]
        self._update_dns(pod, deleted)
        if deleted:
            self.stop(uid, grace_s=0)
            return
        if meta.get("deletionTimestamp"):
            grace = meta.get("deletionGracePeriodSeconds")
            grace = float(grace if grace is not None else spec.get("terminationGracePeriodSeconds", 30))
            with self.lock:
                worker = self.pods.get(uid)
                if worker is None or worker.stopping.is_set():
                    if worker is None:
                        self._finish_deletion(uid, meta["namespace"], meta["name"])
                    return
                worker.stopping.set()
            threading.Thread(target=self.stop, args=(uid, grace), daemon=True, name=f"stop-{meta['name']}").start()
            return
        if not status.get("podIP") or not spec.get("nodeName") or status.get("phase") in ("Succeeded", "Failed"):
            return
        with self.lock:
            if uid in self.pods:
                return
            worker = Pod(self, pod)
            self.pods[uid] = worker
        LOG.info("pod %s/%s at %s", worker.ns, worker.name, worker.ip)
        threading.Thread(target=worker.run, daemon=True, name=meta["name"]).start()

    def _update_dns(self, pod: dict[str, Any], deleted: bool) -> None:
        spec, meta = pod.get("spec") or {}, pod["metadata"]
        host, sub, ip = spec.get("hostname"), spec.get("subdomain"), (pod.get("status") or {}).get("podIP")
        if not (host and sub):
            return
        name = f"{host}.{sub}.{meta['namespace']}.svc.{CLUSTER_DOMAIN}"
        with self.lock:
            changed = False
            if deleted or not ip or meta.get("deletionTimestamp"):
                changed = self.dns.pop(name, None) is not None
            elif self.dns.get(name) != ip:
                self.dns[name], changed = ip, True
            if not changed:
                return
            snapshot, workers = dict(self.dns), list(self.pods.values())
        for worker in workers:
            if (worker.dir / "hosts").exists():
                with contextlib.suppress(OSError):
                    worker.write_hosts(snapshot)

    def stop(self, uid: str, grace_s: float) -> None:
        with self.lock:
            worker = self.pods.get(uid)
        if worker is None:
            return
        LOG.info("stopping %s/%s (grace %.0fs)", worker.ns, worker.name, grace_s)
        worker.terminate(grace_s)
        worker.clean_up()
        network.delete_pod_netns(uid)
        with self.lock:
            self.pods.pop(uid, None)
            self.addresses.pop(uid, None)
        self.forget_events(uid)
        self._finish_deletion(uid, worker.ns, worker.name)

    def _finish_deletion(self, uid: str, namespace: str, name: str) -> None:
        """The kubelet's last word: the pod object goes once its containers stopped."""
        with contextlib.suppress(ApiException):
            self.api.delete_namespaced_pod(name, namespace, grace_period_seconds=0,
                                           body=client.V1DeleteOptions(grace_period_seconds=0,
                                                                       preconditions={"uid": uid}))

    def stop_all(self) -> None:
        with self.lock:
            uids = list(self.pods)
        threads = [threading.Thread(target=self._stop_local, args=(u,)) for u in uids]
        for t in threads:
            t.start()
        for t in threads:
            t.join()

    def _stop_local(self, uid: str) -> None:
        """The runner itself stopping: processes and namespaces go, pod objects stay (a node going down)."""
        with self.lock:
            worker = self.pods.pop(uid, None)
        if worker is not None:
            worker.terminate(2.0)
            worker.clean_up()
            network.delete_pod_netns(uid)

    # ---------------------------------------------------------------- watch loop

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                pods = self.api.list_pod_for_all_namespaces(field_selector="spec.nodeName!=")
                live = {p.metadata.uid for p in pods.items}
                with self.lock:
                    gone = [u for u in self.pods if u not in live]
                for uid in gone:
                    self.stop(uid, grace_s=0)
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


def print_logs(namespace: str, name: str, container: str | None, previous: bool) -> int:
    folders = sorted(POD_LOGS.glob(f"{namespace}_{name}_*"), key=lambda p: p.stat().st_mtime)
    if not folders:
        print(f"no logs for pod {namespace}/{name}", file=sys.stderr)
        return 1
    pod_dir = folders[-1]
    names = sorted(p.name for p in pod_dir.iterdir())
    chosen = container or (names[-1] if len(names) == 1 else None)
    if chosen is None:
        print(f"pod {name} has several containers; choose one of {names} with -c", file=sys.stderr)
        return 1
    runs = sorted((pod_dir / chosen).glob("*.log"), key=lambda p: int(p.stem))
    if len(runs) < (2 if previous else 1):
        print(f"no {'previous ' if previous else ''}log for container {chosen}", file=sys.stderr)
        return 1
    sys.stdout.write(runs[-2 if previous else -1].read_text(errors="replace"))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="testbed pod runner (the kubelet of the kwok nodes)")
    sub = parser.add_subparsers(dest="command")
    logs = sub.add_parser("logs", help="print a container's log, as `kubectl logs` would")
    logs.add_argument("namespace")
    logs.add_argument("pod")
    logs.add_argument("-c", "--container")
    logs.add_argument("-p", "--previous", action="store_true")
    parser.add_argument("--kubeconfig")
    args = parser.parse_args(argv)
    if args.command == "logs":
        return print_logs(args.namespace, args.pod, args.container, args.previous)
    if not args.kubeconfig:
        parser.error("--kubeconfig is required")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    config.load_kube_config(args.kubeconfig)
    runner = PodRunner(client.CoreV1Api())
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
