"""Contact sheets: one keyframe per shot with its top-3 labels, scores and face count, as PNG and HTML,
so a person can look at what the tagger did to a video."""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.dataset as pds
from PIL import Image

from movielib.errors import MovielibError
from movielib.io.decode import read_frames
from movielib.io.uri import S3Options
from movielib.io.video import local_copy
from movielib.store.store import CatalogStore


@dataclass
class ShotCard:
    shot_idx: int
    start_s: float
    end_s: float
    keyframe: int
    image: np.ndarray
    labels: list[tuple[str, float]]
    face_count: int | None


def _timecode(seconds: float) -> str:
    m, s = divmod(seconds, 60)
    return f"{int(m):02d}:{s:05.2f}"


def shot_cards(
    dest: str, video: str | None = None, s3: S3Options | None = None, thumb_width: int = 320
) -> tuple[dict, list[ShotCard]]:
    """The video row (first ok video, or the one whose id or URI contains `video`) and its shot cards."""
    store = CatalogStore(dest, s3)
    videos = store.read_table("videos", filter=pds.field("status") == "ok").to_pylist()
    if video:
        videos = [v for v in videos if video == v["video_id"] or video in v["uri"]]
    if not videos:
        raise MovielibError(f"no tagged video{' matching ' + repr(video) if video else ''} in {dest}")
    row = sorted(videos, key=lambda v: v["uri"])[0]
    tables = store.read_tables("shots", "tags", video_id=row["video_id"])
    shots = sorted(tables["shots"].to_pylist(), key=lambda s: s["shot_idx"])
    tags = {t["shot_idx"]: t for t in tables["tags"].to_pylist()}
    keyframes = [s["keyframes"][len(s["keyframes"]) // 2] for s in shots]
    try:
        with local_copy(row["uri"], s3) as path:
            frames = dict(read_frames(path, keyframes))
    except OSError as exc:
        raise MovielibError(f"cannot read {row['uri']} to draw its keyframes: {exc}") from exc
    cards = []
    for shot, kf in zip(shots, keyframes):
        img = Image.fromarray(frames[kf])
        img.thumbnail((thumb_width, thumb_width))
        tag = tags.get(shot["shot_idx"], {})
        cards.append(
            ShotCard(
                shot["shot_idx"],
                shot["start_s"],
                shot["end_s"],
                kf,
                np.asarray(img),
                list(zip(tag.get("labels") or [], tag.get("scores") or []))[:3],
                tag.get("face_count"),
            )
        )
    return row, cards


def render_png(row: dict, cards: list[ShotCard], path: Path, columns: int = 4) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n_rows = max(1, -(-len(cards) // columns))
    fig, axes = plt.subplots(n_rows, columns, figsize=(4 * columns, 3.6 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, card in zip(axes.flat, cards):
        ax.imshow(card.image)
        labels = "\n".join(f"{label} {score:.2f}" for label, score in card.labels)
        faces = "" if card.face_count is None else f"  faces {card.face_count}"
        ax.set_title(
            f"shot {card.shot_idx}  {_timecode(card.start_s)}-{_timecode(card.end_s)}{faces}\n{labels}",
            fontsize=8,
            loc="left",
        )
    fig.suptitle(row["uri"], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)


def render_html(row: dict, cards: list[ShotCard], path: Path) -> None:
    cells = []
    for card in cards:
        buf = io.BytesIO()
        Image.fromarray(card.image).save(buf, format="JPEG", quality=85)
        labels = "".join(f"<li>{html.escape(label)} <b>{score:.2f}</b></li>" for label, score in card.labels)
        faces = "" if card.face_count is None else f" &middot; faces {card.face_count}"
        cells.append(
            f'<figure><img src="data:image/jpeg;base64,{base64.b64encode(buf.getvalue()).decode()}">'
            f"<figcaption>shot {card.shot_idx} &middot; {_timecode(card.start_s)}&ndash;{_timecode(card.end_s)}"
            f"{faces}<ul>{labels}</ul></figcaption></figure>"
        )
    path.write_text(
        "<!doctype html><meta charset=utf-8><title>movielib contact sheet</title>"
        "<style>body{font-family:sans-serif}figure{display:inline-block;width:330px;vertical-align:top;margin:6px}"
        "img{width:320px}ul{margin:2px 0;padding-left:18px}</style>"
        f"<h1>{html.escape(row['uri'])}</h1><p>{len(cards)} shots, {row['duration_s']:.1f} s, "
        f"{row['width']}x{row['height']} @ {row['fps']:.3f} fps</p>" + "".join(cells),
        encoding="utf-8",
    )


def contact_sheet(dest: str, out: str, video: str | None = None, s3: S3Options | None = None) -> tuple[Path, Path, int]:
    """Write OUT.png and OUT.html for one video of DEST; returns both paths and the shot count."""
    row, cards = shot_cards(dest, video, s3)
    base = Path(out)
    base.parent.mkdir(parents=True, exist_ok=True)
    png, page = base.with_suffix(".png"), base.with_suffix(".html")
    render_png(row, cards, png)
    render_html(row, cards, page)
    return png, page, len(cards)
