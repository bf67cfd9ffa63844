"""Stand-in for `tensorrt_llm/llmapi/mpi_session.py`: how LLM() gets its ranks.

Upstream (mpi_session.py, 1.2-era stored version id 124997232 (commit cc4777e); the spawn-proxy world size in
every version read, e.g. id 50591024333):
- MpiPoolSession(n_workers): MPIPoolExecutor, i.e. MPI_Comm_spawn of n_workers ranks on this node. LLM() uses it
  unless TLLM_SPAWN_PROXY_PROCESS=1.
- RemoteMpiCommSessionClient(addr, hmac_key): a ZeroMQ PAIR socket (HMAC-signed pickles) to the
  RemoteMpiCommSessionServer that `mgmn_leader_node` (MPI rank 0 under `trtllm-llmapi-launch`) serves; the server
  runs each task on every rank of its MPI world (`assert len(futures) == self.num_results == mpi_world_size()`).
  The client's shutdown() is a no-op and the server stops only on a `None` message (`mgmn_leader_node --action
  stop`); nothing notices a client that died (research: /work/research/trtllm-multinode.md Q4).
- get_mpi_world_size(): under TLLM_SPAWN_PROXY_PROCESS=1, `int(os.getenv("tllm_mpi_size") or 1)` ("the MPI-related
  env will be cleaned in the proxy process, thus we made another env for the mpi_world_size").

Here the PAIR socket is a plain TCP connection carrying one JSON object per line, each signed with
HMAC-SHA256 under TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY (it stands for ZeroMQ PAIR + HMAC; the stop message is
unsigned, as upstream's `use_hmac_encryption=False`). The task is always worker_main; the server answers the
worker-initialisation status the proxy waits for (GenerationExecutorProxy's worker_init_status_queue).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import socket
import threading
import time
from typing import Any

from .._utils import global_mpi_rank, mpi_world_size

# Upstream's ZeroMQ socket waits for its peer without limit (a PAIR socket's send blocks until the peer is there):
# None is the same. Tests set a bound.
CONNECT_TIMEOUT_S: float | None = None
CONNECT_RETRY_S = 0.5
CONNECT_LOG_EVERY_S = 30.0


def _log(message: str) -> None:
    print(f"[TRT-LLM] [rank{global_mpi_rank()}] {message}", flush=True)


def _address(addr: str) -> tuple[str, int]:
    if not addr.startswith("tcp://"):
        raise ValueError(f"unsupported IPC address {addr!r} (tcp://host:port)")
    host, _, port = addr[len("tcp://"):].rpartition(":")
    return host, int(port)


def _sign(body: dict[str, Any], key: bytes | None) -> bytes:
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
    message: dict[str, Any] = {"body": body}
    if key is not None:
        message["hmac"] = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
    return (json.dumps(message) + "\n").encode()


def _verify(message: dict[str, Any], key: bytes | None) -> dict[str, Any]:
    body = message.get("body") or {}
    if key is None or body.get("type") == "stop":
        return dict(body)
    raw = json.dumps(body, sort_keys=True, separators=(",", ":"))
    want = hmac.new(key, raw.encode(), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want, str(message.get("hmac", ""))):
        raise RuntimeError("HMAC verification failed")  # executor/ipc.py ZeroMqQueue
    return dict(body)


def external_mpi_comm_available(model_world_size: int) -> bool:
    """Launched by mpirun with exactly the model's ranks (`mpirun -np 4 python script.py`)."""
    return (get_mpi_world_size() == model_world_size and model_world_size > 1) or \
        (mpi_world_size() > get_mpi_world_size())


def need_spawn_mpi_workers(model_world_size: int) -> bool:
    return get_mpi_world_size() == 1 and model_world_size > 1


def get_mpi_world_size() -> int:
    from ..executor.utils import get_spawn_proxy_process_env

    if get_spawn_proxy_process_env():
        return int(os.getenv("tllm_mpi_size") or 1)  # noqa: SIM112 (upstream's name)
    return mpi_world_size()


class MpiSession:
    n_workers: int

    def shutdown(self) -> None:
        pass


class MpiPoolSession(MpiSession):
    """MPI_Comm_spawn of n_workers ranks on this node (mpi4py's MPIPoolExecutor). The stand-in spawns nothing: the
    executor only checks what each spawned rank would find (its GPU)."""

    def __init__(self, n_workers: int) -> None:
        self.n_workers = n_workers


class MpiCommSession(MpiSession):
    """The MPI world this process was launched in (variant A's path; variant B's model.py never takes it)."""

    def __init__(self, comm: Any = None, n_workers: int = 1) -> None:
        if not external_mpi_comm_available(n_workers):
            raise RuntimeError('The LLM instance should be launched by mpirun.')
        self.n_workers = n_workers


class RemoteMpiCommSessionClient(MpiSession):
    """The task's end of the leader's session (`trtllm-llmapi-launch` exports the address and the key)."""

    def __init__(self, addr: str, hmac_key: bytes | None = None) -> None:
        self.addr = addr
        self.hmac_key = hmac_key
        self.n_workers = 0
        self._sock: socket.socket | None = None
        self._reader: Any = None
        self._is_shutdown = False

    def _connect(self) -> None:
        host, port = _address(self.addr)
        started = last_log = time.monotonic()
        while True:
            try:
                self._sock = socket.create_connection((host, port), timeout=5)
                self._sock.settimeout(None)
                self._reader = self._sock.makefile("r")
                return
            except OSError:
                now = time.monotonic()
                if CONNECT_TIMEOUT_S is not None and now - started > CONNECT_TIMEOUT_S:
                    raise TimeoutError(f"RemoteMpiCommSessionClient: no MPI Comm Server at {self.addr} after "
                                       f"{CONNECT_TIMEOUT_S:.0f}s") from None
                if now - last_log >= CONNECT_LOG_EVERY_S:
                    _log(f"RemoteMpiCommSessionClient: waiting for the MPI Comm Server at {self.addr}")
                    last_log = now
                time.sleep(CONNECT_RETRY_S)

    def start_workers(self, model_world_size: int) -> dict[str, Any]:
        """Submits worker_main to the remote ranks and waits for rank 0's initialisation status (upstream: the
        proxy's `worker_init_status_queue.get()`, no timeout)."""
        if self._sock is None:
            self._connect()
        assert self._sock is not None
        self._sock.sendall(_sign({"type": "submit", "task": "worker_main", "model_world_size": model_world_size},
                                 self.hmac_key))
        line = self._reader.readline()
        if not line:
            raise RuntimeError("RemoteMpiCommSessionClient: the MPI Comm Server closed the connection")
        return _verify(json.loads(line), self.hmac_key)

    def shutdown_workers(self) -> None:
        """The proxy's shutdown: worker_main returns on every rank (upstream sends None on the workers' request
        queue; the session itself stays up)."""
        if self._sock is None or self._is_shutdown:
            return
        with contextlib.suppress(OSError):
            self._sock.sendall(_sign({"type": "shutdown_workers"}, self.hmac_key))
        self.shutdown()

    def shutdown(self) -> None:  # upstream: a no-op for the remote session; here the connection is closed
        self._is_shutdown = True
        if self._reader is not None:
            self._reader.close()
            self._reader = None
        if self._sock is not None:
            self._sock.close()
            self._sock = None


class RemoteMpiCommSessionServer:
    """Rank 0's side: runs worker_main on the `n_workers` ranks of its MPI world for each client session."""

    def __init__(self, n_workers: int = 0, addr: str = "tcp://127.0.0.1:0", hmac_key: bytes | None = None,
                 comm: Any = None, is_comm: bool = False) -> None:
        self.n_workers = n_workers
        self.hmac_key = hmac_key
        host, port = _address(addr)
        self._listener = socket.create_server((host, port), reuse_port=False)
        self.addr = f"tcp://{host}:{self._listener.getsockname()[1]}"
        # worker_main still running on the ranks: its proxy went away without shutting it down.
        self.workers_busy = False
        self.stuck = threading.Event()  # a session is waiting for ranks that will never come (for tests)
        self.stopped = threading.Event()
        self._conn: socket.socket | None = None

    def _start_workers(self, model_world_size: int) -> dict[str, Any] | None:
        """What worker_main does on the ranks until it reports to the proxy; None: it never reports."""
        import testbed_gpus

        if self.workers_busy:
            _log("[testbed stand-in] worker_main of an earlier session still runs on the ranks (its proxy went "
                 "away without shutting it down): this session's tasks wait behind it")
            return None
        count = testbed_gpus.device_count()
        if count == 0:  # base_worker.py _get_comm_ranks_device_id: `global_rank % torch.cuda.device_count()`
            return {"type": "worker_init_status", "error": "ZeroDivisionError: integer division or modulo by zero"}
        if self.n_workers != model_world_size:
            # No check in the 1.2-era code read: worker_main builds a Mapping of model_world_size ranks on an MPI
            # world of another size and waits in the collective set-up (inference: it never reports).
            _log(f"[testbed stand-in] worker_main on an MPI world of {self.n_workers} ranks for a model of "
                 f"{model_world_size} ranks (tensor_parallel_size * pipeline_parallel_size * "
                 f"context_parallel_size): the ranks wait for each other and the model never loads")
            return None
        return {"type": "worker_init_status", "ready": True, "world_size": self.n_workers}

    def serve(self) -> None:
        _log(f"RemoteMpiCommSessionServer listening on {self.addr} with {self.n_workers} workers")
        while not self.stopped.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:
                if self.stopped.is_set():
                    break
                raise
            self._conn = conn
            with conn, conn.makefile("r") as reader:
                for line in reader:
                    if self.stopped.is_set():
                        break
                    body = _verify(json.loads(line), self.hmac_key)
                    kind = body.get("type")
                    if kind == "stop":
                        _log("RemoteMpiCommSessionServer received shutdown signal")
                        self.stopped.set()
                        break
                    if kind == "submit":
                        status = self._start_workers(int(body["model_world_size"]))
                        if status is None:
                            self.stuck.set()
                            continue
                        conn.sendall(_sign(status, self.hmac_key))
                        self.workers_busy = bool(status.get("ready"))
                    elif kind == "shutdown_workers":
                        self.workers_busy = False
        self._listener.close()

    def close(self) -> None:
        """Stops serving (for tests; the leader itself stops on the stop message or a signal)."""
        self.stopped.set()
        self._listener.close()
        if self._conn is not None:
            with contextlib.suppress(OSError):
                self._conn.shutdown(socket.SHUT_RDWR)


def stop_server(addr: str) -> None:
    """`mgmn_leader_node --action stop`: an unsigned stop message (upstream: `queue.put(None)` with
    use_hmac_encryption=False)."""
    host, port = _address(addr)
    with socket.create_connection((host, port), timeout=10) as sock:
        sock.sendall(_sign({"type": "stop"}, None))
