# syntax=docker/dockerfile:1
#
# gateway-monitor: a wheel built in a throw-away stage and installed into a virtualenv,
# which alone is copied into a runtime stage with no compilers, run as a numeric non-root user.
#
#   docker build -t gateway-monitor:0.1.0 .
#   docker run --rm -p 9478:9478 -e GATEWAY_URL=http://host.docker.internal:8080 gateway-monitor:0.1.0
#
# tests/deploy/test_deploy_dockerfile.py runs the builder stage's RUN lines verbatim in a
# temporary directory (WORKDIR and ${VENV} pointed there), so keep every path in them
# relative to WORKDIR or under ${VENV}: the test refuses other absolute paths.

ARG PYTHON_IMAGE=python:3.12-slim

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS builder

ARG VENV=/opt/gateway-monitor
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1

WORKDIR /build
COPY pyproject.toml README.md ./
COPY monitor/ monitor/

# Bytecode is compiled here, at install time: the runtime's root filesystem is read-only.
RUN python -m pip wheel --no-cache-dir --no-deps --wheel-dir dist . \
    && python -m venv "${VENV}" \
    && "${VENV}/bin/python" -m pip install --no-cache-dir --compile dist/*.whl \
    && "${VENV}/bin/gateway-monitor" --help > /dev/null

# ---------------------------------------------------------------------------------------
FROM ${PYTHON_IMAGE} AS runtime

ARG VENV=/opt/gateway-monitor
LABEL org.opencontainers.image.title="gateway-monitor" \
      org.opencontainers.image.description="Prometheus sidecar for the Tektii Trading Gateway" \
      org.opencontainers.image.licenses="Apache-2.0"

# Same base image and path as in the builder: the venv's interpreter links stay valid.
COPY --from=builder ${VENV} ${VENV}

# No PYTHONUNBUFFERED: the monitor flushes its own log lines (error lines at once, the
# others once per burst of frames); unbuffered stderr would cost a system call per line.
ENV PATH="${VENV}/bin:${PATH}" \
    PYTHONDONTWRITEBYTECODE=1 \
    HOME=/tmp

# Numeric, so that Kubernetes' runAsNonRoot can verify it without an /etc/passwd entry.
USER 65532:65532
EXPOSE 9478

# No curl in slim images: the standard library does the request. The port follows
# MONITOR_LISTEN when it is set in the environment. Behind TLS (a web config file) the
# listener drops plain HTTP, and the request is made again over HTTPS without verifying
# the certificate, which names the service, not 127.0.0.1; /-/healthy needs no password.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
    CMD ["python", "-c", "import os, ssl, urllib.request as r\nport = os.environ.get('MONITOR_LISTEN', ':9478').rpartition(':')[2]\ntry:\n    r.urlopen(f'http://127.0.0.1:{port}/-/healthy', timeout=2)\nexcept OSError:\n    r.urlopen(f'https://127.0.0.1:{port}/-/healthy', timeout=2, context=ssl._create_unverified_context())\n"]

ENTRYPOINT ["gateway-monitor"]
