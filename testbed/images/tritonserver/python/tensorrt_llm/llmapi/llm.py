"""Stand-in for `tensorrt_llm/llmapi/llm.py` LLM (the PyTorch backend's `_TorchLLM`) at TensorRT-LLM 1.2.x.

What is upstream's, each with where it was read (file index versions; /work/research/trtllm-*.md):
- LLM(model, **kwargs) validates with TorchLlmArgs; an error is logged as "Failed to parse the arguments for the LLM
  constructor: ..." and re-raised (llm.py ids 5668394175, 55216765702).
- With tp*pp*cp > 1: `if get_device_count() < world_size_per_node: raise RuntimeError(f"Only {n} GPUs are available,
  but {world_size} are required.")`, world_size_per_node = world // ceil(world / gpus_per_node), gpus_per_node
  defaulting to the GPUs visible (so the check only bites when gpus_per_node is set). Then the MPI session:
  MpiPoolSession(world) (MPI_Comm_spawn on this node) unless TLLM_SPAWN_PROXY_PROCESS=1, which selects
  create_mpi_comm_session() -> RemoteMpiCommSessionClient to the `mgmn_leader_node` of `trtllm-llmapi-launch`.
- GenerationExecutor.create (executor.py id 697825693): spawn if `get_mpi_world_size() == 1 and world > 1` (under
  the launcher get_mpi_world_size() is $tllm_mpi_size), reuse the session if the launcher's world equals the
  model's; otherwise (TP1) the proxy makes its own session, remote again under the launcher. Its "Cannot instantiate
  Generator for engine built for N ranks, while currently running on M ranks." compares the MPI world of THIS
  process, which variant B's model.py always makes a singleton: it cannot fire here.
- Each worker rank picks `device_id = global_rank % torch.cuda.device_count()` (base_worker.py ids 1131391427,
  55301320707): no GPU -> ZeroDivisionError; more ranks than GPUs on a node -> two ranks share a device, which
  NCCL refuses ("Duplicate GPU detected", INFERENCE: the NCCL text, not read in TRT-LLM's code). A worker's
  initialisation error reaches LLM() as RuntimeError("Executor worker returned error") from the proxy.
- Per request (llm.py `_check_arguments`, PyTorch backend, chunked prefill off): "The sum of prompt length
  ({prompt_len / cp_size}), query length (0) should not exceed max_num_tokens ({max_num_tokens})". Then
  base_worker.py `_deduce_max_tokens` (1.2-era-looking id 1131391427): max_tokens above max_seq_len - prompt_len is
  CLAMPED with a warning, not refused; a prompt that leaves no room gives a request the C++ executor refuses
  ("Assertion failed: mMaxNewTokens > 0", as reported by FlexKV's TensorRT-LLM notes: INFERENCE for 1.2.1).
- Prompts are encoded with add_special_tokens=True (SamplingParams default), so BOS is added even when the prompt
  text already starts with it.
- Streaming: a RequestOutput every `stream_interval` generated tokens and at the end, each carrying the cumulative
  text (`output.text`; the delta would be `text_diff`); without streaming one final RequestOutput.

What stands in for the model (no GPU, no weights): a deterministic toy. Its answer is the prompt's words reversed,
prefixed `[<namespace>/<pod>]` (the pod this runs in, /run/testbed/pod.json); a DeepSeek-R1 chat prompt (ending
with the Assistant tag and `<think>\\n`) is answered with a short thought closed by `</think>`, then the last user turn
reversed. One token is one whitespace-separated word of the answer; the end-of-sequence token comes after the last
word and counts against max_tokens as on a real model. A doubled BOS is logged and the answer starts with
"(double BOS)". The text echoes the prompt first (its special tokens dropped, as decoding with
skip_special_tokens=True does) unless exclude_input_from_output. Faults come from the pod's annotations:
testbed.deepseek.ai/error-rate (that share of requests fails: before the first token, or, with
testbed.deepseek.ai/error-after-tokens N, after N tokens, as an engine error mid-answer), fault-seed (the draws'
seed), testbed.deepseek.ai/latency-ms (added before the first token), testbed.deepseek.ai/token-interval-ms (between
tokens). Requests run concurrently, at most
max_batch_size at once (the scheduler's batch).
"""

from __future__ import annotations

import asyncio
import json
import math
import random
import re
import socket
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import testbed_gpus

from ..executor.utils import RequestError, create_mpi_comm_session, get_spawn_proxy_process_env
from ..logger import logger
from ..sampling_params import SamplingParams
from . import llm_args as _llm_args
from .mpi_session import (
    MpiPoolSession,
    MpiSession,
    RemoteMpiCommSessionClient,
    external_mpi_comm_available,
    need_spawn_mpi_workers,
)
from .tokenizer import Tokenizer, tokenizer_factory

TESTBED_POD_FILE = Path("/run/testbed/pod.json")
ERROR_RATE = "testbed.deepseek.ai/error-rate"
LATENCY_MS = "testbed.deepseek.ai/latency-ms"
TOKEN_INTERVAL_MS = "testbed.deepseek.ai/token-interval-ms"
ERROR_AFTER_TOKENS = "testbed.deepseek.ai/error-after-tokens"  # a failing request fails after that many tokens
FAULT_SEED = "testbed.deepseek.ai/fault-seed"  # the error-rate draws' seed: a test that counts failures sets it
R1_USER = "<\uff5cUser\uff5c>"
R1_GENERATION_PROMPT = "<\uff5cAssistant\uff5c><think>\n"


def get_device_count() -> int:
    """llmapi/utils.py get_device_count(): `torch.cuda.device_count() if torch.cuda.is_available() else 0`."""
    return testbed_gpus.device_count()


@dataclass
class CompletionOutput:
    index: int = 0
    text: str = ""
    token_ids: list[int] = field(default_factory=list)
    cumulative_logprob: float | None = None
    finish_reason: str | None = None  # 'stop' | 'length' | 'cancelled'
    stop_reason: int | str | None = None
    request_perf_metrics: Any = None


def toy_answer(prompt: str, identity: str, double_bos: bool) -> list[str]:
    """The toy model's answer as tokens (each a word with the whitespace before it)."""
    if prompt.endswith(R1_GENERATION_PROMPT):
        turn = prompt[: -len(R1_GENERATION_PROMPT)].rsplit(R1_USER, 1)[-1]
        words = turn.split()[::-1]
        answer = f"The user wrote {len(words)} words.\n</think>\n\n[{identity}] " + " ".join(words)
    else:
        answer = f"[{identity}] " + " ".join(prompt.split()[::-1])
    if double_bos:
        answer = "(double BOS) " + answer
    return re.findall(r"\s*\S+", answer.rstrip())


class RequestOutput:
    """The LLM API's GenerationResult: iterate it with `async for`; it yields itself after each update."""

    def __init__(self, llm: LLM, request_id: int, prompt: str, prompt_token_ids: list[int],
                 sampling_params: SamplingParams, streaming: bool, max_tokens: int, double_bos: bool) -> None:
        self._llm = llm
        self.request_id = request_id
        self.prompt = prompt
        self.prompt_token_ids = prompt_token_ids
        self.sampling_params = sampling_params
        self.streaming = streaming
        self.finished = False
        self.outputs = [CompletionOutput()]
        self._max_tokens = max_tokens
        self._double_bos = double_bos
        self._aborted = False

    def abort(self) -> None:
        self._aborted = True

    def __aiter__(self) -> AsyncIterator[RequestOutput]:
        return self._generate()

    async def _generate(self) -> AsyncIterator[RequestOutput]:
        llm, sp, out = self._llm, self.sampling_params, self.outputs[0]
        visible = llm.tokenizer.strip_special(self.prompt)
        echo = "" if sp.exclude_input_from_output else visible
        tokens = toy_answer(visible, llm.identity, self._double_bos)
        if echo and tokens and not echo[-1].isspace():
            tokens[0] = " " + tokens[0].lstrip()
        interval = int(llm.args.stream_interval)
        stops = sp.stop_strings()
        # The end-of-sequence token follows the last word and is generated (and counted) like any other.
        steps = min(self._max_tokens, len(tokens) + 1)
        async with llm._slot():
            await llm.before_first_token()
            failing = llm.fails()
            if failing and not llm.error_after_tokens:  # before the first token: as a request the engine refuses
                raise RequestError(f"testbed fault injection ({ERROR_RATE} {llm.error_rate})")
            answer = ""
            for step in range(1, steps + 1):
                if failing and step > llm.error_after_tokens:  # mid-answer: as an engine error while generating
                    raise RequestError(f"testbed fault injection ({ERROR_RATE} {llm.error_rate}, after "
                                       f"{llm.error_after_tokens} tokens)")
                if self._aborted:
                    out.finish_reason, self.finished = "cancelled", True
                    return
                if step <= len(tokens):
                    answer += tokens[step - 1]
                    out.token_ids.append(step)
                hit = next((s for s in stops if s in answer), None)
                if hit is not None:
                    answer = answer[: answer.index(hit)]
                    out.finish_reason, out.stop_reason, self.finished = "stop", hit, True
                elif step == steps:
                    out.finish_reason = "stop" if step > len(tokens) else "length"
                    self.finished = True
                out.text = echo + answer
                if (self.streaming and (step % interval == 0 or self.finished)) or self.finished:
                    yield self
                if self.finished:
                    return
                if llm.token_interval_s:
                    await asyncio.sleep(llm.token_interval_s)


class LLM:
    """`tensorrt_llm.LLM` with the PyTorch backend."""

    def __init__(self, model: str | Path, tokenizer: Any = None, tokenizer_mode: str = "auto",
                 skip_tokenizer_init: bool = False, trust_remote_code: bool = False, tensor_parallel_size: int = 1,
                 dtype: str = "auto", revision: str | None = None, tokenizer_revision: str | None = None,
                 **kwargs: Any) -> None:
        try:
            self.args = _llm_args.model("TorchLlmArgs")(
                model=model, tokenizer=tokenizer, tokenizer_mode=tokenizer_mode,
                skip_tokenizer_init=skip_tokenizer_init, trust_remote_code=trust_remote_code,
                tensor_parallel_size=tensor_parallel_size, dtype=dtype, revision=revision,
                tokenizer_revision=tokenizer_revision, **kwargs)
        except Exception as e:
            logger.error(f"Failed to parse the arguments for the LLM constructor: {e}")
            raise e
        for name, default in (("max_batch_size", 2048), ("max_input_len", 1024), ("max_beam_width", 1),
                              ("max_num_tokens", 8192)):  # normalize_optional_fields_to_defaults
            if getattr(self.args, name) is None:
                setattr(self.args, name, default)
        self.model_dir = Path(str(self.args.model))
        if not self.model_dir.is_dir():
            raise OSError(f"{self.args.model!r} is not a local checkpoint folder, and the testbed has no Hugging Face "
                          f"Hub to download it from")
        self.tokenizer: Tokenizer = tokenizer_factory(self.args.tokenizer or self.model_dir)

        self.world_size = (int(self.args.tensor_parallel_size) * int(self.args.pipeline_parallel_size)
                           * int(self.args.context_parallel_size))
        self.mpi_session: MpiSession | None = None
        if self.world_size > 1:
            gpus_per_node = int(self.args.gpus_per_node)
            world_size_per_node = self.world_size // math.ceil(self.world_size / gpus_per_node)
            if get_device_count() < world_size_per_node:
                raise RuntimeError(f"Only {get_device_count()} GPUs are available, but {self.world_size} are "
                                   f"required.")
            if not get_spawn_proxy_process_env():
                self.mpi_session = MpiPoolSession(n_workers=self.world_size)
            else:
                self.mpi_session = create_mpi_comm_session(self.world_size)

        config_path = self.model_dir / "config.json"
        if not config_path.is_file():
            raise OSError(f"{self.model_dir} does not appear to have a file named config.json.")
        config = json.loads(config_path.read_text(encoding="utf-8"))
        # create_py_executor fills max_seq_len from the model's config when it is not given.
        self.max_seq_len: int | None = self.args.max_seq_len or config.get("max_position_embeddings")

        pod = json.loads(TESTBED_POD_FILE.read_text(encoding="utf-8")) if TESTBED_POD_FILE.exists() else {}
        annotations = pod.get("annotations") or {}
        self.identity = f"{pod.get('namespace', 'default')}/{pod.get('name') or socket.gethostname()}"
        self.error_rate = float(annotations.get(ERROR_RATE, 0) or 0)
        self.latency_s = float(annotations.get(LATENCY_MS, 0) or 0) / 1000.0
        self.token_interval_s = float(annotations.get(TOKEN_INTERVAL_MS, 0) or 0) / 1000.0
        self.error_after_tokens = int(annotations.get(ERROR_AFTER_TOKENS, 0) or 0)
        self._rng = random.Random(annotations.get(FAULT_SEED))  # unseeded without it
        self._slots: dict[asyncio.AbstractEventLoop, asyncio.Semaphore] = {}
        self._next_id = 0

        self._executor_session = self._create_executor()
        print(f"[testbed stand-in] LLM ready: {self.identity}, {self.world_size} rank(s), "
              f"max_batch_size {self.args.max_batch_size}, max_num_tokens {self.args.max_num_tokens}, "
              f"max_seq_len {self.max_seq_len}", flush=True)

    # ---------------------------------------------------------------- the executor and its ranks

    def _create_executor(self) -> MpiSession:
        world = self.world_size
        # Otherwise (the single-GPU case) GenerationExecutorProxy makes its own session.
        session = self.mpi_session if need_spawn_mpi_workers(world) or external_mpi_comm_available(world) else None
        if session is None:
            session = create_mpi_comm_session(world) if get_spawn_proxy_process_env() \
                else MpiPoolSession(n_workers=world)
        if isinstance(session, RemoteMpiCommSessionClient):
            status = session.start_workers(world)
        else:
            status = self._spawned_workers_status(world)
        if not status.get("ready"):
            logger.error(f"Executor worker initialization error: {status.get('error')}")
            raise RuntimeError("Executor worker returned error")
        return session

    @staticmethod
    def _spawned_workers_status(world: int) -> dict[str, Any]:
        """What the `world` ranks MPI_Comm_spawn starts on this node report (each picks rank % device_count)."""
        count = get_device_count()
        if count == 0:
            return {"error": "ZeroDivisionError: integer division or modulo by zero"}
        if world > count:
            devices = testbed_gpus.devices()
            return {"error": f"RuntimeError: NCCL error: invalid usage: Duplicate GPU detected : rank {count} and "
                             f"rank 0 both on CUDA device {devices[0] if devices else 0}"}
        return {"ready": True}

    def shutdown(self) -> None:
        if isinstance(self._executor_session, RemoteMpiCommSessionClient):
            self._executor_session.shutdown_workers()

    # ---------------------------------------------------------------- requests

    async def before_first_token(self) -> None:
        """The time to the first token (prefill): the latency-ms annotation."""
        if self.latency_s:
            await asyncio.sleep(self.latency_s)

    def fails(self) -> bool:
        return bool(self.error_rate) and self._rng.random() < self.error_rate

    def _slot(self) -> asyncio.Semaphore:
        loop = asyncio.get_running_loop()
        if loop not in self._slots:
            self._slots[loop] = asyncio.Semaphore(int(self.args.max_batch_size))
        return self._slots[loop]

    def _check_arguments(self, prompt_len: int, query_len: int, sampling_params: SamplingParams,
                         is_gen_only: bool) -> None:
        cp_size = int(self.args.context_parallel_size)
        if not self.args.enable_chunked_prefill and not is_gen_only:
            max_num_tokens = self.args.max_num_tokens
            if max_num_tokens and prompt_len / cp_size + query_len > max_num_tokens:
                raise RequestError(
                    f"The sum of prompt length ({prompt_len / cp_size}), query length ({query_len}) should not exceed "
                    f"max_num_tokens ({max_num_tokens})")

    def _deduce_max_tokens(self, prompt_len: int, sampling_params: SamplingParams) -> int:
        max_tokens = sampling_params.max_tokens
        max_seq_len = self.max_seq_len
        if max_seq_len is None:
            logger.warning("`default_max_tokens` cannot be deduced")
            return max_tokens
        splited_prompt_len = int(prompt_len / int(self.args.context_parallel_size))
        default_max_tokens = max_seq_len - splited_prompt_len - 0
        if default_max_tokens <= 0:
            logger.warning(f"`default_max_tokens` ({default_max_tokens}) should be greater than 0, "
                           f"`default_max_tokens` ({default_max_tokens}) = max_seq_len ({max_seq_len})"
                           f" - `splited_prompt_len` ({splited_prompt_len}) - `query_token_len` (0)")
        if max_tokens > default_max_tokens:
            logger.warning(f"User-specified `max_tokens` ({max_tokens}) is greater than deduced "
                           f"`default_max_tokens` ({default_max_tokens}), using default_max_tokens instead.")
            max_tokens = default_max_tokens
        if max_tokens <= 0:  # the executor's Request refuses it
            raise RequestError("[TensorRT-LLM][ERROR] Assertion failed: mMaxNewTokens > 0")
        return max_tokens

    def generate_async(self, inputs: str, sampling_params: SamplingParams | None = None, streaming: bool = False,
                       **kwargs: Any) -> RequestOutput:
        sampling_params = sampling_params or SamplingParams()
        prompt_token_ids = self.tokenizer.encode(inputs, add_special_tokens=sampling_params.add_special_tokens)
        self._check_arguments(len(prompt_token_ids), 0, sampling_params, is_gen_only=False)
        max_tokens = self._deduce_max_tokens(len(prompt_token_ids), sampling_params)
        bos = self.tokenizer.bos_token_id
        double_bos = bos is not None and prompt_token_ids[:2] == [bos, bos]
        if double_bos:
            # ascii(): the Python backend's stdout may be ASCII, and a warning must not fail the request.
            bos_text = self.tokenizer.bos_token
            print(f"[testbed stand-in] WARNING: the prompt starts with two BOS tokens ({bos_text!a} in "
                  f"the text, and the tokenizer adds one): the answer is marked '(double BOS)'", flush=True)
        self._next_id += 1
        return RequestOutput(self, self._next_id, inputs, prompt_token_ids, sampling_params, streaming, max_tokens,
                             double_bos)
