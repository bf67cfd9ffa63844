"""Stand-in for TensorRT-LLM's Triton `llmapi` model (`/app/all_models/llmapi/tensorrt_llm/1/model.py`).

It runs inside the real tritonserver's Python backend exactly where the image's model.py does, and reads the
same `model.yaml` the same way: `triton_config` (max_batch_size, decoupled) is applied to the model config
in `auto_complete_config`, and every other key is what upstream hands to `tensorrt_llm.LLM(**args)`. In
place of the LLM (no GPU kernels or real weights here) it checks what `LLM()` would refuse to start with (a
`model` that is not a Hugging Face checkpoint folder, keys `LlmArgs` does not define (the stand-in
`tensorrt_llm.LLM` checks them against TensorRT-LLM's own definitions), parallel sizes that are
not positive) and serves a tiny deterministic text model: the prompt's words reversed, prefixed with
`[<namespace>/<pod>]`, so a test behind a gateway can tell which pod answered. A prompt in DeepSeek-R1's chat
format (ending in the Assistant tag and `<think>\n`) is answered as R1 answers: a short thought closed by `</think>`,
then the last user turn's words reversed. Streamed responses carry the text so far, as upstream's do (the LLM
API's `CompletionOutput.text`), and `finish_reason` is `length` when `max_tokens` cut the answer.

Faults for tests come from the pod's own annotations, which the testbed writes to /run/testbed/pod.json:
`testbed.deepseek.ai/error-rate` (0..1, that share of requests fails inside Triton, so
`nv_inference_request_failure` counts it) and `testbed.deepseek.ai/latency-ms` (added to every request).
"""

from __future__ import annotations

import json
import os
import random
import socket
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import triton_python_backend_utils as pb_utils
import yaml
from tensorrt_llm import LLM

HERE = Path(__file__).resolve().parent
TESTBED_POD_FILE = Path("/run/testbed/pod.json")
R1_USER = "<\uff5cUser\uff5c>"
R1_GENERATION_PROMPT = "<\uff5cAssistant\uff5c><think>\n"
ERROR_RATE = "testbed.deepseek.ai/error-rate"
LATENCY_MS = "testbed.deepseek.ai/latency-ms"


def _config_path() -> Path:
    return HERE / os.environ.get("LLM_CONFIG_PATH", "model.yaml")


def _load() -> dict[str, Any]:
    return dict(yaml.safe_load(_config_path().read_text()) or {})


class TritonPythonModel:
    @staticmethod
    def auto_complete_config(auto_complete_model_config: Any) -> Any:
        triton = _load().get("triton_config") or {}
        auto_complete_model_config.set_model_transaction_policy({"decoupled": bool(triton.get("decoupled"))})
        auto_complete_model_config.set_max_batch_size(int(triton.get("max_batch_size", 0)))
        return auto_complete_model_config

    def initialize(self, args: dict[str, Any]) -> None:
        config = _load()
        triton = config.pop("triton_config", None) or {}
        self.decoupled = bool(triton.get("decoupled"))
        try:
            LLM(**config)
        except ValueError as err:
            raise pb_utils.TritonModelException(str(err)) from err
        for key in ("tensor_parallel_size", "pipeline_parallel_size"):
            if int(config.get(key, 1)) < 1:
                raise pb_utils.TritonModelException(f"{key} must be >= 1, got {config[key]!r}")
        self._check_checkpoint(str(config.get("model", "")))
        pod = json.loads(TESTBED_POD_FILE.read_text()) if TESTBED_POD_FILE.exists() else {}
        annotations = pod.get("annotations") or {}
        self.identity = f"{pod.get('namespace', 'default')}/{pod.get('name') or socket.gethostname()}"
        self.error_rate = float(annotations.get(ERROR_RATE, 0) or 0)
        self.latency_s = float(annotations.get(LATENCY_MS, 0) or 0) / 1000.0
        self.rng = random.Random()
        self.lock = threading.Lock()
        print(f"[testbed stand-in] llmapi model for {self.identity}: LLM({', '.join(sorted(config))}), "
              f"decoupled={self.decoupled}", flush=True)

    @staticmethod
    def _check_checkpoint(model: str) -> None:
        """What `LLM(model=...)` needs of a local checkpoint before anything touches a GPU."""
        folder = Path(model)
        if not model or not folder.is_dir():
            raise pb_utils.TritonModelException(f"model {model!r} is not a checkpoint folder (serving pods never "
                                                f"download weights)")
        config = folder / "config.json"
        if not config.is_file():
            raise pb_utils.TritonModelException(f"{folder} holds no config.json: not a Hugging Face checkpoint "
                                                f"(found {sorted(p.name for p in folder.iterdir())[:10]})")
        json.loads(config.read_text())

    def _answer(self, prompt: str, max_tokens: int) -> tuple[list[str], str]:
        """The answer's pieces (as tokens) and why it ended."""
        pieces: list[str] = []
        if prompt.endswith(R1_GENERATION_PROMPT):
            turn = prompt[: -len(R1_GENERATION_PROMPT)].rsplit(R1_USER, 1)[-1]
            words = turn.split()[::-1]
            pieces = ["The ", "user ", "wrote ", f"{len(words)} ", "words.\n", "</think>\n\n"]
        else:
            words = prompt.split()[::-1]
        pieces += [f"[{self.identity}]"] + [" " + w for w in words]
        cut = pieces[: max(max_tokens, 0)]
        return cut, "length" if len(cut) < len(pieces) else "stop"

    def _fails(self) -> bool:
        if self.latency_s:
            time.sleep(self.latency_s)
        with self.lock:
            return bool(self.error_rate) and self.rng.random() < self.error_rate

    @staticmethod
    def _input(request: Any, name: str, default: Any) -> Any:
        tensor = pb_utils.get_input_tensor_by_name(request, name)
        return default if tensor is None else tensor.as_numpy().reshape(-1)[0]

    def execute(self, requests: list[Any]) -> list[Any] | None:
        responses = []
        for request in requests:
            prompt = self._input(request, "text_input", b"")
            prompt = prompt.decode("utf-8", errors="replace") if isinstance(prompt, bytes) else str(prompt)
            max_tokens = int(self._input(request, "sampling_param_max_tokens", 16))
            streaming = bool(self._input(request, "streaming", False))
            if streaming and not self.decoupled:
                responses.append(pb_utils.InferenceResponse(
                    error=pb_utils.TritonError("Streaming is only supported in decoupled mode.")))
                continue
            if self._fails():
                error = pb_utils.TritonError(f"injected fault (error-rate {self.error_rate})")
                if self.decoupled:
                    request.get_response_sender().send(pb_utils.InferenceResponse(error=error),
                                                       flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
                else:
                    responses.append(pb_utils.InferenceResponse(error=error))
                continue
            pieces, finish = self._answer(prompt, max_tokens)
            reason = finish if bool(self._input(request, "return_finish_reason", False)) else None
            if not self.decoupled:
                responses.append(self._response("".join(pieces), reason))
                continue
            sender = request.get_response_sender()
            texts = ["".join(pieces[: n + 1]) for n in range(len(pieces))] if streaming else ["".join(pieces)]
            for n, text in enumerate(texts):
                sender.send(self._response(text, reason if n == len(texts) - 1 else None))
            sender.send(flags=pb_utils.TRITONSERVER_RESPONSE_COMPLETE_FINAL)
        return None if self.decoupled else responses

    @staticmethod
    def _response(text: str, finish_reason: str | None = None) -> Any:
        tensors = [pb_utils.Tensor("text_output", np.array([text.encode()], dtype=np.object_))]
        if finish_reason is not None:
            tensors.append(pb_utils.Tensor("finish_reason", np.array([finish_reason.encode()], dtype=np.object_)))
        return pb_utils.InferenceResponse(output_tensors=tensors)

    def finalize(self) -> None:
        print("[testbed stand-in] llmapi model unloaded", flush=True)
