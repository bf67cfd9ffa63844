"""Stand-in for `torchrun` in the testbed's preflight image: the operator's NCCL preflight arguments, turned into
what two CPU cores without GPUs can run, then PyTorch's real launcher (torch.distributed.run).

The testbed has no GPUs and no NVLink: gloo instead of nccl, two ranks per pod, 1-4 MiB messages, no GPU
check, any transport (gloo keeps no NCCL log), and the bus-bandwidth bound divided by 1000 (CPU copies over a
bridge), so the default bound passes and one set impossibly high still fails.
"""

from __future__ import annotations

import os
import sys

REPLACE: dict[str, str | None] = {"--backend": "gloo", "--expect-gpu": None, "--expect-transport": "any",
                                  "--sizes": "1MiB-4MiB", "--nproc-per-node": "2"}
SCALE = {"--min-bus-bandwidth-gbps": 0.001}


def rewrite(args: list[str]) -> list[str]:
    out = []
    for arg in args:
        name, eq, value = arg.partition("=")
        if eq and name in REPLACE:
            if REPLACE[name] is not None:
                out.append(f"{name}={REPLACE[name]}")
        elif eq and name in SCALE:
            out.append(f"{name}={float(value) * SCALE[name]:g}")
        else:
            out.append(arg)
    return out


if __name__ == "__main__":
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "eth0")
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    argv = [sys.executable, "-m", "torch.distributed.run", *rewrite(sys.argv[1:])]
    os.execv(sys.executable, argv)
