"""Movies2Scenes building blocks against their formulas, shapes and planted structure (no Ray)."""

import random

import numpy as np
import pytest
import torch
from conftest import TINY

from movielib.train.movies2scenes.encoder import SceneEncoder, interpolate_positions
from movielib.train.movies2scenes.moco import KeyQueue, MoCo, info_nce, momentum_update
from movielib.train.movies2scenes.pairs import select_scene_pairs, window_means
from movielib.train.movies2scenes.similarity import MovieSimilarity, pad_or_cut, pooled_size


def test_pooling_shapes_for_1024_shots():
    model = MovieSimilarity().eval()
    assert pooled_size(1024, 16, 8) == 127 and pooled_size(127, 16, 8) == 14
    x1, x2 = torch.randn(2, 1024, 512), torch.randn(2, 1024, 512)
    assert model.adjacency(x1, x2).shape == (2, 1024, 1024)
    assert model.pooled(model.adjacency(x1, x2)).shape == (2, 14 * 14)
    assert model(x1, x2).shape == (2,)


def test_padding_adds_nothing_to_the_adjacency():
    feats, mask = pad_or_cut(torch.randn(300, 8), shots=512)
    assert feats.shape == (512, 8) and mask.sum() == 300 and feats[300:].abs().sum() == 0
    cut, cut_mask = pad_or_cut(torch.randn(700, 8), shots=512)
    assert cut.shape == (512, 8) and bool(cut_mask.all())
    model = MovieSimilarity(in_dim=8, dim=16, shots=512).eval()
    a = model.adjacency(feats[None], feats[None], mask[None], mask[None])[0]
    assert a[300:].abs().sum() == 0 and a[:, 300:].abs().sum() == 0 and a[:300, :300].abs().sum() > 0


def test_window_means_equal_a_brute_force_loop():
    a = torch.randn(23, 17)
    got = window_means(a, 9)
    want = torch.tensor([[a[i : i + 9, j : j + 9].mean().item() for j in range(17 - 8)] for i in range(23 - 8)])
    assert got.shape == (15, 9) and torch.allclose(got, want, atol=1e-6)


def test_selected_scene_pairs_do_not_overlap_and_find_the_planted_ones():
    rng = np.random.default_rng(0)
    a = torch.tensor(rng.normal(0, 0.1, (60, 50)), dtype=torch.float32)
    a[10:19, 30:39] += 3.0  # two scenes that match: movie 1 shots 10-18 with movie 2 shots 30-38
    a[40:49, 5:14] += 2.0
    pairs = select_scene_pairs(a, window=9, keep=0.5)
    assert (pairs[0].first, pairs[0].second) == (10, 30) and (pairs[1].first, pairs[1].second) == (40, 5)
    assert [p.score for p in pairs] == sorted((p.score for p in pairs), reverse=True)
    for side in ("first", "second"):
        spans = sorted(getattr(p, side) for p in pairs)
        assert all(b - a >= 9 for a, b in zip(spans, spans[1:])), spans  # scenes of one movie never overlap
    assert len(pairs) <= 50 // 9
    assert select_scene_pairs(torch.zeros(8, 40)) == []  # shorter than one scene


@pytest.fixture(scope="module")
def tower():
    import open_clip

    import movielib.models.clip  # noqa: F401  (registers the tiny config)

    torch.manual_seed(0)
    return open_clip.create_model(TINY).visual.eval()


def test_position_embeddings_stretch_over_the_scene(tower):
    pos = tower.positional_embedding
    n_patches = pos.shape[0] - 1
    assert torch.equal(interpolate_positions(pos, 1), pos)
    for frames in (4, 9):
        out = interpolate_positions(pos, frames)
        assert out.shape == (1 + n_patches * frames, pos.shape[1]) and torch.equal(out[0], pos[0])
    # a constant grid stays constant: interpolation only moves positions, never invents values
    flat = torch.cat([pos[:1], torch.ones(n_patches, pos.shape[1])])
    assert torch.allclose(interpolate_positions(flat, 9)[1:], torch.ones(n_patches * 9, pos.shape[1]), atol=1e-5)


def test_one_shot_of_one_frame_is_the_clip_image_tower_exactly(tower):
    size = tower.image_size[0] if isinstance(tower.image_size, tuple) else tower.image_size
    frames = torch.randn(3, 1, 3, size, size)
    encoder = SceneEncoder(tower)
    with torch.no_grad():
        assert torch.equal(encoder(frames), tower(frames[:, 0]))
        assert encoder(torch.randn(2, 9, 3, size, size)).shape == (2, encoder.output_dim)


def test_info_nce_against_its_formula():
    g = torch.Generator().manual_seed(1)
    q = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    k = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    queue = torch.nn.functional.normalize(torch.randn(10, 8, generator=g), dim=1)
    loss, logits = info_nce(q, k, queue, temperature=0.07)
    want = []
    for i in range(4):
        pos = torch.exp(q[i] @ k[i] / 0.07)
        want.append(-torch.log(pos / (pos + torch.exp(queue @ q[i] / 0.07).sum())))
    assert logits.shape == (4, 11) and torch.allclose(loss, torch.stack(want).mean(), atol=1e-5)


def test_momentum_update_and_queue_ring():
    query, key = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before_k, q = key.weight.clone(), query.weight.clone()
    momentum_update(query, key, m=0.9)
    assert torch.allclose(key.weight, 0.9 * before_k + 0.1 * q)
    ring = KeyQueue(dim=2, size=5)
    ring.push(torch.ones(3, 2))
    assert int(ring.ptr) == 3 and torch.equal(ring.keys[:3], torch.ones(3, 2))
    ring.push(2 * torch.ones(4, 2))  # wraps: slots 3, 4, 0, 1
    assert int(ring.ptr) == 2 and torch.equal(ring.keys[[3, 4, 0, 1]], 2 * torch.ones(4, 2))
    assert torch.equal(ring.keys[2], torch.ones(2))


def test_moco_step_moves_the_key_encoder_and_fills_the_queue():
    torch.manual_seed(0)
    moco = MoCo(torch.nn.Linear(6, 12), encoder_dim=12, dim=4, queue=8, momentum=0.5)
    key_before = [p.clone() for p in moco.key.parameters()]
    loss, logits = moco(torch.randn(3, 6), torch.randn(3, 6))
    loss.backward()
    assert logits.shape == (3, 9) and int(moco.queue.ptr) == 3
    assert all(p.grad is None for p in moco.key.parameters())  # keys are never back-propagated
    assert all(p.grad is not None for p in moco.query.parameters())
    # key params moved to 0.5 * old + 0.5 * query (query unchanged so far)
    for kb, pk, pq in zip(key_before, moco.key.parameters(), moco.query.parameters()):
        assert torch.allclose(pk, 0.5 * kb + 0.5 * pq)


def test_scoring_held_out_pairs_changes_nothing_and_returns_their_queries_and_keys():
    from movielib.train.retrieval import in_set_top1

    torch.manual_seed(0)
    moco = MoCo(torch.nn.Linear(6, 12), encoder_dim=12, dim=4, queue=8, momentum=0.5)
    moco(torch.randn(3, 6), torch.randn(3, 6))  # a training step: 3 keys in the queue
    state = {k: v.clone() for k, v in moco.state_dict().items()}
    x = torch.randn(5, 6)
    loss, logits, q, k = moco.score(x, x)
    assert all(torch.equal(v, moco.state_dict()[name]) for name, v in state.items())  # no momentum step, no push
    assert torch.allclose(q.norm(dim=1), torch.ones(5)) and torch.allclose(k.norm(dim=1), torch.ones(5))
    assert torch.allclose(loss, info_nce(q, k, moco.queue.keys, moco.temperature)[0]) and logits.shape == (5, 9)
    # among each other (sets of 2: the fifth pair left out): the same scenes through the query and key encoders
    hits, asked = in_set_top1(q, k, 2)
    assert asked == 4 and hits == float(
        ((q[:4].reshape(2, 2, 4) @ k[:4].reshape(2, 2, 4).transpose(1, 2)).argmax(-1) == torch.arange(2)).sum()
    )


def test_similarity_learning_separates_planted_genres():
    """Movies of the same genre share shot clusters: after a few epochs, held-out pairs are told apart."""
    rng = np.random.default_rng(0)
    genres, dim, shots = 4, 16, 64
    centers = rng.normal(0, 1, (genres, 6, dim))  # each genre: 6 shot clusters

    def movie(genre):
        picks = rng.integers(0, 6, shots)
        return torch.tensor(centers[genre, picks] + rng.normal(0, 0.8, (shots, dim)), dtype=torch.float32)

    def pairs(n):
        g1 = rng.integers(0, genres, n)
        same = rng.random(n) < 0.5
        g2 = np.where(same, g1, (g1 + rng.integers(1, genres, n)) % genres)
        return (
            torch.stack([movie(g) for g in g1]),
            torch.stack([movie(g) for g in g2]),
            torch.tensor(same, dtype=torch.float32),
        )

    torch.manual_seed(0)
    model = MovieSimilarity(in_dim=dim, dim=32, shots=shots, avg=(8, 4), max_=(4, 2), dropout=0.5)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x1, x2, y = pairs(512)
    for _ in range(15):
        for i in range(0, 512, 64):
            opt.zero_grad()
            loss = torch.nn.functional.binary_cross_entropy_with_logits(
                model(x1[i : i + 64], x2[i : i + 64]), y[i : i + 64]
            )
            loss.backward()
            opt.step()
    model.eval()
    t1, t2, ty = pairs(256)
    with torch.no_grad():
        accuracy = ((model(t1, t2) > 0).float() == ty).float().mean().item()
    print("held-out pair accuracy", accuracy)
    assert accuracy > 0.8, accuracy  # chance: 0.5


def _planted_movies(rng, n, genres=4, clusters=6, scenes=8, scene_len=12, dim=16, noise=0.8):
    """Movies made of scenes; each scene's shots come from one of its genre's clusters. Returns features,
    per-shot cluster ids and genres."""
    centers = rng.normal(0, 1, (genres, clusters, dim))
    movies, labels, genre_of = [], [], []
    for _ in range(n):
        g = int(rng.integers(genres))
        picks = np.repeat(rng.integers(0, clusters, scenes), scene_len)
        movies.append(torch.tensor(centers[g, picks] + rng.normal(0, noise, (len(picks), dim)), dtype=torch.float32))
        labels.append(g * clusters + picks)
        genre_of.append(g)
    return movies, labels, genre_of


def test_selected_scene_pairs_come_from_matching_clusters():
    """Step 1 trained on planted genres, step 2 in its learned space: the two scenes of a selected pair show the
    same cluster far more often than two scenes of similar movies picked at random."""
    from movielib.train.movies2scenes.pairs import scene_pairs_table

    rng = np.random.default_rng(1)
    movies, labels, genre = _planted_movies(rng, 80)
    shots = movies[0].shape[0]
    torch.manual_seed(0)
    model = MovieSimilarity(in_dim=16, dim=32, shots=shots, avg=(8, 4), max_=(4, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    train = range(60)
    for _ in range(20):
        i = rng.choice(list(train), 64)
        j = np.where(
            rng.random(64) < 0.5,
            [rng.choice([k for k in train if genre[k] == genre[a]]) for a in i],
            rng.choice(list(train), 64),
        )
        y = torch.tensor([float(genre[a] == genre[b]) for a, b in zip(i, j)])
        opt.zero_grad()
        loss = torch.nn.functional.binary_cross_entropy_with_logits(
            model(torch.stack([movies[a] for a in i]), torch.stack([movies[b] for b in j])), y
        )
        loss.backward()
        opt.step()
    model.eval()
    held_out = [m for m in range(60, 80)]
    similar = [(str(a), str(b)) for a in held_out for b in held_out if a < b and genre[a] == genre[b]]
    table = scene_pairs_table(model.encoder.selection_space, {str(m): movies[m] for m in held_out}, similar)
    assert table.num_rows > 0 and table.column_names[:3] == ["movie_a", "a_first", "a_last"]

    def cluster(movie, first):  # the majority cluster of a 9-shot scene
        return np.bincount(labels[movie][first : first + 9]).argmax()

    rows = table.to_pylist()
    selected = np.mean(
        [cluster(int(r["movie_a"]), r["a_first"]) == cluster(int(r["movie_b"]), r["b_first"]) for r in rows]
    )
    random_pairs = np.mean(
        [
            cluster(int(a), rng.integers(0, shots - 8)) == cluster(int(b), rng.integers(0, shots - 8))
            for a, b in similar
            for _ in range(20)
        ]
    )
    print(f"same cluster: selected {selected:.2f}, random scenes of similar movies {random_pairs:.2f}")
    assert selected > 0.5 and selected > 2 * random_pairs  # measured: 0.65 against 0.16


def test_keep_is_the_top_share_of_the_non_overlapping_pairs():
    """supp. §1b: walk the windows best first for non-overlapping pairs, then keep the best 50% of those (a cut
    before the walk changed nothing: the walk takes the best windows first anyway)."""
    rng = np.random.default_rng(1)
    a = torch.tensor(rng.normal(0, 0.1, (90, 90)), dtype=torch.float32)
    for k, boost in enumerate((5.0, 4.0, 3.0, 2.0, 1.0)):  # five planted scene pairs, one per 18 shots
        a[18 * k : 18 * k + 9, 18 * k + 9 : 18 * k + 18] += boost
    every = select_scene_pairs(a, window=9, keep=1.0)
    half = select_scene_pairs(a, window=9, keep=0.5)
    assert len(every) == 90 // 9 and len(half) == int(np.ceil(0.5 * len(every)))  # 10 walked, 5 kept
    assert half == every[: len(half)]  # the best-scoring ones
    assert [(p.first, p.second) for p in half] == [(18 * k, 18 * k + 9) for k in range(5)]
    assert select_scene_pairs(a, window=9, keep=0.01) == every[:1]  # at least one


def test_step3_moves_only_the_scenes_keyframes():
    """Each scene pair becomes its 2 x n wanted shots (joined to the keyframes table one shot at a time) and is
    gathered back in shot order; a shot without a keyframe borrows its scene's nearest earlier one."""
    import pyarrow as pa

    from movielib.train.movies2scenes.data import assemble_scenes, partitions_for, wanted_shots
    from movielib.train.movies2scenes.pairs import SCENE_PAIRS

    pairs = pa.Table.from_pylist(
        [
            {"movie_a": "m1", "a_first": 4, "a_last": 6, "movie_b": "m2", "b_first": 10, "b_last": 12, "score": 1.0},
            {"movie_a": "m3", "a_first": 0, "a_last": 2, "movie_b": "m1", "b_first": 5, "b_last": 7, "score": 0.5},
        ],
        schema=SCENE_PAIRS,
    )
    wanted = wanted_shots(pairs).to_pylist()
    assert len(wanted) == 2 * 2 * 3
    assert [(r["video_id"], r["shot_idx"], r["pos"]) for r in wanted if r["pair"] == 1 and r["side"] == 1] == [
        ("m1", 5, 0),
        ("m1", 6, 1),
        ("m1", 7, 2),
    ]
    group = pa.Table.from_pylist(
        [
            {**r, "jpeg": None if r["shot_idx"] == 11 else f"{r['video_id']}:{r['shot_idx']}".encode()}
            for r in reversed(wanted)
            if r["pair"] == 0
        ]
    )  # any order, one keyframe missing
    out = assemble_scenes(group).to_pylist()[0]
    assert out == {"q": [b"m1:4", b"m1:5", b"m1:6"], "k": [b"m2:10", b"m2:10", b"m2:12"]}
    assert partitions_for(100) == 2 and partitions_for(10_000_000) == 500  # from the data size


def _clip_like_movies(seed: int = 0) -> tuple[list[torch.Tensor], list[int]]:
    """12 movies of 16 shots in 3 genres, shaped like a CLIP tower's keyframe features: unit vectors around one
    shared direction, a genre moving each dimension by ~0.04 (what the pretraining demo's catalog gives)."""
    g = torch.Generator().manual_seed(seed)
    shared, genres = torch.randn(64, generator=g), torch.randn(3, 64, generator=g)
    movies, labels = [], []
    for m in range(12):
        shots = shared * 8 + genres[m % 3] + 0.5 * torch.randn(16, 64, generator=g)
        movies.append(torch.nn.functional.normalize(shots, dim=1))
        labels.append(m % 3)
    return movies, labels


def _held_out_accuracy(standardize: bool, epochs: int = 15) -> float:
    """Step 1's model and optimizer (SGD 0.1) on pairs of 10 movies; accuracy on the pairs of the 2 held out."""
    import itertools

    import torch.nn.functional as F

    movies, labels = _clip_like_movies()
    torch.manual_seed(0)
    model = MovieSimilarity(in_dim=64, dim=64, shots=16, avg=(4, 2), max_=(4, 2))
    if standardize:
        train_shots = torch.cat(movies[:10])
        model.encoder.norm.set(train_shots.mean(0).tolist(), train_shots.std(0).tolist())
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    pairs = list(itertools.combinations(range(12), 2))

    def balanced(ps):  # as the job draws them: every similar pair and as many dissimilar ones
        similar = [p for p in ps if labels[p[0]] == labels[p[1]]]
        return similar + [p for p in ps if labels[p[0]] != labels[p[1]]][: len(similar)]

    train = balanced([p for p in pairs if max(p) < 10])
    held = balanced([p for p in pairs if max(p) >= 10])
    random.Random(0).shuffle(train)

    def batch(ps):
        x1, x2 = torch.stack([movies[a] for a, _ in ps]), torch.stack([movies[b] for _, b in ps])
        return x1, x2, torch.tensor([float(labels[a] == labels[b]) for a, b in ps])

    for _ in range(epochs):
        model.train()
        for i in range(0, len(train), 8):
            x1, x2, y = batch(train[i : i + 8])
            loss = F.binary_cross_entropy_with_logits(model(x1, x2), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        x1, x2, y = batch(held)
        return ((model(x1, x2) > 0).float() == y).float().mean().item()


def test_standardised_inputs_let_step1_learn_similarity_from_clip_scaled_features():
    """The planted genres are plain in the features (1-NN finds them), but unscaled they move each dimension so
    little that step 1 stays at the majority answer; standardised with the training shots' statistics it
    separates the held-out pairs."""
    without, with_ = _held_out_accuracy(False), _held_out_accuracy(True)
    print(f"held-out pair accuracy (chance 0.5): unscaled {without:.2f}, standardised {with_:.2f}")
    assert with_ >= 0.9 and with_ > without + 0.2, (without, with_)
