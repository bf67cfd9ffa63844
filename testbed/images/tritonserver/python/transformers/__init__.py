"""Testbed stand-in for Hugging Face transformers in the Triton TensorRT-LLM image: loads a checkpoint folder
as the real `from_pretrained` would refuse or accept it (a config.json must be there), runs no model."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "vocab.json", "merges.txt")


def _folder(path: str) -> Path:
    folder = Path(path)
    if not (folder / "config.json").is_file():
        raise OSError(f"{path} does not appear to have a file named config.json.")
    return folder


class PreTrainedModel:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self.config = json.loads((folder / "config.json").read_text())
        self.device = "cpu"
        self.calls = 0

    def __call__(self, **inputs: Any) -> None:
        if not inputs["input_ids"][0]:  # as the real attention's reshape of 0 tokens
            raise RuntimeError("cannot reshape tensor of 0 elements into shape [1, 0, -1, 128]")
        self.calls += 1


class AutoModelForCausalLM:
    @staticmethod
    def from_pretrained(path: str, **_: Any) -> PreTrainedModel:
        return PreTrainedModel(_folder(path))


class BatchEncoding(dict):  # type: ignore[type-arg]
    def to(self, device: str) -> BatchEncoding:
        return self


class Tokenizer:
    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def __call__(self, text: str, truncation: bool = False, max_length: int | None = None,
                 **_: Any) -> BatchEncoding:
        ids = [len(w) for w in text.split()]
        return BatchEncoding(input_ids=[ids[:max_length] if truncation and max_length is not None else ids])

    def save_pretrained(self, target: str) -> None:
        for name in TOKENIZER_FILES:
            if (self.folder / name).is_file():
                shutil.copy2(self.folder / name, Path(target) / name)


class AutoTokenizer:
    @staticmethod
    def from_pretrained(path: str, **_: Any) -> Tokenizer:
        return Tokenizer(_folder(path))
