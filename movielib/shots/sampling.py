"""Which frames of a shot are scored: MovieCLIP samples each shot at 4 fps (§5.2)."""

from __future__ import annotations


def sample_frame_indices(start_frame: int, end_frame: int, fps: float, rate: float = 4.0) -> list[int]:
    """Frame indices at `rate` per second inside [start_frame, end_frame), at least one.

    Samples sit at the centres of equal intervals, so a 1 s shot at 4 fps gives the frames at
    0.125, 0.375, 0.625 and 0.875 s, and a shot shorter than 1/rate s still gives its middle frame.
    """
    n_shot = end_frame - start_frame
    if n_shot <= 0:
        raise ValueError(f"empty shot [{start_frame}, {end_frame})")
    if fps <= 0 or rate <= 0:
        return [start_frame + n_shot // 2]
    count = max(1, int(n_shot / fps * rate))
    step = n_shot / count
    return [start_frame + min(n_shot - 1, int((k + 0.5) * step)) for k in range(count)]
