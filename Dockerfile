# syntax=docker/dockerfile:1
# triton-core in a container: Triton's ports (8000 HTTP, 8001 gRPC, 8002 metrics), a
# non-root user, the backends chosen at build time:
#   docker build --build-arg BACKENDS="onnx python" --build-arg EXTRAS="s3" -t triton-core:0.1.0 .
#   docker run -p 8000-8002:8000-8002 -v $PWD/examples/model_repository:/models triton-core:0.1.0
# BACKENDS: folder names under plugins/ without "triton-backend-" (onnx, python, torch).
# EXTRAS: the core's extras (s3, gcs, azure: model repositories in object storage).

ARG PYTHON_VERSION=3.11

# The build stage has a C compiler (the core's C layer is built by cffi at install).
FROM python:${PYTHON_VERSION} AS build
ARG BACKENDS="onnx python"
ARG EXTRAS="s3"
WORKDIR /src
COPY core core
COPY plugins plugins
RUN set -eu; \
    python -m venv /opt/triton-core; \
    /opt/triton-core/bin/pip install --no-cache-dir -U pip; \
    pkgs="./core[$(echo "$EXTRAS" | tr ' ' ',')]"; \
    for b in $BACKENDS; do pkgs="$pkgs ./plugins/triton-backend-$b"; done; \
    /opt/triton-core/bin/pip install --no-cache-dir $pkgs

# The runtime stage: the same Python (the venv's interpreter path must match), no compiler.
FROM python:${PYTHON_VERSION}-slim
COPY --from=build /opt/triton-core /opt/triton-core
RUN useradd --uid 1000 --create-home --shell /usr/sbin/nologin triton \
 && mkdir /models && chown triton /models
ENV PATH=/opt/triton-core/bin:$PATH PYTHONUNBUFFERED=1
USER 1000
WORKDIR /home/triton
EXPOSE 8000 8001 8002
# Docker's own check (Kubernetes ignores it and uses the probes in deploy/kserve/).
HEALTHCHECK --interval=10s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import sys, urllib.request; sys.exit(urllib.request.urlopen('http://127.0.0.1:8000/v2/health/ready', timeout=2).status != 200)"]
# No ENTRYPOINT: KServe's `args` replace this command whole.
CMD ["tritonserver", "--model-repository=/models"]
