"""From OpenAI chat messages to the prompt the model was trained on. Pure but for reading the checkpoint's
tokenizer_config.json.

The checkpoint's own `chat_template` (Jinja, as Hugging Face tokenizers render it) is used when it has one,
in a sandbox; without one, DeepSeek-R1's published turn format is written out here.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from jinja2 import Template
from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

# DeepSeek-R1's special tokens (its tokenizer_config.json): the turn format of the fallback template.
# Written with escapes: U+FF5C is the full-width vertical line, U+2581 the SentencePiece space.
BOS = "<\uff5cbegin\u2581of\u2581sentence\uff5c>"
EOS = "<\uff5cend\u2581of\u2581sentence\uff5c>"
USER, ASSISTANT = "<\uff5cUser\uff5c>", "<\uff5cAssistant\uff5c>"


class PromptError(ValueError):
    """The messages cannot be made into a prompt (the client's fault: a 400)."""


def _token(value: Any) -> str:
    """bos_token / eos_token: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


def _text(content: Any) -> str:
    """A message's content: a string, or OpenAI's list of parts of which only text ones are taken."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise PromptError("only text content parts are supported")
            parts.append(part["text"])
        return "".join(parts)
    raise PromptError("message content must be a string or a list of text parts")


def deepseek_r1_prompt(messages: Sequence[dict[str, str]], bos: str = BOS) -> str:
    """The R1 turn format: system text first, user and assistant turns, and an open `<think>` for the answer.
    A previous assistant turn keeps only its answer (R1's guidance: thoughts are not fed back)."""
    system = "".join(m["content"] for m in messages if m["role"] == "system")
    out = [bos, system]
    for m in messages:
        if m["role"] == "user":
            out.append(USER + m["content"])
        elif m["role"] == "assistant":
            answer = m["content"].split("</think>")[-1]
            out.append(ASSISTANT + answer + EOS)
    out.append(ASSISTANT + "<think>\n")
    return "".join(out)


@dataclass(frozen=True)
class ChatFormat:
    template: str | None  # the checkpoint's chat_template; None: the R1 turn format
    bos: str = BOS
    eos: str = EOS

    @classmethod
    def from_checkpoint(cls, checkpoint: Path) -> ChatFormat:
        path = checkpoint / "tokenizer_config.json"
        if not path.is_file():
            return cls(None)
        config = json.loads(path.read_text())
        template = config.get("chat_template")
        if isinstance(template, list):  # named templates: the default one
            template = next((t.get("template") for t in template if t.get("name") == "default"), None)
        return cls(template if isinstance(template, str) else None,
                   _token(config.get("bos_token")) or BOS, _token(config.get("eos_token")) or EOS)

    def prompt(self, messages: Any) -> str:
        if not isinstance(messages, list) or not messages:
            raise PromptError("messages must be a non-empty list")
        turns = []
        for m in messages:
            if not isinstance(m, dict) or m.get("role") not in ("system", "developer", "user", "assistant"):
                raise PromptError("each message needs a role of system, developer, user or assistant")
            role = "system" if m["role"] == "developer" else m["role"]
            turns.append({"role": role, "content": _text(m.get("content"))})
        if self.template is None:
            return deepseek_r1_prompt(turns, self.bos)
        try:
            return _compiled(self.template).render(messages=turns, add_generation_prompt=True, bos_token=self.bos,
                                                   eos_token=self.eos)
        except TemplateError as err:
            raise PromptError(f"the checkpoint's chat template failed: {err}") from err


def _raise_exception(message: str) -> None:
    raise PromptError(message)


@functools.lru_cache(maxsize=4)
def _compiled(template: str) -> Template:
    """The template compiled once (compiling costs milliseconds; rendering, microseconds)."""
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.globals["raise_exception"] = _raise_exception
    return env.from_string(template)
