"""The frontend's pure parts: R1's reasoning split (whole and streamed), prompts, the OpenAI request checks and
their mapping onto the `llmapi` model's inputs, Triton's events and cumulative texts, token counts, and the
per-request tracker on a fake clock. The HTTP behaviour is in test_frontend_http.py."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import generate_latest

from deepseek_operator.frontend import openai_api, reasoning
from deepseek_operator.frontend.chat import ASSISTANT, BOS, EOS, USER, ChatFormat, PromptError
from deepseek_operator.frontend.metrics import ERROR_IN_200, Metrics, Tracker
from deepseek_operator.frontend.openai_api import ClientError
from deepseek_operator.frontend.sse import Cumulative, EventLines
from deepseek_operator.frontend.tokens import TokenCounter
from tests.fake_triton import write_checkpoint


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


# ------------------------------------------------------------------------------------------------ OpenAI requests

def _parse(body: dict[str, Any], endpoint: str = openai_api.CHAT, tmp_path: Path | None = None) -> openai_api.Request:
    base = {"messages": [{"role": "user", "content": "hi"}]} if endpoint == openai_api.CHAT else {"prompt": "hi"}
    return openai_api.parse(endpoint, {"model": "r1", **base, **body}, "r1", ChatFormat(None))


def test_openai_fields_become_the_llmapi_models_inputs() -> None:
    parsed = _parse({"max_completion_tokens": 64, "max_tokens": 9, "temperature": 0.6, "top_p": 0.95, "seed": 7,
                     "stop": "###", "presence_penalty": 0.5, "top_k": 40, "stream": True, "n": 1, "user": "u",
                     "metadata": {"k": "v"}, "store": False, "logprobs": False,
                     "stream_options": {"include_usage": True}})
    assert (parsed.max_tokens, parsed.stream, parsed.include_usage) == (64, True, True)
    assert openai_api.triton_inputs(parsed, "p", 64, streaming=True) == {
        "text_input": "p", "sampling_param_max_tokens": 64, "sampling_param_exclude_input_from_output": True,
        "return_finish_reason": True, "sampling_param_temperature": 0.6, "sampling_param_top_p": 0.95,
        "sampling_param_presence_penalty": 0.5, "sampling_param_top_k": 40, "sampling_param_seed": 7,
        "sampling_param_stop": ["###"], "streaming": True}
    plain = openai_api.triton_inputs(_parse({}), "p", 256, streaming=False)
    assert plain["sampling_param_exclude_input_from_output"] is True and "streaming" not in plain


REFUSED_CHAT = [("tools", [{"type": "function", "function": {"name": "f"}}]), ("tool_choice", "auto"),
                ("functions", [{"name": "f"}]), ("function_call", "auto"), ("response_format", {"type": "json_object"}),
                ("logit_bias", {"1": 5}), ("n", 2), ("audio", {"voice": "x"}), ("modalities", ["text"]),
                ("prediction", {"type": "content", "content": "x"}), ("parallel_tool_calls", True),
                ("logprobs", True), ("top_logprobs", 2), ("store", True), ("suffix", "x"), ("best_of", 2),
                ("echo", True), ("reasoning_effort", "low"), ("made_up_field", None), ("temperature", 3),
                ("max_tokens", 0), ("stop", [""]), ("seed", -1), ("stream_options", {"include_usage": True})]
REFUSED_COMPLETIONS = [("suffix", "x"), ("echo", True), ("best_of", 2), ("logprobs", 1), ("n", 3),
                       ("max_completion_tokens", 5), ("tools", []), ("prompt", [1, 2, 3]), ("prompt", ["a", "b"])]


@pytest.mark.parametrize(("field", "value"), REFUSED_CHAT)
def test_a_chat_field_not_served_is_refused_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ClientError) as caught:
        _parse({field: value})
    assert (caught.value.status, caught.value.param) == (400, field)


@pytest.mark.parametrize(("field", "value"), REFUSED_COMPLETIONS)
def test_a_completions_field_not_served_is_refused_naming_it(field: str, value: Any) -> None:
    with pytest.raises(ClientError) as caught:
        _parse({field: value}, openai_api.COMPLETIONS)
    assert (caught.value.status, caught.value.param) == (400, field)


def test_null_known_fields_are_not_given_and_tool_calls_in_messages_are_refused() -> None:
    _parse({"tools": None, "logit_bias": None, "response_format": None, "n": None, "logprobs": None})
    _parse({"messages": [{"role": "user", "content": "hi"},
                         {"role": "assistant", "content": "x", "tool_calls": None, "refusal": None}]})
    with pytest.raises(ClientError) as caught:
        _parse({"messages": [{"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]}]})
    assert caught.value.param == "messages[0].tool_calls"
    with pytest.raises(ClientError) as caught:
        _parse({"model": "gpt-4o"})
    assert (caught.value.status, caught.value.param, caught.value.code) == (404, "model", "model_not_found")


def test_a_context_too_long_is_refused_as_openai_does() -> None:
    err = openai_api.context_length_error(openai_api.CHAT, 100, 60, 50)
    assert (err.param, err.code) == ("messages", "context_length_exceeded")
    assert str(err).startswith("This model's maximum context length is 100 tokens. However, you requested 110 "
                               "tokens (60 in the messages, 50 in the completion).")


# ------------------------------------------------------------------------------------------------ events, tokens

def test_event_lines_survive_any_chunking_and_long_lines() -> None:
    stream = b'data: {"a": 1}\n\n: comment\ndata: {"b": "' + b"x" * 100_000 + b'"}\n\ndata: [DONE]'
    for size in (1, 7, 4096, len(stream)):
        lines = EventLines()
        got = [p for i in range(0, len(stream), size) for p in lines.feed(stream[i:i + size])] + lines.finish()
        assert [len(p) for p in got] == [8, 100_009, 6]


def test_cumulative_texts_become_deltas_with_the_echo_left_out() -> None:
    text = Cumulative()
    assert [text.feed(t) for t in ("a", "a b", "a b c")] == ["a", " b", " c"] and text.text == "a b c"
    echoed = Cumulative("the prompt")
    assert [echoed.feed(t) for t in ("the prompt a", "the prompt a b")] == [" a", " b"] and echoed.text == " a b"
    assert Cumulative("not echoed").feed("x y") == "x y"


def test_tokens_are_counted_with_the_checkpoints_tokenizer_and_one_bos(tmp_path: Path) -> None:
    counter, why = TokenCounter.from_checkpoint(write_checkpoint(tmp_path))
    assert why is None and counter.add_bos
    prompt = f"{BOS}{USER}w1 w2{ASSISTANT}<think>\n"
    stripped = counter.strip_bos(prompt)
    assert stripped == f"{USER}w1 w2{ASSISTANT}<think>\n"
    assert counter.prompt_tokens(stripped) == 1 + 5  # BOS, User, w1, w2, Assistant, <think>
    assert counter.output_tokens("w1 </think>\n\nw2.") == 4
    no_bos, _ = TokenCounter.from_checkpoint(write_checkpoint(tmp_path / "b", add_bos_token=False))
    assert no_bos.strip_bos(prompt) == prompt and no_bos.prompt_tokens(stripped) == 5


def test_without_a_usable_tokenizer_nothing_is_counted(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.json").write_text('{"version": "1.0"}')  # the testbed's stand-in checkpoint
    counter, why = TokenCounter.from_checkpoint(tmp_path)
    assert why and counter.prompt_tokens("x") is None and counter.output_tokens("x") is None


# ------------------------------------------------------------------------------------------------ the tracker

def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    for family in metrics.registry.collect():
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return float(sample.value)
    raise AssertionError(f"no {name} {labels} in {generate_latest(metrics.registry).decode()}")


def test_the_tracker_counts_ttft_per_token_gaps_and_the_states_on_a_fake_clock() -> None:
    ticks = iter(float(t) for t in (0, 4, 10, 12, 13, 20))  # arrival, 3 responses, finish... (seconds)
    metrics = Metrics("r1", "rev1")
    chat = metrics.apis["chat"]
    tracker = Tracker(chat, lambda: next(ticks))
    tracker.generation_started()
    assert (_sample(metrics, "nv_trt_llm_request_metrics", request_type="waiting"), chat.in_flight) == (1, 1)
    tracker.text(stream_interval=2)  # t=4: first response, 2 tokens
    assert _sample(metrics, "nv_trt_llm_request_metrics", request_type="scheduled") == 1
    assert _sample(metrics, "deepseek_frontend_requests_waiting_first_token", api="chat") == 0
    tracker.text(stream_interval=2)  # t=10: 2 more tokens in 6 s
    tracker.text(stream_interval=2)  # t=12: the last response, 1 token (5 in all)
    tracker.finish(200, ERROR_IN_200, stream_interval=2, prompt_tokens=7, output_tokens=5)  # t=13
    labels = {"api": "chat", "model": "r1", "revision": "rev1"}
    assert _sample(metrics, "deepseek_frontend_time_to_first_token_seconds_sum", **labels) == 4
    assert _sample(metrics, "deepseek_frontend_inter_token_latency_seconds_count", **labels) == 2
    assert _sample(metrics, "deepseek_frontend_inter_token_latency_seconds_sum", **labels) == 6 / 2 + 2 / 1
    assert _sample(metrics, "deepseek_frontend_request_duration_seconds_sum", **labels) == 13
    assert _sample(metrics, "deepseek_frontend_requests_total", code="200", **labels) == 1
    assert _sample(metrics, "deepseek_frontend_request_failures_total", reason="error_in_200", **labels) == 1
    assert _sample(metrics, "deepseek_frontend_prompt_tokens_total", **labels) == 7
    assert _sample(metrics, "deepseek_frontend_output_tokens_total", **labels) == 5
    assert (chat.in_flight, chat.waiting, chat.running) == (0, 0, 0)
