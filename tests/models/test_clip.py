"""open_clip loading: HF-style folders (QuickGELU from their config), checkpoints with a named architecture,
mismatches refused before work, s3:// weights, preprocessing parity, precision bounds."""

import numpy as np
import open_clip
import pytest
import torch
from conftest import TINY, TINY_QUICKGELU, hf_folder
from PIL import Image
from safetensors.torch import save_file

from movielib.errors import ConfigError
from movielib.io.uri import S3Options
from movielib.models.clip import DEFAULT_ARCH, ClipSpec, FramePreprocess, load_clip, registered_name
from movielib.tagging.scene_score import CleanRules
from movielib.tagging.tagger import SceneTagger
from movielib.taxonomy.labels import LabelSet


def _frames(n=6, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(90 + 7 * i, 160, 3), dtype=np.uint8) for i in range(n)]


def test_default_architecture_is_openais_vit_b_32_with_quickgelu():
    assert DEFAULT_ARCH == "ViT-B-32-quickgelu" and open_clip.get_model_config(DEFAULT_ARCH)["quick_gelu"] is True


def test_hf_folder_config_wins_and_equals_open_clips_local_dir(tmp_path):
    folder = hf_folder(tmp_path / "clip")
    spec = ClipSpec(weights=str(folder))
    spec.validate()
    assert spec.arch == "clip-config"  # no registered architecture has this config: named after the folder
    assert registered_name(open_clip.get_model_config("ViT-B-32-quickgelu")) == "ViT-B-32-quickgelu"
    tagger = SceneTagger(spec, LabelSet(("beach", "street", "office")), CleanRules(top_k=3))
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in tagger.clip.model.modules())
    ref, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}")
    ref.eval()
    frames = _frames()
    crops = tagger.crop(frames)
    expected_input = torch.stack([preprocess(Image.fromarray(f)) for f in frames])
    torch.testing.assert_close(tagger.preprocess.to_model_input(crops), expected_input, atol=1e-6, rtol=0)
    with torch.inference_mode():
        img = ref.encode_image(expected_input).float()
        txt = ref.encode_text(open_clip.get_tokenizer(f"local-dir:{folder}")(tagger.labels.prompts()), normalize=True)
    torch.testing.assert_close(tagger.embed_images(crops), img, atol=1e-5, rtol=0)
    ours = tagger.tag(crops, [2, 4])
    ref_scores = torch.softmax(100 * torch.nn.functional.normalize(img, dim=-1) @ txt.float().T, dim=-1)
    for shot, frames_ in zip(ours, (ref_scores[:2], ref_scores[2:])):
        top = frames_.mean(0).sort(descending=True)
        np.testing.assert_allclose(shot.tags.scores, top.values[:3].numpy(), atol=1e-5, rtol=0)
        assert shot.tags.labels == [tagger.labels.labels[i] for i in top.indices[:3]]


def test_gelu_architecture_on_quickgelu_folder_is_refused_naming_both(tmp_path):
    folder = hf_folder(tmp_path / "clip")
    with pytest.raises(
        ConfigError, match=r"model.name 'movielib-tiny-clip' does not match.*quick_gelu True.*quick_gelu False"
    ):
        ClipSpec(TINY, weights=str(folder)).validate()
    ClipSpec(
        TINY + "-quickgelu" if open_clip.get_model_config(TINY + "-quickgelu") else None, weights=str(folder)
    ).validate()


def test_bare_checkpoint_of_another_architecture_fails_before_work(tmp_path):
    save_file(
        {k: v.contiguous() for k, v in open_clip.create_model(TINY).state_dict().items()},
        str(tmp_path / "tiny.safetensors"),
    )
    with pytest.raises(ConfigError, match=r"does not fit architecture 'ViT-B-32-quickgelu'.*differ in shape"):
        ClipSpec(weights=str(tmp_path / "tiny.safetensors")).validate()  # the default architecture
    ClipSpec(TINY, weights=str(tmp_path / "tiny.safetensors")).validate()


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
    pre = FramePreprocess.for_spec(ClipSpec(TINY, random_weights=True))
    _, _, preprocess = open_clip.create_model_and_transforms(TINY)
    rng = np.random.default_rng(1)
    for h, w in [(120, 200), (300, 90), (64, 64)]:
        img = rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8)
        torch.testing.assert_close(
            pre.to_model_input(pre.crop([img]))[0], preprocess(Image.fromarray(img)), atol=1e-6, rtol=0
        )


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


def test_weights_from_s3_file_and_hf_folder(s3_server, bucket, tmp_path, monkeypatch):
    state = _save_checkpoint(tmp_path / "ckpt.bin")
    client = s3_server.client()
    client.upload_file(str(tmp_path / "ckpt.bin"), bucket, "models/ckpt.bin")
    folder = hf_folder(tmp_path / "hf")
    for f in folder.iterdir():
        client.upload_file(str(f), bucket, f"models/hf/{f.name}")
    monkeypatch.setenv("MOVIELIB_CACHE", str(tmp_path / "cache"))
    s3 = S3Options.from_env(s3_server.endpoint_url)
    spec = ClipSpec(TINY, weights=f"s3://{bucket}/models/ckpt.bin", s3=s3)
    spec.validate()
    loaded = load_clip(spec).model.state_dict()
    assert all(torch.equal(loaded[k], state[k]) for k in state)
    assert spec.version == "ckpt.bin"
    hf = ClipSpec(weights=f"s3://{bucket}/models/hf/", s3=s3)
    hf.validate()
    assert hf.embed_dim == TINY_QUICKGELU["embed_dim"] and FramePreprocess.for_spec(hf).resize_mode == "squash"
    assert any(isinstance(m, open_clip.transformer.QuickGELU) for m in load_clip(hf).model.modules())


# Largest CLIPSceneScore change against fp32 on the tiny model (measured 2026-11-25: amp_bf16 0.027, bf16 0.039,
# fp16 0.0022, amp_fp16 0.0025; random ViT-B-32: 0.0076, 0.0047, 0.0003, 0.0003). README: Precision.
PRECISION_BOUNDS = {"amp_bf16": 0.05, "bf16": 0.05, "fp16": 0.005, "amp_fp16": 0.005}


@pytest.mark.parametrize("precision", sorted(PRECISION_BOUNDS))
def test_low_precision_stays_within_its_documented_bound_and_fp32_is_exact(precision):
    labels, spec = LabelSet.movieclip(), ClipSpec(TINY, random_weights=True)
    torch.manual_seed(0)
    exact = SceneTagger(spec, labels, precision="fp32")
    torch.manual_seed(0)  # the same random init, built at another precision
    low = SceneTagger(spec, labels, precision=precision)
    crops = exact.crop(_frames(8))
    fp32_scores, _ = exact.scores(crops, [3, 5])
    scores, _ = low.scores(crops, [3, 5])
    diff = np.abs(scores - fp32_scores).max()
    assert 0 < diff <= PRECISION_BOUNDS[precision]
    np.testing.assert_array_equal(exact.scores(crops, [3, 5])[0], fp32_scores)  # fp32: deterministic, exact
