"""Token counts with the checkpoint's own tokenizer, and the one BOS the engine adds itself. Pure but for reading
the checkpoint's tokenizer.json and tokenizer_config.json once.

The engine tokenizes a prompt with `add_special_tokens=True` (TensorRT-LLM's `SamplingParams.add_special_tokens`
defaults to True), so a tokenizer whose tokenizer_config.json says `add_bos_token: true` (DeepSeek-R1's) puts a BOS
before the prompt. Counting does the same: the text's tokens without special tokens, plus that BOS. The generated
text is counted the same way without the BOS: it is a re-tokenization of the decoded text, which can differ from
the engine's own count by a token or so (the end-of-sentence token is not in the text).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tokenizers import Tokenizer

from deepseek_operator.frontend.chat import BOS

# Texts longer than this are tokenized in a worker thread, off the event loop that serves every other stream.
LONG_TEXT_CHARS = 8192


def _token(value: Any) -> str:
    """bos_token: a string, or an AddedToken dict with `content`."""
    if isinstance(value, dict):
        return str(value.get("content", ""))
    return value if isinstance(value, str) else ""


@dataclass(frozen=True)
class TokenCounter:
    tokenizer: Tokenizer | None  # None: the checkpoint has no usable tokenizer.json (nothing is counted)
    bos: str = BOS
    add_bos: bool = False  # tokenizer_config.json's add_bos_token

    @classmethod
    def from_checkpoint(cls, checkpoint: Path) -> tuple[TokenCounter, str | None]:
        """The counter, and why it counts nothing (None when it counts)."""
        config: dict[str, Any] = {}
        config_path = checkpoint / "tokenizer_config.json"
        if config_path.is_file():
            loaded = json.loads(config_path.read_text())
            config = loaded if isinstance(loaded, dict) else {}
        bos, add_bos = _token(config.get("bos_token")) or BOS, config.get("add_bos_token") is True
        path = checkpoint / "tokenizer.json"
        try:
            tokenizer = Tokenizer.from_file(str(path))
        except Exception as err:  # missing or not a tokenizer (the tokenizers library raises plain Exceptions)
            return cls(None, bos, add_bos), f"no usable {path}: {str(err).splitlines()[0] if str(err) else err!r}"
        return cls(tokenizer, bos, add_bos), None

    def strip_bos(self, prompt: str) -> str:
        """A prompt without the leading BOS text that the engine's tokenizer would add a second time."""
        if self.add_bos and self.bos and prompt.startswith(self.bos):
            return prompt[len(self.bos):]
        return prompt

    def prompt_tokens(self, text: str) -> int | None:
        if self.tokenizer is None:
            return None
        return _count(self.tokenizer, text) + (1 if self.add_bos else 0)

    def output_tokens(self, text: str) -> int | None:
        if self.tokenizer is None:
            return None
        return _count(self.tokenizer, text) if text else 0


def _count(tokenizer: Tokenizer, text: str) -> int:
    """The text's tokens without special tokens. The batch API's fast path gives the same ids as `encode` and
    skips the character offsets, a quarter of the work on a long prompt (only the count is wanted here)."""
    return len(tokenizer.encode_batch_fast([text], add_special_tokens=False)[0])
