"""Stand-in for `tensorrt_llm/_utils.py`'s MPI helpers (1.2-era: `global_mpi_rank()`/`global_mpi_size()` ask
`MPI.COMM_WORLD`, `mpi_world_size()` the package's communicator). There is no mpi4py here: the values come from
what Open MPI's mpirun gives each rank (OMPI_COMM_WORLD_*), which is what COMM_WORLD reports; a process with none
of them is an MPI singleton (rank 0 of 1), as variant B's model.py makes itself by deleting them."""

from __future__ import annotations

import os


def global_mpi_rank() -> int:
    return int(os.environ.get("OMPI_COMM_WORLD_RANK") or os.environ.get("PMIX_RANK") or 0)


def global_mpi_size() -> int:
    return int(os.environ.get("OMPI_COMM_WORLD_SIZE") or 1)


def mpi_rank() -> int:
    return global_mpi_rank()


def mpi_world_size() -> int:
    return global_mpi_size()


def local_mpi_rank() -> int:
    return int(os.environ.get("OMPI_COMM_WORLD_LOCAL_RANK") or 0)


def local_mpi_size() -> int:
    return int(os.environ.get("OMPI_COMM_WORLD_LOCAL_SIZE") or 1)
