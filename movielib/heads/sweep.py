"""`movielib tune heads` and `movielib train head`: heads on a features table with Ray Tune, one layout.

    <run.folder>/<run.name>/
        config.yaml         the resolved config
        split.csv           video_id -> train / val / test
        sweep/              Ray Tune's experiment (trials, checkpoints every epoch); `--resume` restores it
        trials.csv          every trial: its hyperparameters, best and last metric, epochs run, status
        best_config.yaml    the best trial's hyperparameters
        best/head.pt        the best checkpoint as Serve loads it (weights, head spec, labels, feature model)
        best/test_predictions.npy   what that checkpoint predicted for the test split inside its trial
        sweep.png           the metric of every trial per epoch, and the best trial's learning curves
        summary.json        held-out (test) metrics of the best head, against chance and a linear probe

Each trial reports its validation metrics and a checkpoint every epoch through `ray.tune.report`, so
ASHA stops weak trials early and the best checkpoint is kept; trials run side by side as far as the
cluster's resources allow (`tune.cpus_per_trial`, fractional `tune.gpus_per_trial`).
"""

from __future__ import annotations

import atexit
import io
import json
import os
import tempfile
import threading
import time
import warnings

import numpy as np
import pyarrow as pa
import yaml

from movielib.errors import TrialsFailed
from movielib.heads.config import HeadsConfig
from movielib.heads.data import HeadData, build
from movielib.heads.train import PRIMARY, export_bytes, fit, load_state, save_state
from movielib.io.uri import S3Options
from movielib.metrics import evaluate
from movielib.runtime import init_ray, read_bytes, run_folder, write_bytes
from movielib.store import CatalogStore

STATE = "state.pt"


def trial(config: dict, data: HeadData) -> None:
    """One Tune trial: the head with `config`, resumed from the trial's last checkpoint when there is one."""
    from ray import tune

    # Tune stops a trial by raising SystemExit in this thread while it waits in tune.report, whose frames hold the
    # run folder's S3 filesystem. The process then exits: if pyarrow's atexit handler finalizes the AWS SDK before
    # this (daemon) thread has dropped that exception, the filesystem is destroyed after the SDK and the process
    # aborts ("Fatal Python error: Aborted", SystemExit_dealloc). atexit runs the last registered first: wait for
    # this thread before pyarrow's handler runs.
    if threading.current_thread() is not threading.main_thread():
        atexit.register(threading.current_thread().join, 10)

    state = None
    checkpoint = tune.get_checkpoint()
    if checkpoint is not None:
        with checkpoint.as_directory() as folder:
            state = load_state(os.path.join(folder, STATE))

    def report(metrics: dict, epoch_state: dict) -> None:
        with tempfile.TemporaryDirectory() as folder:
            save_state(epoch_state, os.path.join(folder, STATE))
            tune.report(metrics, checkpoint=tune.Checkpoint.from_directory(folder))

    fit(data, config, report, state)


def metric_and_mode(cfg: HeadsConfig, task: str) -> tuple[str, str]:
    metric, mode = PRIMARY[task]
    metric = cfg.tune.metric or metric
    if cfg.tune.mode != "auto":
        mode = cfg.tune.mode
    elif cfg.tune.metric:
        mode = "min" if "mse" in metric or "loss" in metric else "max"
    return metric, mode


def search_space(cfg: HeadsConfig, sweep: bool) -> dict:
    from ray import tune

    space = {**cfg.head.model_dump(), "seed": cfg.data.seed}
    if sweep:
        s = cfg.search
        space.update(
            lr=tune.loguniform(*s.lr),
            weight_decay=tune.loguniform(*s.weight_decay),
            dropout=tune.choice(s.dropout),
            width=tune.choice(s.width),
            batch_size=tune.choice(s.batch_size),
        )
    return space


def _tuner(cfg: HeadsConfig, data: HeadData, sweep: bool, restore: bool, restart_errored: bool = False):
    from ray import tune
    from ray.tune.schedulers import ASHAScheduler, FIFOScheduler
    from ray.tune.search import BasicVariantGenerator

    from movielib.heads.progress import TrialLines

    metric, mode = metric_and_mode(cfg, data.task)
    t = cfg.tune
    trainable = tune.with_resources(
        tune.with_parameters(trial, data=data), {"cpu": t.cpus_per_trial, "gpu": t.gpus_per_trial}
    )
    folder = run_folder(cfg.run)
    if restore:
        return tune.Tuner.restore(
            f"{folder}/sweep",
            trainable=trainable,
            resume_unfinished=True,
            resume_errored=not restart_errored,
            restart_errored=restart_errored,
        )
    scheduler = (
        ASHAScheduler(max_t=cfg.head.epochs, grace_period=t.grace_period, reduction_factor=t.reduction_factor)
        if sweep and t.scheduler == "asha"
        else FIFOScheduler()
    )
    return tune.Tuner(
        trainable,
        param_space=search_space(cfg, sweep),
        tune_config=tune.TuneConfig(
            metric=metric,
            mode=mode,
            scheduler=scheduler,
            # seeded sampling: the same config draws the same trials (ASHA vs FIFO compare)
            search_alg=BasicVariantGenerator(random_state=cfg.data.seed),
            num_samples=t.num_samples if sweep else 1,
            max_concurrent_trials=t.max_concurrent_trials,
        ),
        run_config=tune.RunConfig(
            name="sweep",
            storage_path=folder,
            verbose=0,
            callbacks=[TrialLines(t.num_samples if sweep else 1, metric, mode)],
            checkpoint_config=tune.CheckpointConfig(
                num_to_keep=1, checkpoint_score_attribute=metric, checkpoint_score_order=mode
            ),
        ),
    )


class HeadsSummary(dict):
    """The run's summary.json, rendered for the console."""

    exit_code = 0

    def render(self) -> str:
        metric = self["metric"].removeprefix("val_")
        best = self["best"]
        lines = [
            f"run {self['run']}: {self['trials']} trials, {self['epochs_run']} epochs in all, {self['wall_s']:.1f}s",
            f"best {best['trial']} (epoch {best['epoch']}): test {metric} "
            f"{best['test'].get(metric, float('nan')):.4f}; chance {self['chance'].get(metric, float('nan')):.4f}; "
            f"linear probe {self['linear_probe'].get(metric, float('nan')):.4f}",
            "best config: "
            + ", ".join(
                f"{k}={best['config'].get(k)}" for k in ("lr", "weight_decay", "dropout", "width", "batch_size")
            ),
        ]
        lines += [f"failed: {f['trial']}: {f['error']}" for f in self.get("failed", [])]
        lines += [f"{name}: {path}" for name, path in self["outputs"].items()]
        return "\n".join(lines)


def run_sweep(cfg: HeadsConfig, args=None) -> HeadsSummary:
    """`movielib tune heads` (`--resume RUN`: the interrupted sweep of that run folder, restored)."""
    init_ray(cfg.ray_address)
    return run_heads(cfg, sweep=True, resume=bool(getattr(args, "resume", None)))


def run_one(cfg: HeadsConfig, args=None) -> HeadsSummary:
    """`movielib train head`: one trial with the head section's settings, in the sweep's layout."""
    init_ray(cfg.ray_address)
    return run_heads(cfg, sweep=False)


def run_heads(cfg: HeadsConfig, sweep: bool = True, resume: bool = False) -> HeadsSummary:
    """Build the data (validating the tables and labels), run the trials, write the run folder; the summary."""
    # Set before Tune is imported. Tune's own console (a table every few seconds, a TensorBoard pointer into /tmp)
    # off: TrialLines prints a line a trial, and the summary names the run folder. num_to_keep=1 makes Tune save
    # the experiment's state at every checkpoint on purpose (a resumed sweep must not name a deleted checkpoint).
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    os.environ.setdefault("TUNE_WARN_EXCESSIVE_EXPERIMENT_CHECKPOINT_SYNC_THRESHOLD_S", "0")
    os.environ.setdefault("TUNE_WARN_THRESHOLD_S", "5")  # a checkpoint to S3 on 2 cores takes ~1 s: not news
    s3 = S3Options.from_config(cfg.s3)
    store = CatalogStore(cfg.data.catalog, s3)
    data = build(store, cfg.data)
    folder = run_folder(cfg.run)
    if not resume:
        write_bytes(f"{folder}/config.yaml", cfg.to_yaml().encode(), s3)
    _write_csv(f"{folder}/split.csv", data.split_table(), s3)
    print(
        f"head data: {data.task}, {data.level}-level, {len(data.label_names) or 1} outputs, "
        + ", ".join(f"{s} {part.rows}" for s, part in data.splits.items())
        + f" rows; features {data.features} ({data.feature_model})",
        flush=True,
    )
    if data.untrained:
        print(
            f"{len(data.untrained)} of {len(data.label_names)} labels have no training row (the head cannot learn "
            f"them; their AP counts where the test split has them): {', '.join(data.untrained[:10])}"
            + (", ..." if len(data.untrained) > 10 else ""),
            flush=True,
        )
    t0 = time.perf_counter()
    results = _tuner(cfg, data, sweep, resume).fit()
    if resume and any(_lost_checkpoint(r.error) for r in results):
        print("restarting trials whose last checkpoint was gone from their first epoch", flush=True)
        results = _tuner(cfg, data, sweep, restore=True, restart_errored=True).fit()
    wall = time.perf_counter() - t0
    return write_results(cfg, data, results, wall)


def _lost_checkpoint(error: BaseException | None) -> bool:
    """A trial that could not be resumed because the checkpoint Tune's saved state names is gone: with
    num_to_keep, Tune deletes a trial's previous checkpoint when it registers a new one, and a driver that dies
    before it next saves the experiment's state leaves that state naming the deleted one."""
    return error is not None and "does not exist on storage anymore" in str(error)


def _write_csv(path: str, table: pa.Table, s3: S3Options) -> None:
    import pyarrow.csv as pcsv

    buf = io.BytesIO()
    pcsv.write_csv(table, buf)
    write_bytes(path, buf.getvalue(), s3)


def trial_error(error: BaseException) -> str:
    """A failed trial's own error, one line (`Type: message`), not Tune's wrapper and its traceback."""
    cause = getattr(error, "cause", None) or error.__cause__ or error
    text = str(cause).strip().splitlines()
    return f"{type(cause).__name__}: {text[-1] if text else ''}".strip()


def write_results(cfg: HeadsConfig, data: HeadData, results, wall_s: float) -> HeadsSummary:
    """Trials table, best config, exported best head, plots and held-out figures. Failed trials are listed with
    their error; when every trial failed, TrialsFailed carries the first one's."""
    metric, mode = metric_and_mode(cfg, data.task)
    failed = [r for r in results if r.error]
    if failed and len(failed) == len(results):
        first = failed[0]
        raise TrialsFailed(
            f"{'every trial' if len(results) > 1 else 'the trial'} failed ({len(failed)}); "
            f"{os.path.basename(first.path)}: {trial_error(first.error)} (its log: {first.path}/error.txt)"
        )
    folder, s3 = run_folder(cfg.run), S3Options.from_config(cfg.s3)
    better = max if mode == "max" else min
    rows, curves = [], {}
    for r in results:
        history = r.metrics_dataframe
        values = [] if history is None or metric not in history else history[metric].dropna().tolist()
        curves[r.path] = (history, values)
        rows.append(
            {
                "trial": os.path.basename(r.path),
                **{k: r.config.get(k) for k in ("lr", "weight_decay", "dropout", "width", "batch_size")},
                f"best_{metric}": better(values) if values else None,
                f"last_{metric}": values[-1] if values else None,
                "epochs": len(values),
                "status": "error" if r.error else "done",
                "error": trial_error(r.error) if r.error else "",
            }
        )
    _write_csv(f"{folder}/trials.csv", pa.Table.from_pylist(rows), s3)
    best = results.get_best_result(metric, mode, scope="all")
    checkpoint = best.get_best_checkpoint(metric, mode) or best.checkpoint
    with checkpoint.as_directory() as ckpt:
        state = load_state(os.path.join(ckpt, STATE))
    params = {k: v for k, v in best.config.items()}
    write_bytes(f"{folder}/best_config.yaml", yaml.safe_dump(params, sort_keys=False).encode(), s3)
    write_bytes(f"{folder}/best/head.pt", export_bytes(state, params, data), s3)
    buf = io.BytesIO()
    np.save(buf, state["test_predictions"])
    write_bytes(f"{folder}/best/test_predictions.npy", buf.getvalue(), s3)
    test_targets = data.splits["test"].targets()  # the targets alone reach the driver, never the features
    test = evaluate(data.task, test_targets, state["test_predictions"], params.get("threshold", 0.5))
    summary = HeadsSummary(
        {
            "run": folder,
            "task": data.task,
            "level": data.level,
            "metric": metric,
            "mode": mode,
            "trials": len(rows),
            "epochs_run": sum(r["epochs"] for r in rows),
            "wall_s": wall_s,
            "best": {"trial": os.path.basename(best.path), "epoch": state["epoch"], "config": params, "test": test},
            "failed": [{"trial": os.path.basename(r.path), "error": trial_error(r.error)} for r in failed],
            "chance": chance(data, test_targets),
            "linear_probe": linear_probe(cfg, data, test_targets),
            "outputs": {
                "trials": f"{folder}/trials.csv",
                "best_config": f"{folder}/best_config.yaml",
                "head": f"{folder}/best/head.pt",
                "plot": f"{folder}/sweep.png",
                "tensorboard": f"tensorboard --logdir {folder}/sweep",  # each trial's events, in the run folder
            },
        }
    )
    write_bytes(f"{folder}/sweep.png", plot(curves, metric, best.path), s3)
    write_bytes(f"{folder}/summary.json", json.dumps(summary, indent=2, default=float).encode(), s3)
    return summary


def chance(data: HeadData, y: np.ndarray) -> dict[str, float]:
    """What guessing scores on the test split (targets `y`): mAP of scores that ignore the input equals each
    label's share of positives (averaged over labels with positives); the commonest training class; the training
    mean (both read block by block)."""
    if data.task == "multilabel":
        share = y[:, y.sum(0) > 0].mean(0)
        return {"map": float(share.mean()) if share.size else float("nan")}
    train = data.splits["train"]
    if data.task == "single":
        common = sum(np.bincount(b["y"], minlength=data.out_dim) for b in train).argmax()
        return {"top1": float((y == common).mean())}
    return {"mse": float(((y - sum(float(b["y"].sum()) for b in train) / train.rows) ** 2).mean())}


def linear_probe(cfg: HeadsConfig, data: HeadData, y: np.ndarray) -> dict[str, float]:
    """The usual linear-probe protocol (CLIP's): a converged scikit-learn model on the training split -- L-BFGS
    logistic regression (one vs rest for multi-label), ridge for regression -- its regularisation chosen on the
    validation split, scored on the test split (targets `y`). It needs the splits whole: it runs in a Ray task,
    on a worker, not on the driver."""
    import ray

    probe = ray.remote(num_cpus=cfg.tune.cpus_per_trial)(probe_predictions)
    return evaluate(data.task, y, ray.get(probe.remote(data)), cfg.head.threshold)


def probe_predictions(data: HeadData, strengths: tuple[float, ...] = (0.01, 0.1, 1.0, 10.0, 100.0)) -> np.ndarray:
    """Test-split predictions of the best (on validation) of linear models fit to convergence at each strength."""
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.multiclass import OneVsRestClassifier

    metric, mode = PRIMARY[data.task]
    arrays = {s: part.arrays() for s, part in data.splits.items()}
    x, y = {s: a[0] for s, a in arrays.items()}, {s: a[1] for s, a in arrays.items()}
    best, best_test = None, None
    with warnings.catch_warnings():  # a strength that stops at max_iter is one of five tried: no news
        warnings.simplefilter("ignore", ConvergenceWarning)
        for c in strengths:
            if data.task == "regression":
                model = Ridge(alpha=1.0 / c).fit(x["train"], y["train"])
                val, test = model.predict(x["val"]), model.predict(x["test"])
            elif data.task == "single":
                model = LogisticRegression(C=c, max_iter=2000).fit(x["train"], y["train"])
                val, test = _class_scores(model, x["val"], data.out_dim), _class_scores(model, x["test"], data.out_dim)
            else:
                keep = y["train"].sum(0) > 0  # a label with no training positive: predicted never
                model = OneVsRestClassifier(LogisticRegression(C=c, max_iter=2000)).fit(x["train"], y["train"][:, keep])
                val, test = (np.zeros((len(x[s]), data.out_dim)) for s in ("val", "test"))
                val[:, keep], test[:, keep] = model.predict_proba(x["val"]), model.predict_proba(x["test"])
            score = (
                evaluate(data.task, y["val"], val).get(metric.removeprefix("val_"), float("nan"))
                if len(x["val"])
                else 0
            )
            if best is None or (score > best if mode == "max" else score < best) or not np.isfinite(best):
                best, best_test = score, test
    return best_test


def _class_scores(model, x: np.ndarray, classes: int) -> np.ndarray:
    """predict_proba over every class, also those the training split never saw."""
    out = np.zeros((len(x), classes))
    out[:, model.classes_] = model.predict_proba(x)
    return out


def plot(curves: dict, metric: str, best_path: str) -> bytes:
    """Left: every trial's validation metric per epoch (ASHA's stops show as short lines); right: the best
    trial's training loss and validation metric."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    for path, (_, values) in curves.items():
        left.plot(
            range(1, len(values) + 1),
            values,
            marker=".",
            alpha=0.9 if path == best_path else 0.5,
            linewidth=2.5 if path == best_path else 1,
            label="_".join(os.path.basename(path).split("_")[:3]),
        )
    left.set(title=f"{metric} per trial", xlabel="epoch", ylabel=metric)
    left.legend(fontsize=6)
    history = curves[best_path][0]
    if history is not None:
        right.plot(history["epoch"], history["train_loss"], color="tab:red", label="train loss")
        other = right.twinx()
        other.plot(history["epoch"], history[metric], color="tab:blue", label=metric)
        other.set_ylabel(metric, color="tab:blue")
    right.set(title="best trial", xlabel="epoch", ylabel="train loss")
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    plt.close(fig)
    return buf.getvalue()


def resume_config(run: str, s3: S3Options | None = None) -> HeadsConfig:
    """The config a run was started with (its config.yaml), for `--resume RUN`."""
    from movielib.config import build_config

    return build_config(HeadsConfig, yaml.safe_load(read_bytes(f"{run.rstrip('/')}/config.yaml", s3)))
