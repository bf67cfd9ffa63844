"""Writes the DeepSeekDeployment reference (docs/reference.md) from the CRD's YAML. Pure.

`python -m deepseek_operator.api.reference > docs/reference.md` regenerates the page from
crds/serving.deepseek.ai_deepseekdeployments.yaml; tests/unit/test_docs.py fails when it drifts. It reads the CRD,
not the pydantic models: the page says what the API server enforces, whatever the models are called. Every field
gets its path, type, default, allowed values and bounds, description and the messages of the CEL rules declared on
it (a rule with a `fieldPath` is listed under that field).
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

CRD_PATH = Path(__file__).resolve().parents[3] / "crds" / "serving.deepseek.ai_deepseekdeployments.yaml"
COMMAND = ".venv/bin/python -m deepseek_operator.api.reference > docs/reference.md"
LONG_PATTERN = 80  # a longer pattern is left to the CRD: it would fill the table


@dataclass
class Row:
    path: str
    type: str
    default: str
    text: str
    rules: list[str] = field(default_factory=list)


def cell(text: str) -> str:
    """Markdown table-cell text: whitespace collapsed; outside code spans `\\`, `<`, `*`, `_`, `[`, `]` and `|`
    escaped; a code span with a pipe in it written as _code writes it."""
    text = " ".join(text.split())
    parts = text.split("`")
    if len(parts) % 2 == 0:  # an unpaired backtick: no code spans at all, the backtick itself escaped
        parts = [text.replace("`", "\x00")]
    out = []
    for i, part in enumerate(parts):
        if i % 2:
            out.append(code(part))
            continue
        part = part.replace("\\", "\\\\").replace("<", "&lt;").replace("|", "\\|")
        out.append(re.sub(r"([*_\[\]])", r"\\\1", part).replace("\x00", "\\`"))
    return "".join(out)


def code(value: str) -> str:
    """A value as code in a table cell. One with a pipe is an HTML <code> with the pipe as an entity: GitHub's tables
    split on a pipe even inside a code span, Python-Markdown's show the backslash that would stop them."""
    if "|" in value:
        text = value.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;").replace("|", "&#124;")
        return "<code>" + re.sub(r"([\\`*_\[\]])", r"\\\1", text) + "</code>"
    return f"`` {value} ``" if "`" in value else f"`{value}`"


def _type(node: dict[str, Any]) -> str:
    if node.get("x-kubernetes-int-or-string"):
        return "integer or string"
    kind = str(node.get("type", "object" if node.get("x-kubernetes-preserve-unknown-fields") else "any"))
    if kind == "array":
        return f"array of {_type(node.get('items') or {})}"
    if kind == "object" and isinstance(node.get("additionalProperties"), dict):
        return f"map of {_type(node['additionalProperties'])}"
    return kind


def _default(node: dict[str, Any]) -> str:
    if "default" not in node:
        return ""
    value = node["default"]
    return code(value if isinstance(value, str) else json.dumps(value, separators=(", ", ": ")))


def _bounds(node: dict[str, Any]) -> list[str]:
    said = []
    if "enum" in node:
        said.append("One of: " + ", ".join(code(str(v)) for v in node["enum"]) + ".")
    low, high = node.get("minimum"), node.get("maximum")
    low_open, high_open = bool(node.get("exclusiveMinimum")), bool(node.get("exclusiveMaximum"))
    if low is not None and high is not None and not low_open and not high_open:
        said.append(f"{low:g} to {high:g}.")
    else:
        if low is not None:
            said.append(f"Above {low:g}." if low_open else f"At least {low:g}.")
        if high is not None:
            said.append(f"Below {high:g}." if high_open else f"At most {high:g}.")
    for low_key, high_key, unit in (("minLength", "maxLength", "characters"), ("minItems", "maxItems", "items"),
                                    ("minProperties", "maxProperties", "entries")):
        least, most = node.get(low_key), node.get(high_key)
        if least is not None and most is not None:
            said.append(f"{least} to {most} {unit}.")
        elif least is not None:
            said.append(f"At least {least} {unit}.")
        elif most is not None:
            said.append(f"At most {most} {unit}.")
    if "pattern" in node:
        pattern = str(node["pattern"])
        said.append(f"Pattern {code(pattern)}." if len(pattern) <= LONG_PATTERN
                    else "Pattern: too long to show here (see the CRD).")
    return said


def _walk(node: dict[str, Any], path: str, rows: dict[str, Row], *, required: bool = False,
          row: Row | None = None) -> None:
    """Rows for `node` at `path` and every field under it. `row` given: `node` is an array's items or a map's
    values, which get no row of their own (their rules go to `row`, the array's or the map's)."""
    if row is None:
        text = " ".join([cell(str(node.get("description", ""))), *_bounds(node)]).strip()
        row = rows[path] = Row(path, _type(node) + (", required" if required else ""), _default(node), text)
    needed = set(node.get("required") or [])
    for name, sub in (node.get("properties") or {}).items():
        _walk(sub, f"{path}.{name}", rows, required=name in needed)
    for key, suffix in (("items", "[]"), ("additionalProperties", ".<key>")):
        sub = node.get(key)
        if isinstance(sub, dict) and (sub.get("properties") or sub.get("x-kubernetes-validations")):
            _walk(sub, path + suffix, rows, row=row)
    for rule in node.get("x-kubernetes-validations") or []:
        target = rows.get(path + str(rule["fieldPath"])) if rule.get("fieldPath") else None
        (target or row).rules.append(cell(str(rule["message"])))


def _rows(schema: dict[str, Any], top: str) -> dict[str, Row]:
    rows: dict[str, Row] = {}
    _walk(schema, top, rows)
    return rows


def _table(rows: list[Row]) -> Iterator[str]:
    yield "| field | type | default | description |"
    yield "|---|---|---|---|"
    for row in rows:
        text = row.text + "".join(f" **Rule:** {rule}." if not rule.endswith((".", ")")) else f" **Rule:** {rule}"
                                  for rule in row.rules)
        yield f"| `{row.path}` | {row.type} | {row.default} | {text.strip()} |"


def _sections(rows: dict[str, Row], top: str, schema: dict[str, Any]) -> Iterator[tuple[str, list[Row]]]:
    """`top` with its scalar fields, then one section per object (or array of objects) directly under it."""
    children = schema.get("properties") or {}
    nested = [name for name, sub in children.items()
              if sub.get("properties") or (sub.get("items") or {}).get("properties")]
    own = [r for p, r in rows.items() if p == top or (p.count(".") == top.count(".") + 1
                                                      and p.rsplit(".", 1)[1] not in nested)]
    yield top, own
    for name in nested:
        prefix = f"{top}.{name}"
        yield prefix, [r for p, r in rows.items() if p == prefix or p.startswith((prefix + ".", prefix + "[]"))]


def render(crd: dict[str, Any]) -> str:
    spec = crd["spec"]
    version = next(v for v in spec["versions"] if v.get("storage"))
    schema = version["schema"]["openAPIV3Schema"]
    names = spec["names"]
    out = [
        "# DeepSeekDeployment reference",
        "",
        f"<!-- Generated by `{COMMAND}` from crds/{CRD_PATH.name}; do not edit. -->",
        "",
        f"`{spec['group']}/{version['name']}`, kind `{names['kind']}` (plural `{names['plural']}`, short name "
        + ", ".join(f"`{n}`" for n in names.get("shortNames", [])) + f"), {spec['scope'].lower()}. "
        "Generated from the CRD, which is generated from the pydantic models in `operator/deepseek_operator/api/`; "
        "`kubectl explain deepseekdeployment.spec` shows the same descriptions. The API server checks every type, "
        "bound, pattern and rule below before it stores a resource; what only the GPU and model catalog can judge "
        "is accepted and reported in conditions instead (see [Serving](serving.md#what-the-operator-checks)).",
        "",
    ]
    scale = version.get("subresources", {}).get("scale")
    if scale:
        out += [f"Subresources: `status`, and `scale` (replicas `{scale['specReplicasPath']}`, status "
                f"`{scale['statusReplicasPath']}`, selector `{scale['labelSelectorPath']}`): `kubectl scale`, an HPA "
                "or KEDA can set the replica count.", ""]
    out += ["## kubectl get columns", "", "| column | JSONPath | shown |", "|---|---|---|"]
    for column in version.get("additionalPrinterColumns", []):
        shown = "with `-o wide`" if column.get("priority") else "always"
        out.append(f"| {cell(column['name'])} | `{column['jsonPath']}` | {shown} |")
    out += ["", "## Rules on the whole resource", ""]
    out += [f"- {cell(str(rule['message']))}" for rule in schema.get("x-kubernetes-validations") or []]
    out.append("")
    for top in ("spec", "status"):
        sub = schema["properties"][top]
        rows = _rows(sub, top)
        for title, section in _sections(rows, top, sub):
            out += [f"## {title}", "", *_table(section), ""]
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    path = Path(args[0]) if args else CRD_PATH
    sys.stdout.write(render(yaml.safe_load(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
