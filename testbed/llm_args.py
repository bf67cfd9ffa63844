"""TensorRT-LLM's `LLM()` argument definitions, read from its own source into the stand-in package
of the testbed image (testbed/images/tritonserver/python/tensorrt_llm/llm_args.json).

The `tensorrt-llm` package on PyPI is a stub that fetches its wheel from NVIDIA's own index, which this project's
machines cannot reach, so the definitions are read from TensorRT-LLM's `tensorrt_llm/llmapi/llm_args.py`
instead: every pydantic class it defines, with its bases and its annotated fields (names and annotations as
written). Nothing is typed by hand. The unit tests check every key of the rendered model.yaml against this, and
the testbed's stand-in llmapi model refuses what the real `LLM()` would (its classes forbid extra fields).

Regenerate from a checkout (or any copy) of the file, naming its version and commit:

    python -m testbed.llm_args PATH/TO/llm_args.py --version 1.2.1 --commit <sha>
"""

from __future__ import annotations

import argparse
import ast
import json
import sys
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).resolve().parent / "images" / "tritonserver" / "python" / "tensorrt_llm" / "llm_args.json"
ROOT_CLASS = "TorchLlmArgs"  # what `LLM(backend="pytorch")` validates its arguments with


def _fields(node: ast.ClassDef) -> dict[str, str]:
    out = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name, annotation = stmt.target.id, ast.unparse(stmt.annotation)
        # Private attributes and class-level constants are not arguments.
        if name.startswith("_") or annotation.startswith(("ClassVar", "PrivateAttr")):
            continue
        if isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) == "PrivateAttr":
            continue
        out[name] = annotation
    return out


def extract(source: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Class name -> {bases, fields} for every class the module defines, and its module-level type aliases
    (`SpeculativeConfig = Union[...]`: the annotations of nested arguments name them)."""
    classes: dict[str, dict[str, Any]] = {}
    aliases: dict[str, str] = {}
    for node in ast.parse(source).body:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b).split("[")[0] for b in node.bases]
            classes[node.name] = {"bases": bases, "fields": _fields(node)}
        elif isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            value = ast.unparse(node.value)
            if value.startswith(("Union[", "Optional[", "Annotated[")):
                aliases[node.targets[0].id] = value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None \
                and ast.unparse(node.annotation) == "TypeAlias":
            aliases[node.target.id] = ast.unparse(node.value)
    if ROOT_CLASS not in classes:
        raise ValueError(f"no class {ROOT_CLASS} in the source: not TensorRT-LLM's llm_args.py")
    return classes, aliases


def all_fields(classes: dict[str, dict[str, Any]], name: str) -> dict[str, str]:
    """The fields of `name` with those of its bases defined in the same module (pydantic inherits them)."""
    out: dict[str, str] = {}
    for base in classes[name]["bases"]:
        if base in classes:
            out |= all_fields(classes, base)
    return out | classes[name]["fields"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("llm_args_py", type=Path)
    parser.add_argument("--version", required=True, help="TensorRT-LLM version the file belongs to")
    parser.add_argument("--commit", required=True, help="commit of NVIDIA/TensorRT-LLM the file was read at")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    classes, aliases = extract(args.llm_args_py.read_text())
    doc = {"source": "NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py", "version": args.version,
           "commit": args.commit, "root": ROOT_CLASS, "classes": classes, "aliases": aliases}
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=True) + "\n")
    print(f"{args.output}: {len(classes)} classes, {len(all_fields(classes, ROOT_CLASS))} {ROOT_CLASS} fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())
