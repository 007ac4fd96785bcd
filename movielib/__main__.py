"""`python -m movielib ...`: the console script, for job entrypoints that cannot rely on PATH."""

import sys

from movielib.cli import main

sys.exit(main())
