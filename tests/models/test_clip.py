"""open_clip loading: weights by path or s3:// URI, refusal without weights, preprocessing parity."""

import numpy as np
import open_clip
import pytest
import torch
from PIL import Image

from conftest import TINY
from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.models.clip import ClipSpec, crop_frames, load_clip, to_model_input


def test_spec_without_weights_is_refused_with_the_way_out():
    with pytest.raises(ConfigError, match=r"model\.weights.*--random-weights"):
        ClipSpec("ViT-B-32").validate()


def test_spec_unknown_architecture_names_the_field():
    with pytest.raises(ConfigError, match=r"model\.name.*ViT-Q-99"):
        ClipSpec("ViT-Q-99", random_weights=True).validate()


def test_spec_missing_weights_file(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        ClipSpec(TINY, weights=str(tmp_path / "nope.safetensors")).validate()


def test_preprocessing_matches_open_clip_eval_transform():
    clip = load_clip(ClipSpec(TINY, random_weights=True))
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)
    rng = np.random.default_rng(1)
    for h, w in [(120, 200), (300, 90), (64, 64)]:
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        ours = to_model_input(crop_frames([img], clip.image_size), clip.mean, clip.std)[0]
        theirs = preprocess(Image.fromarray(img))
        torch.testing.assert_close(ours, theirs, atol=1e-6, rtol=0)


def _save_checkpoint(path):
    torch.manual_seed(7)
    model = open_clip.create_model(TINY)
    torch.save(model.state_dict(), path)
    return model.state_dict()


def test_weights_from_local_file_and_folder(tmp_path):
    state = _save_checkpoint(tmp_path / "open_clip_pytorch_model.bin")
    for weights in (tmp_path / "open_clip_pytorch_model.bin", tmp_path):
        loaded = load_clip(ClipSpec(TINY, weights=str(weights))).model.state_dict()
        assert all(torch.equal(loaded[k], state[k]) for k in state)


def test_weights_from_s3(s3_server, bucket, tmp_path, monkeypatch):
    state = _save_checkpoint(tmp_path / "ckpt.bin")
    s3_server.client().upload_file(str(tmp_path / "ckpt.bin"), bucket, "models/ckpt.bin")
    monkeypatch.setenv("MOVIELIB_CACHE", str(tmp_path / "cache"))
    spec = ClipSpec(TINY, weights=f"s3://{bucket}/models/ckpt.bin")
    s3 = S3Options.from_env(s3_server.endpoint_url)
    spec.validate(s3)
    loaded = load_clip(spec, s3).model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert spec.version == "ckpt.bin"
