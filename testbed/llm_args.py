"""TensorRT-LLM's `LLM()` argument definitions, read from its own source into the stand-in package
of the testbed image (testbed/images/tritonserver/python/tensorrt_llm/llm_args.json).

The `tensorrt-llm` package on PyPI is a stub that fetches its wheel from NVIDIA's own index, which this project's
machines cannot reach, so the definitions are read from TensorRT-LLM's `tensorrt_llm/llmapi/llm_args.py`
instead: every class it defines with its bases, and for the pydantic ones every annotated field as written (its
annotation, its default, whether it is required, its `Field(...)` constraints and aliases, and the values a
`Literal[...]` or an enum of the file allows), every enum's members, and the module's type aliases. Nothing is
typed by hand. The stand-in `tensorrt_llm` builds pydantic models from this, so `LLM(**args)` refuses what
TensorRT-LLM's own classes refuse, keys and values, with pydantic's own messages; the unit tests check every key of
the rendered model.yaml against it.

Regenerate from a checkout (or any copy) of the file, naming its version and where it was read:

    python -m testbed.llm_args PATH/TO/llm_args.py --version 1.2.1 --commit <sha>
    python -m testbed.llm_args PATH/TO/llm_args.py --version "1.2-era (...)" --index-id <file index id>
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
ENUM_BASES = {"Enum", "StrEnum", "IntEnum"}
MODEL_BASES = {"StrictBaseModel", "BaseModel"}
CONSTRAINTS = ("ge", "gt", "le", "lt", "min_length", "max_length")
_ABSENT = object()


def _field_call(value: ast.expr | None) -> ast.Call | None:
    if isinstance(value, ast.Call) and ast.unparse(value.func) in ("Field", "PydanticField"):
        return value
    return None


def _literal(node: ast.expr) -> Any:
    try:
        return ast.literal_eval(node)
    except (ValueError, SyntaxError, TypeError):
        return _ABSENT


def _fields(node: ast.ClassDef) -> dict[str, dict[str, Any]]:
    """name -> {annotation, default?, factory?, required?, constraints?, aliases?} for each public annotated field."""
    out: dict[str, dict[str, Any]] = {}
    for stmt in node.body:
        if not (isinstance(stmt, ast.AnnAssign) and isinstance(stmt.target, ast.Name)):
            continue
        name, annotation = stmt.target.id, ast.unparse(stmt.annotation)
        # Private attributes and class-level constants are not arguments.
        if name.startswith("_") or annotation.startswith(("ClassVar", "PrivateAttr")):
            continue
        if isinstance(stmt.value, ast.Call) and ast.unparse(stmt.value.func) == "PrivateAttr":
            continue
        field: dict[str, Any] = {"annotation": annotation}
        call = _field_call(stmt.value)
        if stmt.value is None:
            field["required"] = True
        elif call is None:
            field["default"] = ast.unparse(stmt.value)
        else:
            kwargs = {k.arg: k.value for k in call.keywords if k.arg}
            positional = call.args[0] if call.args else None
            if positional is not None and not (isinstance(positional, ast.Constant) and positional.value is ...):
                field["default"] = ast.unparse(positional)
            elif "default" in kwargs:
                field["default"] = ast.unparse(kwargs["default"])
            elif "default_factory" in kwargs:
                field["factory"] = ast.unparse(kwargs["default_factory"])
            else:  # Field(...) or Field(description=...): pydantic makes it required
                field["required"] = True
            constraints = {k: v for k in CONSTRAINTS if k in kwargs and (v := _literal(kwargs[k])) is not _ABSENT}
            if constraints:
                field["constraints"] = constraints
            aliases: list[str] = []
            if "alias" in kwargs and isinstance(alias := _literal(kwargs["alias"]), str):
                aliases.append(alias)
            if "validation_alias" in kwargs:
                v = kwargs["validation_alias"]
                if isinstance(v, ast.Call) and ast.unparse(v.func) == "AliasChoices":
                    aliases += [a for a in (_literal(x) for x in v.args) if isinstance(a, str)]
                elif isinstance(alias := _literal(v), str):
                    aliases.append(alias)
            if aliases:
                field["aliases"] = aliases
        out[name] = field
    return out


def _members(node: ast.ClassDef) -> list[list[Any]]:
    """An enum's [name, value] pairs in definition order (pydantic lists them so in its messages)."""
    out = []
    for stmt in node.body:
        if isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name):
            value = _literal(stmt.value)
            if value is not _ABSENT:
                out.append([stmt.targets[0].id, value])
    return out


def _classes(body: list[ast.stmt], classes: dict[str, dict[str, Any]]) -> None:
    for node in body:
        if isinstance(node, ast.ClassDef):
            bases = [ast.unparse(b).split("[")[0] for b in node.bases]
            classes[node.name] = {"bases": bases, "fields": _fields(node), "members": _members(node)}
            _classes(node.body, classes)  # nested enums (GuidedDecodingConfig.GuidedDecodingBackend)


def _kind(classes: dict[str, dict[str, Any]], name: str, seen: frozenset[str] = frozenset()) -> str:
    bases = classes[name]["bases"]
    if ENUM_BASES & set(bases):
        return "enum"
    if MODEL_BASES & set(bases):
        return "model"
    for base in bases:
        if base in classes and base not in seen and (kind := _kind(classes, base, seen | {name})) != "other":
            return kind
    return "other"


def _allowed(node: ast.expr, classes: dict[str, dict[str, Any]], aliases: dict[str, ast.expr]) -> list[Any] | None:
    """The values an annotation allows when it is made of Literal[...]s and enums of the file (through Optional,
    Union, List and the module's aliases); None when it also allows something open (str, int, a class, ...)."""
    if isinstance(node, ast.Constant) and node.value is None:
        return []
    if isinstance(node, ast.Name):
        if node.id in classes and classes[node.id]["kind"] == "enum":
            return [value for _, value in classes[node.id]["members"]]
        if node.id in aliases:
            return _allowed(aliases[node.id], classes, aliases)
        return None
    if isinstance(node, ast.Subscript):
        head = ast.unparse(node.value)
        args = list(node.slice.elts) if isinstance(node.slice, ast.Tuple) else [node.slice]
        if head == "Literal":
            values = [_literal(a) for a in args]
            return None if any(v is _ABSENT for v in values) else values
        if head in ("Optional", "Union", "List", "list", "Set", "set"):
            out: list[Any] = []
            for arg in args:
                part = _allowed(arg, classes, aliases)
                if part is None:
                    return None
                out += part
            return out
        if head == "Annotated":
            return _allowed(args[0], classes, aliases)
    return None


def extract(source: str) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """Class name -> {bases, kind, fields, members, values} for every class the module defines (enums nested in a
    class too), and its module-level type aliases (`SpeculativeConfig = Annotated[Union[...], ...]`,
    `Nvfp4Backend = Literal[...]`: the annotations of nested arguments name them)."""
    tree = ast.parse(source)
    classes: dict[str, dict[str, Any]] = {}
    _classes(tree.body, classes)
    alias_nodes: dict[str, ast.expr] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and isinstance(node.targets[0], ast.Name):
            if ast.unparse(node.value).startswith(("Union[", "Optional[", "Annotated[", "Literal[")):
                alias_nodes[node.targets[0].id] = node.value
        elif isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and node.value is not None \
                and ast.unparse(node.annotation) == "TypeAlias":
            alias_nodes[node.target.id] = node.value
    if ROOT_CLASS not in classes:
        raise ValueError(f"no class {ROOT_CLASS} in the source: not TensorRT-LLM's llm_args.py")
    for name, cls in classes.items():
        cls["kind"] = _kind(classes, name)
        if cls["kind"] != "enum":
            cls.pop("members")
    for cls in classes.values():
        values = {}
        for field_name, field in cls["fields"].items():
            allowed = _allowed(ast.parse(field["annotation"], mode="eval").body, classes, alias_nodes)
            if allowed:
                values[field_name] = allowed
        if values:
            cls["values"] = values
    return classes, {name: ast.unparse(node) for name, node in alias_nodes.items()}


def all_fields(classes: dict[str, dict[str, Any]], name: str) -> dict[str, dict[str, Any]]:
    """The fields of `name` with those of its bases defined in the same module (pydantic inherits them)."""
    out: dict[str, dict[str, Any]] = {}
    for base in classes[name]["bases"]:
        if base in classes:
            out |= all_fields(classes, base)
    return out | classes[name]["fields"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("llm_args_py", type=Path)
    parser.add_argument("--version", required=True, help="TensorRT-LLM version the file belongs to")
    parser.add_argument("--commit", help="commit of NVIDIA/TensorRT-LLM the file was read at")
    parser.add_argument("--index-id", help="the file index's id of the stored version read, when the commit is "
                                           "unknown")
    parser.add_argument("--output", type=Path, default=OUTPUT)
    args = parser.parse_args(argv)
    if not (args.commit or args.index_id):
        parser.error("name where the file was read: --commit or --index-id")
    classes, aliases = extract(args.llm_args_py.read_text())
    doc = {"source": "NVIDIA/TensorRT-LLM tensorrt_llm/llmapi/llm_args.py", "version": args.version,
           "commit": args.commit or f"unknown (file index id {args.index_id})", "root": ROOT_CLASS,
           "classes": classes, "aliases": aliases}
    args.output.write_text(json.dumps(doc, indent=1, sort_keys=True, ensure_ascii=False) + "\n")
    print(f"{args.output}: {len(classes)} classes, {len(all_fields(classes, ROOT_CLASS))} {ROOT_CLASS} fields")
    return 0


if __name__ == "__main__":
    sys.exit(main())
