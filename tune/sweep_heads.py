"""Entrypoint for `ray job submit`: the same head sweep as `movielib tune heads`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python tune/sweep_heads.py --config heads.yaml --catalog s3://bucket/tags --run-folder s3://bucket/runs
    # an interrupted sweep: python tune/sweep_heads.py --resume s3://bucket/runs/heads
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("tune-heads"))
