"""Catalog listing: folders, s3 prefixes, manifest files; stable video ids; destination checks."""

import os

import pytest

from movielib.errors import StorageError
from movielib.io.uri import S3Options, VideoRef, check_destination, list_source


def test_folder_listing_filters_by_extension(tmp_path):
    (tmp_path / "a").mkdir()
    for name in ("a/x.mp4", "b.MKV", "c.srt", "notes.txt"):
        (tmp_path / name).write_bytes(b"1234")
    listing = list_source(str(tmp_path))
    assert [os.path.basename(v.uri) for v in listing.videos] == ["x.mp4", "b.MKV"]  # sorted by path
    assert [os.path.basename(u) for u in listing.ignored] == ["notes.txt"]  # subtitles are sidecars, not ignored
    assert all(v.size == 4 for v in listing.videos)


def test_manifest_keeps_missing_and_relative_entries(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"12")
    (tmp_path / "take#2 100%.mp4").write_bytes(b"123")
    manifest = tmp_path / "catalog.txt"
    manifest.write_text(f"# my catalog\nv.mp4\n{tmp_path}/gone.mp4  # deleted\ntake#2 100%.mp4\n\n")
    refs = list_source(str(manifest)).videos
    assert [os.path.basename(r.uri) for r in refs] == ["v.mp4", "gone.mp4", "take#2 100%.mp4"]
    assert [r.size for r in refs] == [2, -1, 3]


def test_video_id_changes_with_the_object():
    a = VideoRef("s3://b/x.mp4", 10, 1)
    assert a.video_id == VideoRef("s3://b/x.mp4", 10, 1).video_id
    assert a.video_id != VideoRef("s3://b/x.mp4", 11, 1).video_id
    assert a.video_id != VideoRef("s3://b/x.mp4", 10, 2).video_id


def test_s3_prefix_listing(s3_server, bucket):
    c = s3_server.client()
    for key in ("cat/a.mp4", "cat/sub/b.mov", "cat/a.srt", "other/c.mp4"):
        c.put_object(Bucket=bucket, Key=key, Body=b"xx")
    listing = list_source(f"s3://{bucket}/cat/", S3Options.from_env(s3_server.endpoint_url))
    assert sorted(v.uri for v in listing.videos) == [f"s3://{bucket}/cat/a.mp4", f"s3://{bucket}/cat/sub/b.mov"]
    assert listing.ignored == []


def test_missing_bucket_is_named(s3_server):
    with pytest.raises(StorageError, match="no-such-bucket"):
        check_destination("s3://no-such-bucket/out", S3Options.from_env(s3_server.endpoint_url))


def test_unreachable_endpoint_fails_fast(refused_url):
    s3 = S3Options(endpoint_url=refused_url, region="us-east-1", connect_timeout_s=1, max_attempts=1)
    with pytest.raises(StorageError, match="cannot reach"):
        list_source("s3://bucket/catalog/", s3)


def test_missing_source(tmp_path):
    with pytest.raises(StorageError, match="does not exist"):
        list_source(str(tmp_path / "nothing"))


def test_s3_manifest_probes_every_uri_in_order(s3_server, bucket, monkeypatch):
    """HEADs go out in parallel batches; the listing keeps the manifest's order and its missing entries."""
    import movielib.io.uri as uri

    monkeypatch.setattr(uri, "PROBE_BATCH", 3)
    c = s3_server.client()
    keys = [f"cat/v{i:02d}.mp4" for i in range(10)]
    for n, key in enumerate(keys):
        if n != 4:
            c.put_object(Bucket=bucket, Key=key, Body=b"x" * (n + 1))
    lines = [f"s3://{bucket}/{k}" for k in reversed(keys)]
    c.put_object(Bucket=bucket, Key="catalog.txt", Body="\n".join(lines).encode())
    refs = list_source(f"s3://{bucket}/catalog.txt", S3Options.from_env(s3_server.endpoint_url)).videos
    assert [r.uri for r in refs] == lines
    assert [r.size for r in refs] == [10 - n if n != 5 else -1 for n in range(10)]
