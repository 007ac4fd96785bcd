"""A run's metrics as a CSV and a PNG of curves, in its run folder (local or s3://).

Rank 0 of a training run logs one row per report (step, epoch, loss, lr, and whatever else the
method measures). A worker restarted from a checkpoint logs the steps it redoes again; readers
keep the last row of each step. The CSV is rewritten whole on every flush (object stores have no
append), which is cheap for the few thousand rows a run reports.
"""

from __future__ import annotations

import csv
import io
import math

from movielib.io.uri import S3Options, filesystem_for

METRICS, CURVES = "metrics.csv", "curves.png"


class RunLog:
    """Append-only metrics of one run, kept in memory and flushed as `<folder>/metrics.csv`."""

    def __init__(self, folder: str, s3: S3Options | None = None):
        self.fs, self.path = filesystem_for(folder, s3)
        self.rows: list[dict] = self._read()

    def _read(self) -> list[dict]:
        try:
            with self.fs.open_input_stream(f"{self.path}/{METRICS}") as f:
                return [
                    {k: _number(v) for k, v in row.items()} for row in csv.DictReader(io.StringIO(f.read().decode()))
                ]
        except (FileNotFoundError, OSError):
            return []

    def log(self, row: dict) -> None:
        self.rows.append(dict(row))
        self.flush()

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
        """Every numeric metric against the step, one panel each, as `<folder>/curves.png`; returns its path."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        rows = self.by_step()
        names = [
            k
            for k in dict.fromkeys(k for r in rows for k in r)
            if k not in ("step", "epoch") and all(isinstance(r.get(k), (int, float)) for r in rows)
        ]
        cols = min(3, max(1, len(names)))
        rows_of_panels = math.ceil(len(names) / cols) or 1
        fig, axes = plt.subplots(rows_of_panels, cols, figsize=(4.5 * cols, 2.8 * rows_of_panels), squeeze=False)
        for ax, name in zip(axes.flat, names):
            ax.plot([r["step"] for r in rows], [r[name] for r in rows], marker="." if len(rows) < 50 else None)
            ax.set_title(name)
            ax.set_xlabel("step")
            ax.grid(alpha=0.3)
        for ax in list(axes.flat)[len(names) :]:
            ax.set_visible(False)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=110)
        plt.close(fig)
        with self.fs.open_output_stream(f"{self.path}/{CURVES}") as f:
            f.write(buf.getvalue())
        return f"{self.path}/{CURVES}"


def _number(value: str):
    """CSV cells back to numbers where they are numbers."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return value
    return int(number) if number.is_integer() and "." not in value and "e" not in value.lower() else number
