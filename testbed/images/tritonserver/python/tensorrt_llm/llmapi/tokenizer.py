"""Stand-in for `tensorrt_llm/llmapi/tokenizer.py` tokenizer_factory: the checkpoint's own tokenizer.

Upstream loads it with transformers' AutoTokenizer; the prompt is encoded by DefaultInputProcessor (index id
246711062) with `self.tokenizer.encode(inputs["prompt"], add_special_tokens=sampling_params.add_special_tokens)`.
For DeepSeek-R1's LlamaTokenizerFast, tokenizer_config.json's `add_bos_token: true` makes encode() put BOS first,
so a prompt whose text already starts with the BOS text gets two.

Here the `tokenizers` library (the fast tokenizer's own engine; a testbed venv package) reads
<checkpoint>/tokenizer.json (the testbed writes a WordLevel model with a Whitespace pre-tokenizer and R1's special
tokens, testbed/checkpoints.py), and BOS is added as tokenizer_config.json says.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def _content(token: Any) -> str | None:
    if isinstance(token, dict):
        return str(token.get("content") or "") or None
    return token if isinstance(token, str) and token else None


class Tokenizer:
    """encode() as the LLM API calls it; the special tokens' texts for what decoding with skip_special_tokens drops."""

    def __init__(self, model_dir: Path) -> None:
        path = model_dir / "tokenizer.json"
        if not path.is_file():
            raise OSError(f"Can't load tokenizer for '{model_dir}'. Make sure '{model_dir}' is the correct path to "
                          f"a directory containing all relevant files for a LlamaTokenizerFast tokenizer.")
        spec = json.loads(path.read_text(encoding="utf-8"))
        config_path = model_dir / "tokenizer_config.json"
        config = json.loads(config_path.read_text(encoding="utf-8")) if config_path.is_file() else {}
        import tokenizers

        self._fast = tokenizers.Tokenizer.from_file(str(path))
        self.add_bos_token = bool(config.get("add_bos_token", False))
        self.bos_token = _content(config.get("bos_token"))
        self.eos_token = _content(config.get("eos_token"))
        self.bos_token_id = self.token_to_id(self.bos_token) if self.bos_token else None
        self.eos_token_id = self.token_to_id(self.eos_token) if self.eos_token else None
        # Texts decode() drops with skip_special_tokens=True: the added tokens marked special.
        self.special_texts = [t["content"] for t in spec.get("added_tokens") or [] if t.get("special")]

    def token_to_id(self, token: str) -> int | None:
        return self._fast.token_to_id(token)  # type: ignore[no-any-return]

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        ids = list(self._fast.encode(text, add_special_tokens=False).ids)
        if add_special_tokens and self.add_bos_token and self.bos_token_id is not None:
            ids = [self.bos_token_id, *ids]
        return ids

    def strip_special(self, text: str) -> str:
        """What decode(encode(text), skip_special_tokens=True) gives for a lossless tokenizer (R1's byte-level BPE):
        the text without its special tokens."""
        for special in self.special_texts:
            text = text.replace(special, "")
        return text


def tokenizer_factory(model_dir: str | Path) -> Tokenizer:
    return Tokenizer(Path(model_dir))
