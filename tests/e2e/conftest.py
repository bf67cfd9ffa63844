"""The testbed fixture: started once per session when it is not running, stopped again if we started it."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.kube import TestbedClient
from tests.e2e.operator_proc import OperatorProcess, install_crd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestbedClient]:
    from testbed import cluster

    state = cluster.State.load()
    default_nodes = str((cluster.TESTBED / "nodes.yaml").resolve())
    started_here = not (state and state.mode == "processes" and state.nodes_file == default_nodes
                        and cluster.healthy(state))
    if started_here:
        res = subprocess.run([sys.executable, "-m", "testbed.cluster", "up"], cwd=REPO, text=True,
                             capture_output=True)
        if res.returncode != 0:
            pytest.fail(f"testbed/up failed:\n{res.stderr[-4000:]}")
        state = cluster.State.load()
    assert state is not None
    try:
        yield TestbedClient.from_state(state)
    finally:
        if started_here and not os.environ.get("DEEPSEEK_TESTBED_KEEP"):
            cluster.down(quiet=True)


@pytest.fixture(scope="session")
def operator(testbed: TestbedClient) -> Iterator[OperatorProcess]:
    """The CRD installed and the operator running as a process against the testbed."""
    install_crd()
    proc = OperatorProcess()
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()
