"""A tagged catalog with planted multimodal structure (tests, the multimodal demo): each shot has a hidden latent
that its video, audio and subtitle-text features all carry (each through its own random map, plus noise), and the
latents follow the edit: a shot's latent is mostly the next of the previous shot's, so shot order carries signal.

The subtitles are cue rows (table cues, as `features.cues` tags them): most shots have a cue that names their
latent, a fifth of which stay on screen into the next shot (Eq. 4's straddling cue: it counts for both). Some movies
have no audio track (audio rows with null embeddings) and one has no subtitles at all.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from movielib.demo.planted import commit, shot_row, video_row

DIMS = {"features/image": 24, "features/audio": 16, "cues": 12}


@dataclass
class PlantedMultimodal:
    dest: str
    latents: dict[str, list[int]]  # video_id -> each shot's latent
    no_audio: set[str]
    no_subtitles: set[str]


def build(
    dest: str,
    videos: int = 12,
    shots: int = 24,
    latents: int = 8,
    follow: float = 0.8,
    noise: float = 0.3,
    seed: int = 0,
) -> PlantedMultimodal:
    """`noise`: the features' noise against their latent's vector (unit normal entries): at 1.0 one shot's features
    hardly tell its latent, and the edit is learnable only by pooling modalities and neighbours."""
    rng = np.random.default_rng(seed)
    maps = {table: rng.normal(size=(latents, dim)) for table, dim in DIMS.items()}
    tables: dict[str, list[dict]] = {"videos": [], "shots": [], **{t: [] for t in DIMS}}
    out = PlantedMultimodal(dest, {}, {f"video-{v:03d}" for v in range(1, videos, 5)}, {"video-002"})
    for v in range(videos):
        vid = f"video-{v:03d}"
        z = [int(rng.integers(latents))]
        for _ in range(shots - 1):  # the edit: mostly the next latent, sometimes a jump
            z.append((z[-1] + 1) % latents if rng.random() < follow else int(rng.integers(latents)))
        out.latents[vid] = z
        cues = -1
        for s, zs in enumerate(z):
            tables["shots"].append(shot_row(vid, s))  # shot s spans second s
            x = {
                table: (maps[table][zs] + noise * rng.normal(size=dim)).astype(np.float32)
                for table, dim in DIMS.items()
            }
            for table in ("features/image", "features/audio"):
                missing = table == "features/audio" and vid in out.no_audio
                row = {"video_id": vid, "shot_idx": s, "model": f"planted-{table.split('/')[1]}", "model_version": "1"}
                tables[table].append(row | {"embedding": None if missing else x[table].tolist()})
            if vid not in out.no_subtitles and rng.random() < 0.75:
                start = s + (0.6 if rng.random() < 0.2 else 0.1)  # a fifth run on into the next shot
                cues += 1
                tables["cues"].append(
                    {
                        "video_id": vid,
                        "cue_idx": cues,
                        "start_s": start,
                        "end_s": start + 0.7,
                        "text": f"latent {zs}",
                        "model": "planted-text",
                        "model_version": "1",
                        "embedding": x["cues"].tolist(),
                    }
                )
        tables["videos"].append(video_row(vid, shots))
    commit(dest, tables)
    return out
