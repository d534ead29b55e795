"""Calibration: expected calibration error, Brier score and reliability-diagram data.

A classifier is *calibrated* when, among the images it labels with confidence 0.8, about
80% are right. The confidence of a prediction is its largest probability (the arg-max
class's probability), and "right" means the arg-max is the true class.
"""

from __future__ import annotations

import numpy as np

N_BINS = 15


def confidence_and_correct(y_true, proba) -> tuple[np.ndarray, np.ndarray]:
    """``(confidence, correct)``: the arg-max probability and whether the arg-max is right."""
    proba = np.asarray(proba, dtype=np.float64)
    pred = proba.argmax(axis=1)
    conf = proba[np.arange(len(proba)), pred]
    return conf, (pred == np.asarray(y_true)).astype(np.float64)


def bin_index(confidence, n_bins: int = N_BINS) -> np.ndarray:
    """Equal-width bins over [0, 1], right-closed: bin ``i`` holds ``(i/n, (i+1)/n]``, and a
    confidence of exactly 0 falls in bin 0."""
    c = np.asarray(confidence, dtype=np.float64)
    return np.clip(np.ceil(c * n_bins).astype(np.int64) - 1, 0, n_bins - 1)


def expected_calibration_error(y_true, proba, n_bins: int = N_BINS) -> float:
    """ECE = sum over bins of (images in bin / all images) * |accuracy - mean confidence|."""
    conf, correct = confidence_and_correct(y_true, proba)
    if len(conf) == 0:
        return 0.0
    b = bin_index(conf, n_bins)
    gap = np.bincount(b, weights=conf - correct, minlength=n_bins)
    return float(np.abs(gap).sum() / len(conf))


def brier_score(y_true, proba) -> float:
    """Multi-class Brier score: mean over images of ``sum_k (p_k - [k is true])^2``.

    0 is perfect; 2 is confidently wrong on every image; a uniform guess over ``k`` classes
    scores ``1 - 1/k``.
    """
    proba = np.asarray(proba, dtype=np.float64)
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    return float(per_sample_brier(y, proba).mean())


def per_sample_brier(y: np.ndarray, proba: np.ndarray) -> np.ndarray:
    """``sum_k (p_k - onehot_k)^2`` for every image, as ``sum p^2 - 2 p_true + 1``."""
    return (proba ** 2).sum(axis=1) - 2 * proba[np.arange(len(y)), y] + 1.0


def reliability(y_true, proba, n_bins: int = N_BINS) -> dict:
    """Data for a reliability diagram: per bin its edges, count, mean confidence and accuracy
    (None for empty bins), plus the ECE. JSON-ready."""
    conf, correct = confidence_and_correct(y_true, proba)
    b = bin_index(conf, n_bins)
    count = np.bincount(b, minlength=n_bins)
    conf_sum = np.bincount(b, weights=conf, minlength=n_bins)
    acc_sum = np.bincount(b, weights=correct, minlength=n_bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_conf = np.where(count > 0, conf_sum / np.maximum(count, 1), np.nan)
        acc = np.where(count > 0, acc_sum / np.maximum(count, 1), np.nan)
    none = lambda a: [None if np.isnan(v) else float(v) for v in a]  # noqa: E731
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return {
        "n_bins": n_bins,
        "bin_lower": edges[:-1].tolist(),
        "bin_upper": edges[1:].tolist(),
        "count": count.astype(int).tolist(),
        "mean_confidence": none(mean_conf),
        "accuracy": none(acc),
        "ece": float(np.abs(conf_sum - acc_sum).sum() / len(conf)) if len(conf) else 0.0,
        "n": int(len(conf)),
    }
