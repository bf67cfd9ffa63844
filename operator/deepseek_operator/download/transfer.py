"""What every store's download shares: progress, the rate cap, checksums, and the staging folder that makes a
checkpoint visible under its key only once every file is complete and verified.

Layout in the model cache: `<dest>.partial/` while downloading (each file verified before it is listed in
`.verified`), then one rename to `<dest>/`, which holds `.complete` (the manifest). A folder without `.complete`
is never served: the operator mounts `<dest>` only after the Job succeeded, and the Job succeeds only after the
rename.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

COMPLETE_MARKER = ".complete"
VERIFIED_LIST = ".verified"
PART_SUFFIX = ".part"
CHUNK = 1 << 20
RATE_WINDOW_S = 10.0


class PermanentError(Exception):
    """A failure another try cannot mend (wrong credentials, no such bucket, a corrupt object, a full volume)."""


@dataclass(frozen=True)
class Checksum:
    """How the store vouches for a file: md5 (a one-part S3 ETag), s3-multipart (ETag "<md5 of part md5s>-N",
    parts of `part_size`), sha256 (the Hub's LFS files) or git-sha1 (the Hub's small files: their git blob id)."""

    kind: str
    value: str
    part_size: int = 0


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the checkpoint folder
    size: int
    checksum: Checksum | None  # None: the store offers nothing to check against (the size still is)


class Progress:
    """Bytes written of the whole checkpoint and the rate over the last seconds; read by the progress endpoint."""

    def __init__(self, total: int, done: int = 0) -> None:
        self.total, self.done, self.file = total, done, ""
        self.state = "Downloading"
        self._lock = threading.Lock()
        self._samples: deque[tuple[float, int]] = deque([(time.monotonic(), done)])

    def add(self, n: int) -> None:
        with self._lock:
            self.done += n
            now = time.monotonic()
            self._samples.append((now, self.done))
            while len(self._samples) > 2 and self._samples[1][0] < now - RATE_WINDOW_S:
                self._samples.popleft()

    def rate(self) -> int:
        with self._lock:
            (t0, b0), (_, b1) = self._samples[0], self._samples[-1]
            now = time.monotonic()
            return int((b1 - b0) / (now - t0)) if now - t0 > 0.5 else 0

    def snapshot(self) -> dict[str, object]:
        return {"state": self.state, "bytesDone": self.done, "bytesTotal": self.total,
                "bytesPerSecond": self.rate(), "file": self.file}


class Throttle:
    """A token bucket: at most `rate` bytes per second on average, bursts of one second."""

    def __init__(self, rate: int | None) -> None:
        self.rate = rate
        self._allowance = float(rate or 0)
        self._last = time.monotonic()

    def take(self, n: int) -> None:
        if not self.rate:
            return
        now = time.monotonic()
        self._allowance = min(float(self.rate), self._allowance + (now - self._last) * self.rate)
        self._last = now
        self._allowance -= n
        if self._allowance < 0:
            time.sleep(-self._allowance / self.rate)


def digest_of(path: Path, checksum: Checksum) -> str:
    """The file's digest in the form the store states it."""
    if checksum.kind == "s3-multipart":
        parts = []
        with path.open("rb") as f:
            while block := f.read(checksum.part_size):
                parts.append(hashlib.md5(block, usedforsecurity=False).digest())
        return f"{hashlib.md5(b''.join(parts), usedforsecurity=False).hexdigest()}-{len(parts)}"
    if checksum.kind == "git-sha1":
        h = hashlib.sha1(f"blob {path.stat().st_size}\0".encode(), usedforsecurity=False)
    elif checksum.kind == "md5":
        h = hashlib.md5(usedforsecurity=False)
    else:
        h = hashlib.new(checksum.kind)
    with path.open("rb") as f:
        while block := f.read(CHUNK):
            h.update(block)
    return h.hexdigest()


def mismatch(path: Path, remote: RemoteFile) -> str | None:
    """Why the local file is not the remote one, or None when it is."""
    size = path.stat().st_size
    if size != remote.size:
        return f"{remote.path}: {size} bytes on the volume, {remote.size} in the store"
    if remote.checksum is None:
        return None
    got = digest_of(path, remote.checksum)
    if got != remote.checksum.value:
        return (f"checksum mismatch for {remote.path}: {remote.checksum.kind} {got} on the volume, "
                f"{remote.checksum.value} in the store")
    return None


class Staging:
    """The `<dest>.partial` folder of one checkpoint: which files are done and verified, and the final rename."""

    def __init__(self, dest: Path) -> None:
        self.dest = dest
        self.folder = dest.with_name(dest.name + ".partial")
        self.folder.mkdir(parents=True, exist_ok=True)
        listed = self.folder / VERIFIED_LIST
        self.verified: set[str] = set(json.loads(listed.read_text())) if listed.exists() else set()

    def path(self, rel: str) -> Path:
        target = (self.folder / rel).resolve()
        if self.folder.resolve() not in target.parents:
            raise PermanentError(f"refusing a file outside the checkpoint folder: {rel!r}")
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def is_done(self, remote: RemoteFile) -> bool:
        local = self.folder / remote.path
        return remote.path in self.verified and local.is_file() and local.stat().st_size == remote.size

    def bytes_present(self, files: Iterable[RemoteFile]) -> int:
        """What a resumed download already holds: the verified files and the partial ones' bytes."""
        total = 0
        for remote in files:
            if self.is_done(remote):
                total += remote.size
            elif (part := self.folder / (remote.path + PART_SUFFIX)).is_file():
                total += min(part.stat().st_size, remote.size)
        return total

    def discard_part(self, rel: str) -> None:
        (self.folder / (rel + PART_SUFFIX)).unlink(missing_ok=True)

    def mark_verified(self, rel: str) -> None:
        self.verified.add(rel)
        tmp = self.folder / (VERIFIED_LIST + ".tmp")
        tmp.write_text(json.dumps(sorted(self.verified)))
        os.replace(tmp, self.folder / VERIFIED_LIST)

    def commit(self, source: str, files: list[RemoteFile], extra_cleanup: Iterable[str] = ()) -> None:
        """The manifest, then one rename: the checkpoint appears under its key complete or not at all."""
        for name in extra_cleanup:
            shutil.rmtree(self.folder / name, ignore_errors=True)
        (self.folder / VERIFIED_LIST).unlink(missing_ok=True)
        manifest = {"source": source, "completedAt": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                    "bytes": sum(f.size for f in files), "files": [asdict(f) for f in files]}
        (self.folder / COMPLETE_MARKER).write_text(json.dumps(manifest, indent=1))
        if self.dest.exists():  # a folder without its marker: never served, safe to replace
            shutil.rmtree(self.dest)
        os.replace(self.folder, self.dest)


def fetch_ranged(staging: Staging, remote: RemoteFile, progress: Progress, throttle: Throttle,
                 open_stream: Callable[[int], Iterable[bytes]]) -> None:
    """Downloads one file into `<path>.part`, resuming at the bytes it holds, then verifies and renames it.
    `open_stream(offset)` yields the object's bytes from `offset` on."""
    final = staging.path(remote.path)
    part = final.with_name(final.name + PART_SUFFIX)
    offset = part.stat().st_size if part.exists() else 0
    if offset > remote.size:  # not the object we are fetching now: start over
        progress.add(-offset)
        part.unlink()
        offset = 0
    progress.file = remote.path
    if offset < remote.size:
        with part.open("ab") as out:
            for block in open_stream(offset):
                throttle.take(len(block))
                out.write(block)
                progress.add(len(block))
            out.flush()
            os.fsync(out.fileno())
    problem = mismatch(part, remote)
    if problem:
        progress.add(-part.stat().st_size)
        part.unlink()
        raise PermanentError(problem)
    os.replace(part, final)
    staging.mark_verified(remote.path)
