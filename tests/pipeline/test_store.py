"""The Delta store on its own: whole-video commits, idempotent batches, claims, fingerprints, compact, vacuum."""

import threading
import time

import pyarrow as pa
import pytest
from conftest import TINY

from movielib.errors import ConfigError
from movielib.io.uri import SourceListing, VideoRef
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.pipeline.commit import Committer, VideoAssembler
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.stages import DecodeAndDetect
from movielib.pipeline.tagging import plan_tagging
from movielib.pipeline.todo import plan_todo
from movielib.shots import make_detector
from movielib.store.claims import claim
from movielib.store.store import CatalogStore

PRE = FramePreprocess.for_spec(ClipSpec(TINY, random_weights=True))


def _shot_rows(clips, name="four.mp4", video_id="v"):
    """The decode stage's real rows for a video, one block per shot."""
    stage = DecodeAndDetect(make_detector("fast"), PRE, shots_per_block=1)
    blocks = [t.drop_columns(["frames"]) for t in stage.process(video_id, str(clips[name][0]))]
    return stage, [r for b in blocks for r in b.to_pylist()]


def test_a_video_that_fails_after_some_shots_is_one_error_row_and_no_shots(tmp_path, clips):
    stage, rows = _shot_rows(clips)
    assert [r["shot_idx"] for r in rows] == [0, 1, 2, 3] and rows[-1]["n_shots"] == 4
    error = stage._error_row("v", rows[0]["uri"], "stopped after 2 of its shots: MemoryError").drop_columns(["frames"])
    committer = Committer(str(tmp_path / "out"), None, "run-a", rows_per_commit=100, commit_every_s=600, features=[])
    # shots 0 and 1 went downstream, then the video failed; a late block of shot 2 arrives after the error row
    for part in ([rows[0]], [rows[1]], error.to_pylist(), [rows[2]]):
        committer.add(pa.Table.from_pylist(part, schema=error.schema))
    tally = committer.finish_chunk(["v"])
    committer.stop()
    store = CatalogStore(str(tmp_path / "out"))
    (video,) = store.read_table("videos").to_pylist()
    assert video["status"] == "error" and video["error"].startswith("stopped after 2")
    assert store.read_table("shots").num_rows == 0 and store.read_table("tags").num_rows == 0
    assert (tally.videos_ok, tally.videos_error, tally.shots) == (0, 1, 0)


def test_videos_row_waits_for_every_shot_whatever_the_arrival_order(clips):
    _, rows = _shot_rows(clips)
    assembler = VideoAssembler([])
    for r in [rows[3], rows[1], rows[0]]:  # the last block (which knows n_shots) first, shot 2 missing
        assembler.add(r)
    assert assembler.ready == [] and list(assembler.unfinished()) == ["v"]
    assembler.add(rows[2])
    ((video, shots),) = assembler.take()
    assert video["n_frames"] > 0 and [s["shot_idx"] for s in shots] == [0, 1, 2, 3]


def test_a_repeated_batch_commit_adds_nothing(tmp_path, clips):
    """(run_id, batch) is a Delta application transaction: a retried or resumed commit lands once."""
    _, rows = _shot_rows(clips)
    assembler = VideoAssembler([])
    for r in rows:
        assembler.add(r)
    tables, _ = assembler.tables(assembler.take())
    store = CatalogStore(str(tmp_path / "out"))
    store.commit(tables, "run-a", 1)
    store.commit(tables, "run-a", 1)
    assert store.read_table("shots").num_rows == 4 and store.read_table("videos").num_rows == 1
    store.commit(tables, "run-a", 2)  # a new batch number is a new commit (the store does not dedupe rows)
    assert store.read_table("videos").num_rows == 2


@pytest.mark.parametrize("where", ["local", "s3"])
def test_concurrent_claims_give_each_video_to_exactly_one_run(tmp_path, s3_server, bucket, where):
    dest = str(tmp_path / "out") if where == "local" else f"s3://{bucket}/out"
    store = CatalogStore(dest)
    ids = [f"video-{i:03d}" for i in range(60)]
    won: dict[str, list[str]] = {}

    def run(n: int) -> None:  # 6 runs over overlapping SOURCEs: ids[10n : 10n + 30]
        won[f"run-{n}"] = claim(store.tables, f"run-{n}", ids[10 * n : 10 * n + 30], ttl_s=600).won

    threads = [threading.Thread(target=run, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    owners = [v for vs in won.values() for v in vs]
    assert sorted(owners) == ids  # every video claimed, none twice
    claims = store.tables.read("_movielib/claims").to_pylist()
    assert len(claims) == 60 and {c["run_id"] for c in claims} <= set(won)


def test_claims_lapse_and_a_later_claimant_is_told_what_the_dead_run_held(tmp_path):
    from datetime import UTC, datetime, timedelta

    store = CatalogStore(str(tmp_path / "out"))
    t0 = datetime.now(UTC)
    at = lambda seconds: lambda: t0 + timedelta(seconds=seconds)  # noqa: E731 - the test's own clock, not the machine's
    first = claim(store.tables, "run-dead", ["a", "b"], ttl_s=60, clock=at(0))
    assert first.won == ["a", "b"] and first.stale == []
    held = claim(store.tables, "run-new", ["a", "b", "c"], ttl_s=600, clock=at(59))  # a second before they lapse
    assert held.won == ["c"] and held.held == {"run-dead": 2}
    later = claim(store.tables, "run-new", ["a", "b", "c"], ttl_s=600, clock=at(61))  # a second after
    assert later.won == ["a", "b", "c"] and later.stale == ["a", "b"]  # c was its own claim: renewed
    renewed = claim(store.tables, "run-dead", ["a"], ttl_s=600, clock=at(62))
    assert renewed.won == [] and renewed.held == {"run-new": 1}


def _tiny(**extra):
    return load_tag_config(None, {"model.name": TINY, "model.random_weights": True, **extra})


def test_a_rerun_with_other_output_settings_is_refused_naming_them_or_goes_alongside(tmp_path, clips):
    dest = tmp_path / "out"
    plan = plan_tagging(_tiny(), str(clips["four.mp4"][0]), str(dest))
    CatalogStore(str(dest)).write_json(plan.fingerprint, "fingerprint.json")  # what a first run records
    assert plan_tagging(_tiny(**{"scoring.batch_size": 7}), str(clips["four.mp4"][0]), str(dest)).dest == str(dest)
    with pytest.raises(ConfigError) as err:
        plan_tagging(_tiny(**{"shots.threshold": 30.0, "sampling.fps": 2.0}), str(clips["four.mp4"][0]), str(dest))
    assert "sampling.fps: 4.0 -> 2.0" in str(err.value) and "shots.threshold: None -> 30.0" in str(err.value)
    assert "output.on_change=alongside" in str(err.value)
    other = plan_tagging(
        _tiny(**{"shots.threshold": 30.0, "output.on_change": "alongside"}), str(clips["four.mp4"][0]), str(dest)
    )
    assert other.dest.startswith(f"{dest}/fp-") and other.fingerprint["fingerprint"] in other.dest


def test_compact_keeps_the_rows_in_fewer_files_and_vacuum_respects_its_retention(tmp_path):
    store = CatalogStore(str(tmp_path / "out"))
    for n in range(6):
        store.tables.append("shots", pa.table({"video_id": [f"v{n}"] * 3, "shot_idx": pa.array([0, 1, 2], pa.int32())}))
    before = store.read_table("shots", columns=["video_id", "shot_idx"]).sort_by("video_id")
    assert store.tables.info("shots").files == 6
    store.compact()
    assert store.tables.info("shots").files == 1
    assert store.read_table("shots", columns=["video_id", "shot_idx"]).sort_by("video_id").equals(before)
    # a run that died before its end leaves its to-do chunks: they go with vacuum too, once old enough
    listing = SourceListing([VideoRef(f"/v/{n}.mp4", 1, 1) for n in "abc"], ignored=[])
    dead = plan_todo(store, [listing], "run-dead", 2)
    assert len(dead.chunks) == 2
    kept = store.vacuum(retention_hours=1)
    assert kept["shots"] == [] and kept["_movielib/runs"] == []  # minutes old: kept
    gone = store.vacuum(retention_hours=0)
    assert len(gone["shots"]) == 6 and store.read_table("shots").num_rows == 18
    assert gone["_movielib/runs"] == [f"{store.root}/_movielib/runs/run-dead"]
    assert not (tmp_path / "out" / "_movielib" / "runs" / "run-dead").exists()


def test_info_compact_and_vacuum_commands(tmp_path, capsys):
    from movielib.cli import main

    store = CatalogStore(str(tmp_path / "out"))
    for n in range(3):
        store.tables.append("videos", pa.table({"video_id": [f"v{n}"], "status": ["ok"]}))
    assert main(["compact", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "videos: 3 files -> 1" in out and out.splitlines()[-1].split()[:4] == ["videos", "3", "3", "1"]
    assert main(["vacuum", str(tmp_path / "out"), "--retention-hours", "0", "--dry-run"]) == 0
    assert "videos: would delete 3 files" in capsys.readouterr().out
    assert main(["info", str(tmp_path / "missing")]) == 2
    assert "holds no Delta tables" in capsys.readouterr().err


def test_a_complete_video_is_committed_on_time_when_too_few_rows_came(tmp_path, clips):
    _, rows = _shot_rows(clips)
    # the interval long beside what add() and the check take, even on a loaded machine (0.3 s raced them)
    committer = Committer(str(tmp_path / "out"), None, "run-a", rows_per_commit=1000, commit_every_s=3, features=[])
    committer.add(pa.Table.from_pylist(rows))
    store = CatalogStore(str(tmp_path / "out"))
    assert store.tables.open("videos") is None  # 4 rows of 1000: no commit by size
    deadline = time.monotonic() + 15
    while store.tables.open("videos") is None and time.monotonic() < deadline:
        time.sleep(0.05)
    committer.stop()
    assert store.read_table("videos").num_rows == 1 and store.read_table("shots").num_rows == 4


def test_a_committer_whose_claims_lapsed_writes_nothing(tmp_path, clips):
    from movielib.errors import StorageError

    _, rows = _shot_rows(clips)
    committer = Committer(str(tmp_path / "out"), None, "run-a", rows_per_commit=2, commit_every_s=600, features=[])
    committer.claims_valid_until(time.time() - 1)
    with pytest.raises(StorageError, match="claims lapsed"):
        committer.add(pa.Table.from_pylist(rows))
    committer.stop()
    assert CatalogStore(str(tmp_path / "out")).tables.open("videos") is None


def test_rows_deleted_leave_a_table_every_filtered_read_still_reads(tmp_path):
    """deltalake 1.6's own delete rewrites strings as string_view, and pyarrow filters then fail (delta-rs #4579)."""
    import pyarrow.dataset as pds

    from movielib.store.delta import DeltaTables

    tables = DeltaTables(str(tmp_path))
    tables.append("t", pa.table({"video_id": ["a", "b", "c"], "run_id": ["r1", "r2", "r1"]}))
    tables.append("t", pa.table({"video_id": ["d"], "run_id": ["r1"]}))
    assert tables.delete("t", ["a", "b", "d"], match={"run_id": "r1"}) == 2  # b belongs to r2: kept
    assert tables.delete("t", ["x"]) == 0
    got = tables.read("t", filter=pds.field("video_id").isin(pa.array(["b", "c"])))
    assert sorted(got["video_id"].to_pylist()) == ["b", "c"] and got.schema.field("video_id").type == pa.string()


def test_videos_that_never_completed_are_retryable_not_done(tmp_path, clips):
    """Shots of a video whose task died past its retries never complete it: no videos row (a re-run takes it),
    and a claimed video no row of which arrived is reported as lost."""
    _, rows = _shot_rows(clips)
    schema = pa.Table.from_pylist(rows).schema
    committer = Committer(str(tmp_path / "out"), None, "run-a", rows_per_commit=100, commit_every_s=600, features=[])
    committer.add(pa.Table.from_pylist(rows[:2], schema=schema))
    tally = committer.finish_chunk(["v", "never-seen"])
    committer.stop()
    assert (tally.videos_ok, tally.videos_error, tally.videos_retryable) == (0, 0, 1)
    assert tally.retryable == [{"uri": rows[0]["uri"], "error": "only 2 of ? shots reached the sink"}]
    assert tally.retryable_ids == ["v"] and tally.lost == ["never-seen"]
    assert CatalogStore(str(tmp_path / "out")).read_table("videos").num_rows == 0
