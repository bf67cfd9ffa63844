"""The OpenAI frontend: R1's reasoning split (whole and streamed), prompts, the request mapping onto the
`llmapi` model's inputs, and the HTTP behaviour against a local generate endpoint (the real Triton is in
tests/e2e/test_serving.py)."""

from __future__ import annotations

import itertools
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
import requests
from hypothesis import given
from hypothesis import strategies as st

from deepseek_operator.frontend import reasoning
from deepseek_operator.frontend.chat import ASSISTANT, BOS, EOS, USER, ChatFormat, PromptError
from deepseek_operator.frontend.server import ClientError, FrontendServer, Settings, _deltas, triton_request


@pytest.mark.parametrize(("text", "thought", "answer"), [
    ("weigh the options\n</think>\n\nThe answer is 4.", "weigh the options\n", "The answer is 4."),
    ("<think>\nhmm</think>4", "\nhmm", "4"),
    ("thinking, cut by max_tokens", "thinking, cut by max_tokens", ""),
    ("</think>just the answer", "", "just the answer"),
])
def test_split_keeps_the_reasoning_apart_from_the_answer(text: str, thought: str, answer: str) -> None:
    assert reasoning.split(text) == (thought, answer)


def _streamed(pieces: list[str]) -> tuple[str, str]:
    splitter = reasoning.StreamSplitter()
    thought, answer = "", ""
    for piece in pieces:
        t, a = splitter.feed(piece)
        thought, answer = thought + t, answer + a
    t, a = splitter.finish()
    return thought + t, answer + a


def test_a_tag_split_across_pieces_is_still_found() -> None:
    assert _streamed(["<th", "ink>a b </th", "ink", ">\n\nc", " d"]) == ("a b ", "c d")
    assert _streamed(["a <", "/", "b> c"]) == ("a </b> c", "")


@given(st.text(alphabet="ab<>/thinkT\n ", max_size=40), st.lists(st.integers(min_value=0, max_value=40), max_size=8))
def test_streamed_split_equals_the_whole_split_for_any_chunking(text: str, cuts: list[int]) -> None:
    bounds = sorted({0, len(text), *(c for c in cuts if c <= len(text))})
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert _streamed(pieces) == reasoning.split(text)


def test_without_a_chat_template_the_prompt_is_r1s_turn_format(tmp_path: Path) -> None:
    chat = ChatFormat.from_checkpoint(tmp_path)
    prompt = chat.prompt([{"role": "system", "content": "Be brief."}, {"role": "user", "content": "2+2?"},
                          {"role": "assistant", "content": "<think>x</think>4"}, {"role": "user", "content": "3+3?"}])
    assert prompt == f"{BOS}Be brief.{USER}2+2?{ASSISTANT}4{EOS}{USER}3+3?{ASSISTANT}<think>\n"


def test_the_checkpoints_chat_template_is_rendered_in_a_sandbox(tmp_path: Path) -> None:
    template = ("{{ bos_token }}{% for m in messages %}[{{ m.role }}]{{ m.content }}{% endfor %}"
                "{% if add_generation_prompt %}[assistant]{% endif %}")
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": template, "bos_token": {"content": "<s>"}, "eos_token": "</s>"}))
    chat = ChatFormat.from_checkpoint(tmp_path)
    assert chat.prompt([{"role": "user", "content": [{"type": "text", "text": "hi"}]}]) == "<s>[user]hi[assistant]"
    (tmp_path / "tokenizer_config.json").write_text(json.dumps(
        {"chat_template": "{{ ''.__class__.__mro__ }}"}))
    with pytest.raises(PromptError, match="chat template failed"):
        ChatFormat.from_checkpoint(tmp_path).prompt([{"role": "user", "content": "hi"}])


@pytest.mark.parametrize("messages", [None, [], [{"role": "tool", "content": "x"}],
                                      [{"role": "user", "content": [{"type": "image_url"}]}]])
def test_messages_that_cannot_make_a_prompt_are_refused(messages: Any, tmp_path: Path) -> None:
    with pytest.raises(PromptError):
        ChatFormat.from_checkpoint(tmp_path).prompt(messages)


def _settings(tmp_path: Path, decoupled: bool = True, url: str = "http://127.0.0.1:1") -> Settings:
    return Settings(triton_url=url, triton_model="tensorrt_llm", served_model="deepseek-r1",
                    chat=ChatFormat.from_checkpoint(tmp_path), reasoning=True, decoupled=decoupled,
                    default_max_tokens=256)


def test_openai_fields_become_the_llmapi_models_inputs(tmp_path: Path) -> None:
    body = {"max_completion_tokens": 64, "max_tokens": 9, "temperature": 0.6, "top_p": 0.95, "seed": 7,
            "stop": "###", "presence_penalty": 0.5, "top_k": 40}
    assert triton_request(body, "p", _settings(tmp_path), stream=True) == {
        "text_input": "p", "sampling_param_max_tokens": 64, "return_finish_reason": True,
        "sampling_param_temperature": 0.6, "sampling_param_top_p": 0.95, "sampling_param_presence_penalty": 0.5,
        "sampling_param_top_k": 40, "sampling_param_seed": 7, "sampling_param_stop": ["###"], "streaming": True}
    plain = triton_request({}, "p", _settings(tmp_path, decoupled=False), stream=True)
    assert plain["sampling_param_max_tokens"] == 256 and "streaming" not in plain


@pytest.mark.parametrize(("body", "param"), [({"n": 2}, "n"), ({"temperature": 3}, "temperature"),
                                             ({"max_tokens": 0}, "max_tokens"), ({"stop": [""]}, "stop"),
                                             ({"seed": -1}, "seed")])
def test_out_of_range_fields_are_refused_naming_the_field(body: dict[str, Any], param: str, tmp_path: Path) -> None:
    with pytest.raises(ClientError) as caught:
        triton_request(body, "p", _settings(tmp_path), stream=False)
    assert caught.value.param == param


def test_streamed_responses_carrying_the_text_so_far_become_deltas() -> None:
    events = [{"text_output": "a"}, {"text_output": "a b"}, {"text_output": "a b c", "finish_reason": "length"}]
    assert [d for d, _ in _deltas(iter(events))] == ["a", " b", " c"]


class _Generate(BaseHTTPRequestHandler):
    """Triton's generate extension as far as the frontend calls it: answers, streams, or fails."""

    seen: ClassVar[list[dict[str, Any]]] = []

    def log_message(self, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.seen.append(body)
        if "fail" in body["text_input"]:
            data = json.dumps({"error": "injected fault"}).encode()
            self.send_response(400)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        text = "step one</think>\n\nfour"
        if self.path.endswith("generate_stream"):
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.end_headers()
            for end in (4, 9, 14, len(text)):
                self.wfile.write(f"data: {json.dumps({'text_output': text[:end]})}\n\n".encode())
            return
        data = json.dumps({"text_output": text, "finish_reason": "stop"}).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


@pytest.fixture
def frontend(tmp_path: Path) -> Iterator[str]:
    upstream = ThreadingHTTPServer(("127.0.0.1", 0), _Generate)
    threading.Thread(target=upstream.serve_forever, daemon=True).start()
    server = FrontendServer(("127.0.0.1", 0), _settings(tmp_path, url=f"http://127.0.0.1:{upstream.server_port}"))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()
    server.server_close()
    upstream.shutdown()
    upstream.server_close()


def test_chat_answers_with_the_reasoning_apart(frontend: str) -> None:
    answer = requests.post(f"{frontend}/v1/chat/completions", timeout=10,
                           json={"model": "deepseek-r1", "messages": [{"role": "user", "content": "2+2?"}]}).json()
    assert answer["object"] == "chat.completion"
    assert answer["choices"][0]["message"] == {"role": "assistant", "content": "four",
                                               "reasoning_content": "step one"}
    assert _Generate.seen[-1]["text_input"].endswith(f"{USER}2+2?{ASSISTANT}<think>\n")


def test_a_streamed_chat_sends_reasoning_then_content_then_done(frontend: str) -> None:
    response = requests.post(f"{frontend}/v1/chat/completions", timeout=10, stream=True,
                             json={"messages": [{"role": "user", "content": "2+2?"}], "stream": True})
    events = [line[len("data: "):] for line in response.iter_lines(decode_unicode=True) if line]
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e)["choices"][0] for e in events[:-1]]
    thought = "".join(c["delta"].get("reasoning_content", "") for c in chunks)
    content = "".join(c["delta"].get("content", "") for c in chunks)
    assert (thought, content) == ("step one", "four")
    assert chunks[-1]["finish_reason"] == "stop"


def test_failures_are_openai_errors_with_the_status_clients_count(frontend: str) -> None:
    wrong_model = requests.post(f"{frontend}/v1/completions", json={"model": "gpt-4", "prompt": "x"}, timeout=10)
    assert wrong_model.status_code == 404 and wrong_model.json()["error"]["param"] == "model"
    failed = requests.post(f"{frontend}/v1/completions", json={"prompt": "fail"}, timeout=10)
    assert failed.status_code == 500 and "injected fault" in failed.json()["error"]["message"]
    streamed = requests.post(f"{frontend}/v1/completions", json={"prompt": "fail", "stream": True}, timeout=10)
    assert streamed.status_code == 500
    metrics = requests.get(f"{frontend}/metrics", timeout=10).text
    assert 'deepseek_frontend_requests_total{code="500",endpoint="completions"} 2.0' in metrics
    assert 'deepseek_frontend_requests_total{code="404",endpoint="completions"} 1.0' in metrics


def test_sigterm_stops_the_frontend_at_once_despite_an_idle_keep_alive_connection(tmp_path: Path) -> None:
    """A gateway keeps connections to its backends open: they must not hold a terminating pod until SIGKILL."""
    import signal
    import socket
    import subprocess
    import sys
    import time

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    root = Path(__file__).resolve().parents[2]
    proc = subprocess.Popen([sys.executable, "-m", "deepseek_operator.frontend", "--host", "127.0.0.1",
                             "--port", str(port), "--served-model", "m", "--checkpoint", str(tmp_path)],
                            env={"PYTHONPATH": str(root / "operator"), "PATH": "/usr/bin:/bin"},
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        with requests.Session() as session:
            for _ in range(100):
                try:
                    assert session.get(f"http://127.0.0.1:{port}/health/live", timeout=1).status_code == 200
                    break
                except requests.ConnectionError:
                    time.sleep(0.05)
            began = time.monotonic()
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0
            assert time.monotonic() - began < 3
    finally:
        proc.kill()
        proc.wait()
