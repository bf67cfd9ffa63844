"""Stand-in for the `tensorrt_llm` package of the serving image: `LLM(**args)` validates its arguments against
TensorRT-LLM's own definitions and loads nothing (no GPU kernels or real weights on the testbed).

llm_args.json holds every pydantic class of TensorRT-LLM's tensorrt_llm/llmapi/llm_args.py with its fields, read
from that source by `python -m testbed.llm_args`. Those classes forbid extra fields, so an argument (or a key of a
nested config such as kv_cache_config) that none of them defines fails here as it fails upstream.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

SCHEMA = json.loads((Path(__file__).resolve().parent / "llm_args.json").read_text())
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _fields(name: str) -> dict[str, str]:
    cls = SCHEMA["classes"][name]
    out: dict[str, str] = {}
    for base in cls["bases"]:
        if base in SCHEMA["classes"]:
            out |= _fields(base)
    return out | cls["fields"]


def _classes_in(annotation: str, seen: frozenset[str] = frozenset()) -> list[str]:
    """The classes an annotation names, through the module's type aliases."""
    found = []
    for name in _NAME.findall(annotation):
        if name in SCHEMA["classes"]:
            found.append(name)
        elif name in SCHEMA["aliases"] and name not in seen:
            found += _classes_in(SCHEMA["aliases"][name], seen | {name})
    return found


def _candidates(annotation: str, value: dict[str, Any]) -> list[str]:
    classes = _classes_in(annotation)
    # A discriminated union (speculative_config): the member whose `decoding_type` literal the value names.
    kind = value.get("decoding_type")
    if kind is not None:
        classes = [c for c in classes if f"'{kind}'" in _fields(c).get("decoding_type", "")]
    return classes


def unknown_arguments(args: dict[str, Any], root: str | None = None, prefix: str = "") -> list[str]:
    """Dotted paths in `args` that the LLM API's argument classes do not define, [] when all are known."""
    fields = _fields(root or SCHEMA["root"])
    unknown = []
    for key, value in args.items():
        path = f"{prefix}{key}"
        if key not in fields:
            unknown.append(path)
        elif isinstance(value, dict):
            classes = _candidates(fields[key], value)
            if not classes:
                continue  # a free-form mapping (dict[str, ...])
            nested = [unknown_arguments(value, c, f"{path}.") for c in classes]
            unknown += min(nested, key=len)
    return unknown


class LLM:
    """What `tensorrt_llm.LLM(**args)` refuses before it touches a GPU: arguments it does not define."""

    def __init__(self, **args: Any) -> None:
        unknown = unknown_arguments(args)
        if unknown:
            raise ValueError(f"LLM() got arguments TensorRT-LLM {SCHEMA['version']} does not define: "
                             f"{', '.join(unknown)} (its argument classes forbid extra fields)")
        self.args = args
