"""A run's metrics.csv survives a restart (rows are read back), keeps the last row of a redone step, and is drawn."""

import numpy as np
from PIL import Image

from movielib.train.runlog import RunLog


def test_metrics_are_reread_deduplicated_by_step_and_drawn(tmp_path):
    log = RunLog(str(tmp_path / "run"))
    for step in (5, 10, 15):
        log.log({"step": step, "epoch": 0, "loss": 1.0 / step, "lr": 0.1})
    again = RunLog(str(tmp_path / "run"))  # a restarted worker reads what was logged
    assert again.rows == log.rows and isinstance(again.rows[0]["step"], int) and again.rows[0]["lr"] == 0.1
    again.log({"step": 10, "epoch": 0, "loss": 0.05, "lr": 0.1, "top1": 0.5})  # step 10 redone after a restart
    assert [r["step"] for r in again.by_step()] == [5, 10, 15] and again.by_step()[1]["loss"] == 0.05
    png = again.curves()
    assert png.endswith("curves.png")
    with Image.open(png) as img:
        picture = np.asarray(img.convert("RGB"))
    assert img.size == (int(4.5 * 3 * 110), int(2.8 * 110))  # one row of three panels: loss, lr, top1
    line = (np.abs(picture.astype(int) - (0x1F, 0x77, 0xB4)) < 30).all(axis=2)  # matplotlib's first colour
    drawn = [int(panel.sum()) for panel in np.array_split(line, 3, axis=1)]
    assert drawn[0] > 200 and drawn[1] > 200, drawn  # loss and lr: a line through three steps
    assert 0 < drawn[2] < drawn[1] / 2, drawn


def test_a_family_of_metrics_shares_a_panel_and_a_chance_figure_is_a_dashed_line_in_its_own(tmp_path):
    log = RunLog(str(tmp_path / "run"), tensorboard=False)
    for step in (1, 2, 3):  # one AP per genre, and a retrieval figure with its chance level
        log.log(
            {"step": step, "val_ap/drama": 0.2 * step, "val_ap/comedy": 0.1 * step, "top1": 0.3, "top1_chance": 0.1}
        )
    with Image.open(log.curves()) as img:
        picture = np.asarray(img.convert("RGB"))
    assert img.size == (int(4.5 * 2 * 110), int(2.8 * 110))  # two panels: val_ap (both genres), top1 (and chance)
    first = (np.abs(picture.astype(int) - (0x1F, 0x77, 0xB4)) < 30).all(axis=2)  # matplotlib's first colour
    second = (np.abs(picture.astype(int) - (0xFF, 0x7F, 0x0E)) < 30).all(axis=2)  # its second
    grey = (np.abs(picture.astype(int) - (0x80, 0x80, 0x80)) < 10).all(axis=2)
    ap, top1 = np.array_split(np.arange(picture.shape[1]), 2)
    assert first[:, ap].sum() > 200 and second[:, ap].sum() > 200  # a line per genre in one panel
    assert first[:, top1].sum() > 200 and grey[:, top1].sum() > 100  # the figure and its dashed chance line
    assert second[:, top1].sum() < 50
