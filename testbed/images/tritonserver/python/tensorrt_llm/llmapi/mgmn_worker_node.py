"""Stand-in for `python3 -m tensorrt_llm.llmapi.mgmn_worker_node`, which `trtllm-llmapi-launch` runs on every MPI
rank but 0 (mgmn_worker_node.py 8f91cff, index id 869567344: `with MPICommExecutor(COMM_WORLD) as executor: ...`,
then `logging.warning(f"worker rank{COMM_WORLD.rank} quited")`). Its package import (`-m` imports tensorrt_llm
first) needs the image's native libraries, hence LD_LIBRARY_PATH on ranks started over ssh.

Upstream the rank idles until rank 0 sends it worker_main, which then takes `device_id = global_rank %
torch.cuda.device_count()` (base_worker.py). There is no MPI between the stand-in's ranks, so this rank checks
its GPU when it starts instead of when the first session does (the one place the stand-in is early): no GPU visible
-> ZeroDivisionError; more ranks on this node (OMPI_COMM_WORLD_LOCAL_SIZE) than GPUs -> two ranks on one device,
which NCCL refuses (INFERENCE). It exits 1, so mpirun ends the job. Otherwise it blocks until it is signalled; a
SIGTERM ends it by Python's default action, as upstream (no handler there).
"""

from __future__ import annotations

import signal
import sys

import testbed_gpus

from tensorrt_llm._utils import global_mpi_rank, local_mpi_size


def check_device() -> str | None:
    """The error worker_main would hit on this rank's GPU, None when it has one to itself."""
    count = testbed_gpus.device_count()
    if count == 0:
        return "ZeroDivisionError: integer division or modulo by zero"
    if local_mpi_size() > count:
        rank = global_mpi_rank()
        return (f"RuntimeError: NCCL error: invalid usage: Duplicate GPU detected : rank {rank} and another rank of "
                f"this node both on CUDA device {testbed_gpus.devices()[rank % count]} "
                f"({local_mpi_size()} ranks on a node with {count} GPUs)")
    return None


def main() -> int:
    error = check_device()
    if error is not None:
        print(f"[TRT-LLM] [rank{global_mpi_rank()}] worker_main failed: {error}", file=sys.stderr, flush=True)
        return 1
    print(f"[TRT-LLM] [rank{global_mpi_rank()}] waiting for rank 0's tasks", flush=True)
    while True:
        signal.pause()


if __name__ == "__main__":
    sys.exit(main())
