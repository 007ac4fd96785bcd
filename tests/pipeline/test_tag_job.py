"""The whole tagging job on a real local Ray, over the moto S3 server, on real encoded videos."""

import collections
import subprocess
import sys

import pyarrow.fs as pafs
import pyarrow.parquet as pq
import pytest

from conftest import ROOT, TINY
from movielib.config import load_config
from movielib.features.store import CatalogStore
from movielib.io.uri import S3Options
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.taxonomy.labels import LabelSet

pytestmark = pytest.mark.slow


def _config(endpoint=None, **extra):
    overrides = {"model.name": TINY, "model.random_weights": True, "scoring.batch_size": 4,
                 "output.rows_per_file": 4, **extra}
    if endpoint:
        overrides["s3.endpoint_url"] = endpoint
    return load_config(None, overrides)


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
    assert all(v > 0 for v in summary.stage_s.values()) and "stage time" in summary.render()

    store = CatalogStore(dest, S3Options.from_env(s3_server.endpoint_url))
    videos = store.read_table("videos").to_pylist()
    shots = store.read_table("shots").to_pylist()
    tags = store.read_table("tags").to_pylist()
    assert len(videos) == 4 and len(shots) == len(tags) == sum(n_shots.values())
    (err,) = [v for v in videos if v["status"] == "error"]
    assert err["uri"].endswith("corrupt.mp4") and "cannot open video" in err["error"]
    assert all(v["error"] is None and v["n_frames"] > 0 for v in videos if v["status"] == "ok")

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

    # many videos per file: rows_per_file=4 -> fewer files than videos + shots
    fs, root = store.fs, store.root
    before = _keys(fs, root)
    assert len([k for k in before if "/shots/" in k]) < len(shots)
    assert pq.read_table(f"{root}/tags", filesystem=fs).num_rows == len(tags)  # plain pyarrow reads it too

    again = run_tagging(plan_tagging(_config(s3_server.endpoint_url), source, dest))
    assert (again.videos_ok, again.videos_error, again.videos_skipped, again.shots) == (0, 0, 4, 0)
    after = _keys(fs, root)
    new = set(after) - set(before)
    assert len(new) == 1 and next(iter(new)).startswith(f"{root}/_manifest/runs/")


def test_resume_after_a_crash_mid_video_writes_each_row_once(ray_local, tmp_path, clips):
    path, cuts = clips["four.mp4"]
    dest = tmp_path / "out"
    cfg = _config(**{"output.rows_per_file": 2, "scoring.batch_size": 2})
    first = run_tagging(plan_tagging(cfg, str(path), str(dest)))
    assert first.shots == 4 and len(first.batches) >= 2

    # simulate a run that died after writing one batch's Parquet but before its manifest entry
    lost = first.batches[-1]
    (dest / "_manifest" / "files" / f"{lost}.json").unlink()
    store = CatalogStore(str(dest))
    lost_rows = pq.read_table(dest / "shots" / f"part-{lost}.parquet").num_rows
    assert store.read_table("shots").num_rows == 4 - lost_rows

    plan = plan_tagging(cfg, str(path), str(dest))
    assert len(plan.todo) == 1 and any(lost in p for p in plan.orphans_removed)
    second = run_tagging(plan)
    assert second.shots == lost_rows
    shots = store.read_table("shots").to_pylist()
    assert sorted(s["shot_idx"] for s in shots) == [0, 1, 2, 3]
    assert store.read_table("videos").num_rows == 1 and store.read_table("tags").num_rows == 4
    assert plan_tagging(cfg, str(path), str(dest)).todo == []


def test_job_entrypoint_runs_and_skips_committed_videos(ray_local, tmp_path, clips):
    """jobs/tag_catalog.py (what `ray job submit` runs) over a manifest file, twice."""
    manifest = tmp_path / "catalog.txt"
    manifest.write_text(f"{clips['two_30fps.mp4'][0]}\n{tmp_path}/missing.mp4\n")
    cmd = [sys.executable, str(ROOT / "jobs" / "tag_catalog.py"), str(manifest), str(tmp_path / "out"),
           "--model", TINY, "--random-weights", "--set", "scoring.batch_size=4"]
    first = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "1 tagged, 1 failed, 0 skipped" in first.stdout and "RANDOM WEIGHTS" in first.stdout
    assert "missing.mp4: object not found" in first.stdout
    second = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert second.returncode == 0 and "0 videos to tag, 2 already in" in second.stdout
    assert "Started a local Ray instance" in first.stderr and "Ray" not in second.stderr  # nothing to do: no Ray


def test_custom_label_file_and_prompt(ray_local, tmp_path, clips):
    labels = tmp_path / "labels.txt"
    labels.write_text("# my taxonomy\nbeach\nkitchen\nspace station\n")
    cfg = _config(**{"scoring.labels": str(labels), "scoring.prompt": "a film still of a {label}",
                     "people.enabled": False, "features.audio": False, "features.text": False})
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
    from PIL import Image

    from conftest import hf_folder
    from movielib.io.decode import read_frames

    folder = hf_folder(tmp_path / "clip")
    path = clips["four.mp4"][0]
    cfg = load_config(None, {"model.weights": str(folder), "people.enabled": False, "features.audio": False,
                             "features.text": False, "scoring.batch_size": 4})
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
