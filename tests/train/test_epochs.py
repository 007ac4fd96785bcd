"""The launcher's epochs on real Ray Train workers: seeded per-epoch shuffling, step rows and TensorBoard events,
mid-epoch checkpoints and their resume, a checkpoint whose files are gone, and both Movies2Scenes loops in bf16
on the CPU with exports that are the optimizer's fp32 master weights."""

import shutil
import sys

import numpy as np
import pytest
import torch
from conftest import TINY

from movielib.models.clip import ClipSpec, FramePreprocess
from movielib.train.config import DeepSpeedSection, ScalingSection, TrainRunSection
from movielib.train.launcher import Worker, launch
from movielib.train.movies2scenes.config import ScenesSection, SimilarityModelSection
from movielib.train.movies2scenes.encoder import tower_config
from movielib.train.movies2scenes.loops import ScenesLoop, SimilarityLoop, scenes_loop, similarity_loop
from movielib.train.runlog import RunLog

pytestmark = pytest.mark.slow
PAIRS, ROWS, BATCH = 8, 16, 8  # 8 movie pairs of 16 rows each, arriving grouped by pair


def order_loop(worker: Worker, config: dict) -> None:
    """Trains a scalar on the grouped rows; logs which pairs each batch held and the order of every epoch."""
    import ray.train

    model = torch.nn.Linear(1, 1)
    engine = worker.engine(model, torch.optim.SGD(model.parameters(), lr=0.01))
    run = worker.epochs(engine, config["epochs"], "order", "rows")
    for _ in run:
        seen = []
        for batch in run.batches(ray.train.get_dataset_shard("train")):
            loss = engine(batch["x"][:, None].float()).pow(2).mean()
            engine.backward(loss)
            engine.step()
            seen += batch["row"].tolist()
            run.step_done(engine, len(batch["row"]), loss=loss.item(), pairs=len(set(batch["pair"].tolist())))
            if config.get("die_at") == run.step:
                raise SystemExit("a planted failure after the step's checkpoint")
        run.end_epoch(engine, {"first_rows": float(seen[0] * 1000 + seen[1]), "rows": float(len(seen))})


def _order_run(tmp_path, name, **extra):
    import ray.data
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    rows = [{"row": i, "pair": i // ROWS, "x": float(i)} for i in range(PAIRS * ROWS)]
    run = TrainRunSection(
        folder=str(tmp_path),
        name=name,
        log_every_steps=1,
        shuffle_buffer=PAIRS * ROWS,
        max_failures=0,
        **extra.pop("run", {}),
    )
    return launch(
        order_loop,
        {"epochs": 3, **extra},
        ScalingSection(workers=1),
        DeepSpeedSection(),
        run,
        BATCH,
        datasets={"train": ray.data.from_items(rows)},
        stage="order",
    )


def test_each_epoch_is_a_new_seeded_order_of_mixed_batches_with_step_rows(ray_local, tmp_path):
    _order_run(tmp_path, "a")
    _order_run(tmp_path, "b")
    a, b = RunLog(str(tmp_path / "a" / "order")), RunLog(str(tmp_path / "b" / "order"))
    epochs = [r for r in a.rows if r.get("kind") == "epoch"]
    assert [r["rows"] for r in epochs] == [PAIRS * ROWS] * 3
    assert len({r["first_rows"] for r in epochs}) == 3  # a new order every epoch ...
    assert [r["first_rows"] for r in epochs] == [r["first_rows"] for r in b.rows if r.get("kind") == "epoch"]  # seeded
    steps = [r for r in a.rows if r.get("kind") == "step"]
    assert [r["step"] for r in steps] == list(range(1, 3 * PAIRS * ROWS // BATCH + 1))  # a row every step
    # a batch of 8 rows drawn at random from 8 pairs holds 8 * (1 - (7/8)^8) = 5.3 pairs on average; in arrival
    # order every batch holds one
    assert np.mean([r["pairs"] for r in steps]) > 4.0
    events = list((tmp_path / "a" / "order" / "tensorboard").iterdir())
    assert events and events[0].name.startswith("events.out.tfevents") and events[0].stat().st_size > 1000


def test_a_mid_epoch_checkpoint_resumes_where_it_stopped_and_a_missing_one_is_an_error(ray_local, tmp_path):
    run = {"checkpoint_every_steps": 4, "num_to_keep": 2}
    with pytest.raises(Exception, match="planted failure"):
        _order_run(tmp_path, "cut", run=run, die_at=12)  # 16 steps an epoch: dies in epoch 1 after step 12's save
    result = _order_run(tmp_path, "cut", run=run)
    log = RunLog(str(tmp_path / "cut" / "order"))
    steps = [r["step"] for r in log.rows if r.get("kind") == "step"]
    assert steps[:12] == list(range(1, 13)) and steps[12:] == list(range(13, 49))  # 13 follows 12: no restart
    assert result.metrics["step"] == 48 and result.metrics["epoch"] == 3
    kept = [p for p in (tmp_path / "cut" / "order").glob("checkpoint_*") if p.is_dir()]
    assert len(kept) == 2  # num_to_keep
    for ckpt in kept:
        shutil.rmtree(ckpt / "state")  # the DeepSpeed files of every kept checkpoint are gone
    with pytest.raises(Exception, match=r"cannot resume from .*checkpoint_.*missing or incomplete"):
        _order_run(tmp_path, "cut", run=run)


def _pairs(n: int, shots: int, dim: int) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "x1": rng.normal(size=(shots, dim)).astype(np.float32),
            "x2": rng.normal(size=(shots, dim)).astype(np.float32),
            "m1": np.ones(shots, bool),
            "m2": np.ones(shots, bool),
            "label": float(i % 2),
        }
        for i in range(n)
    ]


def test_both_movies2scenes_steps_train_in_bf16_on_the_cpu_and_export_fp32_masters(ray_local, tmp_path):
    import ray.data
    from ray import cloudpickle

    cloudpickle.register_pickle_by_value(sys.modules[__name__])
    bf16, run = DeepSpeedSection(precision="bf16"), TrainRunSection(folder=str(tmp_path), name="bf16")
    m = SimilarityModelSection(
        shots=16, dim=8, avg_kernel=4, avg_stride=2, max_kernel=3, max_stride=2, batch=4, epochs=2, dropout=0.0
    )
    launch(
        similarity_loop,
        SimilarityLoop(m, 6, 0),
        ScalingSection(workers=1),
        bf16,
        run,
        4,
        stage="similarity",
        datasets={"train": ray.data.from_items(_pairs(8, 16, 6)), "val": ray.data.from_items(_pairs(4, 16, 6))},
    )
    spec = ClipSpec(TINY, random_weights=True)
    pre = FramePreprocess.for_spec(spec)
    rng = np.random.default_rng(1)
    scenes = [
        {
            "q": rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8),
            "k": rng.integers(0, 255, (2, 64, 64, 3), dtype=np.uint8),
        }
        for _ in range(8)
    ]
    s = ScenesSection(shots=2, dim=16, queue=32, lr=1e-3, warmup_epochs=0, batch=4, epochs=1)
    loop = ScenesLoop(s, 0, spec, tower_config(spec.validate().model_cfg), tuple(pre.mean), tuple(pre.std), 2)
    launch(
        scenes_loop,
        loop,
        ScalingSection(workers=1),
        bf16,
        run,
        4,
        stage="scenes",
        datasets={"train": ray.data.from_items(scenes)},
    )
    for stage in ("similarity", "scenes"):
        losses = [r["loss"] for r in RunLog(str(tmp_path / "bf16" / stage)).rows]
        assert losses and all(np.isfinite(losses)), (stage, losses)
    for name in ("similarity.pt", "scene_encoder.pt"):
        state = torch.load(tmp_path / "bf16" / name, weights_only=True)["state_dict"]
        assert all(v.dtype == torch.float32 for v in state.values())
        # fp32 masters, not the bf16 working copies: some weight is not representable in bf16
        assert any((v != v.bfloat16().float()).any() for v in state.values() if v.is_floating_point()), name
