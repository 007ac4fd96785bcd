"""A sweep's console: one line a finished trial (how many of how many, what it reached, the best so far, an ETA)
in place of Tune's tables, which with a run folder on S3 point at temp folders and repeat every few seconds."""

from __future__ import annotations

import time

from ray.tune import Callback

from movielib.runtime import elapsed_eta


class TrialLines(Callback):
    """Prints `[tune] trial 3/8 stopped at epoch 2: val_map 0.7712 (best 0.8413) | 41s, ETA ~1m` as trials end."""

    def __init__(self, total: int, metric: str, mode: str):
        self.total, self.metric, self.mode = total, metric, mode
        self.ended, self.best, self.t0 = 0, None, time.monotonic()

    def on_trial_complete(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "done")

    def on_trial_error(self, iteration: int, trials: list, trial, **info) -> None:
        self._line(trial, "failed")

    def _line(self, trial, how: str) -> None:
        self.ended += 1
        last = trial.last_result or {}
        value, epochs = last.get(self.metric), last.get("training_iteration", 0)
        max_epochs = (trial.config or {}).get("epochs")
        if how == "done" and max_epochs and epochs < max_epochs:
            how = "stopped early"  # ASHA's call
        if isinstance(value, float) and (self.best is None or (value > self.best) == (self.mode == "max")):
            self.best = value
        shown = f"{self.metric} {value:.4f}" if isinstance(value, float) else "no result"
        best = f" (best {self.best:.4f})" if self.best is not None else ""
        print(
            f"[tune] trial {self.ended}/{self.total} {how} at epoch {epochs}: {shown}{best} | "
            + elapsed_eta(time.monotonic() - self.t0, self.ended, self.total),
            flush=True,
        )
