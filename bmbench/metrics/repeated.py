"""Bootstrap statistics of a metric averaged over repeated runs (different training seeds)
scored on the same test images, as ablation tables need them.

A variant trained ``R`` times has ``R`` probability matrices for one test set. Its value is
the mean of the metric over the repeats. Each stratified bootstrap resample (from
:mod:`.bootstrap`) draws test images once and scores *every* repeat on those same images,
so the interval reflects which images happened to be in the test set, for the repeat mean.
Paired differences resample the same images for both variants (as
:func:`.paired.paired_bootstrap` does); with one repeat per side they equal it exactly.
The spread between seeds is a separate matter (the standard deviation over repeats).
"""

from __future__ import annotations

import numpy as np

from .bootstrap import LEVEL, N_RESAMPLES, SEED, Resampler, percentile_interval, stratified_indices
from .paired import difference_result


def _repeat_mean(y, probas, n_classes: int, metric: str, idx: np.ndarray) -> np.ndarray:
    """``(len(idx),)`` metric averaged over the repeats ``probas`` on each row of ``idx``."""
    if not probas:
        raise ValueError("no repeats given")
    values = [Resampler(y, p, n_classes).metrics(idx, (metric,))[metric] for p in probas]
    return np.mean(values, axis=0)


def repeat_mean_ci(y_true, probas, n_classes: int, metric: str, n_resamples: int = N_RESAMPLES,
                   level: float = LEVEL, seed: int = SEED) -> dict:
    """``{"value", "ci", "n_repeats"}``: ``metric`` averaged over the repeats ``probas`` (a
    list of ``(n, k)`` arrays on the same images ``y_true``) and its stratified bootstrap
    percentile interval (None when undefined)."""
    y = np.asarray(y_true, dtype=np.int64)
    whole = np.arange(len(y))[None]
    value = float(_repeat_mean(y, probas, n_classes, metric, whole)[0])
    idx = stratified_indices(y, n_resamples, seed)
    ci = percentile_interval(_repeat_mean(y, probas, n_classes, metric, idx), level)
    return {"value": value, "ci": ci, "n_repeats": len(probas)}


def paired_repeat_bootstrap(y_true, probas_a, probas_b, n_classes: int, metric: str,
                            n_resamples: int = N_RESAMPLES, level: float = LEVEL,
                            seed: int = SEED) -> dict:
    """Paired stratified bootstrap of ``mean_r metric(A_r) - mean_r metric(B_r)``.

    ``probas_a`` / ``probas_b``: lists of ``(n, k)`` probabilities on the same images
    ``y_true`` (one per repeat; the two lists may differ in length). Returns the keys of
    :func:`~bmbench.metrics.paired.paired_bootstrap`: ``metric, a, b, difference, ci,
    p_value, n_resamples, level, better``.
    """
    y = np.asarray(y_true, dtype=np.int64)
    whole = np.arange(len(y))[None]
    a = float(_repeat_mean(y, probas_a, n_classes, metric, whole)[0])
    b = float(_repeat_mean(y, probas_b, n_classes, metric, whole)[0])
    idx = stratified_indices(y, n_resamples, seed)
    diff = (_repeat_mean(y, probas_a, n_classes, metric, idx)
            - _repeat_mean(y, probas_b, n_classes, metric, idx))
    return difference_result(metric, a, b, diff, n_resamples, level)
