"""``python -m deepseek_operator.preflight``: runs the check with the options and rendezvous of
preflight/options.py, keeps NCCL's logging apart per rank and stdout for the JSON alone.

Exit codes: 0 the fabric passed, 1 it failed (the JSON says why), 2 usage error (bad option or environment).
Rank 0 prints one JSON document to stdout; everything else, from Python, torch or NCCL, goes to stderr.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Sequence

from deepseek_operator.preflight.options import (
    EXIT_FAIL,
    EXIT_PASS,
    EXIT_USAGE,
    Options,
    Rendezvous,
    UsageError,
    nccl_debug_env,
    nccl_environment,
    parse_options,
    rendezvous_from_env,
)
from deepseek_operator.preflight.report import summary

# What tests and callers use of the CLI, defined in options.
__all__ = ["EXIT_FAIL", "EXIT_PASS", "EXIT_USAGE", "Options", "Rendezvous", "UsageError", "main",
           "nccl_debug_env", "nccl_environment", "parse_options", "rendezvous_from_env"]

def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main(argv: Sequence[str] | None = None) -> int:
    try:
        options = parse_options(argv)
        rendezvous = rendezvous_from_env(os.environ, free_port=_free_port())
    except UsageError as exc:
        print(f"preflight: usage error: {exc}", file=sys.stderr)
        return EXIT_USAGE

    if not rendezvous.launched:
        print("preflight: no torchrun environment; running alone (world size 1)", file=sys.stderr)
        os.environ.update({"RANK": "0", "WORLD_SIZE": "1", "LOCAL_RANK": "0", "MASTER_ADDR": "127.0.0.1",
                           "MASTER_PORT": str(rendezvous.master_port)})

    temporary = None
    log_dir = options.nccl_log_dir
    if log_dir is None:
        temporary = tempfile.TemporaryDirectory(prefix="preflight-nccl-")
        log_dir = temporary.name
    os.makedirs(log_dir, exist_ok=True)
    # Before torch (and NCCL) load: NCCL reads its debug settings once, at its first call.
    os.environ.update(nccl_debug_env(log_dir, rendezvous.rank))

    # Nothing but the JSON may reach stdout: point file descriptor 1 at stderr while torch and NCCL run (they
    # may write to it from C), and give it back for the document.
    sys.stdout.flush()
    saved_stdout = os.dup(1)
    os.dup2(2, 1)
    try:
        from deepseek_operator.preflight.runner import run

        document, code = run(options, rendezvous, log_dir)
    finally:
        sys.stdout.flush()
        os.dup2(saved_stdout, 1)
        os.close(saved_stdout)
        if temporary is not None:
            temporary.cleanup()

    if document is not None:
        text = json.dumps(document, indent=2)
        print(text, flush=True)
        if options.output:
            with open(options.output, "w", encoding="utf-8") as out:
                out.write(text + "\n")
        if options.summary_file:
            with open(options.summary_file, "w", encoding="utf-8") as out:
                out.write(json.dumps(summary(document), separators=(",", ":")))
        print(f"preflight: {document['message']}", file=sys.stderr)
    return code
