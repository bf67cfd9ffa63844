"""Runs the operator as a real process against the testbed, and stops it again."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from testbed import cluster
from tests.e2e import leftovers

REPO = Path(__file__).resolve().parents[2]
CRD = REPO / "crds" / "serving.deepseek.ai_deepseekdeployments.yaml"


def install_crd() -> None:
    cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    cluster.kubectl("wait", "--for=condition=Established", "crd/deepseekdeployments.serving.deepseek.ai",
                    "--timeout=60s")


class OperatorProcess:
    """`python -m deepseek_operator` with the testbed's kubeconfig; its log goes to the testbed's logs."""

    def __init__(self) -> None:
        self.log_path = cluster.LOGS / "operator.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.record: Path | None = None  # tests/e2e/leftovers.py: killed by the next session if this one dies
        self.metrics_port = cluster.free_port()

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def start(self) -> None:
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child
        env = {**os.environ, "KUBECONFIG": str(cluster.KUBECONFIG), "PYTHONUNBUFFERED": "1"}
        env.pop("KUBERNETES_SERVICE_HOST", None)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "deepseek_operator", "--liveness", "", "--metrics-port", str(self.metrics_port),
             "--metrics-address", "127.0.0.1", "--metric-sources", str(self.metric_sources_file())],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=REPO, start_new_session=True)
        self.record = leftovers.record_operator(self.proc.pid)
        log.close()
        time.sleep(1.0)
        if self.proc.poll() is not None:
            raise RuntimeError(f"operator exited at start; see {self.log_path}")

    @staticmethod
    def metric_sources_file() -> Path:
        state = cluster.State.load()
        assert state is not None, "the testbed is not up"
        return cluster.metric_sources_file(state)

    def kill(self) -> None:
        """SIGKILL: what a crash or an OOM kill looks like to the cluster."""
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self._forget()

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
        self._forget()

    def _forget(self) -> None:
        if self.record is not None:
            self.record.unlink(missing_ok=True)
            self.record = None
