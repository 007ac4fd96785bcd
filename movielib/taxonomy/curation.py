"""Taxonomy curation with sentence embeddings (MovieCLIP §3.2): merge label sets, dedupe, cluster.

common   = labels found in at least two sets (L_com)
L_NC     = every other label
merge    : a label of L_NC whose top-1 cosine similarity to L_com is > 0.6 joins that common label
dedupe   : among what remains, a label whose top-1 similarity to a label kept before it is > 0.7
           is folded into that label (the paper's human-in-the-loop step, made automatic)
final    = L_com + the kept labels; every merge is reported with its similarity
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from movielib.models.text import embed_texts

Embed = Callable[[list[str]], np.ndarray]


@dataclass(frozen=True)
class Merge:
    label: str
    into: str
    similarity: float
    step: str  # "merge" (into the common set) or "dedupe"


@dataclass
class MergeResult:
    labels: list[str]
    common: list[str]
    merges: list[Merge] = field(default_factory=list)

    def report(self) -> str:
        lines = [f"{len(self.labels)} labels ({len(self.common)} common, {len(self.merges)} merged)"]
        lines += [f"{m.step}\t{m.label}\t->\t{m.into}\t{m.similarity:.3f}" for m in self.merges]
        return "\n".join(lines)


def merge_label_sets(
    sets: Sequence[Sequence[str]],
    merge_threshold: float = 0.6,
    dedupe_threshold: float = 0.7,
    embed: Embed = embed_texts,
) -> MergeResult:
    normalised = [list(dict.fromkeys(label.strip().lower() for label in s if label.strip())) for s in sets]
    seen: dict[str, int] = {}
    for s in normalised:
        for label in s:
            seen[label] = seen.get(label, 0) + 1
    order = list(dict.fromkeys(label for s in normalised for label in s))
    common = [label for label in order if seen[label] >= 2]
    rest = [label for label in order if seen[label] < 2]
    result = MergeResult(labels=[], common=common)
    kept: list[str] = []
    if rest:
        emb = dict(zip(order, embed(order)))
        if common:
            sims = np.stack([emb[r] for r in rest]) @ np.stack([emb[c] for c in common]).T
            for label, row in zip(list(rest), sims):
                best = int(row.argmax())
                if row[best] > merge_threshold:
                    result.merges.append(Merge(label, common[best], float(row[best]), "merge"))
                    rest.remove(label)
        for label in rest:
            if kept:
                row = np.stack([emb[k] for k in kept]) @ emb[label]
                best = int(row.argmax())
                if row[best] > dedupe_threshold:
                    result.merges.append(Merge(label, kept[best], float(row[best]), "dedupe"))
                    continue
            kept.append(label)
    result.labels = common + kept
    return result


@dataclass(frozen=True)
class Cluster:
    exemplar: str
    members: list[str]


def cluster_labels(labels: Sequence[str], embed: Embed = embed_texts, random_state: int = 0) -> list[Cluster]:
    """Affinity-propagation clusters over cosine similarities of the label embeddings (MovieCLIP §3.2)."""
    from sklearn.cluster import AffinityPropagation

    labels = list(labels)
    if len(labels) < 2:
        return [Cluster(labels[0], labels)] if labels else []
    emb = embed(labels)
    sims = emb @ emb.T
    ap = AffinityPropagation(affinity="precomputed", random_state=random_state, max_iter=1000).fit(sims)
    clusters = []
    for k, centre in enumerate(ap.cluster_centers_indices_):
        members = [label for label, c in zip(labels, ap.labels_) if c == k]
        clusters.append(Cluster(labels[centre], members))
    return sorted(clusters, key=lambda c: -len(c.members))
