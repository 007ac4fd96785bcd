"""SceneTagger: MovieCLIP's scene tags for frames of shots, as a plain object.

The batch job's Ray Data stage (`movielib.pipeline.stages.score.ClipSceneScorer`) and the Serve
deployment both wrap this one object, so online and batch results agree on the same frames:
load once, embed the prompts once, crop frames exactly as open_clip's eval transform does,
then CLIPSceneScore (§4) and the clean / multi-label rules (§5.1).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import numpy as np
import torch

from movielib.devices import torch_device
from movielib.models.clip import ClipSpec, FramePreprocess, load_clip
from movielib.tagging.scene_score import CleanRules, ShotTags, clip_scene_score
from movielib.taxonomy.labels import LabelSet

DEFAULT_RULES = CleanRules()  # MovieCLIP §5.1's


@dataclass(frozen=True)
class TaggedShot:
    tags: ShotTags
    embedding: np.ndarray  # the shot's image feature: mean of its L2-normalised frame embeddings (float32)
    keyframe_embedding: np.ndarray  # the L2-normalised embedding of its middle sampled frame (`keyframe_index`)
    scores: np.ndarray  # the CLIPSceneScore of every label, in the label set's order (float32)


class SceneTagger:
    """CLIPSceneScore tags and image features for shots given as model-size crops.

    `precision` is the config's model.precision: fp32 (exact, the default), amp_fp16 / amp_bf16
    (autocast; embeddings, cosine and softmax in fp32), fp16 / bf16 (low-precision weights).
    """

    def __init__(
        self,
        spec: ClipSpec,
        labels: LabelSet,
        rules: CleanRules = DEFAULT_RULES,
        precision: str = "fp32",
        frames_per_forward: int = 64,
        device: str | None = None,
    ):
        self.device = device or torch_device()
        self.clip = load_clip(spec, device=self.device, precision=precision)
        self.preprocess: FramePreprocess = self.clip.preprocess
        self.labels = labels
        self.rules = rules
        self.frames_per_forward = frames_per_forward
        self.model_name = f"{spec.arch}/{spec.version}"
        with torch.inference_mode(), self._autocast():
            tokens = self.clip.tokenizer(labels.prompts()).to(self.device)
            self.text_emb = self.clip.model.encode_text(tokens, normalize=True).float()

    def _autocast(self):
        if self.clip.autocast is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=torch.device(self.device).type, dtype=self.clip.autocast)

    def crop(self, frames: list[np.ndarray]) -> np.ndarray:
        """RGB uint8 frames of any size -> model-size uint8 crops (what the CPU stages send)."""
        return self.preprocess.crop(frames)

    @torch.inference_mode()
    def embed_images(self, crops: np.ndarray) -> torch.Tensor:
        """(n, S, S, 3) uint8 crops -> (n, D) float32 embeddings, in chunks of frames_per_forward."""
        dtype = self.clip.input_dtype
        out = []
        for i in range(0, len(crops), self.frames_per_forward):
            x = self.preprocess.to_model_input(crops[i : i + self.frames_per_forward], self.device)
            with self._autocast():
                out.append(self.clip.model.encode_image(x.to(dtype)).float())
        return torch.cat(out) if out else torch.zeros(0, self.text_emb.shape[1])

    def scores(self, crops: np.ndarray, counts: list[int]) -> tuple[np.ndarray, torch.Tensor]:
        """Per-shot CLIPSceneScores (n_shots, n_labels) and the frame embeddings they came from."""
        emb = self.embed_images(crops)
        return clip_scene_score(emb, self.text_emb, counts).cpu().numpy(), emb

    def tag_frames(self, shots: list[list[np.ndarray]]) -> list[TaggedShot]:
        """Decoded RGB frames of any size, grouped by shot (an image is a one-frame shot) -> tags per shot."""
        if not shots or any(len(frames) == 0 for frames in shots):
            raise ValueError("every shot needs at least one frame")
        return self.tag(self.crop([f for frames in shots for f in frames]), [len(frames) for frames in shots])

    def tag(self, crops: np.ndarray, counts: list[int]) -> list[TaggedShot]:
        """Shots' frames back to back (`counts` frames each, >= 1) -> top-k tags and image feature per shot."""
        scores, emb = self.scores(crops, counts)
        per_shot = torch.split(torch.nn.functional.normalize(emb, dim=-1), counts)
        return [
            TaggedShot(
                self.rules.apply(s, self.labels.labels),
                e.mean(dim=0).cpu().numpy().astype(np.float32),
                e[keyframe_index(len(e))].cpu().numpy().astype(np.float32),
                np.asarray(s, np.float32),
            )
            for s, e in zip(scores, per_shot)
        ]


def keyframe_index(frames: int) -> int:
    """A shot's keyframe among its sampled frames: the middle one (Movies2Scenes uses one keyframe per shot)."""
    return frames // 2
