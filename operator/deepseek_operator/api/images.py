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
# What the `tritonserver` target is built from: NVIDIA's Triton image with TensorRT-LLM 1.2.1 (Triton's
# docs/introduction/compatibility.md: 26.04 to 26.07 ship 1.2.1), whose `llmapi` model cannot load as shipped
# (the Dockerfile says why and what it adds).
TRITON_BASE_IMAGE = "nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3"


def reference(target: str) -> str:
    return f"{REGISTRY}/{TARGETS[target]}:{TAG}"


OPERATOR_IMAGE = reference("operator")
PREFLIGHT_IMAGE = reference("preflight")
DOWNLOADER_IMAGE = reference("downloader")
FRONTEND_IMAGE = reference("frontend")
TRITON_IMAGE = reference("tritonserver")


if __name__ == "__main__":
    for name in TARGETS:
        print(name, reference(name))
