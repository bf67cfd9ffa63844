"""The testbed fixture: started once per session when it is not running, stopped again if we started it."""

from __future__ import annotations

import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e import leftovers
from tests.e2e.kube import TestbedClient
from tests.e2e.operator_proc import OperatorProcess, install_crd

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="session")
def testbed() -> Iterator[TestbedClient]:
    from testbed import cluster

    state = cluster.State.load()
    why = cluster.why_start_afresh(state, "processes", str((cluster.TESTBED / "nodes.yaml").resolve()))
    started_here = why is not None
    if started_here:
        if state is not None:  # nothing of the old cluster is kept: said, not done quietly
            warnings.warn(f"the testbed's cluster is started afresh: {why}", stacklevel=1)
        res = subprocess.run([sys.executable, "-m", "testbed.cluster", "up"], cwd=REPO, text=True,
                             capture_output=True)
        if res.returncode != 0:
            pytest.fail(f"testbed/up failed:\n{res.stderr[-4000:]}")
        state = cluster.State.load()
    assert state is not None
    testbed = TestbedClient.from_state(state)
    # What a killed run left: its operator (still reconciling) and its namespaces (whose pods hold the nodes).
    killed = leftovers.kill_operators_of_sessions_gone()
    deleted, stuck = leftovers.delete_namespaces_of_sessions_gone(testbed.core)
    if killed or deleted:
        warnings.warn(f"a killed end-to-end run left operators {killed} and namespaces {deleted}: removed",
                      stacklevel=1)
    if stuck:
        warnings.warn(f"namespaces of a killed run are still terminating: {stuck}", stacklevel=1)
    try:
        yield testbed
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
