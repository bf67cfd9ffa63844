"""The images this project builds and the references everything names them by: the CRD's defaults, the Helm
chart's values, the testbed's image table and `deploy/build-images` (which builds each Dockerfile target and
tags it so). Run `python -m deepseek_operator.api.images` for `<target> <reference>` lines."""

from __future__ import annotations

REGISTRY = "ghcr.io/deepseek-operator"
TAG = "0.1.0"  # the package's version (pyproject.toml) and the chart's appVersion; a test holds them equal

# Dockerfile target -> image name. The operator's is the Dockerfile's last stage (target `operator`).
TARGETS = {
    "operator": "deepseek-operator",
    "preflight": "deepseek-operator-preflight",
    "downloader": "deepseek-operator-downloader",
    "frontend": "deepseek-operator-frontend",
    "tritonserver": "deepseek-operator-tritonserver",
}


def reference(target: str) -> str:
    return f"{REGISTRY}/{TARGETS[target]}:{TAG}"


PREFLIGHT_IMAGE = reference("preflight")
DOWNLOADER_IMAGE = reference("downloader")
FRONTEND_IMAGE = reference("frontend")
TRITON_IMAGE = reference("tritonserver")


if __name__ == "__main__":
    for name in TARGETS:
        print(name, reference(name))
