"""Generated trailers whose genre only a pair of experts tells apart (the genre model's end-to-end test).

Four genres, each a pair (sound, movement): low or high tones, still or restless pictures. Every trailer draws its
shots' colours from one palette whatever its genre, so the picture says nothing of the genre; the audio expert
hears the tone band (half the genres each), the motion expert sees the movement (the other half): only the two
together name the genre. Shots are one second, each its own colour, tone and noise.
"""

from __future__ import annotations

import random
from pathlib import Path

from movielib.demo.pretrain import draw_shots, write_genres_file
from movielib.demo.samples import Segment, generate_clip

PALETTE = ["red", "yellow", "green", "blue", "purple", "white", "black", "cyan", "magenta", "gray"]
GENRES = {  # genre -> (tone band in Hz, temporal noise)
    "murmur": ((180, 360), 4),
    "storm": ((180, 360), 70),
    "chime": ((2000, 4000), 4),
    "alarm": ((2000, 4000), 70),
}


def write_paired_genre_catalog(folder: Path, prefix: str, per_genre: int = 6, shots: int = 12, seed: int = 0) -> Path:
    """`per_genre` trailers per genre of `shots` one-second shots under folder/catalog (with audio), and genres.csv
    naming them by URI (`prefix` + file name)."""
    rng = random.Random(seed)
    rows = []
    for genre, ((low, high), noise) in GENRES.items():
        for m in range(per_genre):
            colours = draw_shots(rng, PALETTE, shots)
            segments = [Segment(f"color:{c}", 1.0, round(rng.uniform(low, high)), noise) for c in colours]
            name = f"{genre}-{m}.mp4"
            generate_clip(folder / "catalog" / name, segments, size=(160, 120))
            rows.append((prefix + name, genre))
    return write_genres_file(folder, rows)
