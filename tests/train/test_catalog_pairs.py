"""What step 1 trains and scores on, from a catalog and a genres file: movies held out (not pairs), the query side
drawn, negatives that share no genre; and which version of a features table a reader takes."""

import time

import pyarrow as pa
import pytest

from movielib.config import build_config
from movielib.demo.planted import commit, video_row
from movielib.errors import ConfigError
from movielib.store import CatalogStore, table_schema
from movielib.train.movies2scenes.config import PretrainScenesConfig
from movielib.train.movies2scenes.job import catalog_pairs


@pytest.fixture()
def catalog(tmp_path):
    dest = str(tmp_path / "catalog")
    commit(dest, {"videos": [video_row(f"m{i:02d}", 3) for i in range(40)]})
    genres = (
        tmp_path / "genres.csv"
    )  # four genres of ten movies; m38, m39 add comedy: their genre sets are their own (no similar movie)
    genres.write_text(
        "movie,genres\n"
        + "".join(
            f"m{i:02d},{['drama', 'comedy', 'horror', 'western'][i % 4]}{'|comedy' if i >= 38 else ''}\n"
            for i in range(40)
        )
    )
    return dest, str(genres)


def test_held_out_movies_never_reach_training_and_negatives_share_no_genre(catalog):
    dest, genres = catalog
    cfg = build_config(PretrainScenesConfig, {"catalog": dest, "similarity": {"path": genres, "val_fraction": 0.2}})
    train, val, unmatched = catalog_pairs(cfg, CatalogStore(dest))
    train_movies = set(train["a"].to_pylist()) | set(train["b"].to_pylist())
    val_movies = set(val["a"].to_pylist()) | set(val["b"].to_pylist())
    held = val_movies - train_movies
    assert len(held) == 8 and all(a in held or b in held for a, b in zip(val["a"].to_pylist(), val["b"].to_pylist()))
    first = [a < b for a, b in zip(train["a"].to_pylist(), train["b"].to_pylist())]
    assert 0.3 < sum(first) / len(first) < 0.7  # the query side is drawn, not the alphabetical first
    gs = {
        f"m{i:02d}": {["drama", "comedy", "horror", "western"][i % 4]} | ({"comedy"} if i >= 38 else set())
        for i in range(40)
    }
    for t in (train, val):
        for a, b, y in zip(*(t[c].to_pylist() for c in ("a", "b", "label"))):
            assert (gs[a] == gs[b]) if y == 1.0 else not gs[a] & gs[b], (a, b, y)
    assert unmatched == 0


def test_too_many_held_out_movies_is_refused(catalog):
    dest, genres = catalog
    cfg = build_config(PretrainScenesConfig, {"catalog": dest, "similarity": {"path": genres, "val_fraction": 1.0}})
    with pytest.raises(ConfigError, match="val_fraction: holding out 38 of 38 movies leaves no pair to train on"):
        catalog_pairs(cfg, CatalogStore(dest))


def test_a_reader_takes_the_newest_version_of_a_model_unless_told(tmp_path):
    store = CatalogStore(str(tmp_path / "c"))
    for seq, version in enumerate(("run-a", "run-b")):  # two embeds of one model, the second written later
        rows = [
            {"video_id": "v", "shot_idx": i, "model": "scene", "model_version": version, "embedding": [float(seq)]}
            for i in range(2)
        ]
        store.tables.append("features/scene", pa.Table.from_pylist(rows, schema=table_schema("features/scene")))
        time.sleep(0.05)
    assert store.feature_version("features/scene", "scene", None, "data.version") == "run-b"
    assert store.feature_version("features/scene", "scene", "run-a", "data.version") == "run-a"
    with pytest.raises(ConfigError, match="data.version: scene has no version 'run-c' in features/scene"):
        store.feature_version("features/scene", "scene", "run-c", "data.version")
    newest = store.read_table("features/scene", model="scene", version="run-b")
    assert newest["embedding"].to_pylist() == [[1.0], [1.0]]  # never a mix of the two


def test_an_inputs_width_is_read_from_its_first_embedding_and_a_table_of_nulls_is_refused(tmp_path):
    from movielib.train.tables import feature_dim

    store = CatalogStore(str(tmp_path / "c"))
    rows = [  # the first rows null (a shot without audio), then the model's 3-wide embeddings; another model 5 wide
        {"video_id": "v", "shot_idx": i, "model": m, "model_version": "", "embedding": e}
        for i, (m, e) in enumerate([("a", None), ("a", None), ("a", [1.0, 2.0, 3.0]), ("b", [0.0] * 5), ("c", None)])
    ]
    store.tables.append("features/audio", pa.Table.from_pylist(rows, schema=table_schema("features/audio")))
    assert feature_dim(store, "features/audio", "a", None, "inputs.audio.table") == 3
    assert feature_dim(store, "features/audio", "b", None, "inputs.audio.table") == 5
    with pytest.raises(ConfigError, match="inputs.audio.table: features/audio of .* holds no embeddings of model 'c'"):
        feature_dim(store, "features/audio", "c", None, "inputs.audio.table")
