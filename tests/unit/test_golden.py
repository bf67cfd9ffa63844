"""The golden-file check (tests/golden.py): a regeneration writes the files and still fails, and CI refuses one."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import golden


@pytest.fixture
def on_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.delenv(golden.REGENERATE_ENV, raising=False)
    monkeypatch.delenv("CI", raising=False)
    path = tmp_path / "case.yaml"
    path.write_text("replicas: 1\n")
    return path


def test_a_difference_fails_and_leaves_the_golden_file_as_it_was(on_disk: Path) -> None:
    with pytest.raises(AssertionError, match="differ from what is rendered now"):
        golden.check_file(on_disk, "replicas: 2\n")
    assert on_disk.read_text() == "replicas: 1\n"
    golden.check_file(on_disk, "replicas: 1\n")


def test_a_regeneration_writes_the_files_and_fails_saying_so(on_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(golden.REGENERATE_ENV, "1")
    stale = on_disk.parent / "gone.yaml"
    stale.write_text("old")
    new = on_disk.parent / "new" / "case.yaml"
    with pytest.raises(pytest.fail.Exception, match=r"regenerated .*review the diff"):
        golden.check({on_disk: "replicas: 2\n", new: "replicas: 3\n"}, stale=[stale])
    assert (on_disk.read_text(), new.read_text(), stale.exists()) == ("replicas: 2\n", "replicas: 3\n", False)
    golden.check({on_disk: "replicas: 2\n", new: "replicas: 3\n"})  # nothing left to write: a plain comparison


def test_ci_refuses_a_regeneration_and_writes_nothing(on_disk: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(golden.REGENERATE_ENV, "1")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="under CI"):
        golden.check_file(on_disk, "replicas: 2\n")
    assert on_disk.read_text() == "replicas: 1\n"
