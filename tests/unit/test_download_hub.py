"""The downloader's hf: path (huggingface_hub's model_info and hf_hub_download, in the downloader's own
environment) against a local server that answers the few Hub API calls it makes. This tests our client code
and its checks, not the Hub: no Hub-compatible server could be had from a registry, so hf: is not exercised
end to end (the README says so)."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from testbed.cluster import DOWNLOADER_PYTHON

REPO_ROOT = Path(__file__).resolve().parents[2]
REPO, COMMIT = "deepseek-ai/DeepSeek-R1-Distill-Qwen-1.5B", "ad9f0ae0864d7fbcd1cd905e3c6c5b069cc8b562"
FILES = {"config.json": b'{"model_type": "qwen2"}', "model.safetensors": os.urandom(3 * 1024 * 1024 + 17)}
LFS = {"model.safetensors"}


def git_blob_id(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


class Hub(BaseHTTPRequestHandler):
    """model_info with blobs, HEAD and ranged GET of /resolve/: what huggingface_hub asks of a Hub."""

    served: dict[str, bytes] = FILES  # what GET answers; a test may swap in damaged bytes

    def log_message(self, *args: object) -> None:
        pass

    def _not_found(self) -> None:
        self.send_response(404)
        self.send_header("X-Error-Code", "RepoNotFound")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def _file_headers(self, name: str, length: int) -> None:
        data = FILES[name]
        etag = hashlib.sha256(data).hexdigest() if name in LFS else git_blob_id(data)
        self.send_header("X-Repo-Commit", COMMIT)
        self.send_header("ETag", f'"{etag}"')
        self.send_header("Content-Length", str(length))

    def _file(self) -> str | None:
        prefix = f"/{REPO}/resolve/{COMMIT}/"
        name = self.path.removeprefix(prefix)
        return name if self.path.startswith(prefix) and name in FILES else None

    def do_HEAD(self) -> None:
        if (name := self._file()) is None:
            return self._not_found()
        self.send_response(200)
        self._file_headers(name, len(FILES[name]))
        self.end_headers()

    def do_GET(self) -> None:
        if self.path.split("?")[0] == f"/api/models/{REPO}/revision/{COMMIT}":
            siblings = [{"rfilename": n, "size": len(d), "blobId": git_blob_id(d),
                         **({"lfs": {"sha256": hashlib.sha256(d).hexdigest(), "size": len(d), "pointerSize": 134}}
                            if n in LFS else {})} for n, d in FILES.items()]
            body = json.dumps({"id": REPO, "sha": COMMIT, "siblings": siblings}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
            return None
        if (name := self._file()) is None:
            return self._not_found()
        data = self.served[name]
        start = int(self.headers["Range"].removeprefix("bytes=").split("-")[0]) if self.headers["Range"] else 0
        self.send_response(206 if start else 200)
        self._file_headers(name, len(data) - start)
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.end_headers()
        self.wfile.write(data[start:])
        return None


@pytest.fixture
def hub() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Hub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        Hub.served = FILES


def download(endpoint: str, dest: Path, repo: str = REPO) -> tuple[int, dict[str, object]]:
    run = subprocess.run(
        [DOWNLOADER_PYTHON, "-m", "deepseek_operator.download", "--dest", str(dest), "--hf-repo", repo,
         "--hf-revision", COMMIT, "--endpoint-url", endpoint],
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT / "operator"), "HF_HOME": str(dest.parent / "hf-home"),
             "HF_HUB_DISABLE_TELEMETRY": "1"},
        text=True, capture_output=True, timeout=120)
    return run.returncode, json.loads(run.stdout.strip().splitlines()[-1])


def test_a_hub_checkpoint_arrives_at_its_commit_verified_and_complete(hub: str, tmp_path: Path) -> None:
    code, outcome = download(hub, tmp_path / "key")
    assert (code, outcome["state"], outcome["files"]) == (0, "Ready", 2), outcome
    assert {p.name: p.read_bytes() for p in (tmp_path / "key").iterdir() if p.is_file() and p.name[0] != "."} \
        == FILES
    manifest = json.loads((tmp_path / "key" / ".complete").read_text())
    assert {f["path"]: f["checksum"]["kind"] for f in manifest["files"]} == {"config.json": "git-sha1",
                                                                            "model.safetensors": "sha256"}
    assert not (tmp_path / "key" / ".cache").exists() and not (tmp_path / "key.partial").exists()


def test_bytes_that_do_not_match_the_hubs_sha256_fail_for_good(hub: str, tmp_path: Path) -> None:
    damaged = bytearray(FILES["model.safetensors"])
    damaged[100] ^= 0xFF
    Hub.served = {**FILES, "model.safetensors": bytes(damaged)}
    code, outcome = download(hub, tmp_path / "key")
    assert code == 2 and outcome["permanent"] is True
    assert str(outcome["error"]).startswith("checksum mismatch for model.safetensors: sha256")
    assert not (tmp_path / "key").exists()


def test_a_repository_the_hub_does_not_have_is_its_own_error(hub: str, tmp_path: Path) -> None:
    code, outcome = download(hub, tmp_path / "key", repo="deepseek-ai/no-such-model")
    assert code == 2 and str(outcome["error"]).startswith("RepositoryNotFoundError")
