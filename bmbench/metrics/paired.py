"""Paired comparison of two classifiers on the same test images, and Holm's correction.

- :func:`mcnemar_exact`: are the two error rates different? Only the discordant images count
  (A right and B wrong, or the reverse); under the null hypothesis each discordant image is
  a fair coin, so the two-sided p-value is an exact binomial tail.
- :func:`paired_bootstrap`: a confidence interval for the difference A - B of any headline
  metric, resampling the *same* images for both runs (stratified by true class), and the
  p-value from inverting that interval (the smallest level at which it excludes 0).
- :func:`holm`: Holm's step-down adjustment of several p-values (family-wise error rate).
"""

from __future__ import annotations

import numpy as np

from .bootstrap import LEVEL, N_RESAMPLES, SEED, Resampler, percentile_interval, stratified_indices
from .scores import LOWER_IS_BETTER


def mcnemar_exact(correct_a, correct_b) -> dict:
    """Exact two-sided McNemar test on paired right/wrong outcomes.

    Returns ``{"n", "both_right", "both_wrong", "a_only", "b_only", "p_value"}`` where
    ``a_only`` counts images A gets right and B wrong. ``p = min(1, 2 * P(X <= min(a_only,
    b_only)))`` with ``X ~ Binomial(a_only + b_only, 1/2)``; 1 when there is no discordant image.
    """
    from scipy.stats import binom

    a = np.asarray(correct_a, dtype=bool)
    b = np.asarray(correct_b, dtype=bool)
    if a.shape != b.shape:
        raise ValueError(f"paired outcomes differ in length ({a.shape} vs {b.shape})")
    a_only = int((a & ~b).sum())
    b_only = int((~a & b).sum())
    discordant = a_only + b_only
    p = 1.0 if discordant == 0 else float(min(1.0, 2.0 * binom.cdf(min(a_only, b_only), discordant, 0.5)))
    return {"n": int(a.size), "both_right": int((a & b).sum()), "both_wrong": int((~a & ~b).sum()),
            "a_only": a_only, "b_only": b_only, "p_value": p}


def bootstrap_p_value(differences) -> float:
    """Two-sided p-value of "difference = 0" from bootstrap differences (interval inversion):
    ``2 * min(share <= 0, share >= 0)``, each share counted as ``(hits + 1) / (B + 1)``."""
    d = np.asarray(differences, dtype=np.float64)
    d = d[np.isfinite(d)]
    if len(d) == 0:
        return float("nan")
    below = (np.count_nonzero(d <= 0) + 1) / (len(d) + 1)
    above = (np.count_nonzero(d >= 0) + 1) / (len(d) + 1)
    return float(min(1.0, 2 * min(below, above)))


def paired_bootstrap(y_true, proba_a, proba_b, n_classes: int, metric: str,
                     n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = SEED) -> dict:
    """Paired stratified bootstrap of ``metric(A) - metric(B)`` on the same images.

    Returns ``{"metric", "a", "b", "difference", "ci", "p_value", "n_resamples", "level",
    "better"}`` where ``a``/``b`` are the full-set values, ``ci`` the percentile interval of
    the difference and ``better`` is "a", "b" or None (when the interval contains 0).
    """
    return PairedBootstrap(y_true, proba_a, n_classes, metric, n_resamples, level, seed).versus(proba_b)


class PairedBootstrap:
    """:func:`paired_bootstrap` of many runs B against one run A on the same images: the
    resamples and A's metric on them are computed once (a leaderboard tests every run against
    its leader), each :meth:`versus` gives exactly what ``paired_bootstrap`` gives."""

    def __init__(self, y_true, proba_a, n_classes: int, metric: str, n_resamples: int = N_RESAMPLES,
                 level: float = LEVEL, seed: int = SEED):
        self.y = np.asarray(y_true, dtype=np.int64)
        self.k, self.metric, self.n_resamples, self.level = n_classes, metric, n_resamples, level
        ra = Resampler(self.y, proba_a, n_classes)
        self.a = float(ra.metrics(np.arange(len(self.y))[None], (metric,))[metric][0])
        self.idx = stratified_indices(self.y, n_resamples, seed)
        self.samples_a = ra.metrics(self.idx, (metric,))[metric]

    def versus(self, proba_b) -> dict:
        """The comparison record of A against ``proba_b`` ``(n, k)``."""
        rb = Resampler(self.y, proba_b, self.k)
        b = float(rb.metrics(np.arange(len(self.y))[None], (self.metric,))[self.metric][0])
        diff = self.samples_a - rb.metrics(self.idx, (self.metric,))[self.metric]
        return difference_result(self.metric, self.a, b, diff, self.n_resamples, self.level)


def difference_result(metric: str, a: float, b: float, diff: np.ndarray, n_resamples: int,
                      level: float) -> dict:
    """The paired-comparison record from full-set values ``a``, ``b`` and the bootstrap
    samples ``diff`` ``(n_resamples,)`` of ``a - b``: interval, p-value and which is better
    (None when the interval contains 0; lower is better for losses)."""
    ci = percentile_interval(diff, level)
    better = None
    if ci is not None and (ci[0] > 0 or ci[1] < 0):
        a_higher = ci[0] > 0
        better = "b" if a_higher == (metric in LOWER_IS_BETTER) else "a"
    return {"metric": metric, "a": a, "b": b, "difference": a - b, "ci": ci,
            "p_value": bootstrap_p_value(diff), "n_resamples": n_resamples, "level": level,
            "better": better}


def holm(p_values) -> np.ndarray:
    """Holm-adjusted p-values, in the input order: sort ascending, multiply the ``i``-th
    smallest (0-based) by ``m - i``, make the sequence non-decreasing, cap at 1. Rejecting
    where the adjusted value is below alpha controls the family-wise error rate at alpha."""
    p = np.asarray(p_values, dtype=np.float64)
    m = len(p)
    if m == 0:
        return p
    order = np.argsort(p, kind="stable")
    adjusted = np.minimum(1.0, np.maximum.accumulate(p[order] * (m - np.arange(m))))
    out = np.empty(m)
    out[order] = adjusted
    return out
