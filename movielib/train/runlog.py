"""A run's metrics as a CSV, TensorBoard event files and a PNG of curves, in its run folder (local or s3://).

Rank 0 of a training run logs one row per report (step, epoch, loss, lr, and whatever else the
method measures). A worker restarted from a checkpoint logs the steps it redoes again; readers
keep the last row of each step. The CSV is rewritten whole on every flush (object stores have no
append), which is cheap for the few thousand rows a run reports. The same rows go to TensorBoard event
files in `<folder>/tensorboard/` (written locally, copied on every flush), so `tensorboard --logdir RUN`
shows a running job, every stage of it.
"""

from __future__ import annotations

import csv
import io
import math
import os

from movielib.io.uri import S3Options, filesystem_for

METRICS, CURVES, TENSORBOARD = "metrics.csv", "curves.png", "tensorboard"


class RunLog:
    """Append-only metrics of one run, kept in memory and flushed as `<folder>/metrics.csv`."""

    def __init__(self, folder: str, s3: S3Options | None = None, tensorboard: bool = True):
        self.fs, self.path = filesystem_for(folder, s3)
        self.rows: list[dict] = self._read()
        self.tensorboard = tensorboard
        self._writer, self._local = None, None

    def _read(self) -> list[dict]:
        try:
            with self.fs.open_input_stream(f"{self.path}/{METRICS}") as f:
                rows = csv.DictReader(io.StringIO(f.read().decode()))
                return [{k: _number(v) for k, v in row.items() if v != ""} for row in rows]  # a row's own cells
        except (FileNotFoundError, OSError):
            return []

    def log(self, row: dict) -> None:
        self.rows.append(dict(row))
        if self.tensorboard and "step" in row:
            self._scalars(row)
        self.flush()

    def _scalars(self, row: dict) -> None:
        """The row's numbers as TensorBoard scalars at its step, the event file copied next to metrics.csv."""
        import tempfile

        from tensorboardX import SummaryWriter

        if self._writer is None:
            self._local = tempfile.mkdtemp(prefix="movielib-tensorboard-")
            self._writer = SummaryWriter(self._local)
        for key, value in row.items():
            if key != "step" and isinstance(value, (int, float)) and not isinstance(value, bool):
                self._writer.add_scalar(key, value, int(row["step"]))
        self._writer.flush()
        self.fs.create_dir(f"{self.path}/{TENSORBOARD}", recursive=True)
        for name in os.listdir(self._local):
            with (
                open(os.path.join(self._local, name), "rb") as src,
                self.fs.open_output_stream(f"{self.path}/{TENSORBOARD}/{name}") as dst,
            ):
                dst.write(src.read())

    def flush(self) -> None:
        columns = list(dict.fromkeys(k for r in self.rows for k in r))
        out = io.StringIO()
        writer = csv.DictWriter(out, fieldnames=columns)
        writer.writeheader()
        writer.writerows(self.rows)
        self.fs.create_dir(self.path, recursive=True)
        with self.fs.open_output_stream(f"{self.path}/{METRICS}") as f:
            f.write(out.getvalue().encode())

    def by_step(self) -> list[dict]:
        """One row per step (the last logged: a resumed run's redone steps replace the lost ones), in order."""
        last = {int(r["step"]): r for r in self.rows if "step" in r}
        return [last[s] for s in sorted(last)]

    def curves(self) -> str:
        """Every numeric metric against the step, one panel each, as `<folder>/curves.png`; returns its path.
        Metrics named `<panel>/<label>` (one figure per genre, say) share a panel, a line each; a metric
        `<name>_chance` is a dashed line in `<name>`'s panel (where the figure would be by chance)."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.by_step()

        def numeric(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)

        # every metric a row holds: step rows (every log_every_steps) and epoch rows (global metrics) alike
        names = [
            k
            for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("step", "epoch") and any(numeric(r.get(k)) for r in rows)
        ]
        panels: dict[str, list[str]] = {}
        for name in names:
            base = name.removesuffix("_chance")
            panel = base if name != base and base in names else name.split("/", 1)[0]
            panels.setdefault(panel, []).append(name)
        cols = min(3, max(1, len(panels)))
        rows_of_panels = math.ceil(len(panels) / cols) or 1
        fig, axes = plt.subplots(rows_of_panels, cols, figsize=(4.5 * cols, 2.8 * rows_of_panels), squeeze=False)
        for ax, (panel, members) in zip(axes.flat, panels.items()):
            for name in members:
                points = [(r["step"], r[name]) for r in rows if numeric(r.get(name))]
                if name.endswith("_chance") and name != panel:
                    ax.axhline(points[-1][1], color="grey", linestyle="--", linewidth=1, label="chance")
                else:
                    label = name.split("/", 1)[1] if "/" in name else None
                    ax.plot(*zip(*points), marker="." if len(points) < 50 else None, label=label)
            if len(members) > 1:
                ax.legend(loc="best", fontsize=6, ncol=2 if len(members) > 6 else 1)
            ax.set_title(panel)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(panels) :]:
            ax.set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        with self.fs.open_output_stream(f"{self.path}/{CURVES}") as f:
            f.write(buf.getvalue())
        return f"{self.path}/{CURVES}"


def last_epoch(path: str, s3=None) -> dict:
    """A stage's last epoch row from its log (`path`: <run folder>/<stage>): a finished stage's final metrics
    when a run is started again and Ray Train reports none."""
    rows = [r for r in RunLog(path, s3, tensorboard=False).by_step() if r.get("kind") != "step"]
    return rows[-1] if rows else {}


def _number(value: str):
    """CSV cells back to numbers where they are numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
