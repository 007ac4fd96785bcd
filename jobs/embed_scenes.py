"""Entrypoint for `ray job submit`: the same scene embedding job as `movielib embed scenes`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/embed_scenes.py s3://bucket/runs/scenes s3://bucket/tags
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("embed-scenes"))
