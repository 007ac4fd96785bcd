"""What `movielib submit` decides before it talks to a cluster: what ships, what runs, what is refused."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from conftest import ROOT

from movielib.cli import main
from movielib.cluster.submit import PACKAGE, Submission, exit_code
from movielib.errors import ConfigError


def test_the_entrypoint_is_the_movielib_command_of_the_job(tmp_path):
    sub = Submission("pretrain-scenes", ["s3://b/tags", "--similarity", "s3://b/g.csv", "--set", "a b=1"], tmp_path)
    assert sub.entrypoint == "python -m movielib pretrain scenes s3://b/tags --similarity s3://b/g.csv --set 'a b=1'"


def test_movielib_ships_as_a_module_unless_the_working_dir_holds_it(tmp_path):
    outside = Submission("tag", ["a", "b"], tmp_path).runtime_env
    assert outside["working_dir"] == str(tmp_path) and outside["py_modules"] == [str(PACKAGE)]
    assert "**/__pycache__" in outside["excludes"] and "bench-results" in outside["excludes"]
    assert "py_modules" not in Submission("tag", ["a", "b"], ROOT).runtime_env  # the checkout ships it already
    assert "py_modules" in Submission("tag", ["a", "b"], ROOT.parent).runtime_env  # holds it, but not importably
    assert "py_modules" not in Submission("tag", ["a", "b"], tmp_path, ship_package=False).runtime_env


def test_a_config_file_must_travel_with_the_job(tmp_path):
    (tmp_path / "wd").mkdir()
    (tmp_path / "outside.yaml").write_text("scoring: {batch_size: 4}\n")
    (tmp_path / "wd" / "tag.yaml").write_text("scoring: {batch_size: 4}\n")
    Submission("tag", ["a", "b", "--config", "tag.yaml"], tmp_path / "wd").check()
    with pytest.raises(ConfigError, match="outside the working dir"):
        Submission("tag", ["a", "b", "--config", str(tmp_path / "outside.yaml")], tmp_path / "wd").check()
    with pytest.raises(ConfigError, match="no such file"):
        Submission("tag", ["a", "b", "--config", "nope.yaml"], tmp_path / "wd").check()
    with pytest.raises(SystemExit):  # argparse: the job's own usage, before anything is uploaded
        Submission("tag", ["a"], tmp_path).check()


def test_unknown_job_and_missing_address_are_refused(tmp_path, capsys, monkeypatch):
    with pytest.raises(ConfigError, match="unknown job 'tagg'"):
        Submission("tagg", [], tmp_path)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert main(["submit", "tag", "a", "b"]) == 2
    assert "--address" in capsys.readouterr().err
    assert main(["submit", "tag", "--address", "http://127.0.0.1:1", "a", "b", "--random-weights"]) == 2
    assert "cannot reach the Ray dashboard at http://127.0.0.1:1" in capsys.readouterr().err


@pytest.mark.parametrize(
    "status,driver,code",
    [("SUCCEEDED", 0, 0), ("FAILED", 75, 75), ("FAILED", 2, 2), ("FAILED", None, 1), ("STOPPED", None, 1)],
)
def test_the_exit_status_is_the_jobs(status, driver, code):
    assert exit_code(SimpleNamespace(status=status, driver_exit_code=driver)) == code


def test_secrets_in_the_working_dir_never_ship_and_a_home_folder_is_refused(tmp_path, monkeypatch):
    from ray._private.thirdparty.pathspec import PathSpec  # what Ray matches runtime_env excludes with

    spec = PathSpec.from_lines("gitwildmatch", Submission("tag", ["a", "b"], tmp_path).runtime_env["excludes"])
    for secret in (".env", ".env.prod", "conf/.env", "tls/server.pem", "server.key", ".aws/credentials",
                   ".ssh/id_rsa", "credentials", "gcp/credentials.json", ".netrc", ".git-credentials"):  # fmt: skip
        assert spec.match_file(secret), secret
    for code in ("movielib/cli.py", "configs/tag.yaml", "jobs/run.py", "keys.md"):
        assert not spec.match_file(code), code
    monkeypatch.setenv("HOME", str(tmp_path))
    with pytest.raises(ConfigError, match="home folder"):
        Submission("tag", ["a", "b"], tmp_path)


def test_a_shipped_config_that_holds_keys_is_warned_about(tmp_path, capsys):
    (tmp_path / "tag.yaml").write_text("s3: {endpoint_url: http://x, secret_access_key: abc, access_key_id: AK}\n")
    (tmp_path / "clean.yaml").write_text("s3: {endpoint_url: http://x, secret_access_key: null}\n")
    Submission("tag", ["a", "b", "--config", "clean.yaml"], tmp_path).check()
    assert "warning" not in capsys.readouterr().err
    Submission("tag", ["a", "b", "--config", "tag.yaml"], tmp_path).check()
    err = capsys.readouterr().err
    assert "sets s3.secret_access_key" in err and "sets s3.access_key_id" in err and "abc" not in err


def test_the_token_never_goes_over_plain_http_except_to_this_machine():
    from movielib.cluster.submit import refuse_plain_http
    from movielib.errors import MovielibError

    for fine in ("http://127.0.0.1:8265", "http://localhost:8265", "https://ray.example.com", "127.0.0.1:8265"):
        refuse_plain_http(fine)
    for plain in ("http://10.0.0.5:8265", "http://ray.example.com:8265", "10.0.0.5:8265"):
        with pytest.raises(MovielibError, match="refusing to send the cluster's token over plain http"):
            refuse_plain_http(plain)
