#!/usr/bin/env bash
# The GPU check: run it on a GPU node whenever one is at hand (under 8 minutes); it prints each figure.
#   bash bench/gpu_check.sh
# bf16 training steps of both Movies2Scenes stages, the multimodal and genre loops, CLIP scoring on the GPU,
# NVDEC decoding (bench/gpu_check.py).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
exec timeout 480 "$PY" -m bench.gpu_check "$@"
