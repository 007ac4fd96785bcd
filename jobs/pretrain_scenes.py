"""Entrypoint for `ray job submit`: the same Movies2Scenes pretraining job as `movielib pretrain scenes`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/pretrain_scenes.py s3://bucket/tags --similarity s3://bucket/genres.csv \
        --run-folder s3://bucket/runs --weights s3://bucket/models/vit-b-32.safetensors
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("pretrain-scenes"))
