#!/usr/bin/env bash
# Set up everything from nothing (venv, pinned deps, ffmpeg), then run the demo or the tests.
#   bash dev.sh demo    tag a generated sample catalog: local Ray + S3 server on 127.0.0.1
#   bash dev.sh test    the whole test suite (slow tests included)
#   bash dev.sh setup   only the environment
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

setup() {
  if ! command -v ffmpeg >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
      echo "== installing ffmpeg (Debian)"
      (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq ffmpeg >/dev/null) \
        || echo "== apt-get failed: movielib falls back to the ffmpeg binary imageio-ffmpeg ships"
    else
      echo "== no system ffmpeg: movielib uses the binary imageio-ffmpeg ships"
    fi
  fi
  "$PY" -c 'import sys; assert sys.version_info[:2] == (3, 11), "movielib needs Python 3.11 (set PYTHON=...)"'
  [ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
  local stamp="$VENV/.movielib-deps" want
  want=$(cat pyproject.toml dev.sh | sha1sum | cut -c1-16)
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "== installing dependencies into $VENV (torch first: pinned, taken from local disk)"
    "$VENV/bin/pip" install -q --upgrade pip
    "$VENV/bin/pip" install -q torch==2.14.1 torchvision==0.29.1
    "$VENV/bin/pip" install -q -e '.[test]'
    echo "$want" > "$stamp"
  fi
}

case "${1:-}" in
  setup) setup ;;
  demo) setup; shift; exec "$VENV/bin/movielib" demo "$@" ;;
  test) setup; shift; exec "$VENV/bin/python" -m pytest -q tests "$@" ;;
  *) echo "usage: bash dev.sh {demo|test|setup}" >&2; exit 2 ;;
esac
