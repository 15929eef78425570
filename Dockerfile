# syntax=docker/dockerfile:1
# vias-exporter image: a builder stage installs the package into a venv, the final stage
# copies only that venv. Runs as a numeric non-root user and writes nothing at run time,
# so it works with a read-only root filesystem. The dependencies are the hash-checked pins
# of requirements/runtime.txt, the package is built with requirements/build.txt's setuptools
# (in a venv of its own that stays in the builder); tests/deploy/test_image.py builds and
# runs this image.

FROM python:3.11.11-slim-bookworm AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
COPY requirements/build.txt requirements/runtime.txt ./requirements/
RUN python -m venv /opt/build \
    && /opt/build/bin/pip install --require-hashes -r requirements/build.txt \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --require-hashes -r requirements/runtime.txt
COPY pyproject.toml README.md ./
COPY exporter ./exporter
RUN /opt/build/bin/pip wheel --no-deps --no-build-isolation --wheel-dir /wheels . \
    && /opt/venv/bin/pip install --no-deps /wheels/*.whl

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
# Asks /-/healthy as the exporter (PID 1) serves: its --web.listen-address, and HTTPS with
# its --web.config.file when TLS is on (a plain HTTP check failed once TLS was on).
HEALTHCHECK --interval=30s --timeout=5s --start-period=10s --retries=3 \
    CMD ["vias-exporter", "--healthcheck", "/-/healthy"]
ENTRYPOINT ["vias-exporter"]
