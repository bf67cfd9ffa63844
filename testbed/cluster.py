"""Starts, stops and reports the local testbed: a real control plane, kwok GPU nodes, pod runner,
Prometheus and Traefik, all bound to loopback or to the testbed's own bridge.

Usage: python -m testbed.cluster up [--no-processes] | down | status | env
State (pids, ports) lives in $DEEPSEEK_TESTBED_CACHE/state/testbed.json so `up` is idempotent and
`down` stops exactly what `up` started.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import yaml

from testbed import network, volumes

REPO = Path(__file__).resolve().parent.parent
TESTBED = REPO / "testbed"
CACHE = Path(os.environ.get("DEEPSEEK_TESTBED_CACHE", Path.home() / ".cache" / "deepseek-operator"))
BIN = CACHE / "bin"
# The images' own environments (testbed/lib.sh makes them): PyTorch for the preflight, boto3 and
# huggingface_hub for the downloader, each apart from the testbed's venv.
PREFLIGHT_PYTHON = os.environ.get("DEEPSEEK_TESTBED_PREFLIGHT_PYTHON") or str(
    CACHE / "preflight-venv" / "bin" / "python")
DOWNLOADER_PYTHON = os.environ.get("DEEPSEEK_TESTBED_DOWNLOADER_PYTHON") or str(
    CACHE / "downloader-venv" / "bin" / "python")
PKI = CACHE / "pki"
STATE_DIR = CACHE / "state"
LOGS = CACHE / "logs"
STATE_FILE = STATE_DIR / "testbed.json"
KUBECONFIG = CACHE / "kubeconfig"

SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
GATEWAY_NAMESPACE = "default"
GATEWAY_NAME = "llm-gateway"
GATEWAY_CLASS = "traefik"
# The Gateway's HTTPS listener and its certificate's Secret (made at `up`, self-signed; a test may replace it).
GATEWAY_TLS_LISTENER, GATEWAY_TLS_SECRET = "websecure", "llm-gateway-tls"


# The operator `testbed/cluster operator` runs beside the cluster: no part of its health.
OPERATOR = "operator"


class TestbedError(RuntimeError):
    """A failure the user can act on; printed without a traceback."""


@dataclass
class State:
    mode: str = "processes"
    nodes_file: str = str(Path(__file__).resolve().parent / "nodes.yaml")
    ports: dict[str, int] = field(default_factory=dict)
    pids: dict[str, int] = field(default_factory=dict)
    started_at: float = 0.0

    @classmethod
    def load(cls) -> State | None:
        if not STATE_FILE.exists():
            return None
        return cls(**json.loads(STATE_FILE.read_text()))

    def save(self) -> None:
        STATE_DIR.mkdir(parents=True, exist_ok=True)
        STATE_FILE.write_text(json.dumps(asdict(self), indent=2))


# ---------------------------------------------------------------- helpers


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def run(cmd: list[str], **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, check=True, text=True, capture_output=True, **kw)  # type: ignore[call-overload]


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child still answers kill(0); treat it as gone.
    with contextlib.suppress(OSError):
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] != "Z"
    return False


def process_group_rss_mib(pgid: int) -> float:
    """Resident memory of every process in a process group (a component and the children it started)."""
    total_kib = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            if int((proc / "stat").read_text().rsplit(")", 1)[1].split()[2]) != pgid:
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total_kib += int(line.split()[1])
    return total_kib / 1024


def start_process(state: State, name: str, cmd: list[str], env: dict[str, str] | None = None) -> None:
    LOGS.mkdir(parents=True, exist_ok=True)
    log = open(LOGS / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child process
    log.write(f"\n==== {time.ctime()} {' '.join(cmd)}\n".encode())
    log.flush()
    proc = subprocess.Popen(
        cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
        start_new_session=True, env={**os.environ, **(env or {})}, cwd=REPO,
    )
    state.pids[name] = proc.pid
    state.save()


def wait_for(what: str, check: Callable[[], bool], timeout: float, log_name: str | None = None,
             pid: int | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        if pid is not None and not pid_alive(pid):
            raise TestbedError(f"{what} exited during start-up; see {LOGS / (log_name or what)}.log")
        time.sleep(0.3)
    hint = f"; see {LOGS / log_name}.log" if log_name else ""
    raise TestbedError(f"timed out after {timeout:.0f}s waiting for {what}{hint}")


def https_ok(url: str) -> bool:
    ctx = ssl.create_default_context(cafile=str(PKI / "ca.crt"))
    ctx.load_cert_chain(str(PKI / "admin.crt"), str(PKI / "admin.key"))
    try:
        with urllib.request.urlopen(url, context=ctx, timeout=2) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return bool(r.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def kubectl(*args: str, stdin: str | None = None) -> str:
    cmd = [str(BIN / "kubectl"), f"--kubeconfig={KUBECONFIG}", *args]
    res = subprocess.run(cmd, input=stdin, text=True, capture_output=True)
    if res.returncode != 0:
        raise TestbedError(f"kubectl {' '.join(args)} failed: {res.stderr.strip()}")
    return res.stdout


# ---------------------------------------------------------------- PKI


def ensure_pki() -> None:
    """A CA, the apiserver's serving cert, an admin client cert, the service-account key pair, and the
    aggregation layer's front-proxy CA and client cert (made also for a PKI from before it had them)."""
    PKI.mkdir(parents=True, exist_ok=True)

    def ossl(*args: str) -> None:
        run(["openssl", *args], cwd=PKI)

    if not (PKI / "front-proxy-client.crt").exists():
        # The aggregation layer's own CA (kept apart from the cluster CA, as kubeadm does, so no cluster client
        # cert can pose as the front proxy) and the client cert the apiserver presents when it proxies a request
        # to an aggregated API server (KEDA's metrics adapter); the CN is --requestheader-allowed-names.
        ossl("genrsa", "-out", "front-proxy-ca.key", "2048")
        ossl("req", "-x509", "-new", "-key", "front-proxy-ca.key", "-subj", "/CN=deepseek-testbed-front-proxy-ca",
             "-days", "3650", "-out", "front-proxy-ca.crt")
        ossl("genrsa", "-out", "front-proxy-client.key", "2048")
        ossl("req", "-new", "-key", "front-proxy-client.key", "-subj", "/CN=front-proxy-client",
             "-out", "front-proxy-client.csr")
        (PKI / "front-proxy-client.ext").write_text("extendedKeyUsage=clientAuth\n")
        ossl("x509", "-req", "-in", "front-proxy-client.csr", "-CA", "front-proxy-ca.crt", "-CAkey",
             "front-proxy-ca.key", "-CAcreateserial", "-days", "3650", "-out", "front-proxy-client.crt",
             "-extfile", "front-proxy-client.ext")
    if (PKI / "admin.crt").exists():
        return
    ossl("genrsa", "-out", "ca.key", "2048")
    ossl("req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=deepseek-testbed-ca", "-days", "3650",
         "-out", "ca.crt")
    sans = ",".join([
        f"IP:{network.HOST_IP}", "IP:127.0.0.1", "IP:10.96.0.1", "DNS:localhost", "DNS:kubernetes",
        "DNS:kubernetes.default", "DNS:kubernetes.default.svc", "DNS:kubernetes.default.svc.cluster.local",
    ])
    for name, subj, usage, alt in [
        ("apiserver", "/CN=kube-apiserver", "serverAuth", sans),
        ("admin", "/O=system:masters/CN=testbed-admin", "clientAuth", ""),
    ]:
        ossl("genrsa", "-out", f"{name}.key", "2048")
        ossl("req", "-new", "-key", f"{name}.key", "-subj", subj, "-out", f"{name}.csr")
        ext = f"extendedKeyUsage={usage}\n" + (f"subjectAltName={alt}\n" if alt else "")
        (PKI / f"{name}.ext").write_text(ext)
        ossl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "3650", "-out", f"{name}.crt", "-extfile", f"{name}.ext")
    ossl("genrsa", "-out", "sa.key", "2048")
    ossl("rsa", "-in", "sa.key", "-pubout", "-out", "sa.pub")


def write_kubeconfig(apiserver_port: int) -> None:
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": "testbed", "cluster": {
            "server": f"https://{network.HOST_IP}:{apiserver_port}",
            "certificate-authority": str(PKI / "ca.crt")}}],
        "users": [{"name": "testbed-admin", "user": {
            "client-certificate": str(PKI / "admin.crt"), "client-key": str(PKI / "admin.key")}}],
        "contexts": [{"name": "testbed", "context": {"cluster": "testbed", "user": "testbed-admin"}}],
        "current-context": "testbed",
    }
    KUBECONFIG.write_text(yaml.safe_dump(config))


# ---------------------------------------------------------------- components


def require_binaries() -> None:
    missing = [b for b in ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl",
                           "kwok", "traefik", "helm", "prometheus", "keda-operator", "keda-adapter")
               if not (BIN / b).exists()]
    if missing:
        raise TestbedError(f"not built yet: {', '.join(missing)}; run testbed/build (logs in {LOGS})")


def start_etcd(state: State) -> None:
    data = STATE_DIR / "etcd"
    shutil.rmtree(data, ignore_errors=True)
    client, peer = free_port(), free_port()
    state.ports["etcd"] = client
    start_process(state, "etcd", [
        str(BIN / "etcd"), "--name=testbed", f"--data-dir={data}",
        f"--listen-client-urls=http://127.0.0.1:{client}", f"--advertise-client-urls=http://127.0.0.1:{client}",
        f"--listen-peer-urls=http://127.0.0.1:{peer}", f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
        f"--initial-cluster=testbed=http://127.0.0.1:{peer}", "--log-level=warn", "--quota-backend-bytes=2147483648",
        "--unsafe-no-fsync",  # a throwaway cluster: durability is not worth the 2-core machine's I/O
    ])
    wait_for("etcd", lambda: http_ok(f"http://127.0.0.1:{client}/health"), 60, "etcd", state.pids["etcd"])


def start_apiserver(state: State) -> None:
    port = free_port(network.HOST_IP)
    state.ports["apiserver"] = port
    start_process(state, "kube-apiserver", [
        str(BIN / "kube-apiserver"),
        f"--etcd-servers=http://127.0.0.1:{state.ports['etcd']}",
        f"--bind-address={network.HOST_IP}", f"--advertise-address={network.HOST_IP}", f"--secure-port={port}",
        f"--tls-cert-file={PKI / 'apiserver.crt'}", f"--tls-private-key-file={PKI / 'apiserver.key'}",
        f"--client-ca-file={PKI / 'ca.crt'}",
        f"--service-account-issuer={SA_ISSUER}", f"--api-audiences={SA_ISSUER}",
        f"--service-account-key-file={PKI / 'sa.pub'}", f"--service-account-signing-key-file={PKI / 'sa.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        "--authorization-mode=Node,RBAC",
        "--enable-admission-plugins=NodeRestriction",
        "--allow-privileged=true",
        f"--cert-dir={STATE_DIR / 'apiserver'}",
        # The aggregation layer, for aggregated API servers such as KEDA's external metrics adapter: the
        # apiserver authenticates to them with the front-proxy client cert and passes the user in headers.
        f"--requestheader-client-ca-file={PKI / 'front-proxy-ca.crt'}",
        "--requestheader-allowed-names=front-proxy-client",
        "--requestheader-username-headers=X-Remote-User", "--requestheader-group-headers=X-Remote-Group",
        "--requestheader-extra-headers-prefix=X-Remote-Extra-",
        f"--proxy-client-cert-file={PKI / 'front-proxy-client.crt'}",
        f"--proxy-client-key-file={PKI / 'front-proxy-client.key'}",
        # There is no kube-proxy, so a Service's ClusterIP leads nowhere: dial the APIService's endpoint instead.
        "--enable-aggregator-routing=true",
        "--profiling=false",
        "--v=1",
    ])
    wait_for("kube-apiserver", lambda: https_ok(f"https://{network.HOST_IP}:{port}/readyz"), 120,
             "kube-apiserver", state.pids["kube-apiserver"])
    write_kubeconfig(port)


def start_kube_component(state: State, name: str, flags: list[str]) -> None:
    """kube-controller-manager or kube-scheduler: admin kubeconfig, HTTPS on a free loopback port, no election."""
    port = free_port()
    state.ports[name] = port
    kc = str(KUBECONFIG)
    start_process(state, name, [
        str(BIN / name),
        f"--kubeconfig={kc}", f"--authentication-kubeconfig={kc}", f"--authorization-kubeconfig={kc}",
        "--bind-address=127.0.0.1", f"--secure-port={port}", f"--cert-dir={STATE_DIR / name}",
        "--leader-elect=false", "--v=1",
        # The defaults (20 QPS, burst 30) are sized for a shared production apiserver; on a one-machine
        # testbed they, not the machine, would bound how fast hundreds of pods appear.
        "--kube-api-qps=300", "--kube-api-burst=600", *flags,
    ])


def start_controller_manager(state: State) -> None:
    start_kube_component(state, "kube-controller-manager", [
        "--use-service-account-credentials=true",
        f"--service-account-private-key-file={PKI / 'sa.key'}", f"--root-ca-file={PKI / 'ca.crt'}",
        f"--cluster-signing-cert-file={PKI / 'ca.crt'}", f"--cluster-signing-key-file={PKI / 'ca.key'}",
        f"--service-cluster-ip-range={SERVICE_CIDR}",
        # PVCs bind through the in-tree host-path provisioner (it writes under /tmp/hostpath_pv).
        "--enable-hostpath-provisioner=true",
        # The HPA controller's default 15 s sync period would make autoscaling tests on a 2-core machine wait
        # several periods per step; 5 s keeps them short.
        "--horizontal-pod-autoscaler-sync-period=5s",
    ])


def start_scheduler(state: State) -> None:
    start_kube_component(state, "kube-scheduler", [])


def node_objects(nodes_file: str | Path = TESTBED / "nodes.yaml") -> list[dict[str, object]]:
    spec = yaml.safe_load(Path(nodes_file).read_text())
    nodes: list[dict[str, object]] = []
    for pool in spec["pools"]:
        for i in range(pool["count"]):
            name = f"{pool['prefix']}-{i}"
            labels = {"type": "kwok", "kubernetes.io/hostname": name, "kubernetes.io/os": "linux",
                      "kubernetes.io/arch": "amd64", "testbed.deepseek.ai/pool": pool["prefix"]}
            capacity = {"cpu": pool["cpu"], "memory": pool["memory"], "pods": "110",
                        "ephemeral-storage": "1Ti"}
            taints = []
            if gpu := pool.get("gpu"):
                labels |= {"nvidia.com/gpu.present": "true", "nvidia.com/gpu.product": gpu["product"],
                           "nvidia.com/gpu.memory": str(gpu["memoryMiB"]), "nvidia.com/gpu.count": str(gpu["count"])}
                capacity["nvidia.com/gpu"] = str(gpu["count"])
                taints.append({"key": "nvidia.com/gpu", "value": "present", "effect": "NoSchedule"})
            if rdma := pool.get("rdma"):
                capacity[rdma["resource"]] = str(rdma["count"])
            nodes.append({
                "apiVersion": "v1", "kind": "Node",
                "metadata": {"name": name, "labels": labels,
                             "annotations": {"kwok.x-k8s.io/node": "fake",
                                             "node.alpha.kubernetes.io/ttl": "0"}},
                "spec": {"taints": taints},
                "status": {"capacity": capacity, "allocatable": capacity},
            })
    return nodes


def start_kwok(state: State) -> None:
    stages = [TESTBED / "kwok" / "stages-node.yaml", TESTBED / "kwok" / "stages-pod.yaml"]
    if state.mode == "instant":
        stages.append(TESTBED / "kwok" / "stages-pod-instant-ready.yaml")
    port = free_port()
    state.ports["kwok"] = port
    start_process(state, "kwok", [
        str(BIN / "kwok"), f"--kubeconfig={KUBECONFIG}",
        "--manage-nodes-with-annotation-selector=kwok.x-k8s.io/node=fake",
        f"--cidr={network.POD_CIDR}", f"--node-ip={network.HOST_IP}",
        f"--server-address=127.0.0.1:{port}",
        *[f"--config={s}" for s in stages],
    ])


def start_pod_runner(state: State) -> None:
    start_process(state, "pod-runner", [sys.executable, "-m", "testbed.podrunner",
                                        f"--kubeconfig={KUBECONFIG}"],
                  env={"PYTHONUNBUFFERED": "1"})


def start_prometheus(state: State) -> None:
    port = free_port()
    state.ports["prometheus"] = port
    tls = {"ca_file": str(PKI / "ca.crt"), "cert_file": str(PKI / "admin.crt"), "key_file": str(PKI / "admin.key")}
    config = {
        "global": {"scrape_interval": "2s", "evaluation_interval": "2s"},
        "scrape_configs": [
            {
                # Every pod that declares container port 8002 (Triton's metrics port) or 8003 (the pod front
                # door's) is scraped, each port a target with its container's name.
                "job_name": "triton-pods",
                "kubernetes_sd_configs": [{
                    "role": "pod",
                    "api_server": f"https://{network.HOST_IP}:{state.ports['apiserver']}",
                    "tls_config": tls,
                }],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_pod_container_port_number"], "regex": "8002|8003",
                     "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_pod_container_name"], "target_label": "container"},
                    {"action": "labelmap", "regex": "__meta_kubernetes_pod_label_(.+)"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            },
            {
                # The operator running in a pod (its chart): what the chart's ServiceMonitor selects on a cluster
                # with the Prometheus Operator, the container port named `metrics` of the operator's pods.
                "job_name": "deepseek-operator",
                "kubernetes_sd_configs": [{
                    "role": "pod",
                    "api_server": f"https://{network.HOST_IP}:{state.ports['apiserver']}",
                    "tls_config": tls,
                }],
                "relabel_configs": [
                    {"source_labels": ["__meta_kubernetes_pod_label_app_kubernetes_io_name",
                                       "__meta_kubernetes_pod_container_port_name"],
                     "regex": "deepseek-operator;metrics", "action": "keep"},
                    {"source_labels": ["__meta_kubernetes_namespace"], "target_label": "operator_namespace"},
                    {"source_labels": ["__meta_kubernetes_pod_name"], "target_label": "pod"},
                ],
            },
            {"job_name": "traefik",
             "static_configs": [{"targets": [f"{network.HOST_IP}:{state.ports['traefik-metrics']}"]}]},
        ],
    }
    cfg = STATE_DIR / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config))
    data = STATE_DIR / "prometheus"
    shutil.rmtree(data, ignore_errors=True)
    start_process(state, "prometheus", [
        str(BIN / "prometheus"), f"--config.file={cfg}", f"--storage.tsdb.path={data}",
        f"--web.listen-address=127.0.0.1:{port}", "--storage.tsdb.retention.time=6h", "--log.level=warn",
    ])


def start_traefik(state: State) -> None:
    web, api = state.ports["gateway"], state.ports["traefik-metrics"]
    # Request bodies are read whole before they are forwarded. Streamed, a POST races inside Go's net/http
    # (golang/go#40747, traefik/traefik#11767): when the backend answers before the transport's last read of the
    # client's body, that read fails, the backend connection is closed and the client gets a 200 cut mid-body.
    # On a busy 2-core machine about one request in 20,000 met it during rollouts.
    dynamic = STATE_DIR / "traefik-dynamic.yml"
    dynamic.write_text(yaml.safe_dump({"http": {"middlewares": {"request-buffer": {"buffering": {
        "memRequestBodyBytes": 1 << 20, "maxRequestBodyBytes": 16 << 20}}}}}))
    start_process(state, "traefik", [
        str(BIN / "traefik"),
        f"--entryPoints.web.address=127.0.0.1:{web}",
        f"--entryPoints.{GATEWAY_TLS_LISTENER}.address=127.0.0.1:{state.ports['gateway-tls']}",
        # Metrics on the bridge address: an operator running as a pod reads them for the gateway provider.
        f"--entryPoints.traefik.address={network.HOST_IP}:{api}",
        "--providers.kubernetesgateway=true",
        "--providers.kubernetesgateway.throttleDuration=0s",
        "--metrics.prometheus=true", "--metrics.prometheus.addServicesLabels=true",
        "--metrics.prometheus.addRoutersLabels=true", "--metrics.prometheus.entryPoint=traefik",
        "--ping=true", "--ping.entryPoint=traefik",
        f"--providers.file.filename={dynamic}", "--entryPoints.web.http.middlewares=request-buffer@file",
        f"--entryPoints.{GATEWAY_TLS_LISTENER}.http.middlewares=request-buffer@file",
        # Requests answered 5xx, with the backend that answered, to place a failed request in time.
        "--accesslog=true", f"--accesslog.filePath={LOGS / 'traefik-access.log'}", "--accesslog.format=json",
        "--accesslog.filters.statusCodes=500-599",
        "--log.level=INFO", "--log.noColor=true", "--global.checkNewVersion=false", "--global.sendAnonymousUsage=false",
    ], env={"KUBECONFIG": str(KUBECONFIG)})


def start_keda(state: State) -> None:
    """KEDA's operator and external metrics adapter (testbed/keda/run), registered through the aggregation layer:
    the HPA controller of kube-controller-manager reads the ScaledObjects' metrics from it."""
    try:
        out = run([str(TESTBED / "keda" / "run"), str(STATE_DIR / "keda")],
                  env={**os.environ, "KUBECONFIG": str(KUBECONFIG)})
    except subprocess.CalledProcessError as err:
        raise TestbedError(f"KEDA did not start:\n{err.stderr[-3000:]}") from err
    for line in out.stdout.splitlines():  # NAME PID PORT (...)
        name, pid, port = line.split()[:3]
        state.pids[name], state.ports[name] = int(pid), int(port)
    state.save()


# What the testbed offers a resource's analysis by name (the operator's --metric-sources; the chart's
# metricSources): its Prometheus and Traefik's metrics.
PROMETHEUS_SOURCE, GATEWAY_SOURCE = "prometheus", "traefik"


def metric_sources(state: State) -> list[dict[str, str]]:
    return [{"name": PROMETHEUS_SOURCE, "provider": "prometheus",
             "address": f"http://127.0.0.1:{state.ports['prometheus']}"},
            {"name": GATEWAY_SOURCE, "provider": "gateway",
             "address": f"http://{network.HOST_IP}:{state.ports['traefik-metrics']}/metrics"}]


METRIC_SOURCES_FILE = STATE_DIR / "metric-sources.yaml"


def metric_sources_file(state: State) -> Path:
    """The operator's --metric-sources file for this cluster's ports, written anew (whole, by a rename: an
    operator starting meanwhile never reads half of it)."""
    STATE_DIR.mkdir(parents=True, exist_ok=True)
    partial = METRIC_SOURCES_FILE.with_suffix(f".{os.getpid()}.partial")
    partial.write_text(yaml.safe_dump({"sources": metric_sources(state)}))
    partial.replace(METRIC_SOURCES_FILE)
    return METRIC_SOURCES_FILE


def start_local_operator(state: State) -> None:
    """The operator as a local process against the testbed (until it runs in-cluster from the Helm chart); again
    if it died."""
    if OPERATOR in state.pids and pid_alive(state.pids[OPERATOR]):
        return
    kubectl("apply", "--server-side", "--force-conflicts", "-f", str(REPO / "crds"))
    kubectl("wait", "--for=condition=Established", "crd/deepseekdeployments.serving.deepseek.ai", "--timeout=60s")
    port = free_port()
    state.ports["operator-metrics"] = port
    start_process(state, OPERATOR, [sys.executable, "-m", "deepseek_operator", "--liveness", "",
                                      "--metrics-port", str(port), "--metrics-address", "127.0.0.1",
                                      "--metric-sources", str(metric_sources_file(state))],
                  env={"KUBECONFIG": str(KUBECONFIG), "PYTHONUNBUFFERED": "1"})
    wait_for("the operator's metrics endpoint",
             lambda: http_ok(f"http://127.0.0.1:{port}/metrics"), 60, OPERATOR, state.pids[OPERATOR])


def gateway_tls_secret() -> dict[str, object]:
    """The HTTPS listener's certificate: self-signed for *.llm.test, made here (tests bring their own CA's)."""
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "*.llm.test")])
    now = dt.datetime.now(dt.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=30))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("*.llm.test")]), critical=False)
            .sign(key, hashes.SHA256()))
    pem = (cert.public_bytes(serialization.Encoding.PEM),
           key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption()))
    return {"apiVersion": "v1", "kind": "Secret", "type": "kubernetes.io/tls",
            "metadata": {"name": GATEWAY_TLS_SECRET, "namespace": GATEWAY_NAMESPACE},
            "data": {"tls.crt": base64.b64encode(pem[0]).decode(), "tls.key": base64.b64encode(pem[1]).decode()}}


def apply_base_objects(state: State) -> None:
    kubectl("apply", "--server-side", "-f", str(CACHE / "crds" / "gateway-api-standard.yaml"))
    kubectl("wait", "--for=condition=Established", "crd/gateways.gateway.networking.k8s.io",
            "crd/httproutes.gateway.networking.k8s.io", "--timeout=60s")
    docs: list[dict[str, object]] = [*node_objects(state.nodes_file)]
    docs.append({
        "apiVersion": "storage.k8s.io/v1", "kind": "StorageClass",
        "metadata": {"name": "standard", "annotations": {"storageclass.kubernetes.io/is-default-class": "true"}},
        "provisioner": "kubernetes.io/host-path", "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate",
    })
    docs.append({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "GatewayClass",
        "metadata": {"name": GATEWAY_CLASS}, "spec": {"controllerName": "traefik.io/gateway-controller"},
    })
    docs.append({
        "apiVersion": "gateway.networking.k8s.io/v1", "kind": "Gateway",
        "metadata": {"name": GATEWAY_NAME, "namespace": GATEWAY_NAMESPACE},
        "spec": {"gatewayClassName": GATEWAY_CLASS, "listeners": [
            {"name": "web", "protocol": "HTTP", "port": state.ports["gateway"],
             "allowedRoutes": {"namespaces": {"from": "All"}}},
            {"name": GATEWAY_TLS_LISTENER, "protocol": "HTTPS", "port": state.ports["gateway-tls"],
             "tls": {"mode": "Terminate", "certificateRefs": [{"kind": "Secret", "name": GATEWAY_TLS_SECRET}]},
             "allowedRoutes": {"namespaces": {"from": "All"}}}]},
    })
    docs.append(gateway_tls_secret())
    kubectl("apply", "--server-side", "--force-conflicts", "-f", "-",
            stdin="\n---\n".join(yaml.safe_dump(d) for d in docs))
    # Node status (capacity) is a subresource: apply it separately so kwok sees the GPUs at once.
    for node in node_objects(state.nodes_file):
        kubectl("patch", "node", str(node["metadata"]["name"]), "--subresource=status", "--type=merge",  # type: ignore[index]
                "-p", json.dumps({"status": node["status"]}))


# ---------------------------------------------------------------- commands


def unhealthy(state: State) -> str | None:
    """Why the cluster of `state` cannot be used as it is; None when it can. The operator is no part of it: when
    it dies, `testbed/cluster operator` starts it again on the same cluster."""
    dead = [f"{name} (pid {pid})" for name, pid in state.pids.items() if name != OPERATOR and not pid_alive(pid)]
    if dead:
        return f"{', '.join(dead)} not running"
    if not https_ok(f"https://{network.HOST_IP}:{state.ports.get('apiserver', 0)}/readyz"):
        return "the API server does not answer /readyz"
    return None


def healthy(state: State) -> bool:
    return unhealthy(state) is None


def why_start_afresh(state: State | None, mode: str, nodes_file: str) -> str | None:
    """Why `up` must start a new cluster (None: the running one serves as it is)."""
    if state is None:
        return "none is running"
    if (state.mode, state.nodes_file) != (mode, nodes_file):
        return f"the running one is mode {state.mode} with nodes {state.nodes_file}"
    return unhealthy(state)


def up(mode: str, nodes_file: str | Path = TESTBED / "nodes.yaml") -> State:
    nodes_file = str(Path(nodes_file).resolve())
    state = State.load()
    why = why_start_afresh(state, mode, nodes_file)
    if state is not None and why is None:
        if OPERATOR in state.pids and not pid_alive(state.pids[OPERATOR]):
            print(f"testbed: the operator (pid {state.pids[OPERATOR]}) is not running; `testbed/cluster operator` "
                  "starts it again on this cluster", file=sys.stderr)
        metric_sources_file(state)
        return state
    # Said, since a fresh cluster has none of the old one's resources.
    print(f"testbed: starting a fresh cluster: {why}" + ("; nothing of the old one is kept" if state else ""),
          file=sys.stderr)
    # Whatever a previous run left (processes, pod namespaces whose IPs kwok will hand out again) goes first.
    down(quiet=True)
    require_binaries()
    ensure_pki()
    network.ensure_bridge()
    state = State(mode=mode, nodes_file=nodes_file, started_at=time.time())
    state.ports["gateway"] = free_port()
    state.ports["gateway-tls"] = free_port()
    state.ports["traefik-metrics"] = free_port(network.HOST_IP)
    state.save()
    try:
        start_etcd(state)
        start_apiserver(state)
        start_controller_manager(state)
        start_scheduler(state)
        apply_base_objects(state)
        start_kwok(state)
        if mode == "processes":
            start_pod_runner(state)
        if mode == "processes":  # with no processes there is nothing to scrape
            start_prometheus(state)
        start_traefik(state)
        wait_for("the fake nodes to be Ready", lambda: nodes_ready(state.nodes_file), 120, "kwok",
                 state.pids["kwok"])
        wait_for("the default service account", default_sa_exists, 60, "kube-controller-manager",
                 state.pids["kube-controller-manager"])
        if "prometheus" in state.pids:
            wait_for("Prometheus", lambda: http_ok(f"http://127.0.0.1:{state.ports['prometheus']}/-/ready"), 60,
                     "prometheus", state.pids["prometheus"])
        wait_for("Traefik", lambda: http_ok(f"http://{network.HOST_IP}:{state.ports['traefik-metrics']}/ping"), 60,
                 "traefik", state.pids["traefik"])
        if mode == "processes":
            start_keda(state)
        metric_sources_file(state)
    except BaseException:
        down(quiet=True)
        raise
    return state


def nodes_ready(nodes_file: str) -> bool:
    try:
        out = json.loads(kubectl("get", "nodes", "-o", "json"))
    except TestbedError:
        return False
    ready = [n for n in out["items"] for c in n["status"].get("conditions", [])
             if c["type"] == "Ready" and c["status"] == "True"]
    return len(ready) == len(node_objects(nodes_file))


def default_sa_exists() -> bool:
    try:
        kubectl("get", "serviceaccount", "default", "-n", "default")
    except TestbedError:
        return False
    return True


def down(quiet: bool = False) -> None:
    state = State.load()
    if state:
        # The pod runner first: it stops the stand-ins and removes their network namespaces.
        order = [OPERATOR, "keda-adapter", "keda-operator", "pod-runner", "traefik", "prometheus", "kwok",
                 "kube-scheduler", "kube-controller-manager", "kube-apiserver", "etcd"]
        names = [n for n in order if n in state.pids] + [n for n in state.pids if n not in order]
        for name in names:
            stop_pid(state.pids[name])
        STATE_FILE.unlink(missing_ok=True)
        METRIC_SOURCES_FILE.unlink(missing_ok=True)  # its ports were that cluster's
    network.remove_all()
    volumes.release_capacity_mounts()
    if not quiet:
        print("testbed stopped")


def stop_pid(pid: int, grace: float = 10.0) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and pid_alive(pid):
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pid, signal.SIGKILL)


def status() -> int:
    state = State.load()
    if not state:
        print("testbed: not running")
        return 1
    print(f"testbed: mode={state.mode} up {int(time.time() - state.started_at)}s  kubeconfig={KUBECONFIG}")
    for name, pid in state.pids.items():
        port = state.ports.get(name, state.ports.get(name.removeprefix("kube-")))
        print(f"  {name:<24} pid {pid:<8} {'running' if pid_alive(pid) else 'DEAD':<8}"
              f"{'' if port is None else f' port {port}'}")
    print(f"  gateway (Traefik)        http://127.0.0.1:{state.ports['gateway']}")
    if "prometheus" in state.ports:
        print(f"  prometheus               http://127.0.0.1:{state.ports['prometheus']}")
    return 0 if healthy(state) else 2


def env_lines(state: State) -> list[str]:
    return [
        f"export DEEPSEEK_TESTBED_GATEWAY=http://127.0.0.1:{state.ports['gateway']}",
        f"export DEEPSEEK_TESTBED_PROMETHEUS=http://127.0.0.1:{state.ports.get('prometheus', 0)}",
        f"export DEEPSEEK_TESTBED_TRAEFIK_METRICS=http://{network.HOST_IP}:{state.ports['traefik-metrics']}",
        f"export PATH={BIN}:$PATH",
        f"export KUBECONFIG={KUBECONFIG}",
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="testbed")
    sub = parser.add_subparsers(dest="command", required=True)
    p_up = sub.add_parser("up", help="start the testbed (idempotent)")
    p_up.add_argument("--no-processes", action="store_true",
                      help="pods become Ready straight from kwok; no stand-in processes (scale benchmarks)")
    p_up.add_argument("--nodes", default=str(TESTBED / "nodes.yaml"), help="the fake node pools (YAML)")
    sub.add_parser("down", help="stop everything the testbed started")
    sub.add_parser("status", help="show what runs")
    sub.add_parser("env", help="print the export lines for the running testbed")
    sub.add_parser("operator", help="install the CRD and run the operator from this checkout against the testbed")
    args = parser.parse_args(argv)
    try:
        if args.command == "up":
            t0 = time.monotonic()
            state = up("instant" if args.no_processes else "processes", args.nodes)
            print(f"testbed up in {time.monotonic() - t0:.1f}s; logs in {LOGS}", file=sys.stderr)
            print("\n".join(env_lines(state)))
            return 0
        if args.command == "down":
            down()
            return 0
        if args.command == "operator":
            state = State.load()
            if not state:
                raise TestbedError("testbed is not running; run testbed/up")
            if (why := unhealthy(state)) is not None:
                raise TestbedError(f"the testbed's cluster is broken ({why}); testbed/up starts a fresh one")
            start_local_operator(state)
            state.save()
            print(f"operator running (pid {state.pids[OPERATOR]}); log: {LOGS / 'operator.log'}")
            return 0
        if args.command == "env":
            state = State.load()
            if not state:
                raise TestbedError("testbed is not running; run testbed/up")
            print("\n".join(env_lines(state)))
            return 0
        return status()
    except TestbedError as e:
        print(f"testbed: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
