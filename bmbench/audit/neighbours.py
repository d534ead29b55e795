"""Exact and near-duplicate pairs, and the clusters they form.

A pair of images is a **near-duplicate** when either

* ``hash``: their flip/rotation-invariant perceptual-hash distance (the smallest Hamming
  distance over the 8 flips/90-degree rotations, see :mod:`.descriptors`) is at most
  ``hash_bits`` of 255 bits (re-encodings, resizes, flips, 90-degree rotations, brightness
  and contrast changes); all pairs are compared when the data set has at most
  ``hash_all_pairs`` images, else only the colour candidates below; or
* ``keypoints``: one is among the other's ``neighbours`` nearest colour histograms with a
  Hellinger distance of at most ``colour``, and their ORB keypoints match under one
  similarity transform (any rotation angle, shift, scale 0.8-1.25, optionally mirrored)
  with at least ``min_matches`` RANSAC inliers (crops, shifts, arbitrary rotations: the
  usual augmentations).

Exact duplicates (byte-identical files) come from
:func:`bmbench.data.duplicates.exact_duplicates`. All pairs are edges of a graph whose
connected components are the **clusters**. Candidate pairs are verified in order of colour
distance and a pair whose images are already in one cluster is not verified again, so the
pair list holds enough edges to connect every cluster, not necessarily every pair in it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import numpy as np
import pandas as pd

from ..core.cache import ArrayCache, key_for
from .descriptors import HASH_BITS, Descriptors

#: Bump when the pair search changes (its results are cached).
PAIRS_VERSION = 2

PAIR_COLUMNS = ("a", "b", "kind", "evidence", "hash_distance", "colour_distance", "matches")


@dataclass(frozen=True)
class NearDuplicateSettings:
    """Thresholds of the near-duplicate test (module docstring); defaults were chosen on
    augmented copies versus distinct cells of PBC, Matek 2021 and bloodcells4."""

    hash_bits: int = 24
    colour: float = 0.15
    neighbours: int = 8
    min_matches: int = 20
    hash_all_pairs: int = 20_000

    def as_dict(self) -> dict:
        return asdict(self)


#: Rows of the all-pairs hash comparison per block (:func:`hash_pairs`).
HASH_BLOCK = 64


def search_memory_bound(n: int, settings: NearDuplicateSettings = NearDuplicateSettings()) -> int:
    """Bytes the pair search (:func:`find_duplicates`) holds at most beyond the descriptors,
    for ``n`` images: the all-pairs hash block, ``HASH_BLOCK x n`` distances at 64 bytes
    (XOR words, bit counts, running minimum) when ``n <= hash_all_pairs``; one copy of the
    colour histograms (2 KiB per image); the colour neighbour lists and pair arrays (128
    bytes per neighbour); the candidate pairs as Python lists and sets (200 bytes each, at
    most ``neighbours`` per image); the clusters (40 bytes per image); 64 MiB of library
    working memory (scikit-learn's chunked distances, OpenCV's matcher, thread stacks)."""
    k = settings.neighbours
    hashing = HASH_BLOCK * n * 64 if n <= settings.hash_all_pairs else 0
    return hashing + n * (2048 + 128 * (k + 1) + 200 * k + 40) + 64 * 2**20


class _Clusters:
    """Union-find over row indices."""

    def __init__(self, n: int):
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        root = i
        while parent[root] != root:
            root = parent[root]
        while parent[i] != root:
            parent[i], i = root, parent[i]
        return int(root)

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def labels(self) -> np.ndarray:
        """Cluster id per row, numbered 0.. in order of first appearance."""
        roots = np.array([self.find(i) for i in range(len(self.parent))], np.int64)
        _, first, inverse = np.unique(roots, return_index=True, return_inverse=True)
        order = np.argsort(np.argsort(first))
        return order[inverse]


def hash_distance(phash: np.ndarray, a, b) -> np.ndarray:
    """Flip/rotation-invariant Hamming distance (bits) between rows ``a`` and ``b``
    (arrays of equal length) of a ``uint64[n, 8, words]`` hash array."""
    x = np.bitwise_count(phash[np.asarray(a)] ^ phash[np.asarray(b)][:, :1, :]).sum(-1)
    return x.min(axis=1).astype(np.int64)


def hash_pairs(phash: np.ndarray, valid: np.ndarray, max_bits: int, block: int = HASH_BLOCK) -> np.ndarray:
    """All pairs ``(i, j)``, ``i < j``, both valid, within ``max_bits``: ``int64[m, 2]``.

    Blockwise over rows, so memory stays at ``block x n`` distances.
    """
    rows = np.flatnonzero(valid)
    h = phash[rows]
    found = []
    for start in range(0, len(rows), block):
        stop = min(start + block, len(rows))
        other = h[start:, 0]
        best = None
        for t in range(h.shape[1]):
            d = np.bitwise_count(h[start:stop, t][:, None, :] ^ other[None, :, :]).sum(-1)
            best = d if best is None else np.minimum(best, d)
        i, j = np.nonzero(best <= max_bits)
        j = j + start
        keep = j > i + start
        found.append(np.stack([rows[i[keep] + start], rows[j[keep]]], axis=1))
    return np.concatenate(found) if found else np.zeros((0, 2), np.int64)


def colour_candidates(hist: np.ndarray, valid: np.ndarray, k: int, max_distance: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """Pairs ``(i, j)``, ``i < j``, where one is among the other's ``k`` nearest colour
    histograms within Hellinger ``max_distance``; sorted by that distance."""
    from sklearn.neighbors import NearestNeighbors

    rows = np.flatnonzero(valid)
    if len(rows) < 2:
        return np.zeros((0, 2), np.int64), np.zeros(0)
    k = min(k + 1, len(rows))
    data = hist if len(rows) == len(hist) else hist[rows]  # one copy at most, none when all are valid
    dist, idx = NearestNeighbors(n_neighbors=k, algorithm="brute").fit(data).kneighbors(data)
    dist = dist / np.sqrt(2.0)  # Euclidean of square-rooted histograms -> Hellinger
    a = np.repeat(rows, k)
    b = rows[idx.ravel()]
    d = dist.ravel()
    keep = (a != b) & (d <= max_distance)
    pairs = np.sort(np.stack([a[keep], b[keep]], axis=1), axis=1)
    pairs, first = np.unique(pairs, axis=0, return_index=True)
    d = d[keep][first]
    order = np.argsort(d, kind="stable")
    return pairs[order], d[order]


def colour_distance(hist: np.ndarray, a, b) -> np.ndarray:
    """Hellinger distance between rows ``a`` and ``b`` of square-rooted histograms."""
    diff = hist[np.asarray(a)] - hist[np.asarray(b)]
    return np.sqrt((diff.astype(np.float64) ** 2).sum(-1) / 2.0)


def keypoint_matches(desc: Descriptors, a: int, b: int, enough: int | None = None) -> int:
    """RANSAC inliers of the best similarity transform from image ``a`` (as is, or mirrored)
    onto image ``b``; 0 when there are too few matches or the scale is off (0.8-1.25).

    ``enough``: stop as soon as one orientation reaches this many inliers.
    """
    import cv2

    pb, db = desc.keypoints(b, 0)
    if len(db) < 4:
        return 0
    matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    best = 0
    for orientation in (0, 1):
        pa, da = desc.keypoints(a, orientation)
        if len(da) < 4:
            continue
        pairs = [m for m in matcher.knnMatch(da, db, k=2) if len(m) == 2]
        good = [m[0] for m in pairs if m[0].distance < 0.8 * m[1].distance]
        if len(good) < max(4, best + 1, enough or 0):  # inliers <= matches: cannot win
            continue
        src = pa[[m.queryIdx for m in good]].astype(np.float32)
        dst = pb[[m.trainIdx for m in good]].astype(np.float32)
        model, inliers = cv2.estimateAffinePartial2D(src, dst, method=cv2.RANSAC,
                                                     ransacReprojThreshold=3.0)
        if model is None:
            continue
        scale = float(np.hypot(model[0, 0], model[0, 1]))
        if 0.8 <= scale <= 1.25:
            best = max(best, int(inliers.sum()))
        if enough is not None and best >= enough:
            break
    return best


def _verify_batch(desc: Descriptors, pairs: np.ndarray, enough: int) -> list[int]:
    import cv2

    cv2.setNumThreads(1)
    return [keypoint_matches(desc, int(a), int(b), enough) for a, b in pairs]


@dataclass
class DuplicateFinding:
    """Pairs (DataFrame with :data:`PAIR_COLUMNS`; ``a < b`` row indices) and the cluster id
    of every row (``int64[n]``; rows without a duplicate are clusters of one)."""

    pairs: pd.DataFrame
    clusters: np.ndarray
    settings: NearDuplicateSettings
    verified: int = 0

    @property
    def cluster_sizes(self) -> np.ndarray:
        return np.bincount(self.clusters)


def find_duplicates(desc: Descriptors, exact_groups=(), settings: NearDuplicateSettings = NearDuplicateSettings(),
                    jobs: int = 1, progress: Callable[[int, int], None] | None = None,
                    cache: ArrayCache | None = None) -> DuplicateFinding:
    """Exact and near-duplicate pairs among the described images, and their clusters.

    exact_groups: :class:`~bmbench.data.duplicates.DuplicateGroup` objects (row indices
    into the same order as ``desc``). progress: called with (pairs verified, candidates).
    cache: the pairs are stored under a key made of every image's descriptor key (so of the
    files' bytes, in order), the exact groups and ``settings``; a hit skips the search.
    """
    key = None
    if cache is not None and desc.keys:
        key = key_for("bmbench.audit.pairs", PAIRS_VERSION, settings.as_dict(), desc.keys,
                      [list(g.rows) for g in exact_groups])
        hit = cache.get(key)
        if hit is not None and hit.ndim == 2 and hit.shape[1] == 5 and len(hit) >= 1:
            return _from_record(desc, hit, settings)
    finding = _search(desc, exact_groups, settings, jobs, progress)
    if key is not None:
        cache.put(key, _to_record(finding))
    return finding


_KINDS, _EVIDENCE = ("exact", "near"), ("bytes", "hash", "keypoints")


def _to_record(finding: DuplicateFinding) -> np.ndarray:
    p = finding.pairs
    body = np.stack([p["a"].to_numpy(), p["b"].to_numpy(),
                     [_KINDS.index(k) for k in p["kind"]], [_EVIDENCE.index(e) for e in p["evidence"]],
                     p["matches"].to_numpy()], axis=1).astype(np.int64).reshape(-1, 5)
    return np.concatenate([np.array([[-1, finding.verified, 0, 0, 0]], np.int64), body])


def _from_record(desc: Descriptors, record: np.ndarray, settings) -> DuplicateFinding:
    clusters = _Clusters(len(desc))
    records = []
    for a, b, kind, evidence, matches in record[1:].tolist():
        clusters.union(a, b)
        records.append((a, b, _KINDS[kind], _EVIDENCE[evidence], matches))
    return DuplicateFinding(_pair_frame(desc, records), clusters.labels(), settings, int(record[0, 1]))


def _search(desc: Descriptors, exact_groups, settings: NearDuplicateSettings, jobs: int,
            progress) -> DuplicateFinding:
    n = len(desc)
    clusters = _Clusters(n)
    records: list[tuple] = []
    exact = set()
    exact_group = np.full(n, -1)  # copies within one exact group are never also "near" pairs
    for g, group in enumerate(exact_groups):
        exact_group[list(group.rows)] = g
        first = group.rows[0]
        for other in group.rows[1:]:
            a, b = sorted((int(first), int(other)))
            exact.add((a, b))
            clusters.union(a, b)
            records.append((a, b, "exact", "bytes"))
    valid = desc.ok
    if n <= settings.hash_all_pairs:
        by_hash = hash_pairs(desc.phash, valid, settings.hash_bits)
    else:
        by_hash = np.zeros((0, 2), np.int64)
    known = set(exact)
    by_hash = by_hash[(exact_group[by_hash[:, 0]] < 0) | (exact_group[by_hash[:, 0]] != exact_group[by_hash[:, 1]])]
    for a, b in by_hash.tolist():
        if (a, b) not in known:
            known.add((a, b))
            clusters.union(a, b)
            records.append((a, b, "near", "hash"))
    candidates, _ = colour_candidates(desc.hist, valid, settings.neighbours, settings.colour)
    if n > settings.hash_all_pairs and len(candidates):
        close = hash_distance(desc.phash, candidates[:, 0], candidates[:, 1]) <= settings.hash_bits
        close &= (exact_group[candidates[:, 0]] < 0) | (exact_group[candidates[:, 0]] != exact_group[candidates[:, 1]])
        for a, b in candidates[close].tolist():
            if (a, b) not in known:
                known.add((a, b))
                clusters.union(a, b)
                records.append((a, b, "near", "hash"))
    candidates = np.array([p for p in candidates.tolist() if tuple(p) not in known], np.int64).reshape(-1, 2)
    verified = _verify(desc, candidates, clusters, records, settings, jobs, progress)
    return DuplicateFinding(_pair_frame(desc, records), clusters.labels(), settings, verified)


def _verify(desc, candidates, clusters: _Clusters, records, settings, jobs, progress) -> int:
    """Keypoint-verify candidates in batches, skipping pairs already in one cluster."""
    from joblib import effective_n_jobs

    jobs = effective_n_jobs(jobs)
    batch = 64 * jobs
    done = 0
    pool = None
    if jobs != 1 and len(candidates) > batch:
        from joblib import Parallel

        pool = Parallel(n_jobs=jobs, backend="threading")
    for start in range(0, len(candidates), batch):
        chunk = candidates[start:start + batch]
        todo = np.array([clusters.find(a) != clusters.find(b) for a, b in chunk.tolist()], bool)
        chunk = chunk[todo]
        if pool is not None and len(chunk) > 1:
            from joblib import delayed

            parts = np.array_split(chunk, jobs)
            counts = [c for part in pool(delayed(_verify_batch)(desc, p, settings.min_matches)
                                         for p in parts) for c in part]
        else:
            counts = _verify_batch(desc, chunk, settings.min_matches)
        for (a, b), m in zip(chunk.tolist(), counts):
            if m >= settings.min_matches:
                clusters.union(a, b)
                records.append((a, b, "near", "keypoints", m))
        done += len(chunk)
        if progress is not None:
            progress(min(start + batch, len(candidates)), len(candidates))
    return done


def _pair_frame(desc: Descriptors, records: list[tuple]) -> pd.DataFrame:
    if not records:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(
            PAIR_COLUMNS, ("int64", "int64", "object", "object", "float64", "float64", "int64"))})
    a = np.array([r[0] for r in records], np.int64)
    b = np.array([r[1] for r in records], np.int64)
    valid = desc.ok[a] & desc.ok[b]
    hd = np.full(len(a), np.nan)
    cd = np.full(len(a), np.nan)
    hd[valid] = hash_distance(desc.phash, a[valid], b[valid]) / HASH_BITS
    cd[valid] = colour_distance(desc.hist, a[valid], b[valid])
    matches = np.array([r[4] if len(r) > 4 else -1 for r in records], np.int64)
    matches[matches < 0] = -1
    return pd.DataFrame({"a": a, "b": b, "kind": [r[2] for r in records],
                         "evidence": [r[3] for r in records], "hash_distance": hd,
                         "colour_distance": cd, "matches": matches})
