"""Stand-in for what `import tensorrt_llm` needs of the machine before any Python of it runs: the package's
native bindings load libcuda.so.1 (the driver library) and TensorRT's libnvinfer.so.10.

- libcuda.so.1: read fact for 1.2.1 (a `pip install tensorrt-llm` 1.2.1 on a host without an NVIDIA driver fails in
  `tensorrt_llm/_utils.py` `from tensorrt_llm.bindings import ...` with "ImportError: libcuda.so.1: cannot open
  shared object file"; /work/research/trtllm-multinode.md Q2). In a container the NVIDIA toolkit mounts it only
  when the container was given GPUs (testbed_gpus.driver_present()).
- libnvinfer.so.10: INFERENCE, not a read fact: the NGC image is taken to find TensorRT through its
  LD_LIBRARY_PATH (/usr/local/tensorrt/lib, set by testbed/images.yaml), so a rank started over ssh without
  `mpirun -x LD_LIBRARY_PATH` (sshd gives a bare environment) cannot import tensorrt_llm. The dynamic loader
  searches each LD_LIBRARY_PATH folder for the file; so does this check.
"""

from __future__ import annotations

import os
from pathlib import Path

import testbed_gpus

TENSORRT_LIBRARY = "libnvinfer.so.10"


def _check_native_libraries() -> None:
    if not testbed_gpus.driver_present():
        raise ImportError("libcuda.so.1: cannot open shared object file: No such file or directory")
    folders = [f for f in os.environ.get("LD_LIBRARY_PATH", "").split(":") if f]
    if not any((Path(f) / TENSORRT_LIBRARY).exists() for f in folders):
        raise ImportError(f"{TENSORRT_LIBRARY}: cannot open shared object file: No such file or directory")


_check_native_libraries()
