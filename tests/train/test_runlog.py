"""A run's metrics.csv survives a restart (rows are read back), keeps the last row of a redone step, and is drawn."""

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
    assert png.endswith("curves.png") and (tmp_path / "run" / "curves.png").stat().st_size > 5000
