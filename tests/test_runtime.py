"""The runtime floor: bytes at any URI with the job's S3 options, and a run folder's recorded settings."""

import pytest

from movielib.config import build_config
from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.runtime import exists, read_bytes, write_bytes, write_run_config
from movielib.train.movies2scenes.config import PretrainScenesConfig


def test_bytes_reach_s3_with_the_jobs_own_options_not_the_environments(s3_server, bucket, monkeypatch):
    s3 = S3Options.from_env(s3_server.endpoint_url)
    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_S3"):
        monkeypatch.delenv(var, raising=False)  # only the options know where the store is
    write_bytes(f"s3://{bucket}/runs/x/a.bin", b"abc", s3)
    assert read_bytes(f"s3://{bucket}/runs/x/a.bin", s3) == b"abc" and exists(f"s3://{bucket}/runs/x/a.bin", s3)
    assert not exists(f"s3://{bucket}/runs/x/b.bin", s3)


def _cfg(**over) -> PretrainScenesConfig:
    return build_config(PretrainScenesConfig, {"catalog": "/c", "similarity": {"path": "/g.csv"}, **over})


def test_a_run_folder_refuses_changed_settings_naming_them(tmp_path):
    folder = str(tmp_path / "run")
    write_run_config(folder, _cfg())
    write_run_config(folder, _cfg(ray_address="auto", run={"max_failures": 5}))  # where it runs may change
    with pytest.raises(ConfigError, match=r"other settings \(scenes.lr: 5e-06 -> 0.001; scaling.workers: 2 -> 4\)"):
        write_run_config(folder, _cfg(scenes={"lr": 1e-3}, scaling={"workers": 4}))


def test_the_global_batch_is_exact():
    with pytest.raises(ConfigError, match="scenes.batch must be a multiple of scaling.workers \\(3\\), got 128"):
        _cfg(scaling={"workers": 3}, similarity_model={"batch": 255})
    assert _cfg(scaling={"workers": 4}).scenes.batch == 128


def test_the_s3_server_moves_to_another_port_when_its_chosen_one_is_taken_first(monkeypatch):
    """The race a picked port has: another process binds it before moto does. The server picks again."""
    import socket

    import movielib.demo.s3server as s3server

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        ports = iter([taken.getsockname()[1], s3server.free_port()])
        monkeypatch.setattr(s3server, "free_port", lambda: next(ports))
        with s3server.MotoS3Server() as server:
            assert server.port != taken.getsockname()[1]
            assert server.client().list_buckets()["Buckets"] == []
        with pytest.raises(s3server.PortTaken, match="taken"):  # a port the caller fixed is not changed
            s3server.MotoS3Server(taken.getsockname()[1]).start(timeout_s=10)
