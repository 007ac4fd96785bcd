"""The job registry: the CLI, `movielib submit`, the entry points and a new job all come from one table."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap

import pytest
from conftest import ROOT

from movielib import registry
from movielib.cli import build_parser, main
from movielib.cluster.submit import Submission, jobs
from movielib.config import JobConfig
from movielib.errors import ConfigError
from movielib.registry import JOBS, Job, Option, job_for


def _placeholders(job: Job) -> list[str]:
    """Values for a job's required positional arguments."""
    return [f"arg{i}" for i, o in enumerate(job.options) if not o.flags[0].startswith("-") and "nargs" not in o.kwargs]


@pytest.mark.parametrize("job", JOBS, ids=lambda j: j.name)
def test_every_job_is_a_cli_command_whose_options_reach_its_config(job):
    args = build_parser().parse_args(
        [*job.command, *_placeholders(job), "--s3-endpoint", "http://127.0.0.1:9", "--ray-address", "auto"]
    )
    assert args.movielib_job == job.name
    overrides = job.overrides(args)
    assert overrides["s3.endpoint_url"] == "http://127.0.0.1:9" and overrides["ray_address"] == "auto"
    for o in job.options:  # every option that names a config field is a real field of the job's schema
        if o.field:
            node = job.schema
            for part in o.field.split("."):
                assert part in node.model_fields, (job.name, o.field)
                node = node.model_fields[part].annotation


def test_submit_and_the_entry_points_derive_from_the_registry():
    assert jobs() == {j.name: j.command for j in JOBS if j.submit} and "serve" not in jobs()
    scripts = [*ROOT.glob("jobs/*.py"), *ROOT.glob("tune/*.py")]
    named = {p.name: re.search(r'run_job\("([\w-]+)"\)', p.read_text()) for p in scripts}
    assert named.pop("run.py") is None  # the generic one takes the job's name as its first argument
    assert all(m and m.group(1) in jobs() for m in named.values()), named


def test_jobs_run_py_runs_any_job_by_name():
    proc = subprocess.run(
        [sys.executable, "jobs/run.py", "embed-scenes", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and "usage: movielib embed scenes" in proc.stdout, proc.stderr
    bad = subprocess.run([sys.executable, "jobs/run.py"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "tune-heads" in bad.stderr


class CountConfig(JobConfig):
    """The toy job's config."""

    word: str = "shot"
    times: int = 1


def test_a_new_job_is_one_module_plus_one_registry_entry(tmp_path, monkeypatch, capsys):
    """A job module with run(cfg, args) and one Job(...) appended: the CLI runs it, prints its resolved config and
    summary and exits with its code; `movielib submit` accepts it and checks its arguments before shipping."""
    (tmp_path / "toy_job.py").write_text(
        textwrap.dedent("""
        class Summary(str):
            exit_code = 3

            def render(self):
                return str(self)


        def run(cfg, args):
            return Summary(" ".join([cfg.word] * cfg.times) + f" from {args.source}")
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    toy = Job(
        "count-words",
        ("count", "words"),
        "a toy job",
        CountConfig,
        "toy_job:run",
        (Option(("source",), "where"), Option(("--times",), "how often", "times", {"type": int})),
        example="word=take",
    )
    monkeypatch.setattr(registry, "JOBS", (*JOBS, toy))
    monkeypatch.setenv("MOVIELIB_VERBOSE", "0")  # restored after the test: --verbose below sets it
    assert main(["count", "words", "s3://b/x", "--times", "2", "--set", "word=take"]) == 3
    out = capsys.readouterr().out
    assert "config (every other field at its default):\n  word: take\n  times: 2\n" in out  # what differs from defaults
    assert "take take from s3://b/x" in out
    assert main(["--verbose", "count", "words", "s3://b/x", "--times", "2", "--set", "word=take"]) == 3
    assert "resolved config:\nword: take\ntimes: 2\n" in capsys.readouterr().out  # --verbose: all of it
    assert main(["count", "words", "x", "--set", "times=many"]) == 2  # its config is checked like any job's
    assert "times must be an integer, got 'many'" in capsys.readouterr().err
    assert (
        Submission("count-words", ["s3://b/x", "--times", "4"], tmp_path).entrypoint
        == "python -m movielib count words s3://b/x --times 4"
    )
    with pytest.raises(SystemExit):  # the job's own parser refuses a missing argument before anything ships
        Submission("count-words", [], tmp_path).check()
    with pytest.raises(ConfigError, match="unknown job"):
        job_for("count-wordz")
