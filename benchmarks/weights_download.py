"""Download rate and resume cost of the weights downloader against the testbed's S3 store (versitygw).

Runs the download Job's program (python -m deepseek_operator.download, in the downloader's environment) on this
host against a checkpoint it uploads: a cold download, a download killed halfway and resumed, and a second
run over a complete cache (which must skip). Prints MB/s and the ratios. Needs the testbed's bridge (testbed/up)
and the build of versitygw (testbed/build versitygw).

Usage: .venv/bin/python benchmarks/weights_download.py [--megabytes 512]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from testbed.cluster import CACHE, DOWNLOADER_PYTHON
from testbed.objectstore import REPO, ObjectStore

BUCKET = "bench"


def download(store: ObjectStore, dest: Path, kill_after_s: float | None = None) -> tuple[float, dict[str, object]]:
    cmd = [DOWNLOADER_PYTHON, "-m", "deepseek_operator.download", "--dest", str(dest), "--s3-uri",
           f"s3://{BUCKET}/ckpt", "--endpoint-url", store.endpoint, "--path-style"]
    env = {**os.environ, "PYTHONPATH": str(REPO / "operator"), "AWS_ACCESS_KEY_ID": store.access_key,
           "AWS_SECRET_ACCESS_KEY": store.secret_key}
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, text=True)
    if kill_after_s is not None:
        try:
            proc.wait(timeout=kill_after_s)
        except subprocess.TimeoutExpired:
            proc.kill()
        proc.wait()
        return time.monotonic() - started, {}
    out, _ = proc.communicate()
    return time.monotonic() - started, json.loads(out.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=512)
    args = parser.parse_args()
    size = args.megabytes << 20
    work = Path(tempfile.mkdtemp(prefix="bench-weights-", dir=CACHE))
    try:
        with ObjectStore() as store:
            store.create_bucket(BUCKET)
            store.put(BUCKET, "ckpt/config.json", b'{"model_type": "bench"}')
            store.put(BUCKET, "ckpt/model.safetensors", os.urandom(size))  # multipart upload: an "-N" ETag
            cold_s, cold = download(store, work / "cold")
            killed_s, _ = download(store, work / "resumed", kill_after_s=cold_s / 2)
            rest_s, resumed = download(store, work / "resumed")
            warm_s, _ = download(store, work / "cold")
        mb = size / 1e6
        print(f"checkpoint: {mb:.0f} MB in 2 objects, versitygw on the testbed bridge, md5/ETag verified")
        print(f"cold download:        {cold_s:6.2f} s  {mb / cold_s:7.1f} MB/s (program's own figure "
              f"{int(cold['bytesPerSecond']) / 1e6:.1f} MB/s, including verification)")
        print(f"killed at {killed_s:4.1f} s, resumed: {rest_s:6.2f} s for the rest; "
              f"resumed from {int(resumed.get('resumedBytes', 0)) / 1e6:.0f} MB; "
              f"total {(killed_s + rest_s) / cold_s:.2f}x the cold time")
        print(f"complete cache again: {warm_s:6.2f} s  ({warm_s / cold_s:.3f}x the cold time: skipped)")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
