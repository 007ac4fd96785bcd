"""Long-range multimodal pretraining: each loss against its formula, masks, and what training learns."""

import math

import numpy as np
import pytest
import torch

from movielib.train.multimodal.config import LossesSection, MultimodalModelSection
from movielib.train.multimodal.losses import info_nce, masking_loss, shot_language, symmetric_info_nce
from movielib.train.multimodal.model import MultimodalModel


def _cos(a, b) -> float:
    return float(np.dot(a, b) / np.linalg.norm(a) / np.linalg.norm(b))


def _nce_by_hand(q: np.ndarray, k: np.ndarray, valid: np.ndarray, tau: float) -> float:
    """Eq. 3 written out: mean over valid queries of -log(exp(S(q_i, k_i)/tau) / sum_j valid exp(S(q_i, k_j)/tau))."""
    idx = [i for i in range(len(q)) if valid[i]]
    terms = []
    for i in idx:
        denom = sum(math.exp(_cos(q[i], k[j]) / tau) for j in idx)
        terms.append(-math.log(math.exp(_cos(q[i], k[i]) / tau) / denom))
    return sum(terms) / len(terms)


def test_info_nce_symmetric_and_masking_losses_match_their_formulas():
    rng = np.random.default_rng(0)
    q, k = rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))  # (B, shots, d)
    valid = np.array([[1, 1, 0], [1, 0, 1]], bool)
    tq, tk, tv = (torch.tensor(a) for a in (q, k, valid))
    flat_q, flat_k, flat_v = q.reshape(-1, 5), k.reshape(-1, 5), valid.reshape(-1)
    assert info_nce(tq, tk, tv, 0.3).item() == pytest.approx(_nce_by_hand(flat_q, flat_k, flat_v, 0.3), rel=1e-6)
    both = _nce_by_hand(flat_q, flat_k, flat_v, 0.3) + _nce_by_hand(flat_k, flat_q, flat_v, 0.3)
    assert symmetric_info_nce(tq, tk, tv, 0.3).item() == pytest.approx(both, rel=1e-6)
    # Eq. 1: masked predictions against the batch's masked input tokens only
    masked = np.array([[0, 1, 1], [1, 0, 0]], bool)
    by_hand = _nce_by_hand(flat_q, flat_k, masked.reshape(-1), 0.3)
    assert masking_loss(tq, tk, torch.tensor(masked), 0.3).item() == pytest.approx(by_hand, rel=1e-6)
    # invalid positions are out of both sides: changing them changes nothing
    tq2 = tq.clone()
    tq2[0, 2] += 100.0
    assert info_nce(tq2, tk, tv, 0.3).item() == pytest.approx(info_nce(tq, tk, tv, 0.3).item(), rel=1e-7)


def test_language_is_averaged_over_each_shots_interval_and_a_straddling_cue_counts_for_both():
    tokens = torch.tensor([[1.0, 0.0], [0.0, 1.0], [4.0, 4.0]])
    start, end = torch.tensor([0.0, 1.5, 9.0]), torch.tensor([1.0, 2.5, 9.5])  # the second cue straddles 2.0
    shots_start, shots_end = torch.tensor([0.0, 2.0, 4.0]), torch.tensor([2.0, 4.0, 6.0])
    mean, has = shot_language(tokens, start, end, shots_start, shots_end)
    assert has.tolist() == [True, True, False]
    assert torch.allclose(mean[0], torch.tensor([0.5, 0.5])) and torch.allclose(mean[1], torch.tensor([0.0, 1.0]))
    assert torch.equal(mean[2], torch.zeros(2))


def test_a_movies_cues_become_its_shots_language_tokens_by_their_times():
    import pyarrow as pa

    from movielib.train.multimodal.data import Sequences, cues_per_shot

    movie = pa.table(
        {
            "video_id": ["m"],
            "cue_start": [[0.2, 1.6, 5.0]],  # the second cue runs from shot 0 into shot 1 (cut at 2.0)
            "cue_end": [[1.0, 2.4, 5.5]],
            "cue_emb": [[1.0, 0.0, 0.0, 1.0, 3.0, 3.0]],
            "shot_idx": [[0, 1, 2]],
            "start_s": [[0.0, 2.0, 3.0]],
            "end_s": [[2.0, 3.0, 4.0]],
        }
    )
    row = cues_per_shot(movie, "language", 2).to_pylist()[0]
    assert row["language_shots"] == [0, 1, 2] and row["language_has"] == [True, True, False]  # the last cue: no shot
    emb, valid = Sequences(3, {"language": 2}).aligned(row, "language", [0, 1, 2])
    assert np.allclose(emb, [[0.5, 0.5], [0.0, 1.0], [0.0, 0.0]]) and valid.tolist() == [True, True, False]


def test_shots_that_share_a_cue_are_masked_together_and_never_give_each_other_away():
    import pyarrow as pa

    from movielib.train.multimodal.data import Sequences, cues_per_shot
    from movielib.train.multimodal.model import mask_tokens

    movie = pa.table(
        {
            "video_id": ["m"],
            "cue_start": [[0.2, 1.6, 2.5, 3.9]],  # cue 1 spans the cut at 2.0, cue 3 the cut at 4.0
            "cue_end": [[1.0, 2.4, 2.9, 5.5]],
            "cue_emb": [[1.0, 0.0, 0.0, 1.0, 3.0, 3.0, 2.0, 2.0]],
            "shot_idx": [[0, 1, 2, 3, 4]],
            "start_s": [[0.0, 2.0, 3.0, 4.0, 6.0]],
            "end_s": [[2.0, 3.0, 4.0, 6.0, 7.0]],
        }
    )
    languages = pa.Table.from_pylist(
        [cues_per_shot(movie, "language", 2).to_pylist()[0] | {"video_shots": [0, 1, 2, 3, 4]}]
    )
    assert languages["language_link"].to_pylist() == [[False, True, False, True, False]]
    seqs = Sequences(5, {"language": 2}, seed=0)(languages)
    assert seqs["language_group"].tolist() == [[0, 0, 2, 2, 4]]  # shot 4 has no cue: its own (invalid) group
    group, valid = torch.from_numpy(seqs["language_group"]), torch.from_numpy(seqs["language_valid"])
    draws = [mask_tokens(valid, 0.5, group) for _ in range(300)]
    for m in draws:  # a masked token's cue is never visible in an unmasked neighbour
        assert m[0, 0] == m[0, 1] and m[0, 2] == m[0, 3] and not m[0, 4]
    share = torch.stack(draws).float().mean(0)[0, :4]
    assert ((share > 0.4) & (share < 0.6)).all()  # mask_ratio of the groups, hence of the tokens
    # without groups (features/text: a shot's own line), each token is drawn alone
    alone = torch.stack([mask_tokens(valid, 0.5) for _ in range(300)])
    assert (alone[:, 0, 0] != alone[:, 0, 1]).any()
    # a seeded generator draws the same masks (validation)
    fixed = [mask_tokens(valid, 0.5, group, torch.Generator().manual_seed(7)) for _ in range(2)]
    assert torch.equal(*fixed)


def test_held_out_retrieval_is_over_candidate_sets_of_a_fixed_size_carried_across_batches():
    from movielib.train.multimodal.loop import Retrieval
    from movielib.train.multimodal.model import Outputs

    def outputs(video, audio, valid):
        v = torch.tensor(valid)
        return Outputs(
            {}, {"video": torch.tensor(video), "audio": torch.tensor(audio)}, {}, {"video": v, "audio": v}, {}
        )

    r = Retrieval("audio", 4)
    eye = np.eye(4, dtype=np.float32)
    # batch 1: 3 valid shots (one masked out): too few for a set of 4, carried; batch 2 completes the set and
    # starts another it cannot fill (left out)
    r.add(outputs(eye[None, [0, 1, 2, 3]], eye[None, [0, 1, 2, 3]], [[True, True, False, True]]))
    assert (r.hits, r.asked) == (0.0, 0.0)
    r.add(outputs(eye[None, [2, 0, 1]], eye[None, [2, 3, 1]], [[True, True, True]]))
    # the set: video 0, 1, 3, 2 against audio 0, 1, 3, 2: all four found; the next set (2 shots) is not scored
    assert (r.hits, r.asked) == (4.0, 4.0)
    r.add(outputs(eye[None, [3, 1]], eye[None, [0, 1]], [[True, True]]))
    # video 0, 1, 3, 1 against audio 3, 1, 0, 1: video 1 twice finds the first audio 1 (hit once), 0 and 3 swapped
    assert (r.hits, r.asked) == (5.0, 8.0)


def test_each_epoch_cuts_a_movie_from_an_offset_anywhere_in_its_first_window_and_keeps_the_count():
    from movielib.train.multimodal.data import windows

    rng = np.random.default_rng(0)
    cuts = [windows(24, 8, rng) for _ in range(200)]  # 24 shots: a multiple of k, once always cut at 0, 8, 16
    assert {len(w) for w in cuts} == {3}  # the number of sequences, hence of steps, stays fixed
    assert {w[0].start for w in cuts} == set(range(8))  # every offset in [0, k)
    for w in cuts:
        assert all(len(r) == 8 for r in w[:-1]) and 1 <= len(w[-1]) <= 8 and w[-1].stop <= 24  # the last cut short
        assert all(a.stop == b.start for a, b in zip(w, w[1:]))  # back to back
    assert windows(5, 8, rng) == [range(0, 5)]  # shorter than k: one padded window


SMALL = MultimodalModelSection(shots=6, width=32, layers=1, heads=4, dropout=0.0)


def _batch(b: int = 4, k: int = 6, dims=(12, 10, 8), seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    batch = {}
    for name, d in zip(("video", "audio", "language"), dims):
        batch[name] = torch.randn(b, k, d, generator=g)
        batch[f"{name}_valid"] = torch.ones(b, k, dtype=torch.bool)
    return batch


def test_missing_audio_subtitles_and_a_short_sequence_train_without_nan_and_get_no_gradient():
    torch.manual_seed(0)
    model = MultimodalModel({"video": 12, "audio": 10, "language": 8}, SMALL)
    batch = _batch()
    batch["audio_valid"][0] = False  # a movie without an audio track
    batch["language_valid"][1] = False  # a movie without subtitles
    batch["language_valid"][2, ::2] = False  # shots with no cue on screen
    for name in ("video", "audio", "language"):
        batch[f"{name}_valid"][3, 4:] = False  # a sequence past its movie's end
        batch[name].requires_grad_(True)
    parts = model.losses(model(batch), LossesSection())
    assert all(torch.isfinite(v) for v in parts.values()) and parts["total"] > 0
    parts["total"].backward()
    for name in ("video", "audio", "language"):
        grad, valid = batch[name].grad, batch[f"{name}_valid"]
        assert torch.count_nonzero(grad[~valid]) == 0  # masked positions: no gradient
        assert grad[valid].abs().sum() > 0  # valid ones do learn
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


def test_the_models_losses_are_the_equations_on_its_own_outputs():
    torch.manual_seed(0)
    model = MultimodalModel({"video": 12, "audio": 10, "language": 8}, SMALL)
    batch = _batch()
    batch["language_valid"][1] = False
    out = model(batch)
    only = {
        n: model.losses(out, LossesSection(**{m: m == n for m in ("intra", "inter", "cross")}))
        for n in ("intra", "inter", "cross")
    }
    tau = SMALL.temperature
    intra = sum(masking_loss(out.context[m], out.tokens[m], out.masked[m], tau) for m in out.context)
    inter = symmetric_info_nce(out.context["video"], out.context["audio"], out.valid["video"] & out.valid["audio"], tau)
    inter = inter + symmetric_info_nce(
        out.context["video"], out.context["language"], out.valid["video"] & out.valid["language"], tau
    )
    has_language = out.valid["language"].any(1, keepdim=True)
    cross = symmetric_info_nce(out.cross["audio"], out.cross["language"], out.valid["video"] & has_language, tau)
    assert only["intra"]["total"].item() == pytest.approx(intra.item(), rel=1e-6)
    assert only["inter"]["total"].item() == pytest.approx(inter.item(), rel=1e-6)
    assert only["cross"]["total"].item() == pytest.approx(cross.item(), rel=1e-6)
    everything = model.losses(out, LossesSection())
    assert everything["total"].item() == pytest.approx((intra + inter + cross).item(), rel=1e-5)


def planted_sequences(n: int, k: int = 6, latents: int = 8, seed: int = 0) -> tuple[dict, torch.Tensor]:
    """Sequences whose shots share a hidden latent across modalities: video, audio and the subtitle's text
    embedding are each the latent's own random vector (per modality) plus noise."""
    g = torch.Generator().manual_seed(seed)
    z = torch.randint(0, latents, (n, k), generator=g)
    batch = {}
    for i, (name, d) in enumerate(zip(("video", "audio", "language"), (12, 10, 8))):
        table = torch.randn(latents, d, generator=torch.Generator().manual_seed(1000 + i))
        batch[name] = table[z] + 0.3 * torch.randn(n, k, d, generator=g)
        batch[f"{name}_valid"] = torch.ones(n, k, dtype=torch.bool)
    return batch, z


def retrieval_top1(model: MultimodalModel, batch: dict, z: torch.Tensor, other: str) -> float:
    """Video shot -> the nearest `other` shot of the batch by contextual features: is its latent the same?"""
    model.eval()
    with torch.no_grad():
        out = model(batch, mask=False)
    v = torch.nn.functional.normalize(out.context["video"].reshape(-1, SMALL.width), dim=-1)
    o = torch.nn.functional.normalize(out.context[other].reshape(-1, SMALL.width), dim=-1)
    return float((z.reshape(-1)[(v @ o.T).argmax(1)] == z.reshape(-1)).float().mean())


def _train(losses: LossesSection, steps: int = 150) -> MultimodalModel:
    torch.manual_seed(0)
    model = MultimodalModel({"video": 12, "audio": 10, "language": 8}, SMALL)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(steps):
        batch, _ = planted_sequences(32, seed=step + 1)
        loss = model.losses(model(batch), losses)["total"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model


def test_trained_contextual_features_retrieve_the_matching_audio_and_language_and_need_the_inter_modal_loss():
    held_out, z = planted_sequences(16, seed=10_000)
    full, no_inter = _train(LossesSection()), _train(LossesSection(inter=False))
    figures = {
        (name, other): retrieval_top1(model, held_out, z, other)
        for name, model in (("all losses", full), ("inter off", no_inter))
        for other in ("audio", "language")
    }
    print({f"{a} video->{b}": round(v, 2) for (a, b), v in figures.items()}, "chance 0.125")
    for other in ("audio", "language"):
        assert figures[("all losses", other)] > 0.8  # chance: 1 / 8 latents
        assert figures[("inter off", other)] < figures[("all losses", other)] - 0.3


@pytest.fixture(scope="module")
def planted_catalog(tmp_path_factory):
    from movielib.demo.planted_multimodal import build

    return build(str(tmp_path_factory.mktemp("multimodal") / "catalog"))


JOB = {
    "model": {"shots": 6, "width": 32, "layers": 1, "heads": 4, "dropout": 0.0},
    "optim": {"batch": 8, "epochs": 3, "val_fraction": 0.2, "val_candidates": 8},
    "scaling": {"workers": 2, "cpus_per_worker": 0.5},  # room for the data pipeline beside them
    "run": {"log_every_steps": 2},
}


def _config(catalog: str, folder, **sets):
    from movielib.config import build_config
    from movielib.train.multimodal.config import PretrainMultimodalConfig

    base = {"catalog": catalog, **JOB, "run": {**JOB["run"], "folder": str(folder)}}
    base = {k: dict(v) if isinstance(v, dict) else v for k, v in base.items()}  # the sets below: not into JOB
    for key, value in sets.items():
        section, field = key.split("__")
        base.setdefault(section, {})[field] = value
    return build_config(PretrainMultimodalConfig, base)


@pytest.fixture(scope="module")
def trained(ray_local, planted_catalog, tmp_path_factory):
    """One pretraining run on 2 workers (3 epochs) that the run-folder and embed tests share."""
    from movielib.train.multimodal.job import run_pretrain_multimodal

    root = tmp_path_factory.mktemp("runs")
    return root / "multimodal", run_pretrain_multimodal(_config(planted_catalog.dest, root))


def test_pretrain_multimodal_on_two_workers_writes_the_run_and_learns_to_retrieve(trained, planted_catalog):
    from movielib.store import CatalogStore
    from movielib.train.runlog import RunLog

    folder, summary = trained
    seqs = summary["sequences"]
    assert seqs["movies"] == 12 and seqs["held_out_movies"] == 2  # 24 shots / 6: 4 sequences a movie
    assert seqs["train"] == 40 and seqs["val"] == 8
    epochs = [r for r in RunLog(str(folder / "multimodal")).rows if r.get("kind") == "epoch"]
    assert [r["step"] for r in epochs] == [5, 10, 15]  # 40 sequences / batch 8, three epochs
    assert all(np.isfinite(r["loss"]) for r in epochs) and epochs[-1]["loss"] < epochs[0]["loss"]
    m = summary["metrics"]
    chance = m["val_video_to_audio_top1_chance"]
    assert chance == m["val_video_to_language_top1_chance"] == 1 / 8  # each shot among 8 candidates
    # after 15 steps: well above chance on held-out movies (the slow tests below train to far more)
    assert m["val_video_to_audio_top1"] > 2 * chance and m["val_video_to_language_top1"] > 2 * chance
    saved = torch.load(folder / "multimodal.pt", weights_only=True)
    assert saved["dims"] == {"video": 24, "audio": 16, "language": 12}
    assert summary["inputs"]["language"]["table"] == "cues"  # the catalog has cues: language is read from them
    model = MultimodalModel(saved["dims"], MultimodalModelSection(**saved["model"]))
    model.load_state_dict(saved["state_dict"])
    assert all(v.dtype == torch.float32 for v in saved["state_dict"].values())
    # each input standardised with the training movies' statistics, saved with the weights
    images = CatalogStore(planted_catalog.dest).read_table("features/image").to_pylist()
    train = np.array([r["embedding"] for r in images if r["video_id"] not in summary["held_out"]], np.float64)
    assert len(summary["held_out"]) == 2 and len(train) == 10 * 24
    assert np.allclose(saved["state_dict"]["norm.video.mean"].numpy(), train.mean(0), atol=1e-5)
    assert np.allclose(saved["state_dict"]["norm.video.std"].numpy(), train.std(0), rtol=1e-4)
    assert (folder / "multimodal" / "curves.png").exists() and (folder / "summary.json").exists()


def _two_workers(rank: int, init: str, out: str) -> None:
    """One of two gloo workers: half the global batch through a shared linear layer, the gathered losses, and the
    parameter gradient averaged over the workers as DDP / DeepSpeed average it."""
    import torch.distributed as dist

    from movielib.train.launcher import gather_with_grad

    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    x, y, valid, layer = _global_batch()
    half = slice(rank * 4, rank * 4 + 4)
    loss = symmetric_info_nce(layer(x[half]), layer(y[half]), valid[half], 0.3, gather_with_grad)
    loss = loss + masking_loss(layer(y[half]), layer(x[half]), valid[half], 0.3, gather_with_grad)
    loss.backward()
    grad = layer.weight.grad.clone()
    dist.all_reduce(grad)
    torch.save({"loss": loss.detach(), "grad": grad / 2}, f"{out}.{rank}")
    dist.barrier()  # neither leaves while the other still talks to it (gloo aborts a process whose peer vanished)
    dist.destroy_process_group()


def _global_batch():
    torch.manual_seed(0)
    x, y = torch.randn(8, 3, 5), torch.randn(8, 3, 5)
    valid = torch.rand(8, 3) > 0.3
    return x, y, valid, torch.nn.Linear(5, 4)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_killed_multimodal_run_resumes_from_its_last_checkpoint(trained, planted_catalog, tmp_path):
    """`pretrain multimodal` killed once it has a checkpoint, then run again: resumed, not restarted, and it ends
    at the uninterrupted run's step."""
    from conftest import as_sets, assert_resumed, killed_and_run_again

    from movielib.train.runlog import RunLog

    folder, _ = trained
    args = ["pretrain", "multimodal", planted_catalog.dest, "--run-folder", str(tmp_path), *as_sets(JOB)]
    # run again by the `ray job submit` entry point (each of jobs/ runs a job once in the suite)
    [(last, after)] = killed_and_run_again(
        args, tmp_path / "multimodal" / "multimodal", scripts=((), ("jobs/pretrain_multimodal.py",))
    )
    whole = [r for r in RunLog(str(folder / "multimodal")).rows if r.get("kind") == "epoch"]
    assert_resumed(last, after, JOB["optim"]["epochs"], whole[-1]["step"])
    assert (tmp_path / "multimodal" / "multimodal.pt").exists()


def test_losses_gathered_over_two_workers_equal_one_worker_on_the_global_batch(tmp_path):
    import torch.multiprocessing as mp

    x, y, valid, layer = _global_batch()
    loss = symmetric_info_nce(layer(x), layer(y), valid, 0.3) + masking_loss(layer(y), layer(x), valid, 0.3)
    loss.backward()
    mp.spawn(_two_workers, args=(f"file://{tmp_path}/init", str(tmp_path / "out")), nprocs=2)
    for rank in (0, 1):
        got = torch.load(tmp_path / f"out.{rank}", weights_only=True)
        assert torch.allclose(got["loss"], loss.detach(), atol=1e-5)
        assert torch.allclose(got["grad"], layer.weight.grad, atol=1e-5)


def test_embed_multimodal_writes_each_shots_features_and_heads_read_them(trained, planted_catalog, tmp_path):
    from movielib.heads.config import DataSection
    from movielib.heads.data import build
    from movielib.store import CatalogStore
    from movielib.train.multimodal.embed import MODELS, TABLE, embed_multimodal

    first = embed_multimodal(str(trained[0]), planted_catalog.dest)
    again = embed_multimodal(str(trained[0]), planted_catalog.dest)  # the same weights: replaced
    assert first["rows"] == again["rows"] == 12 * 24 * len(MODELS)
    store = CatalogStore(planted_catalog.dest)
    rows = store.read_table(TABLE)
    assert rows.num_rows == first["rows"] and set(rows["model_version"].to_pylist()) == {first["model_version"]}
    by = {
        (v, s, m): e
        for v, s, m, e in zip(*(rows[c].to_pylist() for c in ("video_id", "shot_idx", "model", "embedding")))
    }
    silent = sorted(planted_catalog.no_audio)[0]
    assert by[(silent, 3, "multimodal-audio")] is None and by[(silent, 3, "multimodal-video")] is not None
    assert by[("video-002", 0, "multimodal-language")] is None  # no subtitles at all
    assert all(len(by[("video-000", s, "multimodal-cross")]) == 32 for s in range(24))
    # the heads read them as they read any features table: movie-level labels average each video's shots
    labels = tmp_path / "labels.csv"
    labels.write_text("video_id,label\n" + "".join(f"video-{v:03d},{'a' if v % 2 else 'b'}\n" for v in range(12)))
    data = build(
        store, DataSection(catalog=planted_catalog.dest, features=TABLE, model="multimodal-cross", labels=str(labels))
    )
    assert data.level == "movie" and data.in_dim == 32 and sum(p.rows for p in data.splits.values()) == 12


def test_editing_tasks_take_their_labels_from_shot_order_and_read_the_shown_order(trained, planted_catalog):
    from movielib.train.multimodal.config import EvalEditingConfig
    from movielib.train.multimodal.editing import ORDERS, Featurizer, Movie, nss_examples, run, sso_examples
    from movielib.train.multimodal.model import load_multimodal

    folder, _ = trained
    summary = run(EvalEditingConfig(run=str(folder), catalog=planted_catalog.dest, per_movie=20))
    print(summary.render())
    for task, chance in (("sso", 1 / 6), ("nss", 1 / 5)):
        figures = summary["tasks"][task]
        assert figures["chance"] == pytest.approx(chance)
        # the planted edit (a shot's latent mostly follows the last) is learnable from the base features
        assert figures["base"] > 2 * chance and 0 <= figures["pretrained"] <= 1
    rng = np.random.default_rng(0)

    class Fake:
        def __len__(self):
            return 24

    for _, shots, label in sso_examples([Fake()], 50, rng):  # consecutive shots under the labelled order
        start = min(shots)
        assert shots == [start + j for j in ORDERS[label]]
    for _, context, candidates, answer in nss_examples([Fake()], 50, rng):
        assert candidates[answer] == context[-1] + 1 and len(set(candidates)) == 5 and context[-1] + 1 not in context
    # the pretrained features see the shots in the order shown, not the movie's
    model, meta = load_multimodal((folder / "multimodal.pt").read_bytes())

    dims = meta["dims"]
    movie = Movie(
        {m: np.random.default_rng(1).normal(size=(5, d)).astype(np.float32) for m, d in dims.items()},
        {m: np.ones(5, bool) for m in dims},
    )
    pretrained = Featurizer(model)
    width = len(pretrained(movie, [0, 1, 2])) // 3
    a, b = pretrained(movie, [0, 1, 2]).reshape(3, width), pretrained(movie, [2, 1, 0]).reshape(3, width)
    assert not np.allclose(a[0], b[2], atol=1e-4)  # shot 0 first vs last: its features differ
    base = Featurizer(None)
    assert np.allclose(base(movie, [2, 1, 0]).reshape(3, -1)[2], base(movie, [0, 1, 2]).reshape(3, -1)[0])


def test_a_bad_multimodal_config_fails_before_any_work_naming_the_field(planted_catalog):
    from movielib.config import build_config
    from movielib.errors import ConfigError
    from movielib.store import CatalogStore
    from movielib.train.config import InputSection
    from movielib.train.multimodal.config import PretrainMultimodalConfig
    from movielib.train.multimodal.data import catalog_movies

    for sets, field in (
        ({"optim": {"batch": 7}}, "optim.batch"),
        ({"model": {"width": 30, "heads": 8}}, "heads"),
        ({"inputs": {"video": {"table": "features/image", "use": False}}}, "inputs.video.use"),
        ({"model": {"mask_ratio": 1.5}}, "mask_ratio"),
    ):
        with pytest.raises(ConfigError, match=field):
            build_config(PretrainMultimodalConfig, {"catalog": planted_catalog.dest, **sets})
    store = CatalogStore(planted_catalog.dest)
    with pytest.raises(ConfigError, match=r"inputs\.audio\.table: .* has no features/sound"):
        catalog_movies(
            store, {"video": InputSection(table="features/image"), "audio": InputSection(table="features/sound")}
        )
    with pytest.raises(ConfigError, match=r"inputs\.video\.model: 'clip' is not in features/image"):
        catalog_movies(store, {"video": InputSection(table="features/image", model="clip")})


def _pretrain_in_process(table, dims: dict[str, int], m: MultimodalModelSection, steps: int, batch: int = 16):
    """The model and losses trained in this process on the catalog's sequences (the data path's windows from a new
    random start each pass): many more steps than a test can afford through Ray Train."""
    from movielib.train.multimodal.data import Sequences

    torch.manual_seed(0)
    model = MultimodalModel(dims, m)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    cut, rng, step = Sequences(m.shots, dims), np.random.default_rng(0), 0
    while step < steps:
        seqs = cut(table)
        order = rng.permutation(len(seqs["video"]))
        for i in range(0, len(order) - batch + 1, batch):
            loss = model.losses(
                model({k: torch.from_numpy(v[order[i : i + batch]]) for k, v in seqs.items()}), LossesSection()
            )
            opt.zero_grad()
            loss["total"].backward()
            opt.step()
            step += 1
    return model.eval()


@pytest.mark.slow
def test_on_a_catalog_whose_shot_order_carries_signal_pretrained_features_beat_the_base_ones_at_sso_and_nss(
    ray_local, tmp_path
):
    """Noisy planted features (one shot's features hardly tell its latent) whose latents follow the edit: the
    pretrained contextual features pool modalities and neighbours, and a head with few labels orders shots better on
    them than on the base features."""
    import pyarrow as pa

    from movielib.demo.planted_multimodal import build
    from movielib.store import CatalogStore
    from movielib.train.config import InputSection
    from movielib.train.multimodal.data import catalog_movies
    from movielib.train.multimodal.editing import editing_figures, movies_from

    planted = build(str(tmp_path / "catalog"), videos=24, shots=48, latents=16, follow=0.9, noise=1.0, seed=1)
    inputs = {"video": InputSection(table="features/image"), "audio": InputSection(table="features/audio")}
    rows, _, _, meta = catalog_movies(CatalogStore(planted.dest), inputs | {"language": InputSection()})
    table = pa.concat_tables(list(rows.iter_batches(batch_format="pyarrow", batch_size=None))).sort_by("video_id")
    dims = {name: m["dim"] for name, m in meta.items()}  # sorted: the join's row order varies, the split must not
    model = _pretrain_in_process(
        table, dims, MultimodalModelSection(shots=8, width=64, layers=2, heads=4, dropout=0.0), 400
    )
    figures = editing_figures(movies_from(table, dims), model, per_movie=10, folds=2)
    print(figures)
    # every movie tested once over 2 folds, 240 examples a task: measured SSO 0.33 vs 0.25, NSS 0.63 vs 0.51
    assert figures["sso"]["examples"] == figures["nss"]["examples"] == 240
    assert figures["sso"]["pretrained"] > figures["sso"]["base"] + 0.04
    assert figures["nss"]["pretrained"] > figures["nss"]["base"] + 0.05
