# Five images, one per target; `deploy/build-images` builds them all under the references the CRD's defaults and
# the Helm chart name (deepseek_operator/api/images.py):
#   operator      the operator (the last stage); the chart runs it as UID 10001 with a read-only root filesystem
#   preflight     the NCCL preflight: PyTorch with its CUDA and NCCL wheels, several GB
#   downloader    the weights downloader: huggingface_hub and boto3, none of the operator's dependencies
#   frontend      the serving pod's front door beside Triton (the OpenAI API, Triton's HTTP API, their counters)
#   tritonserver  the serving image: NVIDIA's Triton + TensorRT-LLM image with what its llmapi model needs

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): the package metadata and the operator package.
COPY pyproject.toml ./
COPY operator/ ./operator/
RUN pip install --prefix=/install .

FROM python:3.11-slim AS preflight
ENV PYTHONUNBUFFERED=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
COPY pyproject.toml /src/
COPY operator/ /src/operator/
# torchrun launches one rank per GPU; the JSON summary goes to /dev/termination-log for the operator to read.
RUN pip install '/src[preflight]' && rm -rf /src
USER 10001:10001
ENTRYPOINT ["torchrun"]

FROM python:3.11-slim AS downloader
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=/app
COPY operator/deepseek_operator/download/requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
# Only the downloader's modules: it imports nothing else of the package (an import contract holds it to that).
COPY operator/deepseek_operator/__init__.py /app/deepseek_operator/__init__.py
COPY operator/deepseek_operator/download/ /app/deepseek_operator/download/
USER 10001:10001
# 8080: the progress endpoint the operator reads. The outcome goes to /dev/termination-log.
EXPOSE 8080
ENTRYPOINT ["python", "-m", "deepseek_operator.download"]

FROM python:3.11-slim AS frontend
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1 PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONPATH=/app
COPY operator/deepseek_operator/frontend/requirements.txt /tmp/requirements.txt
RUN pip install -r /tmp/requirements.txt && rm /tmp/requirements.txt
# Only the frontend's modules (an import contract holds it to them).
COPY operator/deepseek_operator/__init__.py /app/deepseek_operator/__init__.py
COPY operator/deepseek_operator/frontend/ /app/deepseek_operator/frontend/
USER 10001:10001
# 8000: the pod's HTTP API (OpenAI's /v1, Triton's /v2 forwarded to Triton on 8080, /health/*); 8003: /metrics.
EXPOSE 8000 8003
ENTRYPOINT ["python", "-m", "deepseek_operator.frontend"]

# NVIDIA's 26.03 to 26.07 images pin openai==1.107.3 for Triton's own OpenAI frontend, while TensorRT-LLM 1.2
# imports `PartReasoningText` (first in openai 1.108.1) when its PyTorch executor loads: the llmapi model fails
# with "ImportError: cannot import name 'PartReasoningText'" (triton-inference-server/server
# docs/getting_started/llm.md, commit 5f756ce4b; NVIDIA's fix is `pip install -U openai`). 2.52.1 is the version that
# fix resolved to when NVIDIA validated 26.07 (2026-08-03), pinned so that the image does not move. Multi-node
# replicas start their MPI ranks over SSH, so the workers need an sshd.
FROM nvcr.io/nvidia/tritonserver:26.07-trtllm-python-py3 AS tritonserver
RUN pip install --no-cache-dir "openai==2.52.1" \
 && apt-get update && apt-get install -y --no-install-recommends openssh-server \
 && rm -rf /var/lib/apt/lists/*

FROM python:3.11-slim AS operator
ENV PYTHONUNBUFFERED=1 PYTHONDONTWRITEBYTECODE=1
COPY --from=build /install /usr/local
# A numeric, non-root user, so that the kubelet can check runAsNonRoot.
RUN groupadd --system --gid 10001 operator \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin operator
USER 10001:10001
WORKDIR /
# 8080: kopf's liveness endpoint (/healthz); 9090: Prometheus metrics (/metrics).
EXPOSE 8080 9090
ENTRYPOINT ["python", "-m", "deepseek_operator"]
