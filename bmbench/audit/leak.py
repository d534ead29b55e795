"""Leak scores: how well a 1-nearest-neighbour on cheap colour histograms does under a split.

A 1-NN classifier that has a near-copy of each test image among its training images scores
far above what it scores on genuinely new images, so its accuracy under the recipe's split,
beside its accuracy under a split that keeps near-duplicate clusters together, shows how
much of a score comes from copies: a large gap means the split leaks. The same machinery
checks that no patient (group) is on both sides of a split and counts test images that
have an exact or near copy among the training/validation images.
"""

from __future__ import annotations

import dataclasses
import hashlib
import math
from dataclasses import dataclass, field

import numpy as np

from ..data.table import DatasetTable
from ..core.errors import DatasetError
from ..config.recipe import SplitSpec
from ..data.splits import Split, make_split, resolve_strategy

PARTS = ("train", "val", "test")
#: Smallest 1-NN accuracy gap (fraction) called a leak, whatever the sample size.
MIN_GAP = 0.05


@dataclass(frozen=True)
class LeakScore:
    """1-NN accuracy under one split: ``correct`` of ``n`` test images, over all folds."""

    name: str
    description: str
    correct: int
    n: int

    @property
    def accuracy(self) -> float:
        return self.correct / self.n if self.n else float("nan")

    def as_dict(self) -> dict:
        return {"name": self.name, "description": self.description, "n_test": self.n,
                "correct": self.correct, "accuracy": round(self.accuracy, 4) if self.n else None}


@dataclass(frozen=True)
class Comparison:
    """``leaky`` minus ``honest`` accuracy, the noise threshold and whether it is a leak."""

    leaky: LeakScore
    honest: LeakScore
    gap: float
    threshold: float

    @property
    def leaks(self) -> bool:
        return bool(self.gap > self.threshold)  # False when either is NaN

    @property
    def possible(self) -> bool:
        return bool(self.leaky.n and self.honest.n)

    def as_dict(self) -> dict:
        r = lambda x: None if x != x else round(x, 4)
        return {"leaky": self.leaky.name, "honest": self.honest.name, "gap": r(self.gap),
                "threshold": r(self.threshold), "leaks": self.leaks}


def compare(leaky: LeakScore, honest: LeakScore) -> Comparison:
    """A gap counts as a leak when it exceeds both :data:`MIN_GAP` and twice its standard
    error (two independent binomial proportions); a score of no images compares as NaN."""
    if not leaky.n or not honest.n:
        return Comparison(leaky, honest, float("nan"), float("nan"))
    p1, p2 = leaky.accuracy, honest.accuracy
    se = math.sqrt(p1 * (1 - p1) / max(leaky.n, 1) + p2 * (1 - p2) / max(honest.n, 1))
    return Comparison(leaky, honest, p1 - p2, max(MIN_GAP, 2 * se))


def nn_correct(features: np.ndarray, labels: np.ndarray, reference: np.ndarray,
               query: np.ndarray) -> tuple[int, int]:
    """(correct, scored) of a 1-NN (Euclidean) fitted on ``reference`` rows and asked about
    ``query`` rows; rows with non-finite features are left out of both."""
    from sklearn.neighbors import NearestNeighbors

    finite = np.isfinite(features).all(axis=1)
    reference = reference[finite[reference]]
    query = query[finite[query]]
    if len(reference) == 0 or len(query) == 0:
        return 0, 0
    _, idx = NearestNeighbors(n_neighbors=1, algorithm="brute").fit(features[reference]).kneighbors(features[query])
    return int((labels[reference[idx[:, 0]]] == labels[query]).sum()), len(query)


def split_score(name: str, description: str, features: np.ndarray, labels: np.ndarray,
                split: Split, rows: np.ndarray | None = None) -> LeakScore:
    """1-NN accuracy under ``split``: training + validation images are the reference, test
    images the queries, summed over folds. ``rows`` maps the split's row indices to
    ``features`` rows when the split is of a sub-table."""
    correct = n = 0
    for fold in split.folds:
        ref, query = np.concatenate([fold.train, fold.val]), fold.test
        if rows is not None:
            ref, query = rows[ref], rows[query]
        c, k = nn_correct(features, labels, ref, query)
        correct, n = correct + c, n + k
    return LeakScore(name, description, correct, n)


def subtable(table: DatasetTable, rows: np.ndarray) -> DatasetTable:
    """The images ``rows`` of ``table`` as a table of their own, without a predefined split."""
    frame = table.frame.iloc[rows].reset_index(drop=True).assign(split=None)
    digest = hashlib.sha256(np.asarray(rows, np.int64).tobytes()).hexdigest()[:8]
    return DatasetTable(table.kind, table.root, frame, table.classes, f"{table.fingerprint}-{digest}")


def leak_scores(table: DatasetTable, spec: SplitSpec, split: Split, features: np.ndarray,
                groups: np.ndarray) -> dict:
    """Leak scores and their comparisons.

    ``split`` is the recipe's split; ``groups`` (str per row) the near-duplicate clusters
    merged with patient groups. For a predefined split the comparison is made on the
    training part (train + val of the predefined split): a random stratified re-split of it
    versus a re-split that keeps clusters together, beside the score on the predefined test.
    Otherwise the recipe's split is compared with the same split settings grouped by
    clusters. Returns ``{"scores": [LeakScore...], "comparison": Comparison, "predefined": bool}``.
    """
    y = table.labels
    strategy = resolve_strategy(spec, table)
    scores = [split_score("recipe", f"recipe split ({_describe(split)})", features, y, split)]
    honest_spec = _with(spec, strategy="grouped", group_by="near_duplicates", allow_leaky=True)
    if strategy == "predefined":
        fold = split.folds[0]
        rows = np.sort(np.concatenate([fold.train, fold.val]))
        sub = subtable(table, rows)
        resplit = _with(spec, strategy="stratified", group_by="none", allow_leaky=True, folds=None, val=0.0)
        scores.append(_score_of("random_resplit", "random stratified re-split of the training part "
                                f"({spec.test:.0%} held out)", features, y, sub, resplit, None, rows))
        scores.append(_score_of("grouped_resplit", "the same re-split keeping near-duplicate clusters "
                                "together", features, y, sub, _with(honest_spec, folds=None, val=0.0),
                                groups[rows], rows))
        return {"scores": scores, "comparison": compare(scores[1], scores[2]), "predefined": True}
    scores.append(_score_of("grouped", "same settings keeping near-duplicate clusters together",
                            features, y, table, honest_spec, groups))
    return {"scores": scores, "comparison": compare(scores[0], scores[1]), "predefined": False}


def _score_of(name, description, features, y, table, spec, groups, rows=None) -> LeakScore:
    """The score under a split the audit makes itself; a split that cannot be made (too few
    clusters or images) gives a score of no images, its reason in the description."""
    try:
        split = make_split(table, spec, groups=groups)
    except DatasetError as exc:
        reason = str(exc).split(": ", 1)[-1] if str(exc).startswith(str(table.root)) else str(exc)
        return LeakScore(name, f"{description}: not possible ({reason})", 0, 0)
    return split_score(name, description, features, y, split, rows)


def _with(spec: SplitSpec, **changes) -> SplitSpec:
    known = {f.name for f in dataclasses.fields(spec)}
    return dataclasses.replace(spec, **{k: v for k, v in changes.items() if k in known})


def _describe(split: Split) -> str:
    if len(split.folds) > 1:
        return f"{split.strategy}, {len(split.folds)} folds"
    return split.strategy


# --- groups and parts ------------------------------------------------------------------------

def part_of(split: Split, n: int) -> list[np.ndarray]:
    """Per fold, the part name of every row (``''`` for rows in no part)."""
    out = []
    for fold in split.folds:
        part = np.full(n, "", dtype=object)
        for name in PARTS:
            part[getattr(fold, name)] = name
        out.append(part)
    return out


@dataclass
class PartSummary:
    fold: int
    part: str
    images: int
    groups: int | None
    class_counts: dict[str, int] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def part_summaries(table: DatasetTable, split: Split) -> list[PartSummary]:
    """Images, patient groups and class counts of every part of every fold."""
    out = []
    labels = table.frame["label"].to_numpy()
    group = table.frame["group"].to_numpy()
    for i, fold in enumerate(split.folds):
        for name in PARTS:
            rows = getattr(fold, name)
            if name == "val" and len(rows) == 0:
                continue
            counts = {c: 0 for c in table.classes}
            for label, k in zip(*np.unique(labels[rows], return_counts=True)):
                counts[label] = int(k)
            groups = len({g for g in group[rows] if g is not None and g == g}) if table.has_groups else None
            out.append(PartSummary(i, name, int(len(rows)), groups, counts))
    return out


def group_overlaps(table: DatasetTable, split: Split) -> list[dict]:
    """Patient groups found on both sides of a fold: ``[{fold, parts, groups}]`` (empty
    when the table has no groups or the split keeps every group on one side)."""
    if not table.has_groups:
        return []
    group = table.frame["group"].to_numpy()
    out = []
    for i, fold in enumerate(split.folds):
        sets = {name: {g for g in group[getattr(fold, name)] if g is not None and g == g} for name in PARTS}
        for a, b in (("train", "test"), ("val", "test"), ("train", "val")):
            both = sorted(sets[a] & sets[b], key=str)
            if both:
                out.append({"fold": i, "parts": f"{a}/{b}", "groups": [str(g) for g in both]})
    return out


def rows_with_training_copies(clusters: np.ndarray, split: Split) -> list[np.ndarray]:
    """Per fold, the test rows whose cluster (exact or near duplicates) has a member among
    that fold's training or validation rows."""
    out = []
    for fold in split.folds:
        seen = clusters[np.concatenate([fold.train, fold.val])]
        out.append(fold.test[np.isin(clusters[fold.test], seen)])
    return out


def merged_groups(table: DatasetTable, clusters: np.ndarray) -> np.ndarray:
    """Group id (str) per row joining near-duplicate clusters and patient groups: two
    images share a group when a chain of same-cluster or same-patient links connects them."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(clusters)
    edges = [(np.arange(n), n + clusters)]
    if table.has_groups:
        g = table.frame["group"].to_numpy()
        has = np.array([v is not None and v == v for v in g])
        codes = {v: k for k, v in enumerate(dict.fromkeys(g[has]))}
        rows = np.flatnonzero(has)
        edges.append((rows, n + clusters.max(initial=0) + 1 + np.array([codes[v] for v in g[has]], np.int64)))
    a = np.concatenate([e[0] for e in edges])
    b = np.concatenate([e[1] for e in edges])
    size = int(max(a.max(initial=0), b.max(initial=0))) + 1
    graph = coo_matrix((np.ones(len(a), np.int8), (a, b)), shape=(size, size))
    _, labels = connected_components(graph, directed=False)
    return np.array([f"cluster-{v}" for v in labels[:n]])
