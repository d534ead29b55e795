"""What the runner stores beside the point scores: intervals, fold spread, reliability data."""

from __future__ import annotations

import numpy as np

from .bootstrap import LEVEL, N_RESAMPLES, SEED, bootstrap_ci, describe
from .calibration import reliability
from .scores import HEADLINE


def add_statistics(metrics: dict, y_true, proba, classes, n_resamples: int = N_RESAMPLES,
                   level: float = LEVEL, seed: int = SEED) -> dict:
    """Add to ``metrics`` (a :func:`~bmbench.metrics.scores.compute_metrics` result):

    - ``ci``: ``{metric: [low, high] | None}`` stratified bootstrap interval of every
      headline metric, and ``ci_method`` saying how it was made;
    - ``fold_summary`` (when ``metrics["folds"]`` holds per-fold results):
      ``{metric: {"mean", "std", "n_folds"}}`` across folds (sample std, ddof=1).

    Returns the reliability-diagram data (:func:`~bmbench.metrics.calibration.reliability`).
    """
    metrics["ci"] = bootstrap_ci(y_true, proba, classes, HEADLINE, n_resamples, level, seed)
    metrics["ci_method"] = describe(n_resamples, level, seed)
    if metrics.get("folds"):
        metrics["fold_summary"] = fold_summary(metrics["folds"])
    return reliability(y_true, proba)


def fold_summary(folds: list[dict]) -> dict:
    """Mean and sample standard deviation of every headline metric across folds (metrics
    undefined in some fold, e.g. ROC-AUC, use the folds where they are defined)."""
    out = {}
    for name in HEADLINE:
        values = np.array([f[name] for f in folds if f.get(name) is not None], dtype=np.float64)
        if len(values):
            out[name] = {"mean": float(values.mean()),
                         "std": float(values.std(ddof=1)) if len(values) > 1 else 0.0,
                         "n_folds": int(len(values))}
    return out
