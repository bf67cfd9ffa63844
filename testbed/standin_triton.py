"""A real Triton server (nvidia-pytriton's bundled tritonserver) standing in for a TensorRT-LLM pod.

It serves a tiny deterministic text model under the model names of the TensorRT-LLM `inflight_batcher_llm`
layout, so clients, Prometheus and the gateway see the real Triton HTTP/gRPC/metrics protocol:

- `ensemble`: text_input (+ optional max_tokens) -> text_output; also reachable through Triton's generate
  extension at /v2/models/ensemble/generate.
- `tensorrt_llm`: input_ids (+ optional request_output_len) -> output_ids.

Faults are injected per pod: `--error-rate` (0..1) makes that fraction of requests fail inside Triton (so
`nv_inference_request_failure` counts them) and `--latency-ms` delays every request.
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import time
from typing import Any

import numpy as np
from pytriton.decorators import batch
from pytriton.model_config import ModelConfig, Tensor
from pytriton.triton import Triton, TritonConfig

LOG = logging.getLogger("standin-triton")


class InjectedFault(RuntimeError):
    """Raised inside the model so Triton reports the request as failed."""


class TinyTextModel:
    """Answers with the reversed prompt words, prefixed by who answered (pod and revision).

    The prefix lets a test that goes through a gateway tell which backend served each request.
    """

    def __init__(self, identity: str, error_rate: float, latency_ms: float, seed: int | None) -> None:
        self.identity = identity
        self.error_rate = error_rate
        self.latency_s = latency_ms / 1000.0
        self.rng = random.Random(seed)

    def _maybe_fail(self) -> None:
        if self.latency_s:
            time.sleep(self.latency_s)
        if self.error_rate and self.rng.random() < self.error_rate:
            raise InjectedFault(f"injected fault (error-rate {self.error_rate})")

    def generate(self, prompt: str, max_tokens: int) -> str:
        words = prompt.split()[::-1][: max(max_tokens, 0)]
        return f"[{self.identity}] " + " ".join(words)

    def ensemble(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self._maybe_fail()
        texts = inputs["text_input"]
        max_tokens = inputs.get("max_tokens")
        out = []
        for i, row in enumerate(texts):
            prompt = row[0].decode("utf-8", errors="replace") if isinstance(row[0], bytes) else str(row[0])
            limit = int(max_tokens[i][0]) if max_tokens is not None else 16
            out.append([self.generate(prompt, limit).encode()])
        return {"text_output": np.array(out, dtype=np.object_)}

    def tensorrt_llm(self, **inputs: np.ndarray) -> dict[str, np.ndarray]:
        self._maybe_fail()
        ids = inputs["input_ids"]
        lengths = inputs.get("request_output_len")
        rows = []
        for i, row in enumerate(ids):
            n = int(lengths[i][0]) if lengths is not None else 8
            rows.append([(int(row[-1]) + k + 1) % 32000 for k in range(n)] if len(row) else [0] * n)
        width = max((len(r) for r in rows), default=0)
        padded = np.zeros((len(rows), width), dtype=np.int32)
        for i, r in enumerate(rows):
            padded[i, : len(r)] = r
        return {"output_ids": padded}


def serve(args: argparse.Namespace) -> None:
    model = TinyTextModel(args.identity, args.error_rate, args.latency_ms, args.seed)
    config = TritonConfig(
        http_address=args.address,
        http_port=args.http_port,
        grpc_address=args.address,
        grpc_port=args.grpc_port,
        metrics_address=args.address,
        metrics_port=args.metrics_port,
        allow_metrics=True,
        allow_gpu_metrics=False,
        # A latency histogram (time to first response: the whole request when not streaming), so the rollout
        # analysis can gate on p99 as it would against a real Triton started with this flag.
        metrics_config=["histogram_latencies=true"],
        log_verbose=0,
        exit_timeout_secs=2,
    )
    cfg = ModelConfig(max_batch_size=8)
    with Triton(config=config, workspace=args.workspace) as triton:
        triton.bind(
            model_name="ensemble",
            infer_func=batch(model.ensemble),
            inputs=[
                Tensor(name="text_input", dtype=bytes, shape=(1,)),
                Tensor(name="max_tokens", dtype=np.int32, shape=(1,), optional=True),
            ],
            outputs=[Tensor(name="text_output", dtype=bytes, shape=(1,))],
            config=cfg,
            strict=False,
        )
        triton.bind(
            model_name="tensorrt_llm",
            infer_func=batch(model.tensorrt_llm),
            inputs=[
                Tensor(name="input_ids", dtype=np.int32, shape=(-1,)),
                Tensor(name="request_output_len", dtype=np.int32, shape=(1,), optional=True),
            ],
            outputs=[Tensor(name="output_ids", dtype=np.int32, shape=(-1,))],
            config=cfg,
            strict=False,
        )
        LOG.info("serving %s on %s (http %d, grpc %d, metrics %d)", args.identity, args.address,
                 args.http_port, args.grpc_port, args.metrics_port)
        triton.serve()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--address", default="0.0.0.0", help="bind address (the pod IP inside its netns)")
    parser.add_argument("--http-port", type=int, default=8000)
    parser.add_argument("--grpc-port", type=int, default=8001)
    parser.add_argument("--metrics-port", type=int, default=8002)
    parser.add_argument("--identity", default="standin", help="who answers: shown in every text_output")
    parser.add_argument("--error-rate", type=float, default=0.0)
    parser.add_argument("--latency-ms", type=float, default=0.0)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--workspace", default=None, help="pytriton workspace directory")
    args = parser.parse_args(argv)
    if not 0.0 <= args.error_rate <= 1.0:
        parser.error("--error-rate must be within 0..1")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    def _stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, _stop)
    serve(args)


if __name__ == "__main__":
    sys.exit(main())
