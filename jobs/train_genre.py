"""Entrypoint for `ray job submit`: the same genre classifier as `movielib train genre`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/train_genre.py s3://bucket/tags --genres s3://bucket/genres.csv --run-folder s3://bucket/runs
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("train-genre"))
