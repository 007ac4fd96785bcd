# movielib's image: every manifest in cluster/ names it (head, CPU and GPU workers alike).
#   docker build -t registry.example.com/movielib:0.1.0 .
#   docker push registry.example.com/movielib:0.1.0
# Ray 2.60 on Python 3.11 with CUDA (the GPU variant runs on CPU nodes too: one image for every node).
FROM rayproject/ray:2.60.0-py311-gpu

# ffmpeg: shared FFmpeg libraries for torchcodec's NVDEC decoding, and the ffmpeg CLI for audio and clips
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /app && chown 1000:100 /app
# back to the base image's user, ray (uid 1000, group users: 100)
USER 1000

WORKDIR /app
# torch and torchvision first and exactly as pyproject.toml pins them (everything else resolves around them)
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1

# dependencies before the code, so a code change rebuilds one small layer
COPY --chown=1000:100 pyproject.toml README.md ./
COPY --chown=1000:100 movielib/__init__.py movielib/__init__.py
RUN pip install --no-cache-dir . && pip uninstall -y movielib

# the package plus the entrypoints the manifests run (jobs/, tune/, serve/) at /app, the pods' workingDir
COPY --chown=1000:100 . .
RUN pip install --no-cache-dir --no-deps -e .

ENV HF_HUB_OFFLINE=1
