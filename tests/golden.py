"""Golden files (tests/golden/): what a renderer must produce, byte for byte.

After an intended change, regenerate them from the repository root with

    DEEPSEEK_REGENERATE_GOLDEN=1 .venv/bin/pytest tests/unit/<the test module>

Each test whose golden files differ then writes them and fails, saying so: a regeneration never passes as a test
run, and the change is read in `git diff -- tests/golden` before it is committed. Under CI (the `CI` variable set,
as .ci/run sets it) regeneration is refused: CI only compares.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
REGENERATE_ENV = "DEEPSEEK_REGENERATE_GOLDEN"


def regenerating() -> bool:
    """Whether this run rewrites golden files; under CI, a request to is a failure."""
    if os.environ.get(REGENERATE_ENV) != "1":
        return False
    if os.environ.get("CI"):
        pytest.fail(f"{REGENERATE_ENV}=1 under CI: CI compares golden files and never rewrites them")
    return True


def check(rendered: Mapping[Path, str], stale: Iterable[Path] = ()) -> None:
    """Golden files against what was `rendered` now, by path; `stale` are golden files nothing renders any more."""
    differ = sorted(p for p, text in rendered.items() if not p.is_file() or p.read_text() != text)
    gone = sorted(stale)
    names = ", ".join(str(p.relative_to(ROOT) if p.is_relative_to(ROOT) else p) for p in [*differ, *gone])
    if regenerating() and (differ or gone):
        for path in differ:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(rendered[path])
        for path in gone:
            path.unlink()
        pytest.fail(f"regenerated {names}: review the diff (git diff -- tests/golden), then run the tests again "
                    f"without {REGENERATE_ENV}")
    assert not differ and not gone, (
        f"{names} differ from what is rendered now; if the change is intended, regenerate with "
        f"{REGENERATE_ENV}=1 .venv/bin/pytest <this test module> and review the diff")


def check_file(path: Path, rendered: str) -> None:
    check({path: rendered})
