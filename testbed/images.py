"""The testbed's image table (testbed/images.yaml): an image is a file tree plus its entrypoint, cmd, workdir
and env. Trees are laid out once per testbed checkout in the cache and copied into each container's writable
layer (they are mostly symlinks, so a copy is cheap).
"""

from __future__ import annotations

import fnmatch
import shutil
import sys
import sysconfig
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TABLE = HERE / "images.yaml"
STANDINS = HERE / "images"


@dataclass(frozen=True)
class Image:
    name: str
    match: list[str]
    entrypoint: list[str] = field(default_factory=list)
    cmd: list[str] = field(default_factory=list)
    working_dir: str = ""
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, dict[str, str]] = field(default_factory=dict)
    user: int = 0  # the image's USER (numeric), which runs the container unless runAsUser says otherwise

    def matches(self, reference: str) -> bool:
        return any(fnmatch.fnmatch(reference, pattern) for pattern in self.match)


IMAGE_SITE = "image-site"  # under the testbed's cache: the images' own packages (testbed/lib.sh ensure_image_openai)


def placeholders(preflight_python: str, downloader_python: str) -> dict[str, str]:
    import pytriton  # the testbed's Triton build; imported here so the table loads without it

    from testbed.cluster import CACHE

    return {
        "python": str(Path(sys.prefix) / "bin" / "python"),
        "site_packages": sysconfig.get_paths()["purelib"],
        "base_site_packages": sysconfig.get_paths(vars={"base": sys.base_prefix, "platbase": sys.base_prefix})[
            "purelib"],
        "python_libdir": sysconfig.get_config_var("LIBDIR") or "",
        "pytriton": str(Path(pytriton.__file__).resolve().parent),
        "preflight_python": preflight_python,
        "downloader_python": downloader_python,
        "repo": str(REPO),
        "image_site": str(CACHE / IMAGE_SITE),
    }


def load(values: dict[str, str] | None = None) -> list[Image]:
    out = []
    for entry in yaml.safe_load(TABLE.read_text())["images"]:
        entry = dict(entry)
        entry["working_dir"] = entry.pop("workingDir", "")
        if values is not None:
            entry["env"] = {k: v.format(**values) for k, v in (entry.get("env") or {}).items()}
        out.append(Image(**entry))
    return out


def find(images: list[Image], reference: str) -> Image | None:
    return next((image for image in images if image.matches(reference)), None)


def lay_out(image: Image, into: Path, values: dict[str, str]) -> Path:
    """Writes the image's file tree under `into/<name>` (again, if the table changed) and returns it."""
    root = into / image.name
    stamp = root.parent / f".{image.name}.layout"
    want = repr((image.files, values))
    if stamp.exists() and stamp.read_text() == want and root.is_dir():
        return root
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    for path, what in image.files.items():
        target = root / path.format(**values).lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        if "link" in what:
            target.symlink_to(what["link"].format(**values))
        elif "standin" in what:
            source = STANDINS / what["standin"]
            if source.is_dir():
                shutil.copytree(source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                shutil.copy2(source, target)
        elif "text" in what:
            target.write_text(what["text"].format(**values))
        elif "script" in what:
            target.write_text("#!/bin/sh\n" + what["script"].format(**values) + "\n")
            target.chmod(0o755)
        else:
            raise ValueError(f"images.yaml: {image.name} {path}: give link, standin, text or script")
    stamp.write_text(want)
    return root


def copy_tree(tree: Path, upper: Path) -> None:
    """The image's files into a container's (empty) writable layer, symlinks as symlinks."""
    shutil.copytree(tree, upper, symlinks=True, dirs_exist_ok=True)


def describe(images: list[Image]) -> list[dict[str, Any]]:
    """For the README and tests: each image with what is real (links) and what stands in."""
    return [{"image": i.name, "real": sorted(p for p, w in i.files.items() if "link" in w),
             "standins": sorted(p for p, w in i.files.items() if "link" not in w)} for i in images]

