"""What a killed end-to-end run leaves on the shared testbed, cleared when the next session starts.

A run killed mid-way (Ctrl-C twice, a CI timeout, a lost terminal) skips its fixtures' teardown: its operator
keeps running and its namespaces keep their pods, which hold the GPU nodes the next run needs. Several people run
the tests against one testbed at once, so a session removes only what belongs to a session that no longer runs:

- a session is named by its pytest process, pid and start time (a reused pid starts at another time);
- every namespace a session makes carries that name (SESSION_LABEL);
- every operator process a session starts is recorded under the testbed's state (OPERATORS), with the session's
  name, and forgotten when the session stops it.

At its start a session kills the recorded operators of sessions gone and deletes their namespaces.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from testbed import cluster

SESSION_LABEL = "testbed.deepseek.ai/e2e-session"
OPERATORS = cluster.STATE_DIR / "e2e-operators"
NAMESPACES_GONE_S = 180.0  # their pods' grace periods, then the namespace controller


def process_start(pid: int) -> int | None:
    """When the process started, in clock ticks since boot (/proc/<pid>/stat field 22); None if it is gone."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return None if fields[0] == "Z" else int(fields[19])


def process_name(pid: int) -> str:
    """`<pid>-<start>`: a label value that names this process and no later one with the same pid."""
    return f"{pid}-{process_start(pid)}"


def running(name: str) -> bool:
    """Whether the process `process_name` named is still the one running under its pid."""
    pid, _, start = name.partition("-")
    return pid.isdigit() and start.isdigit() and process_start(int(pid)) == int(start)


def this_session() -> str:
    return process_name(os.getpid())


def record_operator(pid: int) -> Path:
    """Records an operator this session started (its process group: started with start_new_session)."""
    OPERATORS.mkdir(parents=True, exist_ok=True)
    record = OPERATORS / f"{process_name(pid)}.json"
    record.write_text(json.dumps({"session": this_session()}))
    return record


def kill_operators_of_sessions_gone() -> list[str]:
    """Kills each recorded operator whose session no longer runs; returns the operators' names."""
    killed = []
    for record in sorted(OPERATORS.glob("*.json")) if OPERATORS.is_dir() else []:
        with contextlib.suppress(OSError, ValueError):
            if running(json.loads(record.read_text())["session"]):
                continue
            operator = record.stem
            if running(operator):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(int(operator.partition("-")[0]), signal.SIGKILL)
                killed.append(operator)
            record.unlink()
    return killed


def namespaces_of_sessions_gone(namespaces: Iterable[tuple[str, Mapping[str, str]]]) -> list[str]:
    """Of (name, labels) pairs, the namespaces a session made that no longer runs."""
    return sorted(name for name, labels in namespaces
                  if SESSION_LABEL in labels and not running(labels[SESSION_LABEL]))


def delete_namespaces_of_sessions_gone(core: Any) -> tuple[list[str], list[str]]:
    """Deletes them and waits until they are gone (their pods with them, which frees the nodes); returns those
    deleted and those still there when the wait ended."""
    listed = core.list_namespace(label_selector=SESSION_LABEL).items
    deleted = namespaces_of_sessions_gone((n.metadata.name, n.metadata.labels or {}) for n in listed)
    for name in deleted:
        with contextlib.suppress(Exception):  # already terminating, or gone meanwhile
            core.delete_namespace(name)
    deadline = time.monotonic() + NAMESPACES_GONE_S
    left = set(deleted)
    while left and time.monotonic() < deadline:
        time.sleep(1.0)
        left &= {n.metadata.name for n in core.list_namespace(label_selector=SESSION_LABEL).items}
    return deleted, sorted(left)
