"""Heads by name, their data from the catalog's tables (clean-tag recipe, labels files), split by video."""

import numpy as np
import pytest
import torch

from movielib.config import build_config
from movielib.demo.planted_heads import build as plant
from movielib.errors import ConfigError
from movielib.heads.config import DataSection, HeadsConfig
from movielib.heads.data import build, split_videos
from movielib.heads.models import build_head
from movielib.store.store import CatalogStore


def test_heads_have_the_papers_shapes():
    scene = build_head("scene", 512, 179)
    assert [tuple(layer.weight.shape) for layer in scene if isinstance(layer, torch.nn.Linear)] == [
        (4096, 512),
        (4096, 4096),
        (179, 4096),
    ]
    assert any(isinstance(layer, torch.nn.Dropout) and layer.p == 0.2 for layer in scene)
    trailer = build_head("trailer", 512, 13)
    assert [tuple(layer.weight.shape) for layer in trailer if isinstance(layer, torch.nn.Linear)] == [
        (512, 512),
        (512, 512),
        (13, 512),
    ]
    assert isinstance(build_head("linear", 64, 3), torch.nn.Linear)
    assert build_head("mlp2", 64, 3, width=32)(torch.zeros(2, 64)).shape == (2, 3)
    with pytest.raises(ValueError, match="head must be one of"):
        build_head("transformer", 64, 3)


def test_split_is_by_video_seeded_and_covers_every_video():
    ids = [f"v{i}" for i in range(100)]
    a, b = split_videos(ids * 3, 0.15, 0.15, seed=7), split_videos(ids, 0.15, 0.15, seed=7)
    assert a == b and set(a) == set(ids)
    assert sum(s == "test" for s in a.values()) == 15 and sum(s == "val" for s in a.values()) == 15
    assert split_videos(ids, 0.15, 0.15, seed=8) != a


@pytest.fixture(scope="module")
def catalog(tmp_path_factory):
    return plant(str(tmp_path_factory.mktemp("heads") / "catalog"), videos=20, shots=10)


@pytest.fixture(scope="module")
def clean_data(ray_local, catalog):
    return build(CatalogStore(catalog.dest), DataSection(catalog=catalog.dest, val_fraction=0.2, test_fraction=0.2))


def test_the_clean_tag_recipe_trains_on_exactly_the_clean_shots_with_no_video_on_two_sides(catalog, clean_data):
    data = clean_data
    assert data.task == "multilabel" and data.level == "shot"
    assert sum(part.rows for part in data.splits.values()) == len(catalog.clean)
    # each row's target is its shot's planted labels (found through the features: rows are unique vectors)
    store = CatalogStore(catalog.dest)
    feats = {
        np.asarray(e, np.float32).tobytes(): (v, s)
        for v, s, e in zip(
            *(store.read_table("features/image")[c].to_pylist() for c in ("video_id", "shot_idx", "embedding"))
        )
    }
    for split in ("train", "val", "test"):
        for x, y in zip(*data.splits[split].arrays()):
            key = feats[np.asarray(x, np.float32).tobytes()]
            assert key in catalog.clean and data.split[key[0]] == split
            assert sorted(data.label_names[j] for j in np.flatnonzero(y)) == sorted(catalog.labels[key])
    assert {data.split[v] for v in data.split} == {"train", "val", "test"}


def test_a_movie_level_labels_file_averages_each_videos_shots(ray_local, catalog, tmp_path):
    path = tmp_path / "genres.csv"
    path.write_text("video_id,label\n" + "".join(f"{v},{'|'.join(g)}\n" for v, g in catalog.genres.items()))
    data = build(CatalogStore(catalog.dest), DataSection(catalog=catalog.dest, labels=str(path)))
    assert data.level == "movie" and data.task == "multilabel"
    # a label no training video has is named (the head trains on the others)
    train = [g for v, g in catalog.genres.items() if data.split[v] == "train"]
    assert data.untrained == sorted(set(data.label_names) - {x for g in train for x in g})
    assert sum(part.rows for part in data.splits.values()) == len(catalog.genres)
    store = CatalogStore(catalog.dest)
    video = next(v for v, s in data.split.items() if s == "train")
    shots = np.array(store.read_table("features/image", video_id=video)["embedding"].to_pylist())
    assert any(np.allclose(row, shots.mean(0), atol=1e-5) for row in data.splits["train"].arrays()[0])


def test_bad_head_inputs_fail_before_any_work_naming_what_is_wrong(ray_local, catalog, tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("video_id,label\nvideo-000,a\nnope-1,b\nnope-2,c\n")
    with pytest.raises(ConfigError, match=r"2 of the 3 video ids .* are not tagged videos .*nope-1"):
        build(CatalogStore(catalog.dest), DataSection(catalog=catalog.dest, labels=str(path)))
    with pytest.raises(ConfigError, match="data.features: .* has no features/scene table .*features/image"):
        build(CatalogStore(catalog.dest), DataSection(catalog=catalog.dest, features="features/scene"))
    with pytest.raises(ConfigError, match="data.test_fraction"):
        build_config(HeadsConfig, {"data": {"catalog": "x", "val_fraction": 0.5, "test_fraction": 0.5}})
    with pytest.raises(ConfigError, match="search.lr must be \\[low, high\\]"):
        build_config(HeadsConfig, {"data": {"catalog": "x"}, "search": {"lr": [0.1, 0.01]}})
    with pytest.raises(ConfigError, match="tune.grace_period must be <= head.epochs"):
        build_config(HeadsConfig, {"data": {"catalog": "x"}, "head": {"epochs": 3}, "tune": {"grace_period": 5}})


def test_the_heads_rows_stay_in_the_object_store_and_reach_a_trial_as_references(clean_data):
    import pickle

    import ray

    data = clean_data
    refs = [b for part in data.splits.values() for b in part.blocks]
    assert refs and all(isinstance(b, ray.ObjectRef) for b in refs)
    features = sum(part.arrays()[0].nbytes for part in data.splits.values())
    # what the driver hands every trial: references and label names, not the features they point at
    assert len(pickle.dumps(data)) < features / 4
    assert [part.rows for part in data.splits.values()] == [len(part.arrays()[0]) for part in data.splits.values()]


def test_a_pass_reads_every_row_once_through_a_seeded_shuffle_buffer_across_blocks():
    from movielib.heads.data import Split

    sizes = [7, 0, 13, 5, 11, 9]
    blocks, at = [], 0
    for n in sizes:
        ids = np.arange(at, at + n)
        blocks.append({"x": np.repeat(ids[:, None], 2, axis=1).astype(np.float32), "y": ids})
        at += n
    split = Split(blocks, at, 2)

    def one_pass(seed: int) -> list[list[int]]:
        g = torch.Generator().manual_seed(seed)
        return [y.tolist() for _, y in split.batches(4, g, buffer_rows=16)]

    batches = one_pass(0)
    rows = [r for b in batches for r in b]
    assert sorted(rows) == list(range(at))  # every row once, the empty block skipped
    assert all(len(b) == 4 for b in batches[:-1])  # full batches across buffer boundaries
    owner = np.repeat(np.arange(len(sizes)), sizes)
    assert any(len({owner[r] for r in b}) > 1 for b in batches)  # a buffer mixes blocks
    assert one_pass(0) == batches and one_pass(1) != batches
    x, y = split.arrays()
    assert np.array_equal(y, np.arange(at)) and np.array_equal(split.targets(), y) and x.shape == (at, 2)
