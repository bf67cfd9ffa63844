"""A container's first process on the testbed: sets up its root and mounts, then execs the container's command.

The pod runner starts it as `ip netns exec <pod netns> unshare --mount --uts --pid -- python -m
testbed.container <spec.json>`, in the pod's network namespace with a private mount namespace; it forks the
container's first process, PID 1 of a fresh PID namespace, which:

1. mounts the container's root: an overlay whose lower layer is the host's filesystem and whose upper layer
   (the container's writable layer, new for every start) already holds the image's file tree (testbed/images.py);
2. mounts /proc for its PID namespace, the host's /dev and /sys, a 64 MiB /dev/shm (a container runtime's
   default), the pod's /etc/hosts and /etc/hostname, the termination-message file, and every volume at its
   mount path (bind mounts, read-only where asked, or tmpfs), then, read-only, any of the testbed's own host paths
   (the checkout, Python) that a volume's mount hid: a checkout under /tmp runs like one anywhere else;
3. sets the pod's hostname, chroots, changes to the working directory, becomes the container's user
   (runAsUser, runAsGroup, fsGroup and supplementalGroups, or the image's USER) and execs the command with
   exactly the container's environment.

When the command (PID 1) exits, the kernel kills every other process of the PID namespace: a launcher that
starts its server in the background and returns ends its container, as under a real runtime.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import traceback
from pathlib import Path
from typing import Any

DEFAULT_SHM = "64m"
EXIT_START_ERROR = 128  # what a runtime reports for a container whose command cannot be started


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True, capture_output=True, text=True)


def mount_point(target: Path, is_file: bool) -> None:
    if is_file:
        target.parent.mkdir(parents=True, exist_ok=True)
        if not target.exists():
            target.touch()
    else:
        target.mkdir(parents=True, exist_ok=True)


def in_root(root: Path, path: str, hops: int = 40) -> Path:
    """`path` inside `root` with its symlinks resolved inside `root` too, as a runtime resolves a mount target
    in the container's filesystem (the base layer's /var/run -> /run must not lead to the host's /run)."""
    parts = [p for p in path.split("/") if p not in ("", ".")]
    current = root
    while parts:
        part = parts.pop(0)
        if part == "..":
            current = current.parent if current != root else root
            continue
        candidate = current / part
        if candidate.is_symlink():
            hops -= 1
            if hops < 0:
                raise OSError(f"too many symlinks resolving {path} in the container")
            target = os.readlink(candidate)
            parts = [p for p in target.split("/") if p not in ("", ".")] + parts
            current = root if target.startswith("/") else current
            continue
        current = candidate
    return current


def setup(spec: dict[str, Any]) -> Path:
    root = spec["rootfs"]
    merged = Path(root["merged"])
    merged.mkdir(parents=True, exist_ok=True)
    mount("-t", "overlay", "overlay", "-o", f"lowerdir=/,upperdir={root['upper']},workdir={root['work']}",
          str(merged))
    mount("-t", "proc", "proc", str(merged / "proc"))
    for system in ("dev", "sys"):
        mount("--rbind", f"/{system}", str(merged / system))
    mount("-t", "tmpfs", "-o", f"size={DEFAULT_SHM}", "shm", str(merged / "dev" / "shm"))
    for m in spec["mounts"]:
        target = in_root(merged, m["target"])
        if m["type"] == "tmpfs":
            mount_point(target, False)
            mount("-t", "tmpfs", "-o", f"size={m['size']}" if m.get("size") else "defaults", "tmpfs", str(target))
            continue
        source = Path(m["source"])
        mount_point(target, source.is_file())
        mount("--bind", str(source), str(target))
        if m.get("readOnly"):
            mount("-o", "remount,bind,ro", str(target))
    for path in spec.get("hostPaths", []):
        if any(_under(path, m["target"]) for m in spec["mounts"]):  # hidden by a volume: shown again, read-only
            target = in_root(merged, path)
            mount_point(target, False)
            mount("--bind", path, str(target))
            mount("-o", "remount,bind,ro", str(target))
    if root.get("readOnly"):
        mount("-o", "remount,bind,ro", str(merged))
    return merged


def _under(path: str, folder: str) -> bool:
    folder = folder.rstrip("/") or "/"
    return folder != "/" and (path == folder or path.startswith(folder + "/"))


def main(argv: list[str]) -> int:
    """Forks the container's PID 1 into the PID namespace `unshare --pid` made for this process's children,
    passes it the stop signals the kubelet sends, and exits as a runtime reports it: its code, or 128 + the
    signal that killed it."""
    spec = json.loads(Path(argv[1]).read_text())
    child = os.fork()
    if child == 0:
        try:
            code = run_container(spec)  # returns only when the command could not be started
        except BaseException:
            traceback.print_exc()
            code = EXIT_START_ERROR
        os._exit(code)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(sig, lambda signum, _frame: os.kill(child, signum))
    while True:
        try:
            _, status = os.waitpid(child, 0)
            break
        except ChildProcessError:
            return EXIT_START_ERROR
        except InterruptedError:
            continue
    return os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128 + os.WTERMSIG(status)


def run_container(spec: dict[str, Any]) -> int:
    try:
        merged = setup(spec)
    except subprocess.CalledProcessError as e:
        print(f"testbed: container setup failed: {' '.join(e.cmd)}: {e.stderr.strip()}", file=sys.stderr)
        return EXIT_START_ERROR
    socket.sethostname(spec["hostname"])
    os.chroot(merged)
    workdir = spec.get("workingDir") or "/"
    try:
        os.makedirs(workdir, exist_ok=True)  # as runc does for a working directory the image lacks
        os.chdir(workdir)
    except OSError as e:
        print(f"testbed: chdir to working directory {workdir!r}: {e.strerror}", file=sys.stderr)
        return EXIT_START_ERROR
    user = spec.get("user") or {"uid": 0, "gid": 0, "groups": []}
    if user["uid"] != 0 or user["gid"] != 0:  # the container's user, last, as a runtime sets it before exec
        os.setgroups(user["groups"])
        os.setgid(user["gid"])
        os.setuid(user["uid"])
    command = spec["argv"]
    try:
        os.execvpe(command[0], command, spec["env"])
    except OSError as e:
        # The message a container runtime gives, so `kubectl describe` reads the same.
        print(f'exec: "{command[0]}": {e.strerror}: executable file not found in $PATH'
              if isinstance(e, FileNotFoundError) else f'exec: "{command[0]}": {e.strerror}', file=sys.stderr)
        return EXIT_START_ERROR
    return 0  # not reached


if __name__ == "__main__":
    sys.exit(main(sys.argv))
