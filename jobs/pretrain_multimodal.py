"""Entrypoint for `ray job submit`: the same long-range multimodal pretraining job as `movielib pretrain multimodal`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/pretrain_multimodal.py s3://bucket/tags --run-folder s3://bucket/runs
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("pretrain-multimodal"))
