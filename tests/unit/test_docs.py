"""The documentation: the generated pages match what they are generated from, and the hand-written ones keep to
what the code says where a test can hold them to it. `testbed/test` also builds the site (`mkdocs build
--strict`), which fails on a broken link or anchor."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml

from deepseek_operator.api import reference
from deepseek_operator.render.catalog import GPUS
from tools import chart_values

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"


def test_the_reference_is_generated_from_the_crd() -> None:
    crd = yaml.safe_load(reference.CRD_PATH.read_text())
    assert (DOCS / "reference.md").read_text() == reference.render(crd), \
        f"docs/reference.md is not the CRD's: regenerate it with `{reference.COMMAND}`"


def test_the_reference_names_every_field_of_the_crd() -> None:
    crd = yaml.safe_load(reference.CRD_PATH.read_text())
    schema = crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"]
    page = (DOCS / "reference.md").read_text()

    def paths(node: dict[str, Any], path: str) -> list[str]:
        out = [path]
        for name, sub in (node.get("properties") or {}).items():
            out += paths(sub, f"{path}.{name}")
        items = node.get("items")
        if isinstance(items, dict):
            for name, sub in (items.get("properties") or {}).items():
                out += paths(sub, f"{path}[].{name}")
        return out

    missing = [p for top in ("spec", "status") for p in paths(schema[top], top) if f"| `{p}` |" not in page]
    assert not missing, f"fields without a row: {missing[:10]}"


def test_table_cells_keep_pipes_and_markup_out_of_the_table() -> None:
    assert reference.cell("a | b, [x] *y* <key>") == r"a \| b, \[x\] \*y\* &lt;key>"
    assert reference.cell("exactly `a|b` here") == "exactly <code>a&#124;b</code> here"
    assert reference.code("^(a|b)_c$") == r"<code>^(a&#124;b)\_c$</code>"
    assert reference.cell("an odd ` backtick") == r"an odd \` backtick"


def test_the_chart_values_table_is_generated_from_values_and_schema() -> None:
    readme = (chart_values.CHART / "README.md").read_text()
    assert chart_values.rewrite(readme, chart_values.table()) == readme, \
        f"the chart README's values table is not the chart's: regenerate it with `{chart_values.COMMAND}`"


def test_every_chart_value_has_a_row() -> None:
    values = yaml.safe_load((chart_values.CHART / "values.yaml").read_text())
    table = chart_values.table()
    missing = [key for key in values if f"| `{key}` |" not in table and f"| `{key}." not in table]
    assert not missing, f"values without a row: {missing}"


def test_values_comments_are_read_up_to_an_example() -> None:
    text = "# -- One.\n# Two.\n#   - an: example\n# after\nkey: 1\nparent:\n  # -- Child.\n  child: 2\nplain: 3\n"
    assert chart_values.comments(text) == {"key": "One. Two.", "parent.child": "Child."}


def test_the_readme_is_about_a_page_with_short_table_rows() -> None:
    lines = (REPO / "README.md").read_text().splitlines()
    assert len(lines) <= 150, f"README.md has {len(lines)} lines: move the detail to docs/"
    long_rows = [line[:60] for line in lines if line.startswith("|") and len(line) > 200]
    assert not long_rows, f"README table rows over 200 characters: {long_rows}"


def test_the_install_page_names_the_catalogs_gpu_labels() -> None:
    rows = re.findall(r"^\| `([A-Z0-9][-A-Za-z0-9]+)` \| (`NVIDIA-.*`) \|$", (DOCS / "install.md").read_text(), re.M)
    documented = {gpu: tuple(re.findall(r"`([^`]+)`", labels)) for gpu, labels in rows}
    assert documented == {name: gpu.product_labels for name, gpu in GPUS.items()}


def test_the_stand_in_contract_table_names_tests_that_exist() -> None:
    page = (DOCS / "testbed.md").read_text()
    named = set(re.findall(r"`(test_[a-z0-9_]+)`", page))
    tests = {name for path in (REPO / "tests").rglob("test_*.py")
             for name in re.findall(r"^def (test_[a-z0-9_]+)", path.read_text(), re.M)}
    assert named and named <= tests, f"no such test under tests/: {sorted(named - tests)}"


def test_every_page_is_in_the_navigation() -> None:
    nav = yaml.safe_load((REPO / "mkdocs.yml").read_text())["nav"]
    listed = {page for entry in nav for page in entry.values()}
    assert listed == {p.name for p in DOCS.glob("*.md")}
