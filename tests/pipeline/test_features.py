"""People detection and image / audio / text features, per stage and through the whole job."""

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
from conftest import TINY
from PIL import Image

from movielib.demo.samples import DEMO_SUBTITLES, Segment, generate_clip
from movielib.io.ffmpeg import run_ffmpeg
from movielib.models.audio import LogMelStats
from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.models.faces import PersonFaceDetector
from movielib.models.text import embed_texts
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.stages import DecodeAndDetect, DetectPeople, EmbedAudio, EmbedText
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.shots import make_detector
from movielib.store.store import CatalogStore
from movielib.tagging.video import spread

PRE = FramePreprocess.for_spec(ClipSpec(TINY, random_weights=True))


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    """A folder with: a 3-shot clip + subtitles, a silent clip, and 2 s of the astronaut portrait."""
    folder = tmp_path_factory.mktemp("catalog")
    generate_clip(
        folder / "three.mp4", [Segment("testsrc", 2.0), Segment("smptebars", 2.0), Segment("color:darkblue", 2.0)]
    )
    (folder / "three.srt").write_text(DEMO_SUBTITLES)
    generate_clip(folder / "silent.mp4", [Segment("smptebars", 1.5), Segment("color:red", 1.5)], audio=False)
    Image.fromarray(skimage.data.astronaut()).save(folder / "astronaut.png")
    run_ffmpeg(
        [
            "-loop",
            "1",
            "-i",
            str(folder / "astronaut.png"),
            "-t",
            "2",
            "-r",
            "25",
            "-c:v",
            "libx264",
            "-pix_fmt",
            "yuv420p",
            str(folder / "portrait.mp4"),
        ]
    )
    (folder / "astronaut.png").unlink()
    return folder


def _decoded(path, cues: bool = False):
    stage = DecodeAndDetect(make_detector(), PRE, people_max_side=640, audio=True, subtitles=True, cues=cues)
    return pa.concat_tables(stage({"video_id": np.array(["v"]), "uri": np.array([str(path)])}))


def test_decode_cuts_audio_and_subtitles_per_shot(catalog):
    table = _decoded(catalog / "three.mp4")
    rows = table.drop_columns(["frames", "audio", "people_frames"]).to_pylist()
    audio = [a for c in table.column("audio").chunks for a in c.to_numpy()]
    for row, clip in zip(rows, audio):
        assert len(clip) == pytest.approx((row["end_s"] - row["start_s"]) * 16000, abs=2)
    assert [r["subtitle"] for r in rows] == [
        "Welcome to the test pattern.",
        "These are the colour bars.",
        "And now, the deep blue sea.",
    ]
    people = table.column("people_frames").to_pylist()
    assert [len(p) for p in people] == [min(3, len(r["keyframes"])) for r in rows]  # 8 samples -> 3 for people


def test_spread_picks_evenly():
    assert spread(list(range(8)), 3) == [0, 4, 7] and spread([1, 2], 3) == [1, 2] and spread([5, 6, 7], 1) == [6]


def test_people_stage_counts_the_astronaut(catalog):
    out = DetectPeople(PersonFaceDetector())(_decoded(catalog / "portrait.mp4")).to_pylist()
    assert [(r["face_count"], r["person_present"]) for r in out] == [(1, True)]
    assert 0.01 < out[0]["largest_face_frac"] < 0.1
    assert "people_frames" not in out[0]


def test_audio_stage_is_null_without_audio(catalog):
    enc = LogMelStats()
    silent = EmbedAudio(enc)(_decoded(catalog / "silent.mp4")).column("audio_embedding").to_pylist()
    assert silent == [None, None]
    table = _decoded(catalog / "three.mp4")
    clip0 = table.column("audio").chunk(0).to_numpy()[0]
    emb = EmbedAudio(enc)(table).column("audio_embedding").to_pylist()
    np.testing.assert_allclose(emb[0], enc.embed(clip0), rtol=1e-6)


def test_text_stage_embeds_subtitles_with_minilm(catalog):
    table = EmbedText()(_decoded(catalog / "three.mp4"))
    emb = table.column("text_embedding").to_pylist()
    expected = embed_texts(["These are the colour bars."])[0]
    assert len(emb[1]) == 384 and np.dot(emb[1], expected) == pytest.approx(1.0, abs=1e-5)
    assert EmbedText()(_decoded(catalog / "silent.mp4")).column("text_embedding").to_pylist() == [None, None]


def test_text_stage_embeds_each_cue_once_in_the_shot_it_starts_in(catalog):
    table = EmbedText()(_decoded(catalog / "three.mp4", cues=True))
    cues = table.column("cues").to_pylist()
    assert [[c["cue_idx"] for c in row] for row in cues] == [[0], [1], [2]]
    assert cues[2][0]["start_s"] == 4.4 and cues[2][0]["text"] == "And now, the deep blue sea."
    emb = table.column("cue_embeddings").to_pylist()
    expected = embed_texts(["These are the colour bars."])[0]
    assert np.dot(emb[1][0], expected) == pytest.approx(1.0, abs=1e-5)
    silent = EmbedText()(_decoded(catalog / "silent.mp4", cues=True))
    assert silent.column("cue_embeddings").to_pylist() == [[], []]


@pytest.mark.slow
def test_job_writes_people_and_all_features(ray_local, catalog, tmp_path):
    dest = tmp_path / "out"
    cfg = load_tag_config(
        None, {"model.name": TINY, "model.random_weights": True, "scoring.batch_size": 4, "features.cues": True}
    )
    summary = run_tagging(plan_tagging(cfg, str(catalog), str(dest)))
    assert summary.videos_ok == 3 and summary.shots == 6
    store = CatalogStore(str(dest))
    uri = {v["video_id"]: v["uri"].rsplit("/", 1)[1] for v in store.read_table("videos").to_pylist()}
    tags = {(uri[t["video_id"]], t["shot_idx"]): t for t in store.read_table("tags").to_pylist()}
    assert tags[("portrait.mp4", 0)]["face_count"] == 1 and tags[("portrait.mp4", 0)]["person_present"]
    assert all(t["face_count"] is not None for t in tags.values())

    dims = {"image": 64, "audio": 128, "text": 384}
    for modality, dim in dims.items():
        table = store.read_table(f"features/{modality}")
        assert table.schema.field("embedding").type == pa.list_(pa.float32())  # Delta has no fixed-size lists
        assert {len(e) for e in table.column("embedding").to_pylist() if e is not None} == {dim}
        keys = [(uri[v], i) for v, i in zip(table.column("video_id").to_pylist(), table.column("shot_idx").to_pylist())]
        assert sorted(keys) == sorted(tags) and len(set(zip(keys, table.column("model").to_pylist()))) == len(keys)
        present = {k for k, e in zip(keys, table.column("embedding").to_pylist()) if e is not None}
        if modality == "image":
            assert present == set(tags) and set(table.column("model_version").to_pylist()) == {"random-init"}
        elif modality == "audio":
            assert present == {k for k in tags if k[0] == "three.mp4"}  # the other two have no audio track
        else:
            assert present == {("three.mp4", 0), ("three.mp4", 1), ("three.mp4", 2)}

    cues = store.read_table("cues").sort_by("cue_idx")  # the opt-in cue table: each cue once, with its times
    assert {uri[v] for v in cues.column("video_id").to_pylist()} == {"three.mp4"}
    assert cues.column("cue_idx").to_pylist() == [0, 1, 2]
    assert cues.column("start_s").to_pylist() == [0.5, 2.2, 4.4] and cues.column("end_s").to_pylist()[2] == 5.6
    texts = cues.column("text").to_pylist()
    np.testing.assert_allclose(np.stack(cues.column("embedding").to_pylist()), embed_texts(texts), atol=1e-5)
    assert set(cues.column("model").to_pylist()) == set(store.read_table("features/text").column("model").to_pylist())


@pytest.mark.slow
def test_job_with_some_stages_off_still_joins(ray_local, catalog, tmp_path):
    dest = tmp_path / "out"
    cfg = load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            "people.enabled": False,
            "features.audio": False,
            "features.text": False,
        },
    )
    assert run_tagging(plan_tagging(cfg, str(catalog), str(dest))).shots == 6
    store = CatalogStore(str(dest))
    tags, image = store.read_table("tags"), store.read_table("features/image")
    assert store.read_table("features/audio").num_rows == 0 and store.read_table("features/text").num_rows == 0
    assert tags.column("face_count").null_count == tags.num_rows
    keys = ["video_id", "shot_idx"]
    joined = tags.select([*keys, "clean"]).join(image.select([*keys, "model"]), keys=keys, join_type="inner")
    assert joined.num_rows == tags.num_rows == image.num_rows


def test_keyframes_opt_in_writes_the_middle_sampled_frame_and_its_embedding(ray_local, catalog, tmp_path):
    import cv2
    import torch

    from movielib.tagging.tagger import SceneTagger
    from movielib.taxonomy.labels import LabelSet

    dest = tmp_path / "out"
    cfg = load_tag_config(
        None,
        {
            "model.name": TINY,
            "model.random_weights": True,
            "people.enabled": False,
            "features.audio": False,
            "features.text": False,
            "features.keyframes": True,
            "features.scores": True,
            "features.motion": True,
        },
    )
    assert run_tagging(plan_tagging(cfg, str(catalog), str(dest))).shots == 6
    store = CatalogStore(str(dest))
    # every label's score per shot (the tags keep the top 5): the same ranking, the label set named in the version
    tags = {(t["video_id"], t["shot_idx"]): t for t in store.read_table("tags").to_pylist()}
    labels = LabelSet.movieclip().labels
    for row in store.read_table("features/scores").to_pylist():
        top = np.argsort(row["embedding"])[::-1][:5]
        assert (
            len(row["embedding"]) == 179
            and [labels[i] for i in top] == tags[(row["video_id"], row["shot_idx"])]["labels"]
        )
        assert row["model_version"] == f"random-init/labels-{LabelSet.movieclip().digest()}"
    motion = store.read_table("features/motion")
    assert motion.num_rows == 6 and {len(e) for e in motion["embedding"].to_pylist() if e is not None} == {16}
    shots = {(s["video_id"], s["shot_idx"]): s for s in store.read_table("shots").to_pylist()}
    frames = {(k["video_id"], k["shot_idx"]): k for k in store.read_table("keyframes").to_pylist()}
    assert sorted(frames) == sorted(shots)
    side = PRE.size if isinstance(PRE.size, int) else PRE.size[0]
    for key, k in frames.items():  # the middle one of the shot's sampled frames, model-size
        times = shots[key]["keyframe_s"]
        assert k["frame_s"] == times[len(times) // 2] and (k["width"], k["height"]) == (side, side)
    emb = {(e["video_id"], e["shot_idx"]): e for e in store.read_table("features/keyframe").to_pylist()}
    assert sorted(emb) == sorted(shots) and {e["model"] for e in emb.values()} == {TINY}
    # the stored embedding is the one of the stored frame (up to the JPEG's loss), not of the shot's mean
    tagger = SceneTagger(ClipSpec(TINY, random_weights=True), LabelSet.movieclip())
    keys = sorted(frames)
    crops = np.stack(
        [cv2.imdecode(np.frombuffer(frames[k]["jpeg"], np.uint8), cv2.IMREAD_COLOR)[..., ::-1] for k in keys]
    )
    again = torch.nn.functional.normalize(tagger.embed_images(crops), dim=1)
    stored = torch.tensor([emb[k]["embedding"] for k in keys])
    image = torch.tensor(
        [
            r["embedding"]
            for r in store.read_table("features/image")
            .sort_by([("video_id", "ascending"), ("shot_idx", "ascending")])
            .to_pylist()
        ]
    )
    assert (again * stored).sum(1).min() > 0.99
    assert not torch.allclose(stored, torch.nn.functional.normalize(image, dim=1), atol=1e-3)  # not the mean


def test_the_motion_feature_separates_static_from_moving_shots():
    """Planted shots: a textured frame held still (with sensor noise) vs the same texture panning right."""
    from movielib.models.motion import FlowStats

    rng = np.random.default_rng(0)
    texture = (skimage.data.astronaut()[::2, ::2]).astype(np.uint8)
    still = np.stack([np.clip(texture + rng.normal(0, 2, texture.shape), 0, 255).astype(np.uint8) for _ in range(6)])
    pan = np.stack([np.roll(texture, 6 * i, axis=1) for i in range(6)])
    enc = FlowStats()
    s, p = enc.embed(still), enc.embed(pan)
    assert s.shape == p.shape == (enc.dim,)
    assert s[0] < 0.3 and p[0] > 1.0  # mean flow magnitude, pixels per step at 112 px
    assert p[4] > 0.5 > abs(p[5])  # the pan is rightward: mean dx positive, dy about 0
    assert int(np.argmax(p[8:])) in (0, 7) and p[6] > 5 * s[6]  # flow direction ~0 rad; frame difference
    assert enc.embed(still[:1]) is None  # one sampled frame: no motion to measure


def test_the_motion_stage_measures_the_decoded_shots(catalog):
    from movielib.models.motion import FlowStats
    from movielib.pipeline.stages import EmbedMotion

    table = EmbedMotion(FlowStats())(_decoded(catalog / "three.mp4"))
    emb = table.column("motion_embedding").to_pylist()
    assert "frames" in table.column_names and len(emb) == 3  # the scorer still needs the frames
    moving, still = emb[0][0], emb[2][0]  # testsrc's pattern moves; a solid colour does not
    assert moving > 5 * max(still, 0.01)
