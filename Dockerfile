# movielib's image: every manifest in cluster/ names it (head, CPU and GPU workers alike).
#   docker build -t registry.example.com/movielib:0.1.0 .
#   docker push registry.example.com/movielib:0.1.0
# Ray 2.60 on Python 3.11 with CUDA (the GPU variant runs on CPU nodes too: one image for every node).
# In production pin the base by digest (README, "The image"): FROM rayproject/ray:2.60.0-py311-gpu@sha256:<digest>
FROM rayproject/ray:2.60.0-py311-gpu

# ffmpeg: shared FFmpeg libraries for torchcodec's NVDEC decoding, and the ffmpeg CLI for audio and clips.
# Everything below is installed by root and owned by root: the ray user that runs the pods can read the code,
# not change it.
USER 0
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ffmpeg \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir /app

WORKDIR /app
# torch and torchvision first and exactly as pyproject.toml pins them (everything else resolves around them)
RUN pip install --no-cache-dir torch==2.14.1 torchvision==0.29.1

# dependencies before the code, so a code change rebuilds one small layer
COPY pyproject.toml README.md ./
COPY movielib/__init__.py movielib/__init__.py
RUN pip install --no-cache-dir . && pip uninstall -y movielib

# the package (installed, not editable) plus the entrypoints the manifests run (jobs/, tune/, serve/) at /app,
# the pods' workingDir; .dockerignore lets nothing else in
COPY movielib movielib
COPY jobs jobs
COPY tune tune
COPY serve serve
RUN pip install --no-cache-dir --no-deps .

ENV HF_HUB_OFFLINE=1
# the base image's user, ray (uid 1000): the pods' securityContext runs as it (runAsNonRoot)
USER 1000
