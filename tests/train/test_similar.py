"""Movie similarity from genres, synopses (all-MiniLM-L6-v2) or a pairs table, and the negatives drawn against it."""

import pyarrow as pa
import pyarrow.csv as pcsv
import pytest

from movielib.errors import ConfigError
from movielib.train.movies2scenes.similar import dissimilar, from_genres, from_pairs, read_similar
from movielib.train.tables import genre_sets


def test_genre_sets_pair_movies_of_the_same_set_about_three_times_each():
    sets = [("drama",), ("comedy", "romance"), ("horror",)]
    genres = {f"m{i}": sets[i % 3] for i in range(60)}
    pairs = from_genres(genres, per_movie=3)
    assert all(set(genres[a]) == set(genres[b]) for a, b in pairs)  # only the same genre set
    degree = {m: sum(m in p for p in pairs) for m in genres}
    assert min(degree.values()) >= 3 and 3 <= 2 * len(pairs) / len(genres) <= 6  # ~3 picks each, some shared
    assert from_genres({"a": ["Drama"], "b": [" drama "]}) == {("a", "b")}  # case and spaces do not matter


def test_synopsis_neighbours_follow_the_story():
    space = [
        "Astronauts fight to survive when their ship is stranded near Mars.",
        "A crew on a space station races to repair a failing reactor in orbit.",
        "An alien signal leads explorers to a distant planet beyond the galaxy.",
        "A pilot must land a damaged spacecraft on the moon with no fuel left.",
    ]
    kitchen = [
        "A young chef opens a small restaurant and battles a harsh food critic.",
        "Two bakers compete in a cake contest in a Paris pastry kitchen.",
        "A family cookbook of old recipes brings an estranged cook back home.",
        "A sushi master trains an apprentice to cut fish in his Tokyo kitchen.",
    ]
    synopses = {f"space-{i}": s for i, s in enumerate(space)} | {f"food-{i}": s for i, s in enumerate(kitchen)}
    from movielib.train.movies2scenes.similar import from_synopses

    pairs = from_synopses(synopses, per_movie=2)
    same_topic = sum(a.split("-")[0] == b.split("-")[0] for a, b in pairs)
    assert same_topic / len(pairs) >= 0.9, pairs  # random pairing: 3/7


def test_pairs_file_and_negatives(tmp_path):
    path = tmp_path / "cowatch.csv"
    pcsv.write_csv(pa.table({"movie": ["a", "b", "c", "c"], "similar": ["b", "a", "d", "c"]}), path)
    pairs = read_similar(str(path), "pairs")
    assert pairs == {("a", "b"), ("c", "d")}  # symmetric duplicates and self-pairs dropped
    movies = ["a", "b", "c", "d", "e"]
    negatives = dissimilar(pairs, movies, n=100)
    assert len(negatives) == 10 - 2 and not negatives & pairs  # every other pair of the 5 movies, once
    assert from_pairs([("x", "y")]) == {("x", "y")}


def test_bad_similarity_files_name_what_is_wrong(tmp_path):
    path = tmp_path / "genres.csv"
    pcsv.write_csv(pa.table({"movie": ["a"], "genre": ["Drama"]}), path)
    with pytest.raises(ConfigError, match="needs columns movie, genres; missing genres"):
        read_similar(str(path), "genres")
    with pytest.raises(ConfigError, match="kind must be genres, synopsis or pairs"):
        read_similar(str(path), "cowatch")
    with pytest.raises(ConfigError, match="cannot be read"):
        read_similar(str(tmp_path / "nope.csv"), "pairs")


def test_genre_overlap_pairs_and_negatives_share_no_genre():
    genres = {"a": ["drama", "romance"], "b": ["drama"], "c": ["drama", "romance"], "d": ["horror"], "e": ["comedy"]}
    assert from_genres(genres, per_movie=4) == {("a", "c")}  # the same set only (min_jaccard 1.0)
    assert from_genres(genres, per_movie=4, min_jaccard=0.5) == {("a", "c"), ("a", "b"), ("b", "c")}  # J = 1/2
    sets = genre_sets(genres)
    negatives = dissimilar({("a", "c")}, sorted(genres), n=100, genres=sets)
    assert negatives and all(not sets[x] & sets[y] for x, y in negatives)  # no pair of two dramas
    assert ("a", "b") in dissimilar({("a", "c")}, sorted(genres), n=100)  # without genres, any non-similar pair
    assert len(negatives) == 7  # every pair of disjoint genre sets: {a,b,c} x {d,e} and (d, e)
