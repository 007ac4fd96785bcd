"""The training launcher: Ray Train + DeepSpeed ZeRO-2 on 2 CPU workers (gloo); a worker that dies mid-run is
restarted from the last checkpoint and the run ends where an uninterrupted one ends."""

import os
import sys

import pytest
import torch

from movielib.config import JobConfig, build_config
from movielib.errors import ConfigError
from movielib.train.launcher import DeepSpeedSection, RunSection, ScalingSection, Worker, launch
from movielib.train.runlog import RunLog

STEPS, EVERY = 20, 5


def regression_loop(worker: Worker, config: dict) -> None:
    """y = x . w_true, learned by a 2-layer MLP; the data of (rank, step) is fixed, so runs are comparable."""
    steps, every = config["steps"], config["every"]
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    engine = worker.engine(model, torch.optim.SGD(model.parameters(), lr=0.05))
    state = worker.resume(engine)
    first = state.get("step", 0)
    w_true = torch.arange(8, dtype=torch.float32)[:, None] / 8
    for step in range(first, steps):
        g = torch.Generator().manual_seed(1000 * worker.rank + step)
        x = torch.randn(16, 8, generator=g)
        loss = torch.nn.functional.mse_loss(engine(x), x @ w_true)
        engine.backward(loss)
        engine.step()
        if step == config.get("die_at") and not state and worker.rank == 1:
            os._exit(1)  # a worker process dies mid-run (first attempt only)
        if (step + 1) % every == 0:
            worker.checkpoint(
                engine, {"step": step + 1, "loss": loss.item(), "resumed_from": first}, {"step": step + 1}
            )


def _run(tmp_path, name, **config):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the workers cannot import this test module
    return launch(
        regression_loop,
        {"steps": STEPS, "every": EVERY, **config},
        ScalingSection(workers=2),
        DeepSpeedSection(zero_stage=2),
        RunSection(folder=str(tmp_path), name=name, max_failures=2),
        micro_batch=16,
    )


@pytest.mark.slow
def test_a_worker_death_resumes_from_the_last_checkpoint_and_ends_like_an_uninterrupted_run(ray_local, tmp_path):
    whole = _run(tmp_path, "whole")
    broken = _run(tmp_path, "broken", die_at=12)
    assert whole.metrics["step"] == broken.metrics["step"] == STEPS
    # restarted from its last registered checkpoint (step 10, or 5 when the death beat step 10's registration)
    assert whole.metrics["resumed_from"] == 0 and broken.metrics["resumed_from"] in (5, 10)
    assert broken.metrics["loss"] == pytest.approx(whole.metrics["loss"], rel=1e-4)
    assert os.path.isdir(broken.checkpoint.path) and str(tmp_path / "broken") in broken.checkpoint.path
    # the run folder's metrics: one row per checkpoint, the redone ones logged again; curves drawn at the end
    log = RunLog(str(tmp_path / "broken" / "train"))
    assert [r["step"] for r in log.by_step()] == [5, 10, 15, 20]
    assert len(log.rows) == 4 + (10 - broken.metrics["resumed_from"]) // EVERY  # steps redone are logged again
    assert log.by_step()[-1]["loss"] == pytest.approx(broken.metrics["loss"])
    assert (tmp_path / "broken" / "train" / "curves.png").stat().st_size > 5000


def test_a_bad_training_config_names_the_field():
    class Job(JobConfig):
        scaling: ScalingSection = ScalingSection()
        deepspeed: DeepSpeedSection = DeepSpeedSection()

    with pytest.raises(ConfigError, match="scaling.workers must be > 0, got 0"):
        build_config(Job, {"scaling": {"workers": 0}})
    with pytest.raises(ConfigError, match="deepspeed.zero_stage must be 'auto', 0, 1, 2 or 3, got 4"):
        build_config(Job, {"deepspeed": {"zero_stage": 4}})


def export_loop(worker: Worker, config: dict) -> None:
    """A few steps, then the model's output on a fixed input and the exported (gathered) weights."""
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    engine = worker.engine(model, torch.optim.SGD(model.parameters(), lr=0.05))
    for step in range(3):
        x = torch.randn(16, 8, generator=torch.Generator().manual_seed(100 * worker.rank + step))
        loss = torch.nn.functional.mse_loss(engine(x), x.sum(1, keepdim=True))
        engine.backward(loss)
        engine.step()
    with torch.no_grad():
        y = engine(torch.ones(2, 8))
    worker.export(engine, "model.pt", {"y": y.cpu()})


@pytest.mark.slow
@pytest.mark.parametrize("stage", [2, 3])
def test_an_export_loads_without_deepspeed_whatever_the_zero_stage(ray_local, tmp_path, stage):
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    launch(
        export_loop,
        {},
        ScalingSection(workers=2, cpus_per_worker=0.5),
        DeepSpeedSection(zero_stage=stage),
        RunSection(folder=str(tmp_path), name="export"),
        micro_batch=16,
    )
    saved = torch.load(tmp_path / "export" / "model.pt", weights_only=True)
    model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 1))
    model.load_state_dict(saved["state_dict"])  # full shapes: ZeRO-3's partitions were gathered
    assert torch.allclose(model(torch.ones(2, 8)), saved["y"], atol=1e-6)


def test_workers_that_would_take_every_cpu_are_warned_about_before_the_run(ray_local):
    from movielib.train.launcher import warn_no_cpu_left

    message = warn_no_cpu_left(ScalingSection(workers=2, cpus_per_worker=1))  # the session's Ray has 2 CPUs
    assert message and "scaling.cpus_per_worker" in message and "all 2 CPUs" in message
    assert warn_no_cpu_left(ScalingSection(workers=2, cpus_per_worker=0.5)) is None
