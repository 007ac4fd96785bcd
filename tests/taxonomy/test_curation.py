"""MovieCLIP §3.2's merge rules with the real all-MiniLM-L6-v2, and affinity-propagation clusters."""

import pytest

from movielib.taxonomy.curation import cluster_labels, merge_label_sets

COMMON = ["desert", "bathroom", "lake", "living room", "village", "tennis court"]
SLUGLINES = COMMON + [
    "dune",
    "restroom",
    "glacial lake",
    "television room",
    "rural area",
    "tennis camp",
    "kitchen",
    "spaceship",
    "church",
]
HVU = COMMON + ["stadium", "sports arena", "library", "bowling alley"]


@pytest.fixture(scope="module")
def merged():
    return merge_label_sets([SLUGLINES, HVU])


def test_paper_examples_merge_into_the_common_set(merged):
    merges = {m.label: (m.into, m.step) for m in merged.merges}
    # MovieCLIP §3.2's printed examples (the paper's similarities: 0.66, 0.80, 0.73, 0.67, 0.64, 0.62)
    for label, into in [
        ("dune", "desert"),
        ("restroom", "bathroom"),
        ("glacial lake", "lake"),
        ("television room", "living room"),
        ("rural area", "village"),
        ("tennis camp", "tennis court"),
    ]:
        assert merges[label] == (into, "merge")
    assert all(m.similarity > 0.6 for m in merged.merges if m.step == "merge")
    assert merged.common == COMMON


def test_distinct_labels_stay_apart(merged):
    for label in ("kitchen", "spaceship", "church", "stadium", "library", "bowling alley"):
        assert label in merged.labels
    assert not set(merged.labels) & {"dune", "restroom", "glacial lake"}


def test_dedupe_folds_near_synonyms_among_the_rest(merged):
    (dedupe,) = [m for m in merged.merges if m.step == "dedupe"]
    assert (dedupe.label, dedupe.into) == ("sports arena", "stadium") and dedupe.similarity > 0.7
    assert "sports arena" not in merged.labels


def test_report_lists_every_merge(merged):
    report = merged.report()
    assert all(f"{m.label}\t->\t{m.into}\t{m.similarity:.3f}" in report for m in merged.merges)


def test_clusters_group_water_and_rooms():
    labels = ["lake", "river", "ocean", "bathroom", "bedroom", "living room", "stadium", "tennis court", "golf course"]
    clusters = cluster_labels(labels)
    assert sorted(m for c in clusters for m in c.members) == sorted(labels)
    where = {m: c.exemplar for c in clusters for m in c.members}
    assert where["bathroom"] == where["bedroom"] == where["living room"]
    assert where["lake"] == where["river"]
    assert where["lake"] != where["bedroom"]
