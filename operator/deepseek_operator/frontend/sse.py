"""Triton's server-sent events and the `llmapi` model's cumulative texts. Pure.

Triton's `generate_stream` writes one `data: <JSON>` event per response of the model; an error is an event
`data: {"error": "..."}` inside the 200. The `llmapi` model of TensorRT-LLM 1.2 puts the text so far (the LLM
API's `CompletionOutput.text`) in each streamed response, and, unless `sampling_param_exclude_input_from_output`
is true, the prompt before it.
"""

from __future__ import annotations

import json
from typing import Any


class EventLines:
    """Splits a byte stream into SSE `data:` payloads, however the bytes are chunked. Lines have no length limit
    (a cumulative text grows with the answer, past any fixed line buffer), and a long line arriving in many chunks
    is scanned once."""

    __slots__ = ("_buffer", "_scanned")

    def __init__(self) -> None:
        self._buffer = bytearray()
        self._scanned = 0

    def feed(self, chunk: bytes) -> list[bytes]:
        buffer = self._buffer
        buffer += chunk
        payloads, start, pos = [], 0, self._scanned
        while (end := buffer.find(b"\n", pos)) >= 0:
            if buffer.startswith(b"data:", start):
                payloads.append(bytes(buffer[start + 5:end]).strip())
            start = pos = end + 1
        if start:
            del buffer[:start]
        self._scanned = len(buffer)
        return payloads

    def finish(self) -> list[bytes]:
        line = bytes(self._buffer).strip()
        self._buffer.clear()
        self._scanned = 0
        return [line[5:].strip()] if line.startswith(b"data:") else []


def parse_event(payload: bytes) -> dict[str, Any] | None:
    """An event's JSON object; None for what is not one (`[DONE]`, a comment)."""
    try:
        event = json.loads(payload)
    except ValueError:
        return None
    return event if isinstance(event, dict) else None


def text_output(event: dict[str, Any]) -> str:
    text = event.get("text_output", "")
    if isinstance(text, list):
        return "".join(str(t) for t in text)
    return text if isinstance(text, str) else str(text)


def error_of(event: dict[str, Any]) -> str | None:
    """The error a response carries (Triton's `{"error": "..."}`), if any."""
    error = event.get("error")
    if not error:
        return None
    if isinstance(error, dict):
        return str(error.get("message") or error)
    return str(error)


def finish_reason(event: dict[str, Any], default: str = "stop") -> str:
    reason = event.get("finish_reason")
    reason = reason[0] if isinstance(reason, list) and reason else reason
    return reason if reason in ("stop", "length") else default


class Cumulative:
    """The generated text of a stream of responses that each carry the text so far, with the echoed prompt (when
    the answer starts with it) left out. A response that does not extend the text so far is taken as new text."""

    __slots__ = ("_echo", "_prefix", "text")

    def __init__(self, prompt: str | None = None) -> None:
        self._echo = prompt or ""
        self._prefix = bool(self._echo)  # the prompt may still be echoed at the head of the first response
        self.text = ""

    def feed(self, text: str) -> str:
        """The new generated text in one response."""
        if self._prefix:
            self._prefix = False
            if text.startswith(self._echo):
                text = text[len(self._echo):]
            else:
                self._echo = ""
        elif self._echo:
            text = text[len(self._echo):] if text.startswith(self._echo) else text
        so_far = self.text
        if text.startswith(so_far):
            delta = text[len(so_far):]
            self.text = text
        else:
            delta = text
            self.text = so_far + text
        return delta
