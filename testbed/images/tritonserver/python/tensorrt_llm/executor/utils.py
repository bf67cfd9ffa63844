"""Stand-in for `tensorrt_llm/executor/utils.py` (the file index's version id 56711498928): the launcher's
environment and the remote MPI session it selects. Messages are upstream's."""

from __future__ import annotations

import enum
import os

from .._utils import mpi_rank


class LlmLauncherEnvs(enum.StrEnum):
    TLLM_SPAWN_PROXY_PROCESS = "TLLM_SPAWN_PROXY_PROCESS"
    TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR = "TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR"
    TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY = "TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY"


def get_spawn_proxy_process_ipc_addr_env() -> str | None:
    return os.getenv(LlmLauncherEnvs.TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR.value)


def get_spawn_proxy_process_ipc_hmac_key_env() -> bytes:
    key = os.getenv("TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY")
    assert key is not None, (
        f"{LlmLauncherEnvs.TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY} is not set. "
        "HMAC encryption is required for IPC communication.")
    return bytes.fromhex(key)


def get_spawn_proxy_process_env() -> bool:
    return os.getenv(LlmLauncherEnvs.TLLM_SPAWN_PROXY_PROCESS.value) == "1"


def create_mpi_comm_session(n_workers: int):  # type: ignore[no-untyped-def]
    from ..llmapi.mpi_session import MpiCommSession, RemoteMpiCommSessionClient

    assert mpi_rank() == 0, \
        f"create_mpi_comm_session must be called by rank 0, but it was called by rank {mpi_rank()}"
    if get_spawn_proxy_process_env():
        assert get_spawn_proxy_process_ipc_addr_env(), \
            f"{LlmLauncherEnvs.TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR} is not set."
        hmac_key = get_spawn_proxy_process_ipc_hmac_key_env()
        return RemoteMpiCommSessionClient(addr=get_spawn_proxy_process_ipc_addr_env() or "", hmac_key=hmac_key)
    return MpiCommSession(n_workers=n_workers)


class RequestError(RuntimeError):
    """The error raised when the request is failed."""
