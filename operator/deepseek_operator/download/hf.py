"""hf: checkpoints through huggingface_hub: the file list of one pinned commit, each file fetched by
`hf_hub_download` (which resumes its `.incomplete` files), then checked against the Hub's sha256 (LFS files) or
git blob id (small files).

The token comes from HF_TOKEN and a mirror from HF_ENDPOINT, both read by huggingface_hub itself; the Job fills
HF_TOKEN from the Secret by `secretKeyRef`.
"""

from __future__ import annotations

from typing import Any

from huggingface_hub import HfApi, hf_hub_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)
from tqdm.auto import tqdm

from deepseek_operator.download import transfer

_PERMANENT = (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError, GatedRepoError)


def describe(err: Exception) -> tuple[str, bool]:
    """The Hub's own words for a failure, and whether it is permanent."""
    message = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    if isinstance(err, _PERMANENT):
        return f"{type(err).__name__}: {message}", True
    status = getattr(getattr(err, "response", None), "status_code", None)
    return f"{type(err).__name__}: {message}", status in (401, 403, 404)


def remote_files(siblings: list[Any]) -> list[transfer.RemoteFile]:
    """The Hub's file metadata (`ModelInfo.siblings` with files_metadata) as what is to be fetched."""
    files = []
    for s in siblings:
        lfs = getattr(s, "lfs", None)
        if lfs is not None:
            checksum: transfer.Checksum | None = transfer.Checksum("sha256", lfs.sha256)
            size = int(lfs.size)
        else:
            checksum = transfer.Checksum("git-sha1", s.blob_id) if getattr(s, "blob_id", None) else None
            size = int(s.size or 0)
        files.append(transfer.RemoteFile(s.rfilename, size, checksum))
    return sorted(files, key=lambda f: f.path)


class HubStore:
    def __init__(self, repo: str, revision: str, endpoint: str | None) -> None:
        self.repo, self.revision, self.endpoint = repo, revision, endpoint
        self.api = HfApi(endpoint=endpoint)

    @property
    def uri(self) -> str:
        return f"hf://{self.repo}@{self.revision}"

    def list(self) -> list[transfer.RemoteFile]:
        info = self.api.model_info(self.repo, revision=self.revision, files_metadata=True)
        return remote_files(list(info.siblings or []))

    def fetch(self, staging: transfer.Staging, remote: transfer.RemoteFile, progress: transfer.Progress,
              throttle: transfer.Throttle) -> None:
        progress.file = remote.path
        hf_hub_download(self.repo, remote.path, revision=self.revision, local_dir=staging.folder,
                        endpoint=self.endpoint, tqdm_class=_meter(progress, throttle))
        problem = transfer.mismatch(staging.folder / remote.path, remote)
        if problem:
            (staging.folder / remote.path).unlink()
            raise transfer.PermanentError(problem)
        staging.mark_verified(remote.path)


def _meter(progress: transfer.Progress, throttle: transfer.Throttle) -> type[tqdm]:
    """A tqdm that counts the bytes huggingface_hub writes and holds it to the rate cap."""

    class Meter(tqdm):  # type: ignore[misc]
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            kwargs["disable"] = True
            progress.add(int(kwargs.get("initial") or 0))  # the bytes an .incomplete file already holds
            super().__init__(*args, **kwargs)

        def update(self, n: float | None = 1) -> bool | None:
            throttle.take(int(n or 0))
            progress.add(int(n or 0))
            return None

    return Meter


STORE_ERRORS = (HfHubHTTPError, *_PERMANENT)
