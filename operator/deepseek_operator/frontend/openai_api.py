"""OpenAI's chat and completions requests, checked and mapped onto the `llmapi` model's inputs; the answers in
OpenAI's shapes. Pure.

A field this server does not serve is refused with a 400 naming it (`param`), never ignored: a client that asks
for tools, logprobs or JSON output must learn it does not get them. Accepted: model, messages (chat) / prompt
(completions), max_tokens, max_completion_tokens (chat), temperature, top_p, frequency_penalty, presence_penalty,
stop, seed, stream, stream_options (include_usage; include_obfuscation is accepted and ignored: there is nothing
to pad), user, n=1, best_of=1 (completions), top_k (an extension vLLM and TensorRT-LLM also take), `metadata`
(tags that OpenAI keeps with a stored completion: harmless, ignored) and `store` only when false (nothing is
stored here; a client asking for it is told). A known field set to null counts as not given; an unknown one is
refused whatever its value. `model` may be left out (this server serves one model).
"""

from __future__ import annotations

from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from deepseek_operator.frontend.chat import ChatFormat, PromptError

CHAT, COMPLETIONS = "chat", "completions"

COMMON = frozenset({"model", "max_tokens", "temperature", "top_p", "frequency_penalty", "presence_penalty", "stop",
                    "seed", "stream", "stream_options", "user", "n", "top_k", "metadata", "store"})
ACCEPTED = {CHAT: COMMON | {"messages", "max_completion_tokens", "logprobs", "top_logprobs"},
            COMPLETIONS: COMMON | {"prompt", "best_of", "echo", "logprobs"}}
# Fields of OpenAI's API this server knows and does not serve: refused with a reason (when not null).
NOT_SERVED = {
    "tools": "tools (function calling) are not supported",
    "tool_choice": "tools (function calling) are not supported",
    "functions": "functions (function calling) are not supported",
    "function_call": "functions (function calling) are not supported",
    "parallel_tool_calls": "tools (function calling) are not supported",
    "response_format": "response_format (structured output) is not supported",
    "logit_bias": "logit_bias is not supported",
    "audio": "audio output is not supported",
    "modalities": "only text output is supported",
    "prediction": "predicted outputs are not supported",
    "suffix": "suffix (insertion) is not supported",
    "reasoning_effort": "reasoning_effort is not supported: DeepSeek-R1 always reasons",
    "service_tier": "service tiers are not supported",
    "web_search_options": "web search is not supported",
    "verbosity": "verbosity is not supported",
    "prompt_cache_key": "prompt_cache_key is not supported",
    "safety_identifier": "safety_identifier is not supported",
}
MESSAGE_KEYS = frozenset({"role", "content", "name", "reasoning_content", "refusal", "annotations", "audio",
                          "tool_calls", "function_call"})
MESSAGE_NOT_SERVED = ("tool_calls", "function_call", "audio")


class ClientError(Exception):
    """A request this frontend refuses (OpenAI's `invalid_request_error`)."""

    def __init__(self, message: str, status: int = HTTPStatus.BAD_REQUEST, param: str | None = None,
                 code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.param, self.code = status, param, code


def error_body(message: str, status: int, param: str | None = None, code: str | None = None) -> dict[str, Any]:
    kind = "invalid_request_error" if status < 500 else "server_error"
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


@dataclass(frozen=True)
class Request:
    """A checked OpenAI request: the prompt to send (before BOS handling) and what the answer needs."""

    endpoint: str
    prompt: str
    max_tokens: int | None  # None: not given (the default applies, within what the context leaves)
    stream: bool
    include_usage: bool
    sampling: dict[str, Any]  # the llmapi model's sampling_param_* inputs


def _positive_int(body: dict[str, Any], name: str) -> int | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ClientError(f"{name} must be an integer >= 1", param=name)
    return value


def _number(body: dict[str, Any], name: str, low: float, high: float) -> float | None:
    value = body.get(name)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not low <= value <= high:
        raise ClientError(f"{name} must be a number in [{low}, {high}]", param=name)
    return float(value)


def _refuse_unserved(body: dict[str, Any], endpoint: str) -> None:
    for key, value in body.items():
        if key in NOT_SERVED:
            if value is not None:
                raise ClientError(f"{NOT_SERVED[key]} by this server", param=key)
        elif key not in ACCEPTED[endpoint]:
            raise ClientError(f"Unrecognized request argument supplied: {key}", param=key)
    if body.get("n") not in (None, 1):
        raise ClientError("only n=1 is supported", param="n")
    if body.get("store") not in (None, False):
        raise ClientError("store is not supported: this server stores no completion", param="store")
    if (metadata := body.get("metadata")) is not None and not isinstance(metadata, dict):
        raise ClientError("metadata must be an object", param="metadata")
    if endpoint == CHAT:
        if body.get("logprobs") not in (None, False):
            raise ClientError("logprobs are not supported by this server", param="logprobs")
        if body.get("top_logprobs") not in (None, 0):
            raise ClientError("top_logprobs are not supported by this server", param="top_logprobs")
    else:
        if body.get("logprobs") is not None:
            raise ClientError("logprobs are not supported by this server", param="logprobs")
        if body.get("echo") not in (None, False):
            raise ClientError("echo is not supported by this server", param="echo")
        if body.get("best_of") not in (None, 1):
            raise ClientError("only best_of=1 is supported", param="best_of")


def _messages(messages: Any) -> None:
    if not isinstance(messages, list):
        return  # ChatFormat says what is wrong
    for n, message in enumerate(messages):
        if not isinstance(message, dict):
            continue
        for key, value in message.items():
            if key not in MESSAGE_KEYS:
                raise ClientError(f"Unrecognized message field: {key}", param=f"messages[{n}].{key}")
            if key in MESSAGE_NOT_SERVED and value:
                raise ClientError(f"{key} in messages are not supported by this server",
                                  param=f"messages[{n}].{key}")


def parse(endpoint: str, body: Any, served_model: str, chat: ChatFormat) -> Request:
    """The checked request, or ClientError naming the field."""
    if not isinstance(body, dict):
        raise ClientError("request body must be a JSON object")
    _refuse_unserved(body, endpoint)
    model = body.get("model")
    if model is not None and model != served_model:  # absent: the one model served here
        raise ClientError(f"The model `{model}` does not exist; this server serves `{served_model}`",
                          HTTPStatus.NOT_FOUND, "model", "model_not_found")
    if endpoint == CHAT:
        _messages(body.get("messages"))
        try:
            prompt = chat.prompt(body.get("messages"))
        except PromptError as err:
            raise ClientError(str(err), param="messages") from err
        max_tokens = _positive_int(body, "max_completion_tokens") or _positive_int(body, "max_tokens")
    else:
        given = body.get("prompt")
        if isinstance(given, list) and len(given) == 1:
            given = given[0]
        if not isinstance(given, str):
            raise ClientError("prompt must be a string (one prompt per request; no token ids)", param="prompt")
        prompt = given
        max_tokens = _positive_int(body, "max_tokens")
    stream = body.get("stream")
    if stream not in (None, True, False):
        raise ClientError("stream must be a boolean", param="stream")
    options = body.get("stream_options")
    include_usage = False
    if options is not None:
        if not stream:
            raise ClientError("The 'stream_options' parameter is only allowed when 'stream' is enabled.",
                              param="stream_options")
        if not isinstance(options, dict):
            raise ClientError("stream_options must be an object", param="stream_options")
        for key, value in options.items():
            if key not in ("include_usage", "include_obfuscation") or not isinstance(value, bool | None):
                raise ClientError(f"stream_options.{key} is not supported", param=f"stream_options.{key}")
        include_usage = options.get("include_usage") is True
    return Request(endpoint, prompt, max_tokens, stream is True, include_usage, sampling(body))


def sampling(body: dict[str, Any]) -> dict[str, Any]:
    """The `sampling_param_*` inputs of the llmapi model (its config.pbtxt) for OpenAI's sampling fields."""
    out: dict[str, Any] = {}
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0), ("frequency_penalty", -2.0, 2.0),
                            ("presence_penalty", -2.0, 2.0)):
        value = _number(body, name, low, high)
        if value is not None:
            out[f"sampling_param_{name}"] = value
    if (top_k := _positive_int(body, "top_k")) is not None:
        out["sampling_param_top_k"] = top_k
    if (seed := body.get("seed")) is not None:
        if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
            raise ClientError("seed must be an integer >= 0", param="seed")
        out["sampling_param_seed"] = seed
    stop = body.get("stop")
    if stop is not None:
        stops = [stop] if isinstance(stop, str) else stop
        if not isinstance(stops, list) or not all(isinstance(s, str) and s for s in stops) or len(stops) > 4:
            raise ClientError("stop must be a string or a list of up to 4 strings", param="stop")
        out["sampling_param_stop"] = stops
    return out


def context_length_error(endpoint: str, limit: int, prompt_tokens: int, max_tokens: int | None) -> ClientError:
    """OpenAI's refusal of a prompt that, with the answer asked for, does not fit the model's context."""
    where = "messages" if endpoint == CHAT else "prompt"
    if max_tokens is None:
        message = (f"This model's maximum context length is {limit} tokens. However, your {where} resulted in "
                   f"{prompt_tokens} tokens. Please reduce the length of the {where}.")
    else:
        message = (f"This model's maximum context length is {limit} tokens. However, you requested "
                   f"{prompt_tokens + max_tokens} tokens ({prompt_tokens} in the {where}, {max_tokens} in the "
                   f"completion). Please reduce the length of the {where} or completion.")
    return ClientError(message, param=where, code="context_length_exceeded")


def triton_inputs(request: Request, prompt: str, max_tokens: int, streaming: bool) -> dict[str, Any]:
    """The `llmapi` model's inputs (its config.pbtxt: `text_input`, `streaming`, `sampling_param_*`). The prompt is
    never echoed back: upstream's helpers.py defaults `exclude_input_from_output` to false, which would put the
    prompt before every answer (and before the `</think>` split)."""
    out: dict[str, Any] = {"text_input": prompt, "sampling_param_max_tokens": max_tokens,
                           "sampling_param_exclude_input_from_output": True, "return_finish_reason": True,
                           **request.sampling}
    if streaming:
        out["streaming"] = True
    return out


def usage(prompt_tokens: int | None, completion_tokens: int | None) -> dict[str, int] | None:
    if prompt_tokens is None or completion_tokens is None:
        return None
    return {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens}
