"""python -m deepseek_operator.download: the download Job's program.

Fetches one checkpoint (hf: or s3:) into `--dest` in the model cache, resuming what an earlier pod of the Job
left, verifying each file, and renaming the folder into place only when all are there. While it runs,
`GET /progress` on `--progress-port` answers bytes done, total and rate (the operator reads it for
`status.model`). The outcome goes to the termination message as JSON. Exit codes: 0 done, 1 a failure another
try may mend (network, the store's 5xx), 2 one it cannot (credentials, no such bucket or repository, a corrupt
object, a full volume): the Job's podFailurePolicy fails the Job at once on 2 instead of retrying.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Protocol

from deepseek_operator.download.transfer import (
    COMPLETE_MARKER,
    PermanentError,
    Progress,
    RemoteFile,
    Staging,
    Throttle,
)

TERMINATION_LOG = Path("/dev/termination-log")
MESSAGE_LIMIT = 4000  # the kubelet keeps 4096 bytes of a termination message
EXIT_RETRY, EXIT_PERMANENT = 1, 2


class Store(Protocol):
    @property
    def uri(self) -> str: ...

    def list(self) -> list[RemoteFile]: ...

    def fetch(self, staging: Staging, remote: RemoteFile, progress: Progress, throttle: Throttle) -> None: ...


def serve_progress(progress: Progress, port: int) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path != "/progress":
                self.send_error(404)
                return
            body = json.dumps(progress.snapshot()).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: Any) -> None:  # the operator polls every few seconds: no log line each
            pass

    server = ThreadingHTTPServer(("", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def report(outcome: dict[str, Any]) -> None:
    text = json.dumps(outcome)
    if len(text) > MESSAGE_LIMIT:
        outcome["error"] = str(outcome.get("error", ""))[:MESSAGE_LIMIT - 200] + "..."
        text = json.dumps(outcome)
    print(text, flush=True)
    with contextlib.suppress(OSError):  # not in a pod: stdout has it
        TERMINATION_LOG.write_text(text)


def _store(args: argparse.Namespace) -> tuple[Store, tuple[type[Exception], ...], Any]:
    # Imported by source: each store's client is a large import the other does not need.
    if args.s3_uri:
        from deepseek_operator.download import s3

        anonymous = not os.environ.get("AWS_ACCESS_KEY_ID")
        return (s3.S3Store(args.s3_uri, args.endpoint_url, args.region, args.path_style, anonymous),
                s3.STORE_ERRORS, s3.describe)
    from deepseek_operator.download import hf

    return hf.HubStore(args.hf_repo, args.hf_revision, args.endpoint_url), hf.STORE_ERRORS, hf.describe


def run(args: argparse.Namespace) -> int:
    dest = Path(args.dest)
    if (dest / COMPLETE_MARKER).is_file():
        manifest = json.loads((dest / COMPLETE_MARKER).read_text())
        report({"state": "Ready", "bytes": manifest.get("bytes", 0), "files": len(manifest.get("files", [])),
                "seconds": 0, "bytesPerSecond": 0, "message": "already in the cache"})
        return 0
    progress = Progress(0)
    server = serve_progress(progress, args.progress_port) if args.progress_port else None
    started = time.monotonic()
    store, store_errors, describe = _store(args)
    try:
        files = store.list()
        staging = Staging(dest)
        progress.total = sum(f.size for f in files)
        progress.add(staging.bytes_present(files))
        resumed = progress.done
        throttle = Throttle(args.max_bytes_per_second)
        for remote in files:
            if staging.is_done(remote):
                continue
            store.fetch(staging, remote, progress, throttle)
        # hf_hub_download keeps its metadata and `.incomplete` files in `.cache` of its local_dir.
        staging.commit(store.uri, files, extra_cleanup=[".cache"])
    except PermanentError as err:
        return _failed(progress, str(err), True)
    except OSError as err:
        if err.errno in (errno.ENOSPC, errno.EDQUOT):
            return _failed(progress, f"{err.strerror}: the model cache volume is full ({progress.done} of "
                                     f"{progress.total} bytes written); grow runtime.cache.size or free space", True)
        if isinstance(err, store_errors):
            return _failed(progress, *describe(err))
        return _failed(progress, f"{type(err).__name__}: {err}", False)
    except store_errors as err:
        return _failed(progress, *describe(err))
    finally:
        if server is not None:
            server.shutdown()
    seconds = time.monotonic() - started
    fetched = progress.done - resumed
    report({"state": "Ready", "bytes": progress.total, "files": len(files), "resumedBytes": resumed,
            "seconds": round(seconds, 2), "bytesPerSecond": int(fetched / seconds) if seconds > 0 else 0})
    return 0


def _failed(progress: Progress, message: str, permanent: bool) -> int:
    progress.state = "Failed"
    report({"state": "Failed", "error": message, "permanent": permanent, "bytesDone": progress.done,
            "bytesTotal": progress.total})
    return EXIT_PERMANENT if permanent else EXIT_RETRY


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m deepseek_operator.download", description=__doc__.splitlines()[0])
    p.add_argument("--dest", required=True, help="the checkpoint's folder in the model cache")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--s3-uri", help="s3://bucket/prefix")
    source.add_argument("--hf-repo", help="owner/name on the Hub")
    p.add_argument("--hf-revision", help="the commit (with --hf-repo)")
    p.add_argument("--endpoint-url", help="S3-compatible endpoint, or the Hub mirror")
    p.add_argument("--region")
    p.add_argument("--path-style", action="store_true")
    p.add_argument("--max-bytes-per-second", type=int)
    p.add_argument("--progress-port", type=int, default=0)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.hf_repo and not args.hf_revision:
        parser().error("--hf-repo needs --hf-revision (a commit)")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
