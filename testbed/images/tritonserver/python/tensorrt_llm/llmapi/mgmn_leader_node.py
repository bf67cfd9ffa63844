"""Stand-in for `python3 -m tensorrt_llm.llmapi.mgmn_leader_node [--action start|stop]`, which
`trtllm-llmapi-launch` runs in the foreground on MPI rank 0 (mgmn_leader_node.py c40f1157, index id 854215715:
`RemoteMpiCommSessionServer(comm=sub_comm, n_workers=mpi_world_size(), addr=get_spawn_proxy_process_ipc_addr_env(),
is_comm=True).serve()`; `--action stop` sends the server its stop message).

Rank 0 is also worker rank 0 of every session: worker_main runs there on `0 % device_count()` of this node
(base_worker.py `_get_comm_ranks_device_id`); the server checks that when a session starts. The other ranks' GPUs
are checked by mgmn_worker_node when it starts (see there). Like upstream it serves until told to stop; a SIGTERM
ends it by Python's default action (no handler upstream either).
"""

from __future__ import annotations

import argparse
import os
import sys

from tensorrt_llm._utils import mpi_world_size
from tensorrt_llm.executor.utils import get_spawn_proxy_process_ipc_addr_env
from tensorrt_llm.llmapi.mpi_session import RemoteMpiCommSessionServer, stop_server


def launch_server_main() -> None:
    addr = get_spawn_proxy_process_ipc_addr_env()
    assert addr, "TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR is not set."
    key = os.environ.get("TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY")
    server = RemoteMpiCommSessionServer(n_workers=mpi_world_size(), addr=addr,
                                        hmac_key=bytes.fromhex(key) if key else None, is_comm=True)
    server.serve()
    print("[TRT-LLM] RemoteMpiCommSessionServer stopped", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mgmn_leader_node")
    parser.add_argument("--action", choices=["start", "stop"], default="start")
    args = parser.parse_args(argv)
    if args.action == "start":
        launch_server_main()
    else:
        addr = get_spawn_proxy_process_ipc_addr_env()
        try:
            stop_server(addr or "")
        except (OSError, ValueError) as e:  # upstream logs a ZMQError and returns
            print(f"[TRT-LLM] Error during RemoteMpiCommSessionClient shutdown: {e}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
