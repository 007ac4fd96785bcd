"""The whole tagging job on a real local Ray, over the moto S3 server, on real encoded videos."""

import collections
import re
import subprocess
import sys

import pyarrow.fs as pafs
import pytest
from conftest import CLIPS, ROOT, TINY

from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.store.claims import CLAIMS_TABLE
from movielib.store.store import CatalogStore
from movielib.taxonomy.labels import LabelSet

pytestmark = pytest.mark.slow


def _config(endpoint=None, **extra):
    overrides = {
        "model.name": TINY,
        "model.random_weights": True,
        "scoring.batch_size": 4,
        "output.rows_per_file": 4,
        **extra,
    }
    if endpoint:
        overrides["s3.endpoint_url"] = endpoint
    return load_tag_config(None, overrides)


def _keys(fs, root):
    infos = fs.get_file_info(pafs.FileSelector(root, recursive=True, allow_not_found=True))
    return sorted(i.path for i in infos if i.type == pafs.FileType.File)


def _upload_catalog(s3_server, bucket, clips):
    c = s3_server.client()
    for name, (path, _) in clips.items():
        c.upload_file(str(path), bucket, f"catalog/{name}")
    c.put_object(Bucket=bucket, Key="catalog/corrupt.mp4", Body=clips["three.mp4"][0].read_bytes()[:3000])
    c.put_object(Bucket=bucket, Key="catalog/readme.txt", Body=b"not part of the catalog")


def test_tag_catalog_over_s3_then_rerun_writes_nothing(ray_local, s3_server, bucket, clips):
    _upload_catalog(s3_server, bucket, clips)
    source, dest = f"s3://{bucket}/catalog/", f"s3://{bucket}/out"
    summary = run_tagging(plan_tagging(_config(s3_server.endpoint_url), source, dest))

    n_shots = {name: len(cuts) + 1 for name, (_, cuts) in clips.items()}
    assert (summary.videos_ok, summary.videos_error, summary.videos_skipped) == (3, 1, 0)
    assert summary.shots == sum(n_shots.values())
    assert summary.ignored == [f"s3://{bucket}/catalog/readme.txt"]
    assert set(summary.stage_s) == {"decode", "people", "audio", "text", "score", "write"}
    stages = re.search(r"stage time \(summed over workers\): (.*)", summary.render()).group(1)
    assert stages == ", ".join(f"{k} {v:.1f}s ({summary.shots / v:.1f} shots/s)" for k, v in summary.stage_s.items())
    assert all(v > 0 for v in summary.stage_s.values())  # each stage ran and was timed
    # and its CPU seconds: the decoder's threads count, so decoding can cost more CPU than wall time
    assert set(summary.stage_cpu_s) <= set(summary.stage_s) and min(summary.stage_cpu_s.values()) >= 0
    assert summary.stage_cpu_s["decode"] > 0 and summary.stage_cpu_s["people"] > 0
    cpu = re.search(r"stage CPU per shot: (.*)", summary.render()).group(1)
    assert cpu.startswith(f"decode {1000 * summary.stage_cpu_s['decode'] / summary.shots:.0f} ms, ")

    store = CatalogStore(dest, S3Options.from_env(s3_server.endpoint_url))
    videos = store.read_table("videos").to_pylist()
    shots = store.read_table("shots").to_pylist()
    tags = store.read_table("tags").to_pylist()
    assert len(videos) == 4 and len(shots) == len(tags) == sum(n_shots.values())
    (err,) = [v for v in videos if v["status"] == "error"]
    assert err["uri"].endswith("corrupt.mp4") and "cannot open video" in err["error"]
    frames = {name: round(sum(seg.seconds for seg in segs) * fps) for name, (segs, fps) in CLIPS.items()}
    ok = {v["uri"].rsplit("/", 1)[1]: v for v in videos if v["status"] == "ok"}
    assert {name: v["n_frames"] for name, v in ok.items()} == frames and all(v["error"] is None for v in ok.values())

    # shots per video follow the known cuts; keys are unique
    by_uri = {v["video_id"]: v["uri"].rsplit("/", 1)[1] for v in videos}
    starts = collections.defaultdict(list)
    for s in sorted(shots, key=lambda s: (s["video_id"], s["shot_idx"])):
        starts[by_uri[s["video_id"]]].append(s["start_frame"])
    for name, (_, cuts) in clips.items():
        assert len(starts[name]) == len(cuts) + 1 and all(abs(a - b) <= 1 for a, b in zip(starts[name][1:], cuts))
    assert len({(t["video_id"], t["shot_idx"]) for t in tags}) == len(tags)

    labels = set(LabelSet.movieclip().labels)
    for t in tags:
        assert len(t["labels"]) == 5 and set(t["labels"]) <= labels
        assert t["scores"] == sorted(t["scores"], reverse=True) and sum(t["scores"]) <= 1.0 + 1e-5
        assert t["clean"] == (t["scores"][0] >= 0.4)

    # the tables are Delta tables any engine reads: deltalake and Ray Data's read_delta see the same rows
    from deltalake import DeltaTable

    opts = store.tables.options
    assert opts["conditional_put"] == "etag"
    assert DeltaTable(f"{dest}/tags", storage_options=opts).to_pyarrow_table().num_rows == len(tags)
    ds = ray_local.data.read_delta(f"{dest}/shots", storage_options=opts)
    assert ds.count() == len(shots) and set(ds.schema().names) == set(store.read_table("shots").column_names)
    # many videos per file: rows_per_file=4 -> fewer files than videos + shots
    assert store.tables.info("shots").files < len(shots)

    fs, root = store.fs, store.root
    before = _keys(fs, root)
    again = run_tagging(plan_tagging(_config(s3_server.endpoint_url), source, dest))
    assert (again.videos_ok, again.videos_error, again.videos_skipped, again.shots) == (0, 0, 4, 0)
    new = set(_keys(fs, root)) - set(before)
    assert new == {f"{root}/_movielib/runs/{again.run_id}.json"}  # a re-run writes nothing but its summary

    # one new video adds exactly its rows
    c = s3_server.client()
    c.upload_file(str(clips["two_30fps.mp4"][0]), bucket, "catalog/new.mp4")
    third = run_tagging(plan_tagging(_config(s3_server.endpoint_url, **{"output.compact": True}), source, dest))
    assert (third.videos_ok, third.videos_skipped, third.shots) == (1, 4, 2)
    assert store.read_table("shots").num_rows == len(shots) + 2 and store.read_table("videos").num_rows == 5
    assert store.tables.info("shots").files == 1 and "compact" in third.timings_s  # opt-in compaction at the end
    # the reader API: a join of shot tables as Arrow and as a Ray Dataset, filtered by model
    joined = store.read_shots("tags", "features/image", model=TINY)
    assert joined.num_rows == len(shots) + 2 and {"labels", "embedding", "start_frame"} <= set(joined.column_names)
    assert store.read_shots("tags", "features/image", model="ViT-L-14").num_rows == 0
    assert store.dataset_of_shots("tags", num_partitions=2).count() == len(shots) + 2
    import polars as pl

    assert pl.read_delta(f"{dest}/tags", storage_options=opts).height == len(shots) + 2


def _delete_rows(store, table, video_id):
    return store.tables.delete(table, [video_id])


def _lapse_claims(store, run_id: str) -> None:
    """A dead run's claims as they stand once output.claim_ttl_s has passed: made an hour ago, lapsed since. (A
    1 s TTL would race the run's own renewals; tests/pipeline/test_store.py drives the lapse on its own clock.)"""
    from datetime import UTC, datetime, timedelta

    from movielib.store.claims import claim, release

    held = store.tables.open(CLAIMS_TABLE).to_pyarrow_table(columns=["video_id", "run_id"])
    ids = [v for v, r in zip(*(held[c].to_pylist() for c in ("video_id", "run_id"))) if r == run_id]
    release(store.tables, run_id, ids)
    claim(store.tables, run_id, ids, ttl_s=1, clock=lambda: datetime.now(UTC) - timedelta(hours=1))


def test_a_crash_between_two_tables_commits_leaves_every_key_once_after_a_rerun(ray_local, tmp_path, clips):
    """A run that died after committing a video's features and shots, but before its tags and videos rows:
    the re-run takes the video back (its claim lapsed), removes the debris and writes each key once."""
    catalog = tmp_path / "catalog"
    catalog.mkdir()
    for name in ("four.mp4", "three.mp4"):
        (catalog / name).symlink_to(clips[name][0])
    dest = tmp_path / "out"
    cfg = _config(**{"people.enabled": False, "features.audio": False})
    first = run_tagging(plan_tagging(cfg, str(catalog), str(dest)))
    assert first.videos_ok == 2 and first.shots == 7
    store = CatalogStore(str(dest))
    four = next(v["video_id"] for v in store.read_table("videos").to_pylist() if v["uri"].endswith("four.mp4"))
    # the state a crash between the shots commit and the tags commit leaves (commit order: features/*, shots,
    # tags, videos): shot rows and feature rows of a video that has no tags and no videos row
    assert _delete_rows(store, "tags", four) == 4 and _delete_rows(store, "videos", four) == 1
    _lapse_claims(store, first.run_id)  # the dead run's claims lapse

    plan = plan_tagging(cfg, str(catalog), str(dest))
    assert (plan.todo.videos, plan.todo.skipped) == (1, 1)
    second = run_tagging(plan)
    assert second.videos_ok == 1 and second.shots == 4 and second.debris_rows_removed == 4 + 4 + 4
    for name in ("shots", "tags", "features/image", "features/text"):
        keys = [
            (r["video_id"], r["shot_idx"]) for r in store.read_table(name, columns=["video_id", "shot_idx"]).to_pylist()
        ]
        assert len(keys) == len(set(keys)) == 7, name
    assert sorted(store.video_ids().to_pylist()) == sorted(set(store.video_ids().to_pylist()))
    assert plan_tagging(cfg, str(catalog), str(dest)).todo.videos == 0


def test_job_entrypoint_runs_and_skips_committed_videos(ray_local, tmp_path, clips):
    """jobs/tag_catalog.py (what `ray job submit` runs) over a manifest file, twice."""
    manifest = tmp_path / "catalog.txt"
    manifest.write_text(f"{clips['two_30fps.mp4'][0]}\n{tmp_path}/missing.mp4\n")
    cmd = [
        sys.executable,
        str(ROOT / "jobs" / "tag_catalog.py"),
        str(manifest),
        str(tmp_path / "out"),
        "--model",
        TINY,
        "--random-weights",
        "--set",
        "scoring.batch_size=4",
    ]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 tagged, 1 failed, 0 skipped" in first.stdout and "RANDOM WEIGHTS" in first.stdout
    assert "missing.mp4: object not found" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "0 videos to tag in 0 chunks, 2 already in" in second.stdout
    assert "Started a local Ray instance" in first.stderr and "Ray" not in second.stderr  # nothing to do: no Ray


def test_custom_label_file_and_prompt(ray_local, tmp_path, clips):
    labels = tmp_path / "labels.txt"
    labels.write_text("# my taxonomy\nbeach\nkitchen\nspace station\n")
    cfg = _config(
        **{
            "scoring.labels": str(labels),
            "scoring.prompt": "a film still of a {label}",
            "people.enabled": False,
            "features.audio": False,
            "features.text": False,
        }
    )
    plan = plan_tagging(cfg, str(clips["two_30fps.mp4"][0]), str(tmp_path / "out"))
    assert plan.labels.prompts()[2] == "a film still of a space station"
    run_tagging(plan)
    tags = CatalogStore(str(tmp_path / "out")).read_table("tags").to_pylist()
    assert len(tags) == 2 and all(sorted(t["labels"]) == ["beach", "kitchen", "space station"] for t in tags)


def test_job_with_an_hf_folder_scores_like_open_clips_local_dir(ray_local, tmp_path, clips):
    """The whole job with QuickGELU weights as an HF-style folder: its image features and scores equal
    open_clip's `local-dir:` model on the sampled frames (fetched again by frame number)."""
    import numpy as np
    import open_clip
    import torch
    from conftest import hf_folder
    from PIL import Image

    from movielib.io.decode import read_frames

    folder = hf_folder(tmp_path / "clip")
    path = clips["four.mp4"][0]
    cfg = load_tag_config(
        None,
        {
            "model.weights": str(folder),
            "people.enabled": False,
            "features.audio": False,
            "features.text": False,
            "scoring.batch_size": 4,
        },
    )
    run_tagging(plan_tagging(cfg, str(path), str(tmp_path / "out")))
    store = CatalogStore(str(tmp_path / "out"))
    tables = store.read_tables("shots", "tags", "features/image")
    shots = {r["shot_idx"]: r for r in tables["shots"].to_pylist()}
    tags = {r["shot_idx"]: r for r in tables["tags"].to_pylist()}
    image = {r["shot_idx"]: r for r in tables["features/image"].to_pylist()}
    assert len(shots) == 4 and {t["model"] for t in tags.values()} == {"clip-config/clip"}

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    model.eval()
    labels = LabelSet.movieclip()
    with torch.inference_mode():
        text = model.encode_text(open_clip.get_tokenizer(f"local-dir:{folder}")(labels.prompts()), normalize=True)
        for idx, shot in shots.items():
            frames = dict(read_frames(str(path), shot["keyframes"]))
            x = torch.stack([preprocess(Image.fromarray(frames[k])) for k in shot["keyframes"]])
            emb = torch.nn.functional.normalize(model.encode_image(x).float(), dim=-1)
            scores = torch.softmax(100 * emb @ text.float().T, dim=-1).mean(0)
            top = scores.sort(descending=True)
            assert tags[idx]["labels"] == [labels.labels[i] for i in top.indices[:5]]
            np.testing.assert_allclose(tags[idx]["scores"], top.values[:5].numpy(), atol=1e-5)
            np.testing.assert_allclose(image[idx]["embedding"], emb.mean(0).numpy(), atol=1e-5)
