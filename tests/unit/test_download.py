"""The downloader's shared half (deepseek_operator.download.transfer): checksums in the stores' own forms, a
resumed file that verifies, a damaged one that is thrown away, and a checkpoint that appears whole or not at
all. The Hub half runs in the downloader's own environment (huggingface_hub), as in its image."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from deepseek_operator.download import transfer
from testbed.cluster import DOWNLOADER_PYTHON

REPO = Path(__file__).resolve().parents[2]
DATA = os.urandom(3 * 1024 * 1024 + 123)


def s3_multipart_etag(data: bytes, part: int) -> str:
    digests = [hashlib.md5(data[i:i + part]).digest() for i in range(0, len(data), part)]
    return f"{hashlib.md5(b''.join(digests)).hexdigest()}-{len(digests)}"


@pytest.mark.parametrize(("checksum", "expected"), [
    (transfer.Checksum("md5", ""), hashlib.md5(DATA).hexdigest()),
    (transfer.Checksum("s3-multipart", "", 1 << 20), s3_multipart_etag(DATA, 1 << 20)),
    (transfer.Checksum("sha256", ""), hashlib.sha256(DATA).hexdigest()),
    (transfer.Checksum("git-sha1", ""), hashlib.sha1(b"blob %d\0" % len(DATA) + DATA).hexdigest()),
])
def test_digests_take_the_form_the_store_states(tmp_path: Path, checksum: transfer.Checksum, expected: str) -> None:
    (tmp_path / "f").write_bytes(DATA)
    assert transfer.digest_of(tmp_path / "f", checksum) == expected


def remote(data: bytes = DATA) -> transfer.RemoteFile:
    checksum = transfer.Checksum("md5", hashlib.md5(data).hexdigest())
    return transfer.RemoteFile("weights/model.safetensors", len(data), checksum)


def stream_from(data: bytes, calls: list[int]):  # type: ignore[no-untyped-def]
    def open_stream(offset: int) -> Iterator[bytes]:
        calls.append(offset)
        for i in range(offset, len(data), 1 << 20):
            yield data[i:i + (1 << 20)]
    return open_stream


def test_a_file_resumes_at_the_bytes_it_holds_and_verifies(tmp_path: Path) -> None:
    staging = transfer.Staging(tmp_path / "key")
    part = staging.path("weights/model.safetensors.part")
    part.write_bytes(DATA[:1_500_000])  # what a killed pod left
    progress = transfer.Progress(len(DATA), staging.bytes_present([remote()]))
    assert progress.done == 1_500_000
    calls: list[int] = []
    transfer.fetch_ranged(staging, remote(), progress, transfer.Throttle(None), stream_from(DATA, calls))
    assert calls == [1_500_000] and progress.done == len(DATA)
    assert (staging.folder / "weights/model.safetensors").read_bytes() == DATA
    assert staging.is_done(remote()) and transfer.Staging(tmp_path / "key").is_done(remote())  # survives a restart


def test_a_damaged_file_is_thrown_away_and_fails_for_good(tmp_path: Path) -> None:
    staging = transfer.Staging(tmp_path / "key")
    damaged = bytearray(DATA)
    damaged[1000] ^= 0xFF
    with pytest.raises(transfer.PermanentError, match=r"checksum mismatch for weights/model\.safetensors: md5"):
        transfer.fetch_ranged(staging, remote(), transfer.Progress(len(DATA)), transfer.Throttle(None),
                              stream_from(bytes(damaged), []))
    assert not list(staging.folder.rglob("model.safetensors*")) and not staging.is_done(remote())


def test_the_checkpoint_appears_under_its_key_only_when_complete(tmp_path: Path) -> None:
    dest = tmp_path / "checkpoints" / "key"
    staging = transfer.Staging(dest)
    transfer.fetch_ranged(staging, remote(), transfer.Progress(len(DATA)), transfer.Throttle(None),
                          stream_from(DATA, []))
    assert not dest.exists()
    staging.commit("s3://models/x", [remote()], extra_cleanup=[".cache"])
    manifest = json.loads((dest / transfer.COMPLETE_MARKER).read_text())
    assert manifest["bytes"] == len(DATA) and [f["path"] for f in manifest["files"]] == [remote().path]
    assert not staging.folder.exists() and (dest / "weights/model.safetensors").read_bytes() == DATA


def test_a_path_outside_the_checkpoint_is_refused(tmp_path: Path) -> None:
    with pytest.raises(transfer.PermanentError, match="outside the checkpoint"):
        transfer.Staging(tmp_path / "key").path("../../etc/passwd")


HUB_CHECK = """
import json, sys
from types import SimpleNamespace as NS
import httpx2 as httpx
from huggingface_hub.errors import RepositoryNotFoundError
from deepseek_operator.download import hf
files = hf.remote_files([
    NS(rfilename="model-00001-of-00002.safetensors", size=None, blob_id="x",
       lfs=NS(sha256="ab" * 32, size=4_900_000_000)),
    NS(rfilename="config.json", size=1420, blob_id="3f" * 20, lfs=None)])
response = httpx.Response(404, request=httpx.Request("GET", "https://huggingface.co/api/models/a/b"))
err = hf.describe(RepositoryNotFoundError("404 Client Error. Repository Not Found for url: x", response=response))
print(json.dumps({"files": [[f.path, f.size, f.checksum.kind, f.checksum.value] for f in files], "error": err}))
"""


def test_the_hubs_file_metadata_and_errors_map_onto_what_is_fetched_and_reported() -> None:
    out = subprocess.run([DOWNLOADER_PYTHON, "-c", HUB_CHECK], env={**os.environ, "PYTHONPATH": str(REPO / "operator")},
                         text=True, capture_output=True, check=True).stdout
    result = json.loads(out)
    assert result["files"] == [["config.json", 1420, "git-sha1", "3f" * 20],
                               ["model-00001-of-00002.safetensors", 4_900_000_000, "sha256", "ab" * 32]]
    message, permanent = result["error"]
    assert permanent and message.startswith("RepositoryNotFoundError: 404 Client Error. Repository Not Found")
