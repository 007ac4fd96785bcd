"""`movielib demo --pretrain`: tag -> pretrain scenes -> embed scenes, on the embedded default, from nothing.

Starts an S3 server on 127.0.0.1, generates a catalog of short "movies" in three genres (each a run
of one-second shots drawn from its genre's looks), tags it with keyframes on, runs Movies2Scenes'
three steps at demo size (movielib/demo/pretrain_scenes.yaml) with the run folder on S3, writes
features/scene, and copies the catalog and the run folder to a local folder.
"""

from __future__ import annotations

import csv
import random
import tempfile
import time
from pathlib import Path

from movielib.config import load_config
from movielib.demo.run import BUCKET, copy_to_output
from movielib.demo.s3server import MotoS3Server
from movielib.demo.samples import Segment, generate_clip
from movielib.io.uri import S3Options
from movielib.pipeline.config import load_tag_config
from movielib.pipeline.tagging import plan_tagging, run_tagging
from movielib.runtime import init_ray, verbose

CONFIG = Path(__file__).with_name("pretrain_scenes.yaml")
LOOKS = {  # what a genre's shots look like: lavfi sources PySceneDetect cuts between cleanly
    "warm": ["color:red", "color:orange", "color:yellow", "color:pink", "color:brown"],
    "cool": ["color:navy", "color:teal", "color:darkgreen", "color:purple", "color:blue"],
    "cards": ["testsrc", "smptebars", "rgbtestsrc", "testsrc2", "yuvtestsrc"],
}
# each look's sine tone (Hz), a third of an octave apart: a shot's sound follows from its picture, which is what the
# multimodal model's video <-> audio losses can learn (one tone for every shot would leave nothing to learn)
TONES = {look: round(220 * 2 ** (i / 3)) for i, look in enumerate(x for looks in LOOKS.values() for x in looks)}


def write_genre_catalog(
    folder: Path,
    prefix: str,
    movies_per_genre: int = 4,
    shots: int = 16,
    seed: int = 0,
    subtitles: bool = False,
    follow: float = 0.0,
) -> Path:
    """`movies_per_genre` clips per genre of `shots` one-second shots under folder/catalog, and genres.csv naming
    them by URI (`prefix` + file name, where they will be uploaded). With `subtitles`, the clips have an audio
    track (each shot its look's tone, TONES) and each a .srt sidecar whose cues name the shots' looks (a shot
    without a cue now and then). `follow`: how often a shot's look is the next of its genre's looks after the
    previous shot's (an edit whose shot order carries signal, what the editing tasks SSO / NSS read), else drawn."""
    rng = random.Random(seed)
    rows = []
    for genre, looks in LOOKS.items():
        for m in range(movies_per_genre):
            picks = draw_shots(rng, looks, shots, follow)
            name = f"{genre}-{m}.mp4"
            path = folder / "catalog" / name
            generate_clip(path, [Segment(p, 1.0, TONES[p]) for p in picks], size=(160, 120), audio=subtitles)
            if subtitles:
                cues = [
                    f"{i + 1}\n00:00:{i:02d},100 --> 00:00:{i:02d},900\nthe {look.split(':')[-1]} {genre} shot\n"
                    for i, look in enumerate(picks)
                    if rng.random() < 0.8
                ]
                path.with_suffix(".srt").write_text("\n".join(cues))
            rows.append((prefix + name, genre))
    return write_genres_file(folder, rows)


def draw_shots(rng: random.Random, choices: list[str], shots: int, follow: float | None = None) -> list[str]:
    """`shots` draws from `choices`, never the same twice in a row (every segment boundary is a cut); with `follow`,
    that share of shots takes the choice after the previous shot's instead (an edit whose order carries signal)."""
    picks: list[str] = []
    while len(picks) < shots:
        pick = rng.choice(choices)
        if follow is not None and picks and rng.random() < follow:
            pick = choices[(choices.index(picks[-1]) + 1) % len(choices)]
        if not picks or pick != picks[-1]:
            picks.append(pick)
    return picks


def write_genres_file(folder: Path, rows: list[tuple[str, str]]) -> Path:
    """folder/genres.csv: each generated movie's URI and genre, the genres file the learning jobs read."""
    with open(folder / "genres.csv", "w", newline="") as f:
        csv.writer(f).writerows([("movie", "genres"), *rows])
    return folder / "genres.csv"


def run_pretrain_demo(out: str, model: str = "movielib-tiny-clip") -> int:
    from movielib.train.movies2scenes.config import PretrainScenesConfig
    from movielib.train.movies2scenes.embed import embed_scenes
    from movielib.train.movies2scenes.job import run_pretrain_scenes

    t0 = time.perf_counter()
    with MotoS3Server() as server, tempfile.TemporaryDirectory() as tmp:
        server.use()
        source, dest, runs = f"s3://{BUCKET}/genre-catalog/", f"s3://{BUCKET}/genre-tags", f"s3://{BUCKET}/runs"
        genres = write_genre_catalog(Path(tmp), source, movies_per_genre=6)  # 45 similar pairs, ~100 scene pairs
        n = server.upload_folder(str(Path(tmp) / "catalog"), BUCKET, "genre-catalog")
        s3 = S3Options.from_env(server.endpoint_url)
        with s3.filesystem().open_output_stream(f"{BUCKET}/genres.csv") as f:
            f.write(genres.read_bytes())
        print(f"S3 server {server.endpoint_url}: {n} generated movies in 3 genres in {source}", flush=True)
        tag = load_tag_config(
            None,
            {
                "model.name": model,
                "model.random_weights": True,
                "s3.endpoint_url": server.endpoint_url,
                "features.keyframes": True,
                "people.enabled": False,
                "features.audio": False,
                "features.text": False,
            },
        )
        plan = plan_tagging(tag, source, dest)
        init_ray(tag.ray_address)
        print(run_tagging(plan).render(), flush=True)
        cfg = load_config(
            str(CONFIG),
            {
                "catalog": dest,
                "similarity.path": f"s3://{BUCKET}/genres.csv",
                "run.folder": runs,
                "model.name": model,
                "model.random_weights": True,
                "s3.endpoint_url": server.endpoint_url,
            },
            schema=PretrainScenesConfig,
        )
        print("pretrain scenes, " + cfg.console(verbose()), flush=True)
        summary = run_pretrain_scenes(cfg)
        embedded = embed_scenes(summary["run"], dest, s3)
        print(f"{embedded['table']}: {embedded['rows']} rows, model_version {embedded['model_version']}", flush=True)
        local = copy_to_output(out, s3, {"tags": f"{BUCKET}/genre-tags", "run": summary["run"]})
        print(summary.render())
        print(
            f"copied the catalog and the run to {local}: curves in {local / 'run' / 'similarity' / 'curves.png'} and "
            f"{local / 'run' / 'scenes' / 'curves.png'}"
        )
    print(f"pretraining demo finished in {time.perf_counter() - t0:.1f}s")
    return 0
