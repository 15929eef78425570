# syntax=docker/dockerfile:1
# vias-exporter image: a builder stage installs the package into a venv, the final stage
# copies only that venv. Runs as a numeric non-root user and writes nothing at run time,
# so it works with a read-only root filesystem.

FROM python:3.11.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python -m venv /opt/venv
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/venv/bin/pip wheel --no-deps --wheel-dir /wheels . \
    && /opt/venv/bin/pip install /wheels/*.whl

FROM python:3.11.11-slim-bookworm
LABEL org.opencontainers.image.title="vias-exporter" \
      org.opencontainers.image.description="Prometheus exporter for Huawei Cloud VIAS jobs" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1
COPY --from=builder /opt/venv /opt/venv
USER 65532:65532
EXPOSE 9875
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import urllib.request; urllib.request.urlopen('http://127.0.0.1:9875/-/healthy', timeout=4)"]
ENTRYPOINT ["vias-exporter"]
