"""s3: checkpoints through boto3: every object under the prefix, ranged GETs that resume, ETags checked.

Credentials come from the environment boto3 reads (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN),
which the Job fills from the Secret by `secretKeyRef`; nothing here reads or prints them.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

import boto3
from botocore import UNSIGNED
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, FlexibleChecksumError, NoCredentialsError

from deepseek_operator.download import transfer

# The store's answers that another try cannot change: any 4xx but a throttle or a timeout (each store has its
# own codes for an unknown key, e.g. InvalidAccessKeyId on AWS, XAdminUserNotFound on versitygw).
RETRYABLE_4XX = frozenset({408, 429})
_ONE_PART_ETAG = re.compile(r"^[0-9a-f]{32}$")
_MULTIPART_ETAG = re.compile(r"^[0-9a-f]{32}-(\d+)$")


@dataclass(frozen=True)
class Location:
    bucket: str
    prefix: str  # "" or ending in "/"

    @staticmethod
    def parse(uri: str) -> Location:
        rest = uri.removeprefix("s3://")
        bucket, _, prefix = rest.partition("/")
        prefix = prefix.strip("/")
        return Location(bucket, f"{prefix}/" if prefix else "")


def describe(err: Exception) -> tuple[str, bool]:
    """The store's own words for a failure, and whether it is permanent."""
    if isinstance(err, ClientError):
        error = err.response.get("Error", {})
        code = str(error.get("Code", ""))
        message = str(error.get("Message", "") or err)
        status = int(err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
        return f"{code}: {message}", 400 <= status < 500 and status not in RETRYABLE_4XX
    if isinstance(err, NoCredentialsError):
        return str(err), True
    return str(err), False


class S3Store:
    def __init__(self, uri: str, endpoint_url: str | None, region: str | None, path_style: bool,
                 anonymous: bool) -> None:
        self.uri = uri
        self.location = Location.parse(uri)
        config = Config(s3={"addressing_style": "path" if path_style else "auto"},
                        retries={"mode": "standard", "max_attempts": 5},
                        signature_version=UNSIGNED if anonymous else None)
        self.client = boto3.client("s3", endpoint_url=endpoint_url, region_name=region or "us-east-1",
                                   config=config)

    def list(self) -> list[transfer.RemoteFile]:
        files = []
        paginator = self.client.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.location.bucket, Prefix=self.location.prefix):
            for obj in page.get("Contents", []):
                key = obj["Key"]
                if key.endswith("/"):  # a "folder" marker some tools write
                    continue
                files.append(transfer.RemoteFile(key[len(self.location.prefix):], int(obj["Size"]),
                                        self._checksum(key, str(obj.get("ETag", "")).strip('"'))))
        if not files:
            raise transfer.PermanentError(f"NoSuchKey: no objects under {self.uri}")
        return sorted(files, key=lambda f: f.path)

    def _checksum(self, key: str, etag: str) -> transfer.Checksum | None:
        if _ONE_PART_ETAG.match(etag):
            return transfer.Checksum("md5", etag)
        if _MULTIPART_ETAG.match(etag):
            # A multipart ETag is the md5 of the parts' md5s: the size of part 1 gives the part size.
            head = self.client.head_object(Bucket=self.location.bucket, Key=key, PartNumber=1)
            return transfer.Checksum("s3-multipart", etag, int(head["ContentLength"]))
        return None  # e.g. SSE-KMS objects: their ETag is no digest of the content

    def fetch(self, staging: transfer.Staging, remote: transfer.RemoteFile, progress: transfer.Progress,
              throttle: transfer.Throttle) -> None:
        try:
            transfer.fetch_ranged(staging, remote, progress, throttle, lambda offset: self.stream(remote, offset))
        except FlexibleChecksumError as err:  # botocore's own check of a whole-object GET against the store's CRC
            staging.discard_part(remote.path)
            raise transfer.PermanentError(f"checksum mismatch for {remote.path}: {err}") from err

    def stream(self, remote: transfer.RemoteFile, offset: int) -> Iterator[bytes]:
        kwargs = {"Range": f"bytes={offset}-"} if offset else {}
        if remote.checksum is not None:  # the object must not change between two ranged GETs
            etag = remote.checksum.value
            kwargs["IfMatch"] = f'"{etag}"'
        body = self.client.get_object(Bucket=self.location.bucket, Key=self.location.prefix + remote.path,
                                      **kwargs)["Body"]
        try:
            yield from body.iter_chunks(1 << 20)
        finally:
            body.close()


STORE_ERRORS = (ClientError, BotoCoreError)
