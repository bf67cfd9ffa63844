"""The serving image's stand-ins (testbed/images/tritonserver) behave like upstream at the version the default
image ships (Triton 26.07, TensorRT-LLM 1.2.1, the llmapi model's "variant B"), not like what the operator expects:
each test here fails for a stand-in that agrees with us instead (the contracts: /work/research/standin-contracts.md).

No cluster, no Triton: model.py and helpers.py run against a fake `triton_python_backend_utils`; the package and
its launcher nodes run as in the image, with GPUs, LD_LIBRARY_PATH and openai given per test.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
import threading
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest
import yaml

from testbed import checkpoints, images, podspec
from testbed.cluster import CACHE

REPO = Path(__file__).resolve().parents[2]
STANDINS = REPO / "testbed" / "images" / "tritonserver"
PYTHON = STANDINS / "python"
MODEL_FOLDER = STANDINS / "all_models" / "llmapi" / "tensorrt_llm"
LAUNCH = STANDINS / "trtllm-llmapi-launch"
OURS = ("testbed_gpus", "helpers", "model", "triton_python_backend_utils", "tensorrt_llm", "openai")
WAIT_S = 30.0  # a bound on waiting for an event, never a measured duration


def _ours(name: str) -> bool:
    return any(name == p or name.startswith(p + ".") for p in OURS)


# ------------------------------------------------------------------------------------------------ fixtures


class FakeTriton(types.ModuleType):
    """triton_python_backend_utils as the Python backend stub provides it, recording what is sent."""

    TRITONSERVER_RESPONSE_COMPLETE_FINAL = 1

    class TritonModelException(Exception):
        pass

    class TritonError:
        CANCELLED = 8

        def __init__(self, message: str, code: int | None = None) -> None:
            self.message, self.code = message, code

        def __repr__(self) -> str:
            return f"TritonError({self.message!r})"

    class Tensor:
        def __init__(self, name: str, array: Any) -> None:
            self._name, self._array = name, np.asarray(array)

        def name(self) -> str:
            return self._name

        def as_numpy(self) -> Any:
            return self._array

        def is_cpu(self) -> bool:
            return True

    class InferenceResponse:
        def __init__(self, output_tensors: list[Any] | None = None, error: Any = None) -> None:
            self.output_tensors, self.error = output_tensors or [], error

        def text(self, name: str = "text_output") -> list[str]:
            for t in self.output_tensors:
                if t.name() == name:
                    return [v.decode() if isinstance(v, bytes) else str(v) for v in t.as_numpy().tolist()]
            return []

    class Logger:
        lines: ClassVar[list[tuple[str, str]]] = []

        @classmethod
        def log_info(cls, message: str) -> None:
            cls.lines.append(("I", message))

        @classmethod
        def log_warn(cls, message: str) -> None:
            cls.lines.append(("W", message))

        @classmethod
        def log_error(cls, message: str) -> None:
            cls.lines.append(("E", message))

    def __init__(self, model_dir: Path) -> None:
        super().__init__("triton_python_backend_utils")
        self.model_dir = str(model_dir)
        self.Logger.lines = []

    def get_model_dir(self) -> str:
        return self.model_dir

    @staticmethod
    def get_input_tensor_by_name(request: Any, name: str) -> Any:
        return request.inputs.get(name)

    @staticmethod
    def get_output_config_by_name(model_config: dict[str, Any], name: str) -> Any:
        return next((o for o in model_config.get("output", []) if o["name"] == name), None)

    @staticmethod
    def triton_string_to_numpy(name: str) -> Any:
        return {"TYPE_STRING": np.object_}[name]


class Sender:
    def __init__(self) -> None:
        self.sent: list[tuple[Any, int]] = []
        self.done = threading.Event()

    def send(self, response: Any = None, flags: int = 0) -> None:
        self.sent.append((response, flags))
        if flags & 1:
            self.done.set()

    def is_cancelled(self) -> bool:
        return False


class Request:
    def __init__(self, pb: FakeTriton, text: str, **inputs: Any) -> None:
        self.inputs = {"text_input": pb.Tensor("text_input", np.array([text.encode()], dtype=object))}
        for name, value in inputs.items():
            self.inputs[name] = pb.Tensor(name, np.array(value if isinstance(value, list) else [value]))
        self.sender = Sender()

    def request_id(self) -> str:
        return ""

    def get_response_sender(self) -> Sender:
        return self.sender

    def is_cancelled(self) -> bool:
        return False

    def answers(self) -> list[tuple[Any, int]]:
        assert self.sender.done.wait(WAIT_S), "no FINAL response"
        return self.sender.sent


def fake_openai(root: Path, with_part_reasoning_text: bool = True) -> Path:
    """An `openai` package with (or, like 1.107.3, without) PartReasoningText, for the import chain."""
    folder = root / "openai" / "types" / "responses"
    folder.mkdir(parents=True)
    for init in (root / "openai", root / "openai" / "types", folder):
        (init / "__init__.py").write_text("")
    (folder / "response_content_part_added_event.py").write_text(
        "class ResponseContentPartAddedEvent: pass\n" +
        ("class PartReasoningText: pass\n" if with_part_reasoning_text else ""))
    return root


@pytest.fixture
def image(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[types.SimpleNamespace]:
    """This process as a container of the serving image: the stand-in packages on sys.path, the GPUs the container
    was given (/run/testbed/gpus), TensorRT's library on LD_LIBRARY_PATH, an openai with PartReasoningText, and a
    checkpoint with the testbed's tokenizer. Every module it imports is dropped again afterwards."""
    saved = {k: v for k, v in sys.modules.items() if _ours(k)}
    for k in saved:
        del sys.modules[k]
    monkeypatch.syspath_prepend(str(fake_openai(tmp_path / "site")))
    monkeypatch.syspath_prepend(str(PYTHON))
    lib = tmp_path / "tensorrt" / "lib"
    lib.mkdir(parents=True)
    (lib / "libnvinfer.so.10").write_text("")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(lib))
    for name in [k for k in os.environ if k.startswith(("TLLM_", "OMPI_", "PMIX_", "PMI_", "tllm_"))] + \
            ["CUDA_VISIBLE_DEVICES"]:
        monkeypatch.delenv(name, raising=False)
    import testbed_gpus

    gpus = tmp_path / "gpus"
    monkeypatch.setattr(testbed_gpus, "DEVICES", gpus)
    checkpoint = tmp_path / "ckpt"
    checkpoint.mkdir()
    (checkpoint / "config.json").write_text(json.dumps({"max_position_embeddings": 163840}))
    for name, text in checkpoints.tokenizer_files().items():
        (checkpoint / name).write_text(text)

    def set_gpus(n: int) -> None:
        gpus.write_text("".join(f"GPU-test-{i}\n" for i in range(n)))

    set_gpus(8)
    yield types.SimpleNamespace(tmp=tmp_path, lib=lib, checkpoint=checkpoint, set_gpus=set_gpus)
    for k in [k for k in sys.modules if _ours(k)]:
        del sys.modules[k]
    sys.modules.update(saved)


def load_model(image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch, decoupled: bool = True,
               **model_yaml: Any) -> tuple[Any, FakeTriton]:
    """model.py as the Python backend loads it: its version folder on sys.path, then initialize()."""
    version = image.tmp / "repo" / "tensorrt_llm" / "1"
    version.mkdir(parents=True)
    (version / "model.yaml").write_text(yaml.safe_dump({
        "model": str(image.checkpoint), "backend": "pytorch", "tensor_parallel_size": 1,
        **model_yaml, "triton_config": {"max_batch_size": 0, "decoupled": decoupled}}))
    pb = FakeTriton(version)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.syspath_prepend(str(MODEL_FOLDER / "1"))
    import model

    m = model.TritonPythonModel()
    m.initialize({"model_config": json.dumps({
        "parameters": {}, "instance_group": [{"count": 1, "kind": "KIND_CPU"}],
        "output": [{"name": "text_output", "data_type": "TYPE_STRING"}]})})
    return m, pb


@pytest.fixture
def served(image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A loaded model (decoupled, stream_interval 2, max_num_tokens 30), finalized afterwards."""
    m, pb = load_model(image, monkeypatch, stream_interval=2, max_num_tokens=30)
    m.pb = pb
    yield m
    m.finalize()


def ask(m: Any, text: str, **inputs: Any) -> list[tuple[Any, int]]:
    request = Request(m.pb, text, **inputs)
    m.execute([request])
    return request.answers()


# ------------------------------------------------------------------------------------------------ 1. model folder


def test_the_image_model_folder_is_upstreams(tmp_path: Path) -> None:
    shipped = yaml.safe_load((MODEL_FOLDER / "1" / "model.yaml").read_text())
    assert shipped == {"model": "TinyLlama/TinyLlama-1.1B-Chat-v1.0", "backend": "pytorch",
                       "tensor_parallel_size": 1, "pipeline_parallel_size": 1,
                       "triton_config": {"max_batch_size": 0, "decoupled": False}}
    config = (MODEL_FOLDER / "config.pbtxt").read_text()
    assert 'backend: "python"' in config and "# model_transaction_policy {" in config
    assert "\nmax_batch_size" not in config  # upstream leaves both to model.yaml
    table = images.load()
    for name in ("tritonserver-trtllm", "tritonserver-trtllm-ngc"):
        files = next(i for i in table if i.name == name).files
        for path in ("1/model.py", "1/helpers.py", "1/model.yaml", "config.pbtxt"):
            assert f"/app/all_models/llmapi/tensorrt_llm/{path}" in files


def test_model_py_without_helpers_py_does_not_load(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    alone = tmp_path / "1"
    alone.mkdir()
    (alone / "model.py").write_text((MODEL_FOLDER / "1" / "model.py").read_text())
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", FakeTriton(alone))
    monkeypatch.syspath_prepend(str(alone))
    for name in ("model", "helpers"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    with pytest.raises(ModuleNotFoundError, match="No module named 'helpers'"):
        __import__("model")
    monkeypatch.delitem(sys.modules, "model", raising=False)
    (alone / "helpers.py").write_text((MODEL_FOLDER / "1" / "helpers.py").read_text())
    assert __import__("model").TritonPythonModel
    for name in ("model", "helpers"):
        sys.modules.pop(name, None)


def test_helpers_defaults_are_tritons(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pb = FakeTriton(tmp_path)
    monkeypatch.setitem(sys.modules, "triton_python_backend_utils", pb)
    monkeypatch.syspath_prepend(str(MODEL_FOLDER / "1"))
    monkeypatch.delitem(sys.modules, "helpers", raising=False)
    import helpers

    plain = Request(pb, "hi")
    assert helpers.get_sampling_params_from_request(plain) == {
        "best_of": 1, "exclude_input_from_output": False, "return_perf_metrics": False, "stop": None}
    assert "max_tokens" not in helpers.get_sampling_params_from_request(plain)  # SamplingParams' 32 applies
    assert helpers.get_streaming_from_request(plain) is False
    assert helpers.get_output_config_from_request(plain) == {
        "return_finish_reason": False, "return_stop_reason": False, "return_cumulative_logprob": False}
    asked = Request(pb, "hi", sampling_param_max_tokens=np.int32(5), streaming=True,
                    sampling_param_stop=[b"x", b"y"])
    params = helpers.get_sampling_params_from_request(asked)
    assert params["max_tokens"] == 5 and params["stop"].tolist() == [b"x", b"y"]
    assert helpers.get_streaming_from_request(asked) is True
    sys.modules.pop("helpers", None)


# ------------------------------------------------------------------------------------------------ 2. model.py


def test_model_py_drops_the_mpi_job_environment_but_not_its_configuration(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    for name, value in {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "16", "PMIX_RANK": "3",
                        "PMI_SIZE": "16", "OMPI_MCA_orte_hnp_uri": "x", "ORTE_X": "y",
                        "OMPI_MCA_btl": "tcp,self"}.items():
        monkeypatch.setenv(name, value)
    m, _ = load_model(image, monkeypatch)
    try:
        assert not {"OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE",
                    "OMPI_MCA_orte_hnp_uri", "ORTE_X"} & set(os.environ)
        assert os.environ["OMPI_MCA_btl"] == "tcp,self"  # noqa: SIM112
    finally:
        m.finalize()


def test_model_yaml_keys_go_to_llm_and_triton_config_to_auto_complete(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    m, _ = load_model(image, monkeypatch, decoupled=True, max_num_tokens=77, stream_interval=3)
    try:
        assert m._llm_engine.args.max_num_tokens == 77 and m._llm_engine.args.stream_interval == 3

        class Config:
            def set_model_transaction_policy(self, policy: dict[str, Any]) -> None:
                self.policy = policy

            def set_max_batch_size(self, size: int) -> None:
                self.max_batch_size = size

        config = type(m).auto_complete_config(Config())
        assert config.policy == {"decoupled": True} and config.max_batch_size == 0
    finally:
        m.finalize()


def test_errors_are_final_responses_not_failed_requests(served: Any) -> None:
    assert served.execute([Request(served.pb, "hello")]) is None  # every answer goes through the response sender
    [(response, flags)] = ask(served, "word " * 40)
    assert flags == 1 and response.text() == ["N/A"]
    assert response.error.message == ("Error generating request: The sum of prompt length (41.0), query length (0) "
                                      "should not exceed max_num_tokens (30)")


def test_a_fault_after_tokens_fails_a_stream_mid_answer_after_its_first_responses(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    """testbed.deepseek.ai/error-after-tokens: the injected failure comes as an engine error while generating,
    after responses already went out (the client's stream carries an error after text), not as a refusal."""
    import tensorrt_llm.llmapi.llm as llm_module

    pod = image.tmp / "pod.json"
    pod.write_text(json.dumps({"namespace": "ns", "name": "pod", "annotations": {
        "testbed.deepseek.ai/error-rate": "1", "testbed.deepseek.ai/error-after-tokens": "2",
        # Tokens some time apart, as on an engine: model.py sends the streamed responses from its response loop's
        # thread but an error at once from the request's task (upstream's structure), so an error raised within
        # microseconds of the last token can overtake it.
        "testbed.deepseek.ai/token-interval-ms": "50"}}))
    monkeypatch.setattr(llm_module, "TESTBED_POD_FILE", pod)
    m, pb = load_model(image, monkeypatch, stream_interval=1)
    m.pb = pb
    try:
        answers = ask(m, "one two three four five", streaming=True, sampling_param_max_tokens=np.int32(8))
    finally:
        m.finalize()
    *partial, (last, flags) = answers
    assert len(partial) == 2 and all(f == 0 and r.error is None for r, f in partial)
    assert flags == 1 and last.error.message.startswith("Error generating request: testbed fault injection")
    assert "after 2 tokens" in last.error.message


def test_streaming_on_a_model_that_is_not_decoupled_is_an_error_response(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    m, pb = load_model(image, monkeypatch, decoupled=False)
    m.pb = pb
    try:
        [(response, flags)] = ask(m, "hello", streaming=True)
        assert response.error.message == "Error generating request: Streaming is only supported in decoupled mode."
        assert flags == 1
    finally:
        m.finalize()


def test_the_prompt_is_echoed_unless_excluded_and_max_tokens_defaults_to_32(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    m, pb = load_model(image, monkeypatch)
    m.pb = pb
    identity = f"[{m._llm_engine.identity}]"
    try:
        [(response, _)] = ask(m, "one two three", return_finish_reason=True)
        assert response.text() == [f"one two three {identity} three two one"]
        assert response.text("finish_reason") == ["stop"]
        [(response, _)] = ask(m, "one two three", sampling_param_exclude_input_from_output=True)
        assert response.text() == [f"{identity} three two one"]
        [(response, _)] = ask(m, " ".join(["w"] * 40), sampling_param_exclude_input_from_output=True,
                              return_finish_reason=True)
        assert len(response.text()[0].split()) == 32 and response.text("finish_reason") == ["length"]
    finally:
        m.finalize()


def test_streaming_sends_the_cumulative_text_every_stream_interval_tokens(served: Any) -> None:
    answers = ask(served, "one two three", streaming=True, sampling_param_exclude_input_from_output=True)
    texts = [r.text()[0] for r, _ in answers]
    flags = [f for _, f in answers]
    identity = f"[{served._llm_engine.identity}]"
    # 4 words and the end-of-sequence token; a response after tokens 2 and 4, and the final one.
    assert texts == [f"{identity} three", f"{identity} three two one", f"{identity} three two one"]
    assert flags == [0, 0, 1]
    [(response, flags_only)] = ask(served, "one two three", sampling_param_exclude_input_from_output=True)
    assert response.text() == [f"{identity} three two one"] and flags_only == 1


def test_max_tokens_cuts_the_answer_with_finish_reason_length(served: Any) -> None:
    [(response, _)] = ask(served, "a b c d e", sampling_param_max_tokens=np.int32(3),
                          sampling_param_exclude_input_from_output=True, return_finish_reason=True)
    assert response.text()[0].split()[1:] == ["e", "d"] and response.text("finish_reason") == ["length"]


def test_an_r1_chat_prompt_is_answered_with_a_thought(served: Any) -> None:
    prompt = checkpoints.USER + "tell me a thing" + checkpoints.ASSISTANT + "<think>\n"
    [(response, _)] = ask(served, prompt, sampling_param_exclude_input_from_output=True)
    assert response.text()[0].startswith("The user wrote 4 words.\n</think>\n\n[")
    assert response.text()[0].endswith("] thing a me tell")


def test_a_prompt_that_starts_with_bos_gets_a_second_one(served: Any, capsys: pytest.CaptureFixture[str]) -> None:
    prompt = checkpoints.BOS + checkpoints.USER + "hi" + checkpoints.ASSISTANT + "<think>\n"
    [(response, _)] = ask(served, prompt, sampling_param_exclude_input_from_output=True)
    assert response.text()[0].startswith("(double BOS) The user wrote")
    assert "two BOS tokens" in capsys.readouterr().out
    [(response, _)] = ask(served, prompt[len(checkpoints.BOS):], sampling_param_exclude_input_from_output=True)
    assert not response.text()[0].startswith("(double BOS)")


class Prefill:
    """Holds requests before their first token until released, counting those that got a batch slot."""

    def __init__(self, m: Any) -> None:
        self.loop = m._event_loop
        self.gate = asyncio.Event()  # used on the model's loop only (asyncio.Event binds on first use)
        self.entered: list[int] = []
        self.counts = {n: threading.Event() for n in range(1, 5)}
        m._llm_engine.before_first_token = self

    async def __call__(self) -> None:
        self.entered.append(1)
        self.counts[len(self.entered)].set()
        await self.gate.wait()

    def release(self) -> None:
        self.loop.call_soon_threadsafe(self.gate.set)


def test_requests_run_concurrently_up_to_max_batch_size(image: types.SimpleNamespace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    m, pb = load_model(image, monkeypatch, max_batch_size=2)
    prefill = Prefill(m)
    try:
        requests = [Request(pb, f"r{i}") for i in range(3)]
        m.execute(requests)
        assert prefill.counts[2].wait(WAIT_S)  # two at once, not one at a time
        # The third waits for a slot: it is in the loop's hands but not in prefill (checked once the loop has
        # run every task that was ready, i.e. after a round trip through it).
        asyncio.run_coroutine_threadsafe(asyncio.sleep(0), m._event_loop).result(WAIT_S)
        assert len(prefill.entered) == 2 and not any(r.sender.done.is_set() for r in requests)
        prefill.release()
        assert all(r.sender.done.wait(WAIT_S) for r in requests) and len(prefill.entered) == 3
    finally:
        prefill.release()
        m.finalize()


def test_finalize_waits_for_the_requests_in_flight(image: types.SimpleNamespace,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    m, pb = load_model(image, monkeypatch)
    prefill = Prefill(m)
    request = Request(pb, "hello")
    m.execute([request])
    assert prefill.counts[1].wait(WAIT_S)
    draining = threading.Event()
    pb.Logger.log_info = classmethod(  # type: ignore[method-assign]
        lambda cls, message: draining.set() if "Awaiting remaining 1 requests" in message else None)
    finalized = threading.Thread(target=m.finalize)
    finalized.start()
    assert draining.wait(WAIT_S) and finalized.is_alive() and not request.sender.done.is_set()
    prefill.release()
    finalized.join(WAIT_S)
    assert not finalized.is_alive() and request.answers()[0][0].error is None


# ------------------------------------------------------------------------------------------------ 3. refusals


def test_a_prompt_over_max_num_tokens_is_refused_without_chunked_prefill_only(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    m, pb = load_model(image, monkeypatch, max_num_tokens=10, enable_chunked_prefill=True)
    m.pb = pb
    try:
        [(response, _)] = ask(m, "word " * 40)
        assert response.error is None
    finally:
        m.finalize()


def test_max_tokens_beyond_max_seq_len_is_clamped_and_a_full_context_refused(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    m, pb = load_model(image, monkeypatch, max_seq_len=12)
    m.pb = pb
    try:
        # 5 words and BOS: 6 of 12 positions left for the answer (upstream clamps, with a warning).
        [(response, _)] = ask(m, "a b c d e", sampling_param_exclude_input_from_output=True,
                              return_finish_reason=True)
        assert len(response.text()[0].split()) == 6 and response.text("finish_reason") == ["length"]
        assert "User-specified `max_tokens` (32) is greater than deduced `default_max_tokens` (6)" in \
            capsys.readouterr().out
        [(response, _)] = ask(m, "word " * 11)
        assert response.error.message == ("Error generating request: [TensorRT-LLM][ERROR] Assertion failed: "
                                          "mMaxNewTokens > 0")
    finally:
        m.finalize()


def test_prompt_tokens_are_the_checkpoints_tokenizers_with_bos(image: types.SimpleNamespace) -> None:
    from tensorrt_llm.llmapi.tokenizer import tokenizer_factory

    tok = tokenizer_factory(image.checkpoint)
    text = checkpoints.USER + "Hello, world!" + checkpoints.ASSISTANT + "<think>\n"
    ids = tok.encode(text)
    assert ids[0] == tok.bos_token_id and len(ids) == 8  # BOS User Hello , world ! Assistant <think>
    assert tok.encode(checkpoints.BOS + "x")[:2] == [tok.bos_token_id] * 2
    assert tok.encode("x", add_special_tokens=False)[0] != tok.bos_token_id


# ------------------------------------------------------------------------------------------------ 4. the package


def test_argument_values_are_checked_against_tensorrt_llm_1_2(image: types.SimpleNamespace) -> None:
    from pydantic import ValidationError
    from tensorrt_llm.llmapi import llm_args
    from tensorrt_llm.llmapi.llm_utils import update_llm_args_with_extra_dict

    assert llm_args.SCHEMA["classes"]["MoeConfig"]["values"]["backend"] == [
        "AUTO", "CUTLASS", "CUTEDSL", "WIDEEP", "TRTLLM", "DEEPGEMM", "VANILLA", "TRITON"]
    with pytest.raises(ValidationError) as refused:
        update_llm_args_with_extra_dict({}, {"moe_config": {"backend": "NOPE"}})
    assert str(refused.value).startswith(
        "1 validation error for MoeConfig\nbackend\n  Input should be 'AUTO', 'CUTLASS', 'CUTEDSL', 'WIDEEP', "
        "'TRTLLM', 'DEEPGEMM', 'VANILLA' or 'TRITON' [type=literal_error")
    args = update_llm_args_with_extra_dict({}, {"moe_config": {"backend": "WIDEEP"}})  # still valid at 1.2
    torch_args = llm_args.model("TorchLlmArgs")
    assert torch_args(model="/m", **args).moe_config.backend == "WIDEEP"
    with pytest.raises(ValidationError, match=r"scheduler_config.capacity_scheduler_policy\n  Input should be "
                                              r"'MAX_UTILIZATION', 'GUARANTEED_NO_EVICT' or 'STATIC_BATCH'"):
        torch_args(model="/m", scheduler_config={"capacity_scheduler_policy": "FIFO"})
    with pytest.raises(ValidationError, match="does not match any of the expected tags: 'Draft_Target'"):
        torch_args(model="/m", speculative_config={"decoding_type": "Medusa2"})
    with pytest.raises(ValidationError, match=r"speculative_config.MTP.num_draft_layers\n  Extra inputs"):
        torch_args(model="/m", speculative_config={"decoding_type": "MTP", "num_draft_layers": 3})
    with pytest.raises(ValidationError, match=r"kv_cache_config.free_gpu_memory_fraction\n  Input should be less"):
        torch_args(model="/m", kv_cache_config={"free_gpu_memory_fraction": 1.5})
    assert torch_args(model="/m", speculative_config={"decoding_type": "MTP", "num_nextn_predict_layers": 3})


def test_an_unknown_model_yaml_key_fails_the_model_load(image: types.SimpleNamespace,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="use_cuda_graph\n  Extra inputs are not permitted"):
        load_model(image, monkeypatch, use_cuda_graph=True)


def test_importing_tensorrt_llm_needs_the_images_libraries(image: types.SimpleNamespace,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LD_LIBRARY_PATH", "/usr/lib")  # a rank over ssh without `mpirun -x LD_LIBRARY_PATH`
    with pytest.raises(ImportError, match=r"libnvinfer\.so\.10: cannot open shared object file"):
        __import__("tensorrt_llm")
    monkeypatch.setenv("LD_LIBRARY_PATH", str(image.lib))
    image.set_gpus(0)  # a container without an nvidia.com/gpu limit: no driver mounted
    for k in [k for k in sys.modules if k.startswith("tensorrt_llm")]:
        del sys.modules[k]
    with pytest.raises(ImportError, match=r"libcuda\.so\.1: cannot open shared object file"):
        __import__("tensorrt_llm")


def test_importing_tensorrt_llm_needs_part_reasoning_text(image: types.SimpleNamespace,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    for k in [k for k in sys.modules if k.startswith("openai")]:
        del sys.modules[k]
    monkeypatch.syspath_prepend(str(fake_openai(image.tmp / "old-openai", with_part_reasoning_text=False)))
    with pytest.raises(ImportError, match=re.escape("cannot import name 'PartReasoningText' from "
                                                    "'openai.types.responses.response_content_part_added_event'")):
        __import__("tensorrt_llm")


def _image_openai(version: str) -> Path:
    site = CACHE / images.IMAGE_SITE / f"openai-{version}"
    if not (site / ".installed").is_file():
        pytest.skip(f"openai {version} is not installed for the images ({site}: testbed/lib.sh ensure_image_openai)")
    return site


@pytest.mark.parametrize(("version", "loads"), [("1.107.3", False), ("2.52.1", True)])
def test_the_images_real_openai_decides_whether_tensorrt_llm_imports(tmp_path: Path, version: str,
                                                                     loads: bool) -> None:
    site = _image_openai(version)
    result = run_in_image(tmp_path, ["-c", "import tensorrt_llm, openai; print(openai.__version__)"],
                          path=[site], gpus=8)
    if loads:
        assert result.returncode == 0 and result.stdout.strip() == version, result.stderr
    else:
        assert result.returncode != 0
        assert ("ImportError: cannot import name 'PartReasoningText' from "
                "'openai.types.responses.response_content_part_added_event'") in result.stderr


def test_the_images_pick_their_openai() -> None:
    table = images.load()
    derived = images.find(table, "ghcr.io/deepseek-operator/deepseek-operator-tritonserver:0.1.0")
    ngc = images.find(table, "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3")
    assert derived is not None and ngc is not None
    openai = "/usr/local/lib/python3/dist-packages/openai"
    assert derived.files[openai]["link"].endswith("/openai-2.52.1/openai")
    assert ngc.files[openai]["link"].endswith("/openai-1.107.3/openai")
    assert derived.env["LD_LIBRARY_PATH"].startswith("/usr/local/tensorrt/lib:")
    assert "/usr/local/tensorrt/lib/libnvinfer.so.10" in derived.files


# ------------------------------------------------------------------------------------------------ 5. ranks


def test_spawned_ranks_need_a_gpu_each(image: types.SimpleNamespace, capsys: pytest.CaptureFixture[str]) -> None:
    from tensorrt_llm import LLM

    image.set_gpus(4)
    with pytest.raises(RuntimeError, match=r"^Executor worker returned error$"):
        LLM(model=str(image.checkpoint), tensor_parallel_size=8)
    assert "Duplicate GPU detected" in capsys.readouterr().out
    with pytest.raises(RuntimeError, match=r"^Only 4 GPUs are available, but 8 are required\.$"):
        LLM(model=str(image.checkpoint), tensor_parallel_size=8, gpus_per_node=8)
    image.set_gpus(8)
    assert LLM(model=str(image.checkpoint), tensor_parallel_size=8).world_size == 8
    os.environ["CUDA_VISIBLE_DEVICES"] = "0,1"
    try:
        with pytest.raises(RuntimeError, match=r"^Executor worker returned error$"):
            LLM(model=str(image.checkpoint), tensor_parallel_size=8)
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]


@pytest.fixture
def leader(image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """A `mgmn_leader_node` of an MPI world of 8 ranks serving in a thread, and the launcher's environment."""
    from tensorrt_llm.llmapi import mpi_session

    key = "ab" * 32
    started = []

    def start(world: int) -> Any:
        server = mpi_session.RemoteMpiCommSessionServer(n_workers=world, addr="tcp://127.0.0.1:0",
                                                        hmac_key=bytes.fromhex(key))
        threading.Thread(target=server.serve, daemon=True).start()
        monkeypatch.setenv("TLLM_SPAWN_PROXY_PROCESS", "1")
        monkeypatch.setenv("TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR", server.addr)
        monkeypatch.setenv("TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY", key)
        monkeypatch.setenv("tllm_mpi_size", str(world))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


def test_under_the_launcher_llm_joins_the_leaders_ranks(image: types.SimpleNamespace, leader: Any) -> None:
    from tensorrt_llm import LLM

    leader(8)
    llm = LLM(model=str(image.checkpoint), tensor_parallel_size=8)
    assert llm.world_size == 8
    llm.shutdown()


def test_a_leader_world_other_than_the_models_never_loads(image: types.SimpleNamespace, leader: Any) -> None:
    from tensorrt_llm import LLM

    server = leader(1)  # `mpirun -n 1 trtllm-llmapi-launch ...` for a model of 8 ranks
    result: list[Any] = []

    def load() -> None:
        try:
            result.append(LLM(model=str(image.checkpoint), tensor_parallel_size=8))
        except Exception as e:  # the connection closed at the end of the test
            result.append(e)

    thread = threading.Thread(target=load, daemon=True)
    thread.start()
    assert server.stuck.wait(WAIT_S)
    assert thread.is_alive() and not result  # no error: LLM() waits for ranks that never come
    server.close()
    thread.join(WAIT_S)


def test_the_launcher_address_must_be_set(image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorrt_llm import LLM

    monkeypatch.setenv("TLLM_SPAWN_PROXY_PROCESS", "1")
    with pytest.raises(AssertionError, match=r"^TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR is not set\.$"):
        LLM(model=str(image.checkpoint), tensor_parallel_size=2)


def test_the_leader_serves_a_new_session_only_once_the_last_one_let_its_ranks_go(
        image: types.SimpleNamespace, leader: Any) -> None:
    from tensorrt_llm.llmapi.mpi_session import RemoteMpiCommSessionClient

    server = leader(8)
    key = bytes.fromhex(os.environ["TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY"])
    first = RemoteMpiCommSessionClient(server.addr, key)
    assert first.start_workers(8)["ready"]
    first.shutdown_workers()  # a clean LLM.shutdown(): worker_main returns on every rank
    second = RemoteMpiCommSessionClient(server.addr, key)
    assert second.start_workers(8)["ready"]
    second.shutdown()  # the task died: its worker_main keeps the ranks (research: trtllm-multinode.md Q4)
    third = RemoteMpiCommSessionClient(server.addr, key)
    outcome: list[Any] = []

    def wait_for_ranks() -> None:
        try:
            outcome.append(third.start_workers(8))
        except RuntimeError as e:  # the server closed at the end of the test
            outcome.append(e)

    waiting = threading.Thread(target=wait_for_ranks, daemon=True)
    waiting.start()
    assert server.stuck.wait(WAIT_S) and waiting.is_alive() and not outcome
    server.close()
    waiting.join(WAIT_S)


def test_the_leader_checks_the_sessions_hmac(image: types.SimpleNamespace) -> None:
    from tensorrt_llm.llmapi.mpi_session import _sign, _verify

    body = {"type": "submit", "task": "worker_main", "model_world_size": 8}
    assert _verify(json.loads(_sign(body, b"key")), b"key") == body
    with pytest.raises(RuntimeError, match="HMAC verification failed"):
        _verify(json.loads(_sign(body, b"other key")), b"key")
    assert _verify(json.loads(_sign({"type": "stop"}, None)), b"key") == {"type": "stop"}  # --action stop: unsigned


def test_worker_nodes_need_their_gpu(image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    from tensorrt_llm.llmapi import mgmn_worker_node

    monkeypatch.setenv("OMPI_COMM_WORLD_RANK", "9")
    monkeypatch.setenv("OMPI_COMM_WORLD_LOCAL_SIZE", "8")
    assert mgmn_worker_node.check_device() is None
    image.set_gpus(4)
    assert "Duplicate GPU detected" in (mgmn_worker_node.check_device() or "")
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    try:
        assert mgmn_worker_node.check_device() == "ZeroDivisionError: integer division or modulo by zero"
    finally:
        del os.environ["CUDA_VISIBLE_DEVICES"]


def run_in_image(tmp: Path, args: list[str], *, path: list[Path] | None = None, gpus: int = 8,
                 env: dict[str, str] | None = None, timeout: float = 60,
                 popen: bool = False) -> Any:
    """A python3 of the image in a subprocess: the stand-ins, the given site folders (else a fake openai), the
    container's GPUs (a sitecustomize points testbed_gpus at a file of this test) and LD_LIBRARY_PATH."""
    boot = tmp / "boot"
    boot.mkdir(exist_ok=True)
    devices = tmp / "subprocess-gpus"
    devices.write_text("".join(f"GPU-sub-{i}\n" for i in range(gpus)))
    (boot / "sitecustomize.py").write_text(
        "import pathlib, testbed_gpus\n"
        f"testbed_gpus.DEVICES = pathlib.Path({str(devices)!r})\n")
    lib = tmp / "sub-lib"
    lib.mkdir(exist_ok=True)
    (lib / "libnvinfer.so.10").write_text("")
    sites = path if path is not None else [fake_openai(tmp / "sub-openai") if not (tmp / "sub-openai").exists()
                                           else tmp / "sub-openai"]
    full_env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LD_LIBRARY_PATH": str(lib),
                "PYTHONPATH": os.pathsep.join([str(boot), str(PYTHON), *map(str, sites)]),
                "HOME": str(tmp), **(env or {})}
    if popen:
        return subprocess.Popen([sys.executable, *args], env=full_env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
    return subprocess.run([sys.executable, *args], env=full_env, capture_output=True, text=True, timeout=timeout)


def test_a_worker_node_blocks_until_signalled(tmp_path: Path) -> None:
    worker = run_in_image(tmp_path, ["-m", "tensorrt_llm.llmapi.mgmn_worker_node"], popen=True,
                          env={"OMPI_COMM_WORLD_RANK": "1", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"})
    try:
        assert worker.stdout.readline().startswith("[TRT-LLM] [rank1] waiting")
        assert worker.poll() is None
        worker.send_signal(signal.SIGTERM)
        assert worker.wait(WAIT_S) == -signal.SIGTERM  # Python's default action: no handler upstream either
    finally:
        worker.kill()
        worker.communicate()
    failed = run_in_image(tmp_path, ["-m", "tensorrt_llm.llmapi.mgmn_worker_node"], gpus=4,
                          env={"OMPI_COMM_WORLD_RANK": "5", "OMPI_COMM_WORLD_LOCAL_SIZE": "8"})
    assert failed.returncode == 1 and "Duplicate GPU detected" in failed.stderr


def test_the_launcher_runs_the_task_in_the_background_and_the_leader_in_front(tmp_path: Path) -> None:
    run_in_image(tmp_path, ["-c", "pass"])  # lays out boot/, sub-lib/ and sub-openai/
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(sys.executable)
    task = tmp_path / "task.py"
    task.write_text(
        "import json, os, sys\n"
        "from tensorrt_llm.llmapi.mpi_session import RemoteMpiCommSessionClient\n"
        "from tensorrt_llm.executor.utils import get_spawn_proxy_process_ipc_hmac_key_env\n"
        "client = RemoteMpiCommSessionClient(os.environ['TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR'],\n"
        "                                    get_spawn_proxy_process_ipc_hmac_key_env())\n"
        "status = client.start_workers(1)\n"
        "client.shutdown_workers()\n"
        "env = {k: v for k, v in os.environ.items() if k.startswith(('TLLM_', 'tllm_', 'OMPI_', 'PMIX_'))}\n"
        "json.dump({'status': status, 'env': env}, open(sys.argv[1], 'w'))\n")
    out = tmp_path / "task.json"
    launched = subprocess.run(["bash", str(LAUNCH), "python3", str(task), str(out)], capture_output=True,
                              text=True, timeout=120, env=_last_env(tmp_path, bin_dir))
    assert launched.returncode == 0, launched.stderr
    seen = json.loads(out.read_text())
    assert seen["status"]["ready"] and seen["env"]["TLLM_SPAWN_PROXY_PROCESS"] == "1"
    assert seen["env"]["tllm_mpi_size"] == "1"
    assert seen["env"]["TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR"].startswith("tcp://127.0.0.1:")
    assert int(seen["env"]["TLLM_SPAWN_PROXY_PROCESS_IPC_ADDR"].rsplit(":", 1)[1]) >= 10012
    assert len(seen["env"]["TLLM_SPAWN_PROXY_PROCESS_IPC_HMAC_KEY"]) == 64
    assert not [k for k in seen["env"] if k.startswith(("OMPI_", "PMIX_"))]  # the task runs without the MPI job
    # The leader ran in the foreground until the subshell's `--action stop`.
    assert "RemoteMpiCommSessionServer received shutdown signal" in launched.stdout


def _last_env(tmp: Path, bin_dir: Path) -> dict[str, str]:
    return {"PATH": f"{bin_dir}:{os.environ.get('PATH', '/usr/bin:/bin')}",
            "LD_LIBRARY_PATH": str(tmp / "sub-lib"),
            "PYTHONPATH": os.pathsep.join([str(tmp / "boot"), str(PYTHON), str(tmp / "sub-openai")]),
            "HOME": str(tmp), "OMPI_COMM_WORLD_RANK": "0", "OMPI_COMM_WORLD_SIZE": "1", "OMPI_MCA_btl": "tcp",
            "HOSTNAME": "leader-0"}


def test_other_ranks_of_the_launcher_run_the_worker_node(tmp_path: Path) -> None:
    run_in_image(tmp_path, ["-c", "pass"])  # lays out boot/, sub-lib/ and sub-openai/
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for name in ("python", "python3"):
        (bin_dir / name).symlink_to(sys.executable)
    env = _last_env(tmp_path, bin_dir) | {"OMPI_COMM_WORLD_RANK": "3", "OMPI_COMM_WORLD_SIZE": "8",
                                          "OMPI_COMM_WORLD_LOCAL_SIZE": "8"}
    worker = subprocess.Popen(["bash", str(LAUNCH), "true"], env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        assert worker.stdout is not None and worker.stdout.readline().startswith("[TRT-LLM] [rank3] waiting")
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        worker.communicate(timeout=WAIT_S)


# ------------------------------------------------------------------------------------------------ 7. GPUs


def test_the_device_plugin_gives_each_gpu_container_its_own_devices() -> None:
    pod = {"metadata": {"uid": "0f1e2d3c-aaaa-bbbb-cccc-000000000000"}, "spec": {"containers": [
        {"name": "sidecar"},
        {"name": "server", "resources": {"limits": {"nvidia.com/gpu": "2"}}},
        {"name": "other", "resources": {"requests": {"nvidia.com/gpu": "1"}, "limits": {"nvidia.com/gpu": "1"}}},
    ], "initContainers": [{"name": "init", "resources": {"limits": {"nvidia.com/gpu": "1"}}}]}}
    containers = {c["name"]: c for c in pod["spec"]["containers"]}
    assert podspec.gpu_devices(pod, containers["sidecar"], init=False) == []
    assert podspec.gpu_devices(pod, containers["server"], init=False) == ["GPU-0f1e2d3c-0", "GPU-0f1e2d3c-1"]
    assert podspec.gpu_devices(pod, containers["other"], init=False) == ["GPU-0f1e2d3c-2"]
    assert podspec.gpu_devices(pod, pod["spec"]["initContainers"][0], init=True) == ["GPU-0f1e2d3c-0"]


def test_cuda_sees_the_containers_devices_through_cuda_visible_devices(
        image: types.SimpleNamespace, monkeypatch: pytest.MonkeyPatch) -> None:
    import testbed_gpus

    image.set_gpus(4)
    assert testbed_gpus.device_count() == 4
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert testbed_gpus.device_count() == 2
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,2")  # enumeration stops at the first device that is not there
    assert testbed_gpus.device_count() == 1
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-test-3")
    assert testbed_gpus.device_count() == 1


# ------------------------------------------------------------------------------------------------ 8. checkpoints


def test_checkpoints_carry_a_real_r1_shaped_tokenizer() -> None:
    import tokenizers

    files = checkpoints.tokenizer_files()
    tok = tokenizers.Tokenizer.from_str(files["tokenizer.json"])
    config = json.loads(files["tokenizer_config.json"])
    assert config["add_bos_token"] is True and config["chat_template"].startswith("{{ bos_token }}")
    assert config["bos_token"]["content"] == checkpoints.BOS and config["eos_token"]["content"] == checkpoints.EOS
    special = [checkpoints.BOS, checkpoints.EOS, checkpoints.USER, checkpoints.ASSISTANT, "<think>", "</think>"]
    for token in special:
        assert tok.encode(token, add_special_tokens=False).tokens == [token]
    assert tok.encode("an unheardof word", add_special_tokens=False).tokens == ["an", "[UNK]", "word"]
    from deepseek_operator.frontend.chat import ChatFormat, deepseek_r1_prompt

    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    rendered = ChatFormat(config["chat_template"], checkpoints.BOS, checkpoints.EOS).prompt(messages)
    assert rendered == deepseek_r1_prompt(messages) and rendered.startswith(checkpoints.BOS)
    assert max(len(t) for t in files.values()) < 8000
