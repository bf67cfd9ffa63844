"""The testbed's stand-in for the GPUs a container sees (not an upstream module: the stand-ins' shared helper).

On a GPU node, NVIDIA's device plugin allocates a container's `nvidia.com/gpu` devices and the NVIDIA container
toolkit makes them visible inside it: the device nodes (/dev/nvidia0 ...) and the driver libraries (libcuda.so.1)
are mounted into the container, and CUDA enumerates the devices it finds there, restricted by CUDA_VISIBLE_DEVICES.
What a process sees is a property of the container, not of its environment: a rank started over ssh in the same
container sees the same GPUs (NVIDIA_VISIBLE_DEVICES, which the device plugin sets, is read by the toolkit when
the container is created, not by CUDA).

The testbed has no GPUs. Its pod runner (testbed/podrunner.py) writes the ids of the devices it allocated to a
container, one per line, to /run/testbed/gpus in that container (empty for a container without an
`nvidia.com/gpu` limit): that file stands for the device nodes, and a non-empty one for the driver libraries.
"""

from __future__ import annotations

import os
from pathlib import Path

DEVICES = Path("/run/testbed/gpus")


def devices() -> list[str]:
    """The GPU ids mounted into this container (its /dev/nvidia<N> nodes), in order."""
    try:
        return [line.strip() for line in DEVICES.read_text(encoding="utf-8").splitlines() if line.strip()]
    except OSError:
        return []


def driver_present() -> bool:
    """Whether the toolkit mounted the driver libraries (libcuda.so.1): it does for a container given GPUs."""
    return bool(devices())


def device_count() -> int:
    """torch.cuda.device_count(): the devices, restricted by CUDA_VISIBLE_DEVICES as CUDA reads it (a list of
    ordinals or GPU ids; enumeration stops at the first entry that names no device)."""
    found = devices()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return len(found)
    chosen: list[int] = []
    for entry in (e.strip() for e in visible.split(",")):
        index = int(entry) if entry.isdigit() else (found.index(entry) if entry in found else -1)
        if not 0 <= index < len(found) or index in chosen:
            break
        chosen.append(index)
    return len(chosen)
