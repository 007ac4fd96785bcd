"""The Ray Data stages called directly on batches (no Ray): decode/sample, scoring, error rows."""

import numpy as np
import pyarrow as pa
import pytest
import torch
from conftest import TINY

from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.pipeline.stages import ClipSceneScorer, DecodeAndDetect
from movielib.shots import make_detector
from movielib.shots.sampling import sample_times
from movielib.tagging.scene_score import CleanRules, clip_scene_score
from movielib.taxonomy.labels import LabelSet

SPEC = ClipSpec(TINY, random_weights=True)
PRE = FramePreprocess.for_spec(SPEC)


def _decode(path, shots_per_block=2):
    stage = DecodeAndDetect(make_detector("content"), PRE, shots_per_block=shots_per_block)
    return list(stage({"video_id": np.array(["vid"]), "uri": np.array([str(path)])}))


def test_decode_yields_shots_with_sampled_crops(clips):
    path, cuts = clips["four.mp4"]
    blocks = _decode(path)
    assert [b.num_rows for b in blocks] == [2, 2]  # 4 shots in blocks of 2
    table = pa.concat_tables(blocks)
    assert table.column("shot_idx").to_pylist() == [0, 1, 2, 3]
    assert table.column("start_frame").to_pylist()[1:] == pytest.approx(cuts, abs=1)
    assert set(table.column("status").to_pylist()) == {"ok"}
    # streamed: a block goes downstream before the pass ends; only the last block knows the video's counts
    assert table.column("n_shots").to_pylist() == [None, None, 4, 4]
    assert table.column("n_frames").to_pylist()[2:] == [155, 155]
    for row, frames in zip(
        table.drop_columns(["frames"]).to_pylist(), [a for c in table.column("frames").chunks for a in c.to_numpy()]
    ):
        times = sample_times(row["start_s"], row["end_s"])
        assert len(row["keyframes"]) == len(times) and row["start_frame"] <= row["keyframes"][0]
        assert row["keyframes"][-1] < row["end_frame"]
        assert frames.shape == (len(times), PRE.size, PRE.size, 3) and frames.dtype == np.uint8
        assert row["keyframe_s"] == pytest.approx([k / 25 for k in row["keyframes"]])  # constant frame rate
        assert all(0 <= t - s < 1 / 25 for t, s in zip(times, row["keyframe_s"]))  # the frame on screen then


@pytest.mark.parametrize("content", [b"", b"plain text, not a video", "truncated"])
def test_decode_turns_bad_input_into_one_error_row(clips, tmp_path, content):
    bad = tmp_path / "bad.mp4"
    if content == "truncated":
        content = clips["three.mp4"][0].read_bytes()[:5000]
    bad.write_bytes(content)
    (table,) = _decode(bad)
    row = table.drop_columns(["frames"]).to_pylist()[0]
    assert row["status"] == "error" and row["shot_idx"] == -1 and row["error"]
    assert row["uri"] == str(bad)


def test_scorer_scores_match_the_formula_on_the_same_model(clips):
    labels = LabelSet(("beach", "street", "office", "forest", "kitchen", "desert"))
    scorer = ClipSceneScorer(SPEC, labels, CleanRules(top_k=3), frames_per_forward=5)
    table = pa.concat_tables(_decode(clips["three.mp4"][0]))
    frames = [a for c in table.column("frames").chunks for a in c.to_numpy()]
    out = scorer(table).to_pylist()
    assert "frames" not in out[0]
    # recompute CLIPSceneScore independently: one forward over all frames, then the formula
    emb = scorer.tagger.embed_images(np.concatenate(frames))
    expected = clip_scene_score(emb, scorer.tagger.text_emb, [len(f) for f in frames]).numpy()
    for row, exp in zip(out, expected):
        order = np.argsort(-exp)[:3]
        assert row["labels"] == [labels.labels[i] for i in order]
        np.testing.assert_allclose(row["scores"], exp[order], rtol=1e-4)
        assert row["clean"] == (exp[order[0]] >= np.float32(0.4))
        assert row["model"] == f"{TINY}/random-init"


def test_scorer_text_embeddings_are_the_prompts():
    labels = LabelSet(("beach", "street"), prompt="a photo of a {label}, a type of background location")
    scorer = ClipSceneScorer(SPEC, labels, CleanRules())
    tokens = scorer.tagger.clip.tokenizer(
        ["a photo of a beach, a type of background location", "a photo of a street, a type of background location"]
    )
    with torch.inference_mode():
        expected = scorer.tagger.clip.model.encode_text(tokens, normalize=True)
    torch.testing.assert_close(scorer.tagger.text_emb, expected.float())


def test_scorer_passes_error_rows_through(clips, tmp_path):
    bad = tmp_path / "bad.mp4"
    bad.write_bytes(b"junk")
    scorer = ClipSceneScorer(SPEC, LabelSet.movieclip(), CleanRules())
    (row,) = scorer(_decode(bad)[0]).to_pylist()
    assert row["status"] == "error" and row["labels"] is None and row["clean"] is None


def test_movieclip_label_set_is_the_published_179():
    labels = LabelSet.movieclip()
    assert len(labels.labels) == 179 and len(set(labels.labels)) == 179
    assert labels.prompts()[0] == f"a photo of a {labels.labels[0]}, a type of background location"


def test_online_tagger_equals_the_batch_stages_on_the_same_frames(clips):
    """What Serve will run (SceneTagger on decoded frames) gives the batch job's rows for the same frames."""
    from movielib.io.decode import read_frames
    from movielib.tagging.tagger import SceneTagger

    path = clips["four.mp4"][0]
    labels = LabelSet.movieclip()
    torch.manual_seed(0)  # random weights: the same init for both
    scorer = ClipSceneScorer(SPEC, labels, CleanRules(), image_features=True)
    batch = scorer(pa.concat_tables(_decode(path))).to_pylist()
    frames = dict(read_frames(str(path), [k for row in batch for k in row["keyframes"]]))
    torch.manual_seed(0)
    online = SceneTagger(SPEC, labels).tag_frames([[frames[k] for k in row["keyframes"]] for row in batch])
    for row, shot in zip(batch, online):
        assert row["labels"] == shot.tags.labels and row["clean"] == shot.tags.clean
        np.testing.assert_allclose(row["scores"], shot.tags.scores, atol=1e-6)
        np.testing.assert_allclose(row["image_embedding"], shot.embedding, atol=1e-6)
    with pytest.raises(ValueError, match="at least one frame"):
        SceneTagger(SPEC, labels).tag_frames([[]])
