"""Stratified bootstrap confidence intervals for every headline metric, vectorised.

A resample draws, *within each true class*, as many test images as that class has, with
replacement; so every resample keeps the test set's class counts (the split fixed them) and
the interval reflects only which images of each class happened to be in the test set.
The interval is the percentile interval of the metric over the resamples.

Nothing loops over images or over resamples in Python. Resamples are handled in blocks of
about a million draws: one ``np.bincount`` turns a block into a draw-count matrix
``draws[image, resample]``, and every metric is a sum over it: the confusion matrices of all
resamples are row sums over the images of each (true, predicted) cell (``np.add.reduceat``);
log loss and Brier are ``einsum`` products with the per-image losses; ECE sums the
confidence-minus-correct gap per bin; ROC-AUC sorts each class's negatives once and reads
prefix sums of the draw counts at the positives' ranks. 1000 resamples of 10,000 predictions
take well under a second for 8 classes on one core (``benchmarks/RESULTS.md``).
"""

from __future__ import annotations

import numpy as np

from .calibration import bin_index, confidence_and_correct, per_sample_brier
from .scores import HEADLINE, validated

N_RESAMPLES = 1000
LEVEL = 0.95
SEED = 0
_BLOCK_CELLS = 1_000_000  # resamples x images handled at once (cache-sized blocks)
_RUN = 64  # positions per run of the blocked prefix sum (ROC-AUC)
_COUNT_BASED = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision",
                "macro_recall", "mcc", "cohen_kappa")


def stratified_indices(y_true, n_resamples: int = N_RESAMPLES, seed: int | np.random.Generator = SEED,
                       ) -> np.ndarray:
    """``(n_resamples, n)`` int32 row indices; each row is one stratified resample.

    Columns are grouped by class: the block of class ``c`` holds ``n_c`` draws, with
    replacement, from the images of class ``c``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    blocks = []
    for c in np.unique(y):
        members = np.flatnonzero(y == c).astype(np.int32)
        blocks.append(members[rng.integers(0, len(members), size=(n_resamples, len(members)),
                                           dtype=np.int32)])
    if not blocks:
        return np.zeros((n_resamples, 0), dtype=np.int32)
    return np.concatenate(blocks, axis=1)


class Resampler:
    """Computes metrics of ``(y_true, proba)`` on many resamples at once.

    ``Resampler(y, proba, k).metrics(idx, names)`` -> ``{name: (n_resamples,) array}`` where
    ``idx`` is ``(n_resamples, n)`` row indices (:func:`stratified_indices`). The identity
    resample ``idx = arange(n)[None]`` reproduces :func:`~bmbench.metrics.scores.compute_metrics`.
    """

    def __init__(self, y_true, proba, n_classes: int):
        self.y = np.asarray(y_true, dtype=np.int64)
        self.proba = validated(proba, n_classes, len(self.y))
        self.k = n_classes
        self.pred = self.proba.argmax(axis=1)
        self.cell = self.y * n_classes + self.pred
        self.present = np.bincount(self.y, minlength=n_classes) > 0
        p_true = self.proba[np.arange(len(self.y)), self.y]
        self.loss = -np.log(np.clip(p_true, 1e-15, 1.0))
        self.brier = per_sample_brier(self.y, self.proba)
        conf, correct = confidence_and_correct(self.y, self.proba)
        # images grouped by confusion cell and by ECE bin, to sum draws per group
        self._cell_order, self._cell_starts, self._cells = _groups(self.cell)
        self._bin_order, self._bin_starts, _ = _groups(bin_index(conf))
        self._bin_gap = (conf - correct)[self._bin_order]
        self._orders: dict[int, tuple] = {}

    def metrics(self, idx: np.ndarray, names=HEADLINE) -> dict[str, np.ndarray]:
        """``{name: (n_resamples,) values}`` for the resamples ``idx`` (rows of image indices).

        Macro averages are over the classes present in the full test set; a resample that
        lacks one of them gets NaN ROC-AUC (stratified resamples never do)."""
        idx = np.asarray(idx)
        names = tuple(names)
        unknown = set(names) - set(HEADLINE)
        if unknown:
            raise ValueError(f"no resampled form for {sorted(unknown)}")
        b, n = idx.shape
        step = max(1, _BLOCK_CELLS // max(n, 1))
        parts = [self._block(idx[i:i + step], names) for i in range(0, b, step)]
        return {m: np.concatenate([p[m] for p in parts]) for m in names}

    def _block(self, idx: np.ndarray, names) -> dict[str, np.ndarray]:
        b, n = idx.shape
        m, k = len(self.y), self.k
        if n == 0:
            return {name: np.full(b, np.nan) for name in names}
        # draws[i, r]: how often image i is drawn in resample r; row m stays 0
        kind = np.int32 if (m + 1) * b < 2 ** 31 else np.int64
        flat = (idx.astype(kind, copy=False) * kind(b) + np.arange(b, dtype=kind)[:, None]).ravel()
        draws = np.bincount(flat, minlength=(m + 1) * b).reshape(m + 1, b).astype(np.int32)
        out: dict[str, np.ndarray] = {}
        if any(name in _COUNT_BASED for name in names):
            counts = np.zeros((k * k, b), dtype=np.int64)
            counts[self._cells] = np.add.reduceat(draws[self._cell_order], self._cell_starts, axis=0)
            out.update(metrics_from_confusion(counts.T.reshape(b, k, k), self.present))
        if "log_loss" in names:
            out["log_loss"] = np.einsum("ir,i->r", draws[:m], self.loss) / n
        if "brier" in names:
            out["brier"] = np.einsum("ir,i->r", draws[:m], self.brier) / n
        if "ece" in names:
            grouped = draws[self._bin_order]
            ends = np.r_[self._bin_starts[1:], m]
            gaps = [np.einsum("ir,i->r", grouped[s:e], self._bin_gap[s:e])
                    for s, e in zip(self._bin_starts, ends)]
            out["ece"] = np.abs(np.array(gaps)).sum(axis=0) / n
        if "roc_auc_ovr_macro" in names:
            out["roc_auc_ovr_macro"] = self._auc(draws, n)
        return {name: out[name] for name in names}

    def _auc(self, draws: np.ndarray, n: int) -> np.ndarray:
        """Macro one-vs-rest ROC-AUC over the present classes; NaN when fewer than two.

        For class ``c`` the AUC numerator is, over the positive draws, the number of negative
        draws scoring below (ties count one half). The negatives are sorted by score once;
        per resample, prefix sums of the draw counts along that order, read at each
        positive's ``searchsorted`` positions, give the negatives below and tied. The prefix
        sums run over all resamples at once: positions are cut into runs of ``_RUN`` and the
        scan inside the runs is ``_RUN`` vector additions (numpy's own cumsum is sequential,
        and several times slower here).
        """
        b = draws.shape[1]
        classes = np.flatnonzero(self.present)
        if len(classes) < 2:
            return np.full(b, np.nan)
        total = np.zeros(b)
        for c in classes:
            order, lo, hi, runs, positives = self._auc_order(c)
            scan = draws[order].reshape(_RUN, runs, b)  # scan[o, q]: position q*_RUN + o
            for o in range(1, _RUN):
                np.add(scan[o - 1], scan[o], out=scan[o])
            last = scan[_RUN - 1]
            scan += np.cumsum(last, axis=0) - last  # add the draws of the earlier runs
            scan = scan.reshape(_RUN * runs, b)
            # each positive image: its draw count times the negative draws below (+ half tied)
            below = scan[lo].astype(np.int64) + scan[hi]
            weight = draws[positives]
            num = (weight * below).sum(axis=0)
            n_pos = weight.sum(axis=0)
            with np.errstate(invalid="ignore", divide="ignore"):
                total += 0.5 * num / (n_pos * (n - n_pos))
        return total / len(classes)

    def _auc_order(self, c: int):
        """For class ``c``: the scan order (the zero row ``m``, then the negatives sorted by
        score, padded with ``m`` to whole runs, laid out run-offset-major); for each positive
        image the scan rows holding the negatives strictly below it and at or below it; the
        number of runs; and the positive images."""
        cached = self._orders.get(c)
        if cached is None:
            m = len(self.y)
            score = self.proba[:, c]
            neg = np.flatnonzero(self.y != c)
            positives = np.flatnonzero(self.y == c)
            neg = neg[np.argsort(score[neg], kind="stable")]
            runs = -(-(len(neg) + 1) // _RUN)
            order = np.full(runs * _RUN, m, dtype=np.intp)
            order[1:len(neg) + 1] = neg
            order = order.reshape(runs, _RUN).T.ravel()
            row = lambda j: j % _RUN * runs + j // _RUN  # noqa: E731 - prefix position -> scan row
            lo = row(np.searchsorted(score[neg], score[positives], "left"))
            hi = row(np.searchsorted(score[neg], score[positives], "right"))
            cached = self._orders[c] = (order, lo, hi, runs, positives)
        return cached


def _groups(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(order, starts, values)``: ``order`` sorts ``keys``; group ``g`` (key ``values[g]``)
    is ``order[starts[g]:starts[g + 1]]``."""
    order = np.argsort(keys, kind="stable")
    sorted_keys = keys[order]
    starts = np.flatnonzero(np.r_[True, sorted_keys[1:] != sorted_keys[:-1]]) if len(keys) else np.zeros(0, int)
    return order, starts, sorted_keys[starts]


def metrics_from_confusion(counts: np.ndarray, present: np.ndarray) -> dict[str, np.ndarray]:
    """Count-based metrics of many confusion matrices ``(b, k, k)`` (rows: true class).

    Macro averages are over the ``present`` classes (those with test images), exactly as
    :func:`~bmbench.metrics.scores.compute_metrics` does.
    """
    c = counts.astype(np.float64)
    n = c.sum(axis=(1, 2))
    tp = np.diagonal(c, axis1=1, axis2=2)
    support = c.sum(axis=2)
    predicted = c.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(support > 0, tp / support, 0.0)
        precision = np.where(predicted > 0, tp / predicted, 0.0)
        f1 = np.where(support + predicted > 0, 2 * tp / (support + predicted), 0.0)
        trace = tp.sum(axis=1)
        accuracy = trace / n
        pe = (support * predicted).sum(axis=1)
        mcc_den = np.sqrt((n ** 2 - (predicted ** 2).sum(axis=1)) * (n ** 2 - (support ** 2).sum(axis=1)))
        mcc = np.where(mcc_den > 0, (trace * n - pe) / mcc_den, 0.0)
        pe = pe / n ** 2
        kappa = np.where(1 - pe != 0, (accuracy - pe) / (1 - pe), 0.0)
    m = present.astype(bool)
    macro = lambda v: v[:, m].mean(axis=1) if m.any() else np.zeros(len(c))  # noqa: E731
    return {
        "accuracy": accuracy,
        "balanced_accuracy": macro(recall),
        "macro_precision": macro(precision),
        "macro_recall": macro(recall),
        "macro_f1": macro(f1),
        "weighted_f1": (f1 * support).sum(axis=1) / np.maximum(support.sum(axis=1), 1),
        "mcc": mcc,
        "cohen_kappa": kappa,
    }


def percentile_interval(samples: np.ndarray, level: float = LEVEL) -> list[float] | None:
    """The ``level`` percentile interval of ``samples`` (NaNs ignored); None if all NaN."""
    samples = np.asarray(samples, dtype=np.float64)
    finite = samples[np.isfinite(samples)]
    if len(finite) == 0:
        return None
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(finite, [tail, 100 - tail])
    return [float(low), float(high)]


def bootstrap_ci(y_true, proba, classes, metrics=HEADLINE, n_resamples: int = N_RESAMPLES,
                 level: float = LEVEL, seed: int = SEED) -> dict[str, list[float] | None]:
    """``{metric: [low, high]}`` stratified percentile bootstrap intervals (None where the
    metric is undefined, e.g. ROC-AUC with one class present, or there are no images, or no
    interval can be honest: every class has at most one test image, so every resample is the
    test set itself and the "interval" would be the point estimate, see :func:`can_resample`)."""
    y = np.asarray(y_true, dtype=np.int64)
    if not can_resample(y):
        return {m: None for m in metrics}
    idx = stratified_indices(y, n_resamples, seed)
    samples = Resampler(y, proba, len(classes)).metrics(idx, metrics)
    return {m: percentile_interval(samples[m], level) for m in metrics}


def can_resample(y_true) -> bool:
    """Whether a stratified resample of ``y_true`` can differ from it: some class has two or
    more images. With one image per class (or none) every resample is the test set itself."""
    y = np.asarray(y_true, dtype=np.int64)
    return len(y) > 0 and bool((np.bincount(y) >= 2).any())


def describe(n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = SEED) -> dict:
    """How the intervals were made, stored beside them in ``metrics.json``."""
    return {"method": "stratified percentile bootstrap over test images", "level": level,
            "n_resamples": n_resamples, "seed": seed}
