# syntax=docker/dockerfile:1
# PatchScreen images. Two targets share one source tree:
#   api     - python:3.11-slim + the CPU build of torch (small; serves /predict on CPU)
#   worker  - NVIDIA CUDA runtime base + the CUDA build of torch (trains on the GPU)
# Both install the project in a virtual environment at /opt/venv in a build stage and copy it, with
# the source at the same path, into a runtime stage that runs as the unprivileged user `patchscreen`.

ARG PYTHON_IMAGE=python:3.11-slim-bookworm
ARG CUDA_IMAGE=nvidia/cuda:12.6.3-cudnn-runtime-ubuntu24.04
ARG TORCH_VERSION=2.13.0

# ---------------------------------------------------------------- api (CPU torch)
FROM ${PYTHON_IMAGE} AS api-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The CPU wheel first and explicitly, so the project's `torch` range never pulls a CUDA build.
RUN pip install "torch==${TORCH_VERSION}" --index-url https://download.pytorch.org/whl/cpu
WORKDIR /opt/patchscreen
COPY pyproject.toml README.md ./
COPY app ./app
COPY ml ./ml
RUN pip install -e .
COPY . .

FROM ${PYTHON_IMAGE} AS api
RUN useradd --create-home --uid 10001 --shell /usr/sbin/nologin patchscreen \
    && mkdir -p /data && chown patchscreen /data
COPY --from=api-build /opt/venv /opt/venv
COPY --from=api-build /opt/patchscreen /opt/patchscreen
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 PATCHSCREEN_DATA_DIR=/data \
    PATCHSCREEN_BENCH_CACHE=/home/patchscreen/.cache/patchscreen-bench
WORKDIR /opt/patchscreen
USER patchscreen
EXPOSE 8000
CMD ["patchscreen", "serve", "--host", "0.0.0.0", "--port", "8000"]

# ---------------------------------------------------------------- worker (CUDA torch)
FROM ${CUDA_IMAGE} AS worker-build
ARG TORCH_VERSION
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-venv \
    && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
# The default index serves the CUDA build of torch on Linux x86_64.
RUN pip install "torch==${TORCH_VERSION}"
WORKDIR /opt/patchscreen
COPY pyproject.toml README.md ./
COPY app ./app
COPY ml ./ml
RUN pip install -e .
COPY . .

FROM ${CUDA_IMAGE} AS worker
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update && apt-get install -y --no-install-recommends python3 \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --create-home --uid 10001 --shell /usr/sbin/nologin patchscreen
COPY --from=worker-build /opt/venv /opt/venv
COPY --from=worker-build /opt/patchscreen /opt/patchscreen
# The source tree is read-only to the worker user; anything it caches goes under its home.
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 \
    PATCHSCREEN_BENCH_CACHE=/home/patchscreen/.cache/patchscreen-bench
WORKDIR /opt/patchscreen
USER patchscreen
CMD ["patchscreen", "worker", "--queues", "gpu"]
