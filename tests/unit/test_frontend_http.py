"""The frontend over HTTP: the official `openai` client, unmodified, and plain HTTP against the frontend on a
loopback port, in front of the fake Triton (tests/fake_triton.py: the `llmapi` model's cumulative streams, its echo
unless exclude_input_from_output, its error responses). Both servers run on one event loop in a thread; times
come from a fake clock, and requests are held and released by events, so nothing depends on the wall clock."""

from __future__ import annotations

import asyncio
import itertools
import json
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any, TypeVar

import openai
import pytest
import requests
from aiohttp import web
from prometheus_client.parser import text_string_to_metric_families

from deepseek_operator.frontend.chat import ASSISTANT, USER, ChatFormat
from deepseek_operator.frontend.server import Frontend, Settings
from deepseek_operator.frontend.tokens import TokenCounter
from tests.fake_triton import FakeTriton, answer_pieces, write_checkpoint

T = TypeVar("T")
ROOT = Path(__file__).resolve().parents[2]
MODEL = "deepseek-r1"
QUESTION = [{"role": "user", "content": "w1 w2 w3"}]


class Stack:
    """The fake Triton and the frontend, serving on loopback ports from an event loop in a thread."""

    def __init__(self, checkpoint: Path, fake: FakeTriton, options: dict[str, Any] | None = None,
                 **settings: Any) -> None:
        """`settings` go to the frontend's Settings, `options` to Frontend itself (monotonic, rng)."""
        self.fake = fake
        self.options = options or {}
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        ticks = itertools.count()
        self.tokens, _ = TokenCounter.from_checkpoint(checkpoint)
        self.frontend: Frontend = self.run(self._start(checkpoint, settings, lambda: float(next(ticks))))
        self.url = f"http://127.0.0.1:{self.port}"
        self.client = openai.OpenAI(base_url=f"{self.url}/v1", api_key="unused", max_retries=0, timeout=30)

    async def _start(self, checkpoint: Path, settings: dict[str, Any], clock: Callable[[], float]) -> Frontend:
        self.fake_runner = web.AppRunner(self.fake.app(), access_log=None)
        await self.fake_runner.setup()
        await web.TCPSite(self.fake_runner, "127.0.0.1", 0).start()
        self.triton = f"http://127.0.0.1:{self.fake_runner.addresses[0][1]}"
        frontend = Frontend(Settings(**{
            "triton_url": self.triton, "triton_model": "tensorrt_llm", "served_model": MODEL, "revision": "rev1",
            "chat": ChatFormat.from_checkpoint(checkpoint), "tokens": self.tokens, "decoupled": True,
            "max_seq_len": 64, "default_max_tokens": 32, **settings}), clock=clock, **self.options)
        self.port, self.metrics_port = await frontend.start("127.0.0.1", 0, 0)
        return frontend

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=30)

    def event(self) -> asyncio.Event:
        async def make() -> asyncio.Event:
            return asyncio.Event()
        return self.run(make())

    def release(self, event: asyncio.Event) -> None:
        self.loop.call_soon_threadsafe(event.set)

    def sample(self, name: str, **labels: str) -> float:
        text = requests.get(f"http://127.0.0.1:{self.metrics_port}/metrics", timeout=10).text
        total, found = 0.0, False
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                    total, found = total + sample.value, True
        return total if found else 0.0

    def close(self) -> None:
        async def stop() -> None:
            await self.frontend.close()
            await self.fake_runner.cleanup()
        self.run(stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)
        self.loop.close()


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    return write_checkpoint(tmp_path / "checkpoint")


@pytest.fixture
def stack(checkpoint: Path) -> Iterator[Stack]:
    s = Stack(checkpoint, FakeTriton(stream_interval=2))
    yield s
    s.close()


def _body(seen: dict[str, Any]) -> dict[str, Any]:
    body: dict[str, Any] = json.loads(seen["body"])
    return body


def _wait_until(check: Callable[[], bool]) -> None:
    for _ in range(2000):  # bounded polling of counters; no assertion on how long it took
        if check():
            return
        threading.Event().wait(0.005)
    raise AssertionError("never happened")


# ------------------------------------------------------------------------------------------------ OpenAI

def test_chat_answers_with_reasoning_apart_and_usage_counted_with_the_tokenizer(stack: Stack) -> None:
    answer = stack.client.chat.completions.create(model=MODEL, messages=QUESTION)  # type: ignore[arg-type]
    message = answer.choices[0].message
    assert (message.content, getattr(message, "reasoning_content", None)) == (" w3 w2 w1", "Weighing the question.")
    assert answer.choices[0].finish_reason == "stop" and answer.system_fingerprint == "rev1"
    sent = _body(stack.fake.seen[-1])
    assert sent["sampling_param_exclude_input_from_output"] is True  # else the answer would echo the prompt
    assert sent["text_input"] == f"{USER}w1 w2 w3{ASSISTANT}<think>\n"  # the template's BOS stripped: no double
    assert sent["sampling_param_max_tokens"] == 32 and "streaming" not in sent
    prompt_tokens = stack.tokens.prompt_tokens(sent["text_input"])
    completion = stack.tokens.output_tokens("".join(answer_pieces(sent["text_input"], 0)))
    assert prompt_tokens == 1 + 6 and completion == 8  # BOS; Weighing the question . </think> w3 w2 w1
    assert answer.usage is not None
    assert (answer.usage.prompt_tokens, answer.usage.completion_tokens, answer.usage.total_tokens) == (
        prompt_tokens, completion, prompt_tokens + completion)
    labels = {"api": "chat", "model": MODEL, "revision": "rev1"}
    assert stack.sample("deepseek_frontend_prompt_tokens_total", **labels) == prompt_tokens
    assert stack.sample("deepseek_frontend_output_tokens_total", **labels) == completion
    assert stack.sample("deepseek_frontend_time_to_first_token_seconds_count", **labels) == 1
    assert stack.sample("deepseek_frontend_requests_total", code="200", **labels) == 1


def test_a_streamed_chat_with_include_usage_ends_with_the_usage_chunk(stack: Stack) -> None:
    chunks = list(stack.client.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True, stream_options={"include_usage": True}))  # type: ignore[arg-type]
    assert chunks[-1].choices == [] and chunks[-1].usage is not None
    assert all(c.usage is None for c in chunks[:-1])
    deltas = [c.choices[0].delta for c in chunks[:-1]]
    assert deltas[0].role == "assistant"
    assert "".join(getattr(d, "reasoning_content", None) or "" for d in deltas) == "Weighing the question."
    assert "".join(d.content or "" for d in deltas) == " w3 w2 w1"
    assert chunks[-2].choices[0].finish_reason == "stop"
    sent = _body(stack.fake.seen[-1])
    assert sent["streaming"] is True and sent["sampling_param_exclude_input_from_output"] is True
    usage = chunks[-1].usage
    assert (usage.prompt_tokens, usage.completion_tokens, usage.total_tokens) == (7, 8, 15)
    labels = {"api": "chat", "model": MODEL, "revision": "rev1"}
    assert stack.sample("deepseek_frontend_time_to_first_token_seconds_count", **labels) == 1
    # 7 pieces, 2 per response: 4 responses, and the gaps between them
    assert stack.sample("deepseek_frontend_inter_token_latency_seconds_count", **labels) == 3


def test_a_streamed_completion_without_include_usage_has_no_usage_chunk(stack: Stack) -> None:
    chunks = list(stack.client.completions.create(model=MODEL, prompt="w1 w2 w3", max_tokens=2, stream=True))
    assert all(c.choices and c.usage is None for c in chunks)
    assert "".join(c.choices[0].text for c in chunks) == " w3 w2"
    assert chunks[-1].choices[0].finish_reason == "length"


def test_a_stream_from_a_model_that_is_not_decoupled_is_one_response(checkpoint: Path) -> None:
    s = Stack(checkpoint, FakeTriton(decoupled=False), decoupled=False)
    try:
        chunks = list(s.client.chat.completions.create(model=MODEL, messages=QUESTION, stream=True))  # type: ignore[arg-type]
        assert "".join(c.choices[0].delta.content or "" for c in chunks) == " w3 w2 w1"
        assert s.fake.seen[-1]["path"].endswith("/generate") and "streaming" not in _body(s.fake.seen[-1])
    finally:
        s.close()


@pytest.mark.parametrize(("kwargs", "param"), [
    ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
    ({"tool_choice": "auto"}, "tool_choice"),
    ({"response_format": {"type": "json_object"}}, "response_format"),
    ({"logit_bias": {"1": 5}}, "logit_bias"),
    ({"logprobs": True}, "logprobs"),
    ({"n": 2}, "n"),
    ({"extra_body": {"top_logprobs": 2}}, "top_logprobs"),
    ({"extra_body": {"functions": [{"name": "f"}]}}, "functions"),
    ({"extra_body": {"function_call": "auto"}}, "function_call"),
    ({"extra_body": {"audio": {"voice": "alloy", "format": "wav"}}}, "audio"),
    ({"extra_body": {"modalities": ["text", "audio"]}}, "modalities"),
    ({"extra_body": {"prediction": {"type": "content", "content": "x"}}}, "prediction"),
    ({"extra_body": {"parallel_tool_calls": False}}, "parallel_tool_calls"),
    ({"extra_body": {"store": True}}, "store"),
    ({"extra_body": {"no_such_field": 1}}, "no_such_field"),
])
def test_each_chat_field_not_served_is_a_400_naming_it(stack: Stack, kwargs: dict[str, Any], param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client.chat.completions.create(model=MODEL, messages=QUESTION, **kwargs)  # type: ignore[arg-type]
    assert caught.value.status_code == 400 and caught.value.param == param
    assert stack.fake.seen == []  # refused before it reached Triton


@pytest.mark.parametrize(("kwargs", "param"), [({"suffix": "x"}, "suffix"), ({"echo": True}, "echo"),
                                               ({"best_of": 2}, "best_of"), ({"logprobs": 1}, "logprobs")])
def test_each_completions_field_not_served_is_a_400_naming_it(stack: Stack, kwargs: dict[str, Any],
                                                              param: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client.completions.create(model=MODEL, prompt="w1", **kwargs)
    assert caught.value.param == param


def test_a_request_longer_than_the_context_is_refused_before_the_engine(stack: Stack) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client.chat.completions.create(model=MODEL, messages=QUESTION, max_tokens=60)  # type: ignore[arg-type]
    error = caught.value
    assert (error.code, error.param) == ("context_length_exceeded", "messages")
    assert ("This model's maximum context length is 64 tokens. However, you requested 67 tokens (7 in the "
            "messages, 60 in the completion).") in str(error)
    with pytest.raises(openai.BadRequestError) as caught:
        stack.client.completions.create(model=MODEL, prompt=" ".join(["w1"] * 70))
    assert caught.value.code == "context_length_exceeded" and caught.value.param == "prompt"
    assert stack.fake.seen == []
    stack.client.completions.create(model=MODEL, prompt=" ".join(["w1"] * 40))  # the default shrinks to fit
    assert _body(stack.fake.seen[-1])["sampling_param_max_tokens"] == 64 - 41


def test_models_and_an_unknown_model(stack: Stack) -> None:
    assert [m.id for m in stack.client.models.list()] == [MODEL]
    with pytest.raises(openai.NotFoundError) as caught:
        stack.client.chat.completions.create(model="gpt-4o", messages=QUESTION)  # type: ignore[arg-type]
    assert caught.value.param == "model"


def test_engine_failures_reach_the_openai_client_and_count_as_failures(stack: Stack) -> None:
    with pytest.raises(openai.InternalServerError):  # before any answer: an error status
        stack.client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "FAIL_NOW"}])
    with pytest.raises(openai.APIError, match="injected fault midway"):  # inside the 200 stream: the error event
        list(stack.client.chat.completions.create(model=MODEL, stream=True,
                                                  messages=[{"role": "user", "content": "FAIL_MIDWAY w1"}]))
    labels = {"api": "chat", "model": MODEL, "revision": "rev1"}
    assert stack.sample("deepseek_frontend_request_failures_total", reason="http_5xx", **labels) == 1
    assert stack.sample("deepseek_frontend_request_failures_total", reason="error_in_200", **labels) == 1
    assert stack.sample("deepseek_frontend_requests_total", code="200", **labels) == 1


def test_no_openai_turns_v1_off_and_keeps_tritons_routes(checkpoint: Path) -> None:
    s = Stack(checkpoint, FakeTriton(), openai=False)
    try:
        for method, path in (("GET", "/v1/models"), ("POST", "/v1/chat/completions"), ("POST", "/v1/completions")):
            r = requests.request(method, f"{s.url}{path}", json={"prompt": "x"}, timeout=10)
            assert r.status_code == 404 and "--no-openai" in r.json()["error"]["message"]
        r = requests.post(f"{s.url}/v2/models/tensorrt_llm/generate", json={"text_input": "w1"}, timeout=10)
        assert r.status_code == 200 and r.json()["text_output"] == "w1 w1"
    finally:
        s.close()


# ------------------------------------------------------------------------------------------------ Triton's API

@pytest.mark.parametrize(("method", "path", "body", "api"), [
    ("GET", "/v2", None, "other"),
    ("GET", "/v2/health/live", None, "other"),
    ("GET", "/v2/models/tensorrt_llm?x=1&y=%2F", None, "other"),
    ("GET", "/v2/models/tensorrt_llm/versions/1/config", None, "other"),
    ("POST", "/v2/repository/index", b'{"ready": true}', "other"),
    ("POST", "/v2/repository/models/tensorrt_llm/load", b"{}", "other"),
    ("DELETE", "/v2/models/x/trace/setting", None, "other"),
    ("POST", "/v2/models/tensorrt_llm/generate", b'{"text_input": "w1 w2"}', "generate"),
    ("POST", "/v2/models/tensorrt_llm/versions/1/generate_stream", b'{"text_input": "w1", "streaming": true}',
     "generate_stream"),
    ("POST", "/v2/models/tensorrt_llm/infer",
     b'{"inputs": [{"name": "text_input", "datatype": "BYTES", "shape": [1], "data": ["w1"]}]}', "infer"),
])
def test_every_route_is_forwarded_unchanged_and_counted(stack: Stack, method: str, path: str, body: bytes | None,
                                                       api: str) -> None:
    headers = {"X-Request-Id": "abc", "Connection": "keep-alive, X-Hop", "X-Hop": "dropped",
               "Content-Type": "application/json"}
    direct = requests.request(method, f"{stack.triton}{path}", data=body, headers=headers, timeout=10)
    via = requests.request(method, f"{stack.url}{path}", data=body, headers=headers, timeout=10)
    first, second = stack.fake.seen[-2:]
    assert (second["method"], second["path"], second["body"]) == (method, path, body or b"")
    assert second["headers"]["X-Request-Id"] == "abc" and "X-Hop" not in second["headers"]
    assert second["headers"].get("Content-Type") == first["headers"].get("Content-Type")
    assert via.status_code == direct.status_code == 200
    if api == "other":
        assert via.headers["X-Fake-Triton"] == "1"
        if via.content:  # the echo of what arrived: Host and the hop-by-hop headers differ
            assert {**via.json(), "headers": {}} == {**direct.json(), "headers": {}}
    else:
        assert via.content == direct.content
    assert stack.sample("deepseek_frontend_requests_total", api=api, code="200") == 1


def test_generate_stream_passes_events_through_and_counts_tokens_with_the_echo_left_out(stack: Stack) -> None:
    request = {"text_input": "w1 w2 w3", "streaming": True, "return_finish_reason": True}  # echoed (the default)
    direct = requests.post(f"{stack.triton}/v2/models/tensorrt_llm/generate_stream", json=request, timeout=10)
    via = requests.post(f"{stack.url}/v2/models/tensorrt_llm/generate_stream", json=request, timeout=10,
                        stream=True)
    assert via.headers["Content-Type"].startswith("text/event-stream")
    assert b"".join(via.iter_content(None)) == direct.content
    events = [json.loads(line[len(b"data: "):]) for line in direct.content.split(b"\n\n") if line]
    assert events[-1]["text_output"] == "w1 w2 w3 w3 w2 w1"  # cumulative, prompt echoed
    labels = {"api": "generate_stream", "model": MODEL, "revision": "rev1"}
    assert stack.sample("deepseek_frontend_prompt_tokens_total", **labels) == 1 + 3
    assert stack.sample("deepseek_frontend_output_tokens_total", **labels) == 3  # the echo not counted
    assert stack.sample("deepseek_frontend_time_to_first_token_seconds_count", **labels) == 1
    assert stack.sample("deepseek_frontend_inter_token_latency_seconds_count", **labels) == len(events) - 1
    plain = requests.post(f"{stack.url}/v2/models/tensorrt_llm/generate", timeout=10,
                          json={"text_input": "w1 w2", "sampling_param_exclude_input_from_output": True})
    assert plain.json()["text_output"] == " w2 w1"
    assert stack.sample("deepseek_frontend_output_tokens_total", api="generate") == 2


@pytest.mark.parametrize(("path", "prompt", "status", "reason"), [
    ("generate_stream", "FAIL_MIDWAY w1", 200, "error_in_200"),  # an error event after a response
    ("generate_stream", "FAIL_NOW", 400, "engine_error"),  # the model's error as the first response: Triton's 400
    ("generate", "ERROR_IN_200", 200, "error_in_200"),  # a 200 answer with an error field
    ("generate", "FAIL_NOW", 400, "engine_error"),
])
def test_an_error_inside_a_200_counts_as_a_failure(stack: Stack, path: str, prompt: str, status: int,
                                                   reason: str) -> None:
    r = requests.post(f"{stack.url}/v2/models/tensorrt_llm/{path}", timeout=10,
                      json={"text_input": prompt, "streaming": path == "generate_stream"})
    assert r.status_code == status and b"injected fault" in r.content
    assert stack.sample("deepseek_frontend_request_failures_total", api=path, reason=reason) == 1
    assert stack.sample("deepseek_frontend_request_failures_total", api=path) == 1
    assert stack.sample("deepseek_frontend_requests_total", api=path, code=str(status)) == 1


def test_a_request_triton_itself_refuses_is_the_clients_and_an_engine_failure_through_infer_is_not(
        stack: Stack) -> None:
    refused = requests.post(f"{stack.url}/v2/models/tensorrt_llm/generate", timeout=10,
                            json={"text_input": "w1", "streaming": True})  # a decoupled model's stream on generate
    assert refused.status_code == 400 and b"Error generating request" not in refused.content
    assert stack.sample("deepseek_frontend_request_failures_total", api="generate", reason="http_4xx") == 1
    failed = requests.post(f"{stack.url}/v2/models/tensorrt_llm/infer", timeout=10, json={"inputs": []})
    assert failed.status_code == 400 and b"Error generating request" in failed.content
    assert stack.sample("deepseek_frontend_request_failures_total", api="infer", reason="engine_error") == 1


def test_health(stack: Stack) -> None:
    assert requests.get(f"{stack.url}/health/live", timeout=10).status_code == 200
    assert requests.get(f"{stack.url}/health/ready", timeout=10).status_code == 200
    assert stack.fake.seen[-1]["path"] == "/v2/health/ready"
    stack.fake.ready = False
    assert requests.get(f"{stack.url}/health/ready", timeout=10).status_code == 503
    assert requests.get(f"{stack.url}/metrics", timeout=10).status_code == 404  # on the metrics port only


# ------------------------------------------------------------------------------------------------ gauges, drain

def test_the_inference_extension_gauges_follow_a_request(checkpoint: Path) -> None:
    s = Stack(checkpoint, FakeTriton(stream_interval=2))
    first, last = s.event(), s.event()
    s.fake.hold_first, s.fake.hold_last = first, last
    names = {family.name for family in text_string_to_metric_families(
        requests.get(f"http://127.0.0.1:{s.metrics_port}/metrics", timeout=10).text)}
    assert {"nv_trt_llm_request_metrics", "deepseek_frontend_requests_in_flight",
            "deepseek_frontend_requests_waiting_first_token"} <= names
    assert not any("kv_cache" in name for name in names)  # the llmapi model reports no KV-cache use
    done: list[Any] = []
    client = threading.Thread(target=lambda: done.append(list(s.client.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True))))  # type: ignore[arg-type]
    client.start()
    try:
        gauge = "nv_trt_llm_request_metrics"
        _wait_until(lambda: s.sample(gauge, request_type="waiting") == 1)
        assert s.sample(gauge, request_type="scheduled") == 0
        assert s.sample("deepseek_frontend_requests_waiting_first_token", api="chat") == 1
        assert s.sample("deepseek_frontend_requests_in_flight", api="chat") == 1
        s.release(first)
        _wait_until(lambda: s.sample(gauge, request_type="scheduled") == 1)
        assert s.sample(gauge, request_type="waiting") == 0
        s.release(last)
        client.join(timeout=30)
        assert done and s.sample(gauge, request_type="scheduled") == 0
        assert s.sample("deepseek_frontend_requests_in_flight", api="chat") == 0
    finally:
        s.release(first)
        s.release(last)
        client.join(timeout=30)
        s.close()


def test_drain_stops_accepting_and_finishes_the_request_in_flight(checkpoint: Path) -> None:
    s = Stack(checkpoint, FakeTriton(stream_interval=2))
    last = s.event()
    s.fake.hold_last = last
    done: list[Any] = []
    client = threading.Thread(target=lambda: done.append(list(s.client.chat.completions.create(
        model=MODEL, messages=QUESTION, stream=True))))  # type: ignore[arg-type]
    client.start()
    try:
        _wait_until(lambda: s.sample("nv_trt_llm_request_metrics", request_type="scheduled") == 1)
        drained = asyncio.run_coroutine_threadsafe(s.frontend.drain(30), s.loop)
        _wait_until(lambda: s.frontend.draining)
        with pytest.raises(requests.ConnectionError):  # no new connection is accepted
            _wait_until(lambda: requests.get(f"{s.url}/health/live", timeout=5).status_code != 200)
        assert not drained.done()  # still waiting for the answer in flight
        s.release(last)
        assert drained.result(timeout=30) == 0
        client.join(timeout=30)
        assert "".join(c.choices[0].delta.content or "" for c in done[0]) == " w3 w2 w1"
        assert s.sample("deepseek_frontend_requests_total", api="chat", code="200") == 1
    finally:
        s.release(last)
        client.join(timeout=30)
        s.close()


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def test_sigterm_exits_zero_at_once_despite_an_idle_keep_alive_connection(checkpoint: Path) -> None:
    """A gateway keeps connections open: an idle one must not hold a terminating pod until SIGKILL."""
    port, metrics_port = _free_port(), _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "deepseek_operator.frontend", "--host", "127.0.0.1",
                             "--port", str(port), "--metrics-port", str(metrics_port), "--served-model", "m",
                             "--revision", "r", "--checkpoint", str(checkpoint), "--triton-url", "http://127.0.0.1:1",
                             "--max-seq-len", "64"],
                            env={"PYTHONPATH": str(ROOT / "operator"), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with requests.Session() as session:
            def up() -> bool:
                try:
                    return session.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
                except requests.ConnectionError:
                    return proc.poll() is not None
            _wait_until(up)
            assert session.get(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5).status_code == 200
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=20) == 0, proc.stdout.read() if proc.stdout else ""
    finally:
        proc.kill()
        proc.wait()
