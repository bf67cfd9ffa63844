"""Stands in for the engine build Job's container (checkpoint conversion + trtllm-build) on the testbed.

It takes a moment, like a (very fast) build, and exits with the code it is given, so tests can make a build
fail. It writes nothing: the testbed mounts no volumes.
"""

from __future__ import annotations

import argparse
import sys
import time


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--exit-code", type=int, default=0)
    parser.add_argument("--seconds", type=float, default=2.0)
    args = parser.parse_args(argv)
    print("[standin] converting checkpoint and running trtllm-build", flush=True)
    time.sleep(args.seconds)
    if args.exit_code:
        print(f"[standin] build failed with exit code {args.exit_code}", flush=True)
    else:
        print("[standin] engine built", flush=True)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
