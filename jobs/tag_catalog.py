"""Entrypoint for `ray job submit`: the same tagging job as `movielib tag`.

    ray job submit --address http://HEAD:8265 --working-dir . -- \
        python jobs/tag_catalog.py s3://bucket/catalog/ s3://bucket/tags --weights s3://bucket/models/vit-b-32.safetensors
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    sys.exit(run_job("tag"))
