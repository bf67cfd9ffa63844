# The deepseek-operator image: `docker build -t deepseek-operator:0.1.0 .`
# The Helm chart (charts/deepseek-operator) runs it as UID 10001 with a read-only root filesystem.

FROM python:3.11-slim AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
WORKDIR /src
# Only what `pip install .` needs (see .dockerignore): the package metadata and the operator package.
COPY pyproject.toml ./
COPY operator/ ./operator/
RUN pip install --prefix=/install .

FROM python:3.11-slim
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
