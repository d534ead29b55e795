"""Every score for every family, from ``(y_true, probabilities, class names)``.

Two-class studies also report one class against the rest (C-NMC 2019: the sensitivity,
specificity and F1 of the leukaemic ALL class, beside the weighted F1): :func:`binary_metrics`.

No other module computes a metric. ``y_true`` is ``(n,)`` int class indices, ``proba`` is
``(n, k)`` probabilities whose rows sum to 1; the prediction is the arg-max.
"""

from __future__ import annotations

import warnings

import numpy as np

HEADLINE = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision",
            "macro_recall", "mcc", "cohen_kappa", "roc_auc_ovr_macro", "log_loss", "ece", "brier")
LOWER_IS_BETTER = frozenset({"log_loss", "ece", "brier"})


def compute_metrics(y_true, proba, classes, positive: str | None = None) -> dict:
    """Headline scores, per-class precision/recall/F1/support and the confusion matrix.

    Returns a JSON-ready dict. ROC-AUC is None when a test class has no images or only one
    class is present; log loss uses probabilities clipped to [1e-15, 1]. ``ece`` (15 bins)
    and ``brier`` (multi-class) come from :mod:`bmbench.metrics.calibration`. With
    ``positive`` (a class name: ``dataset.positive_class``), ``binary`` holds
    :func:`binary_metrics` of that class against the rest.
    """
    from sklearn import metrics as m

    from .calibration import brier_score, expected_calibration_error

    y_true = np.asarray(y_true, dtype=np.int64)
    proba = validated(proba, len(classes), len(y_true))
    y_pred = proba.argmax(axis=1)
    labels = np.arange(len(classes))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = m.precision_recall_fscore_support(y_true, y_pred, labels=labels, zero_division=0)
        present = s > 0
        out = {
            "n": int(len(y_true)),
            "accuracy": float(m.accuracy_score(y_true, y_pred)),
            "balanced_accuracy": float(r[present].mean()) if present.any() else 0.0,
            "macro_precision": float(p[present].mean()) if present.any() else 0.0,
            "macro_recall": float(r[present].mean()) if present.any() else 0.0,
            "macro_f1": float(f[present].mean()) if present.any() else 0.0,
            "weighted_precision": _weighted(p, s),
            "weighted_recall": _weighted(r, s),
            "weighted_f1": _weighted(f, s),
            "mcc": float(m.matthews_corrcoef(y_true, y_pred)),
            "cohen_kappa": _kappa(y_true, y_pred, labels),
            "roc_auc_ovr_macro": _auc(y_true, proba, present),
            "log_loss": log_loss(y_true, proba),
            "ece": expected_calibration_error(y_true, proba),
            "brier": brier_score(y_true, proba),
        }
    out["per_class"] = {c: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                            "support": int(s[i])} for i, c in enumerate(classes)}
    out["confusion_matrix"] = m.confusion_matrix(y_true, y_pred, labels=labels).tolist()
    out["classes"] = list(classes)
    if positive is not None:
        out["binary"] = binary_metrics(y_true, proba, classes, positive)
    return out


def binary_metrics(y_true, proba, classes, positive: str) -> dict:
    """JSON-ready counts and rates of ``positive`` versus the rest.

    sensitivity = TP / (TP + FN) (recall of the positive class), specificity = TN / (TN + FP),
    precision = TP / (TP + FP), npv = TN / (TN + FN), f1 = 2 TP / (2 TP + FP + FN),
    balanced_accuracy = the mean of sensitivity and specificity, roc_auc from the positive
    class's probability. A rate whose denominator is 0 is None.
    """
    from sklearn.metrics import roc_auc_score

    k = list(classes).index(positive)
    truth = np.asarray(y_true, dtype=np.int64) == k
    proba = np.asarray(proba, dtype=np.float64)
    said = proba.argmax(axis=1) == k if len(proba) else np.zeros(0, bool)
    tp, fp = int(np.sum(truth & said)), int(np.sum(~truth & said))
    fn, tn = int(np.sum(truth & ~said)), int(np.sum(~truth & ~said))
    sens, spec = _rate(tp, tp + fn), _rate(tn, tn + fp)
    both = truth.any() and (~truth).any()
    return {
        "positive_class": positive, "n_positive": tp + fn, "n_negative": tn + fp,
        "tp": tp, "fp": fp, "fn": fn, "tn": tn,
        "sensitivity": sens, "specificity": spec,
        "precision": _rate(tp, tp + fp), "npv": _rate(tn, tn + fn),
        "f1": _rate(2 * tp, 2 * tp + fp + fn),
        "balanced_accuracy": (sens + spec) / 2 if sens is not None and spec is not None else None,
        "roc_auc": float(roc_auc_score(truth, proba[:, k])) if both else None,
    }


def _rate(num: int, den: int) -> float | None:
    return num / den if den else None


def log_loss(y_true, proba) -> float:
    """Mean of ``-log p(true class)``, probabilities clipped to [1e-15, 1]."""
    y = np.asarray(y_true, dtype=np.int64)
    if len(y) == 0:
        return 0.0
    p_true = np.asarray(proba, dtype=np.float64)[np.arange(len(y)), y]
    return float(np.mean(-np.log(np.clip(p_true, 1e-15, 1.0))))


def validated(proba, k: int, n: int) -> np.ndarray:
    """``proba`` as float64 ``(n, k)`` with rows rescaled to sum to 1; refuses NaN/inf."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.shape != (n, k):
        raise ValueError(f"probabilities have shape {proba.shape}, expected ({n}, {k})")
    if not np.isfinite(proba).all():
        raise ValueError("probabilities contain NaN or infinity")
    return proba / proba.sum(axis=1, keepdims=True)


def _weighted(values: np.ndarray, support: np.ndarray) -> float:
    total = support.sum()
    return float((values * support).sum() / total) if total else 0.0


def _kappa(y_true, y_pred, labels) -> float:
    from sklearn.metrics import cohen_kappa_score

    value = cohen_kappa_score(y_true, y_pred, labels=labels)
    return 0.0 if np.isnan(value) else float(value)


def _auc(y_true, proba, present) -> float | None:
    """Macro one-vs-rest ROC-AUC over the classes present in ``y_true``."""
    from sklearn.metrics import roc_auc_score

    idx = np.flatnonzero(present)
    if len(idx) < 2:
        return None
    onehot = (y_true[:, None] == idx[None, :]).astype(int)
    return float(np.mean([roc_auc_score(onehot[:, j], proba[:, c]) for j, c in enumerate(idx)]))
