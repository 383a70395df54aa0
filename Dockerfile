# syntax=docker/dockerfile:1
# The seamcut server image (docs/DEPLOY.md). One file, two flavours:
#   CPU (default): docker build -t seamcut:cpu .
#   GPU:           docker build -t seamcut:gpu --build-arg FLAVOUR=gpu \
#                    --build-arg BASE_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04 .
# `make image` (scripts/build_image.sh) wraps both, and builds offline from local wheels.
#
# Why these bases: CPU is python:3.11-slim-bookworm, the Python the project is developed
# and tested on. GPU is NVIDIA's CUDA runtime with cuDNN: onnxruntime-gpu loads the
# system's CUDA 12 and cuDNN 9 libraries, which torch's own nvidia-* wheels do not put
# on the loader's path. Its Ubuntu 24.04 brings Python 3.12 (22.04's 3.10 is older than
# requires-python); the GPU suite has run on 3.12 (docs/PERFORMANCE.md, "GPU").

ARG BASE_IMAGE=python:3.11-slim-bookworm

FROM ${BASE_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
# The CUDA bases carry no Python. Versions come with the base's release, which pins
# them better than a version string here that would break on the next point release.
# hadolint ignore=DL3008
RUN if ! python3 -c "import ensurepip, venv" 2>/dev/null; then \
        apt-get update \
        && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
           python3 python3-venv \
        && rm -rf /var/lib/apt/lists/*; \
    fi

FROM base AS builder
ARG FLAVOUR=cpu
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
# A folder of wheels visible to this stage (podman build -v HOST:DIR): CPU torch from it
# instead of TORCH_INDEX_URL, for hosts that cannot reach that index. Empty = the index.
ARG PIP_FIND_LINKS=""
# A CA bundle for pip behind a TLS-intercepting proxy (mounted the same way); pip reads
# PIP_CERT from the environment, and build arguments are only in this stage's.
ARG PIP_CERT
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PATH=/opt/seamcut/bin:$PATH
RUN python3 -m venv /opt/seamcut
# torch first and in its own layer: ~200 MB (CPU) to GBs (CUDA) that source edits must
# not download again. CPU: the CPU wheel, so that [server]'s torch>=2.4 is met before
# PyPI's Linux default, the CUDA build, is considered (as scripts/setup.sh does). From
# find-links --no-deps: that folder holds torch alone; its requirements (sympy, ...)
# come from PyPI with seamcut below. GPU: PyPI's CUDA torch comes with [gpu].
RUN case "$FLAVOUR" in \
      cpu) if [ -n "$PIP_FIND_LINKS" ]; then \
             pip install --no-index --no-deps --find-links "$PIP_FIND_LINKS" \
               "torch==$TORCH_VERSION"; \
           else \
             pip install --index-url "$TORCH_INDEX_URL" "torch==$TORCH_VERSION"; \
           fi ;; \
      gpu) ;; \
      *) echo "FLAVOUR must be cpu or gpu, got '$FLAVOUR'" >&2; exit 2 ;; \
    esac
WORKDIR /src
COPY pyproject.toml MANIFEST.in README.md ./
COPY scripts/build_backend.py scripts/
COPY seamcut/ seamcut/
COPY server/ server/
COPY client/ client/
COPY bench/ bench/
# A wheel, not an editable or in-tree install: the runtime stage gets site-packages
# only, no source tree. Silero's model ships inside the silero-vad package, so nothing
# is downloaded when the server starts. python -P: /src's seamcut/ folder would
# otherwise shadow the installed package in the import check.
RUN pip wheel --no-deps --wheel-dir /dist . \
    && extra=server && if [ "$FLAVOUR" = gpu ]; then extra=gpu; fi \
    && pip install "$(ls /dist/seamcut-*.whl)[$extra]" \
    && python -P -c "import silero_vad, onnxruntime, torch, seamcut.server.main"

FROM base AS runtime
ARG FLAVOUR=cpu
LABEL org.opencontainers.image.title="seamcut" \
      org.opencontainers.image.description="Streaming gRPC server for cut points at pauses" \
      org.opencontainers.image.licenses="Apache-2.0" \
      io.seamcut.flavour="${FLAVOUR}"
# A fixed numeric uid, so that Kubernetes' runAsNonRoot can verify it (docs/DEPLOY.md).
RUN groupadd --system --gid 10001 seamcut \
    && useradd --system --uid 10001 --gid seamcut --create-home --home-dir /home/seamcut \
       --shell /usr/sbin/nologin seamcut
COPY --from=builder /opt/seamcut /opt/seamcut
COPY deploy/healthcheck.py /opt/seamcut/healthcheck.py
# In a container loopback is reachable from nowhere, so listen on every interface; the
# server then logs its exposure warning unless TLS or a token is configured.
ENV PATH=/opt/seamcut/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    SEAMCUT_SERVER_HOST=0.0.0.0 \
    SEAMCUT_SERVER_PORT=50051
USER 10001:10001
WORKDIR /home/seamcut
# 50051 gRPC (the API and grpc.health.v1); 9464 the Prometheus endpoint when
# SEAMCUT_SERVER_METRICS_PORT=9464 (or --metrics-port) turns it on.
EXPOSE 50051 9464
# seamcut drains on SIGTERM (health NOT_SERVING, open streams get server.grace_s).
STOPSIGNAL SIGTERM
# start-period: loading and warming the models takes 10-30 s on a CPU, NOT_SERVING
# until then. The probe reads SEAMCUT_SERVER_PORT and the TLS paths like the server.
HEALTHCHECK --interval=10s --timeout=5s --start-period=60s --retries=3 \
    CMD ["python", "/opt/seamcut/healthcheck.py"]
ENTRYPOINT ["seamcut", "serve"]
