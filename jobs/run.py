"""Entrypoint for `ray job submit`: any job of movielib's registry, as `movielib` runs it.

    ray job submit --address http://HEAD:8265 --working-dir . -- python jobs/run.py JOB [job args]
    # e.g. python jobs/run.py tag s3://bucket/catalog/ s3://bucket/tags --weights s3://bucket/models/vit-b-32.safetensors

JOB is a registry name (movielib.registry.JOBS: tag, pretrain-scenes, embed-scenes, tune-heads, train-head, ...);
a new job needs no file here. The other files in jobs/ and tune/ are the same call with the name filled in.
"""

import sys

from movielib.cli import run_job

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1].startswith("-"):
        from movielib.registry import JOBS

        sys.exit(f"usage: python jobs/run.py JOB [args]; JOB is one of {', '.join(j.name for j in JOBS if j.submit)}")
    sys.exit(run_job(sys.argv[1], sys.argv[2:]))
