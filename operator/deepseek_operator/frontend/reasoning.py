"""DeepSeek-R1's reasoning, kept apart from its answer. Pure.

R1 thinks first and closes the thought with `</think>`; its chat template ends the prompt with `<think>\\n`, so
the generated text usually starts inside the thought and carries no opening tag (an output that does open with
`<think>` loses it). Everything before `</think>` is `reasoning_content`; what follows is `content`. An output
that never closes the thought (cut by `max_tokens`) is all reasoning, as TensorRT-LLM's `deepseek-r1` parser
treats it.
"""

from __future__ import annotations

from dataclasses import dataclass

THINK_START, THINK_END = "<think>", "</think>"


def split(text: str) -> tuple[str, str]:
    """(reasoning, content) of a whole output."""
    opened = text.lstrip()
    body = opened[len(THINK_START):] if opened.startswith(THINK_START) else text
    reasoning, closed, content = body.partition(THINK_END)
    if not closed:
        return reasoning, ""
    return reasoning, content.lstrip("\n")


def _held_back(text: str, tag: str) -> int:
    """How many trailing characters of `text` could be the start of `tag` (wait for more before emitting them)."""
    for n in range(min(len(tag) - 1, len(text)), 0, -1):
        if tag.startswith(text[-n:]):
            return n
    return 0


@dataclass
class StreamSplitter:
    """`split` over a stream of text deltas: `feed` returns the (reasoning, content) deltas it can tell apart so
    far, holding back only what might still be the opening tag, the closing tag, or the newlines after it."""

    _pending: str = ""
    _state: str = "start"  # start -> thinking -> answer-start -> answer

    def feed(self, delta: str) -> tuple[str, str]:
        self._pending += delta
        reasoning = ""
        if self._state == "start":
            opened = self._pending.lstrip()
            if len(opened) < len(THINK_START) and THINK_START.startswith(opened):
                return "", ""  # whitespace, or part of an opening tag so far
            if opened.startswith(THINK_START):
                self._pending = opened[len(THINK_START):]
            self._state = "thinking"
        if self._state == "thinking":
            before, closed, after = self._pending.partition(THINK_END)
            if not closed:
                cut = len(self._pending) - _held_back(self._pending, THINK_END)
                reasoning, self._pending = self._pending[:cut], self._pending[cut:]
                return reasoning, ""
            reasoning, self._pending, self._state = before, after, "answer-start"
        if self._state == "answer-start":
            self._pending = self._pending.lstrip("\n")
            if not self._pending:
                return reasoning, ""
            self._state = "answer"
        content, self._pending = self._pending, ""
        return reasoning, content

    def finish(self) -> tuple[str, str]:
        """What is still held back once the stream ended: reasoning, unless the thought was closed."""
        rest, self._pending = self._pending, ""
        return (rest, "") if self._state in ("start", "thinking") else ("", "")
