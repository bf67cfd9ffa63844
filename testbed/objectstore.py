"""An S3-compatible object store for the weights tests: versitygw (built by testbed/build) over a folder,
listening on the bridge's host address so pods reach it as they would an in-cluster endpoint.

Objects are uploaded through the S3 API with boto3 (run in the downloader's environment: boto3 cannot share the
testbed's, see testbed/lib.sh), as a platform team would fill a bucket; the folder layout (bucket/key) is
versitygw's posix backend, which a test may use to damage an object behind the store's back.

The S3 calls themselves are testbed/s3_client.py, run by the downloader environment's python.
"""

from __future__ import annotations

import os
import secrets
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from testbed import network
from testbed.cluster import BIN, CACHE, DOWNLOADER_PYTHON, free_port

REPO = Path(__file__).resolve().parent.parent


class ObjectStore:
    """versitygw with one root user; `with ObjectStore() as store:` starts it and stops it again."""

    def __init__(self) -> None:
        self.access_key = "testbed-" + secrets.token_hex(4)
        self.secret_key = secrets.token_urlsafe(24)
        self.root = Path(tempfile.mkdtemp(prefix="objectstore-", dir=CACHE))
        self.port = free_port(network.HOST_IP)
        self.endpoint = f"http://{network.HOST_IP}:{self.port}"
        self._proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> ObjectStore:
        log = (CACHE / "logs" / "objectstore.log").open("ab")
        self._proc = subprocess.Popen(
            [str(BIN / "versitygw"), "--port", f"{network.HOST_IP}:{self.port}", "posix", str(self.root)],
            env={**os.environ, "ROOT_ACCESS_KEY": self.access_key, "ROOT_SECRET_KEY": self.secret_key},
            stdout=log, stderr=log)
        deadline = time.monotonic() + 20
        while self._run("ping", check=False).returncode != 0:
            if time.monotonic() > deadline or self._proc.poll() is not None:
                raise RuntimeError(f"versitygw did not start; see {CACHE / 'logs' / 'objectstore.log'}")
            time.sleep(0.2)
        return self

    def __exit__(self, *_: object) -> None:
        if self._proc is not None:
            self._proc.terminate()
            self._proc.wait(timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return subprocess.run([DOWNLOADER_PYTHON, str(REPO / "testbed" / "s3_client.py"), *args, self.endpoint],
                              env={**os.environ, "AWS_ACCESS_KEY_ID": self.access_key,
                                   "AWS_SECRET_ACCESS_KEY": self.secret_key},
                              text=True, capture_output=True, check=check)

    def create_bucket(self, bucket: str) -> None:
        self._run("mkbucket", bucket)

    def put(self, bucket: str, key: str, data: bytes) -> None:
        with tempfile.NamedTemporaryFile(dir=CACHE) as f:
            f.write(data)
            f.flush()
            self._run("put", bucket, key, f.name)

    def object_file(self, bucket: str, key: str) -> Path:
        """Where the posix backend keeps an object: the bytes a test may damage behind the store's back."""
        return self.root / bucket / key
