"""Prints how long a warm `testbed/up` takes and how much memory the idle testbed holds.

Usage: .venv/bin/python benchmarks/testbed_footprint.py   (stops a running testbed first, leaves it stopped)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from testbed import cluster  # noqa: E402


def main() -> None:
    # No options; parsing them anyway means `--help` prints this and stops, before the testbed is stopped.
    argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter).parse_args()
    cluster.down(quiet=True)
    t0 = time.monotonic()
    subprocess.run([sys.executable, "-m", "testbed.cluster", "up"], cwd=REPO, check=True, capture_output=True)
    up_s = time.monotonic() - t0
    time.sleep(20)  # let start-up settle (controllers' first syncs, Prometheus' first scrapes)
    state = cluster.State.load()
    assert state is not None
    rows = {name: cluster.process_group_rss_mib(pid) for name, pid in state.pids.items()}
    print(f"warm testbed/up: {up_s:.1f} s")
    for name, mib in rows.items():
        print(f"  {name:<24} {mib:7.0f} MiB")
    print(f"idle testbed RSS: {sum(rows.values()):.0f} MiB")
    cluster.down(quiet=True)


if __name__ == "__main__":
    main()
