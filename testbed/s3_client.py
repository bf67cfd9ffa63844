"""The object store tests' S3 calls, with boto3 (run by the downloader environment's python, which has it).

Usage: s3_client.py ping ENDPOINT | mkbucket BUCKET ENDPOINT | put BUCKET KEY FILE ENDPOINT
Credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY from the environment.
"""

from __future__ import annotations

import sys

import boto3
from botocore.config import Config


def main(argv: list[str]) -> int:
    command, *args, endpoint = argv
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1",
                      config=Config(s3={"addressing_style": "path"}))
    if command == "ping":
        s3.list_buckets()
    elif command == "mkbucket":
        s3.create_bucket(Bucket=args[0])
    elif command == "put":
        bucket, key, path = args
        s3.upload_file(path, bucket, key)
    else:
        print(f"unknown command {command}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
