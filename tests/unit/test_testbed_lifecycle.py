"""The testbed's lifecycle (testbed/cluster.py, tests/e2e/leftovers.py), without touching the running testbed: a
crashed operator costs a restart of the operator, never the cluster; a fresh cluster says so; the metric sources
follow the cluster; what a killed end-to-end run left is cleared by the next session, and nothing of a session
still running."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import yaml

from testbed import cluster
from tests.e2e import leftovers

NODES = str((cluster.TESTBED / "nodes.yaml").resolve())


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.fixture
def state_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The testbed's state in a folder of the test's: the real one belongs to the testbed that runs."""
    monkeypatch.setattr(cluster, "STATE_DIR", tmp_path)
    monkeypatch.setattr(cluster, "STATE_FILE", tmp_path / "testbed.json")
    monkeypatch.setattr(cluster, "METRIC_SOURCES_FILE", tmp_path / "metric-sources.yaml")
    monkeypatch.setattr(cluster, "https_ok", lambda url: True)  # the API server answers
    return tmp_path


def running_cluster(**pids: int) -> cluster.State:
    return cluster.State(mode="processes", nodes_file=NODES, pids={"etcd": os.getpid(), **pids},
                         ports={"apiserver": 6443, "prometheus": 9091, "traefik-metrics": 8082})


def test_a_dead_operator_leaves_the_cluster_healthy_and_a_dead_component_does_not(state_dir: Path) -> None:
    assert cluster.why_start_afresh(running_cluster(operator=dead_pid()), "processes", NODES) is None
    pid = dead_pid()
    assert cluster.why_start_afresh(running_cluster(**{"kube-apiserver": pid}), "processes", NODES) == \
        f"kube-apiserver (pid {pid}) not running"
    assert cluster.why_start_afresh(None, "processes", NODES) == "none is running"
    assert "mode processes" in str(cluster.why_start_afresh(running_cluster(), "instant", NODES))


def test_up_keeps_a_cluster_whose_operator_died_and_says_how_to_start_it_again(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    state = running_cluster(operator=dead_pid())
    monkeypatch.setattr(cluster.State, "load", classmethod(lambda cls: state))
    monkeypatch.setattr(cluster, "down", lambda quiet=False: pytest.fail("the cluster was wiped"))
    assert cluster.up("processes", NODES) is state
    assert "`testbed/cluster operator` starts it again" in capsys.readouterr().err


def test_a_fresh_cluster_says_so_before_the_old_one_goes(state_dir: Path, monkeypatch: pytest.MonkeyPatch,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    pid = dead_pid()
    monkeypatch.setattr(cluster.State, "load", classmethod(lambda cls: running_cluster(etcd=pid)))

    class Wiped(Exception):
        pass

    def down(quiet: bool = False) -> None:
        raise Wiped

    monkeypatch.setattr(cluster, "down", down)
    with pytest.raises(Wiped):
        cluster.up("processes", NODES)
    assert capsys.readouterr().err == (f"testbed: starting a fresh cluster: etcd (pid {pid}) not running; "
                                       "nothing of the old one is kept\n")


def test_the_operator_command_restarts_a_dead_operator_on_the_same_cluster(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    running_cluster(operator=dead_pid()).save()
    started: list[dict[str, int]] = []

    def start(state: cluster.State) -> None:
        started.append(dict(state.pids))
        state.pids["operator"] = os.getpid()

    monkeypatch.setattr(cluster, "start_local_operator", start)
    assert cluster.main(["operator"]) == 0
    assert started and cluster.State.load().pids["etcd"] == os.getpid()  # type: ignore[union-attr]


def test_the_operator_command_refuses_a_broken_cluster_saying_why(
        state_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    running_cluster(etcd=dead_pid()).save()
    monkeypatch.setattr(cluster, "start_local_operator", lambda state: pytest.fail("started on a broken cluster"))
    assert cluster.main(["operator"]) == 1
    assert "not running); testbed/up starts a fresh one" in capsys.readouterr().err


def test_the_metric_sources_file_has_the_ports_of_the_cluster_it_is_written_for(state_dir: Path) -> None:
    first, second = running_cluster(), running_cluster()
    second.ports.update({"prometheus": 19091, "traefik-metrics": 18082})
    assert cluster.metric_sources_file(first) == cluster.metric_sources_file(second)
    sources = yaml.safe_load(cluster.METRIC_SOURCES_FILE.read_text())["sources"]
    assert [s["address"].rsplit(":", 1)[1] for s in sources] == ["19091", "18082/metrics"]
    assert sorted(p.name for p in state_dir.iterdir()) == ["metric-sources.yaml"]  # no half-written file left


# ---------------------------------------------------------------- what a killed end-to-end run left


@pytest.fixture
def operators(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[list[subprocess.Popen[bytes]]]:
    monkeypatch.setattr(leftovers, "OPERATORS", tmp_path / "e2e-operators")
    started: list[subprocess.Popen[bytes]] = []
    yield started
    for proc in started:
        proc.kill()
        proc.wait()


def operator(started: list[subprocess.Popen[bytes]]) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["sleep", "60"], start_new_session=True)  # as OperatorProcess starts it
    started.append(proc)
    return proc


def test_a_process_is_named_by_its_pid_and_its_start_not_by_a_pid_reused() -> None:
    me = leftovers.this_session()
    assert leftovers.running(me)
    pid, start = me.split("-")
    assert not leftovers.running(f"{pid}-{int(start) + 1}")  # another process under the same pid
    assert not leftovers.running(f"{dead_pid()}-{start}")
    assert not leftovers.running("not-a-name")


def test_the_operators_of_sessions_gone_are_killed_and_those_of_running_sessions_kept(
        operators: list[subprocess.Popen[bytes]]) -> None:
    mine = operator(operators)
    record = leftovers.record_operator(mine.pid)  # this session's: it runs
    orphan = operator(operators)
    orphaned = leftovers.record_operator(orphan.pid)
    orphaned.write_text(json.dumps({"session": f"{dead_pid()}-1"}))  # a session that was killed
    assert leftovers.kill_operators_of_sessions_gone() == [orphaned.stem]
    assert orphan.wait(timeout=10) == -9 and mine.poll() is None
    assert sorted(leftovers.OPERATORS.iterdir()) == [record]


def namespace(name: str, **labels: str) -> Any:
    return SimpleNamespace(metadata=SimpleNamespace(name=name, labels=labels))


class Namespaces:
    """The API server's namespaces, as the clean-up lists and deletes them (deleted ones go at once)."""

    def __init__(self, *items: Any) -> None:
        self.items = list(items)
        self.deleted: list[str] = []

    def list_namespace(self, label_selector: str) -> Any:
        return SimpleNamespace(items=[n for n in self.items if label_selector in n.metadata.labels])

    def delete_namespace(self, name: str) -> None:
        self.deleted.append(name)
        self.items = [n for n in self.items if n.metadata.name != name]


def test_the_namespaces_of_sessions_gone_are_deleted_and_those_of_running_sessions_kept() -> None:
    gone = f"{dead_pid()}-1"
    core = Namespaces(namespace("t-mine", **{leftovers.SESSION_LABEL: leftovers.this_session()}),
                      namespace("t-orphan", **{leftovers.SESSION_LABEL: gone}),
                      namespace("default"), namespace("older-run"))  # unlabelled: nobody's to delete
    assert leftovers.delete_namespaces_of_sessions_gone(core) == (["t-orphan"], [])
    assert core.deleted == ["t-orphan"]
