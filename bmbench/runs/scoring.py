"""A run's scores from its test predictions, memoised on disk.

:func:`~bmbench.metrics.scores.compute_metrics` and
:func:`~bmbench.metrics.summary.add_statistics` are pure functions of the labels, the
probabilities and the class names, so a rerun whose predictions are bit-identical (cached
features and fit) reads its scores from ``<cache>/scores/`` instead of importing
scikit-learn and bootstrapping again. The key holds the inputs' bytes, the source of
:mod:`bmbench.metrics` (any change to how a metric is computed makes new entries) and the
scikit-learn version.
"""

from __future__ import annotations

import json
import logging
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..core.atomic import jsonable
from ..core.cache import JsonCache, key_for

log = logging.getLogger(__name__)


def score_predictions(y: np.ndarray, proba: np.ndarray, classes, fold_of: np.ndarray, n_folds: int,
                      cache_dir: Path | None, positive: str | None = None) -> tuple[dict, dict]:
    """``(metrics, reliability)`` of the scored test images: ``y`` ``(n,)`` class indices,
    ``proba`` ``(n, k)`` (all finite), ``fold_of`` ``(n,)`` the fold of each image; with
    ``n_folds`` > 1 the per-fold metrics go under ``metrics["folds"]``; ``positive`` (a class
    name, ``dataset.positive_class``) adds the binary scores of that class."""
    if cache_dir is None:
        return _score(y, proba, classes, fold_of, n_folds, positive)
    cache = JsonCache(Path(cache_dir) / "scores")
    key = key_for("bmbench.scores", _metrics_source(), _sklearn_version(), list(classes),
                  _bytes(y), _bytes(proba), n_folds, _bytes(fold_of) if n_folds > 1 else b"", positive)
    found = cache.get(key)
    if found is not None:
        problem = _disagrees(found, y, proba, classes)
        if problem is None:
            return found["metrics"], found["reliability"]
        cache.discard(key, problem)
    metrics, reliability = _score(y, proba, classes, fold_of, n_folds, positive)
    # what a rerun reads back, so the first run stores the same types
    found = json.loads(json.dumps({"metrics": metrics, "reliability": reliability}, default=jsonable))
    try:
        cache.put(key, found)
    except OSError as exc:
        log.debug("scores cache: %s", exc)
    return found["metrics"], found["reliability"]


def _disagrees(found, y: np.ndarray, proba: np.ndarray, classes) -> str | None:
    """What is wrong with a cached entry of the scores of ``y`` and ``proba``, or None.

    The key hashes the inputs, not the scores, so the headline numbers are recomputed here
    with numpy (microseconds, and no scikit-learn import on a cached rerun) from the
    confusion matrix and compared: an entry edited to rank a run first is not used."""
    if not (isinstance(found, dict) and isinstance(found.get("metrics"), dict)
            and isinstance(found.get("reliability"), dict)):
        return "not a scores entry"
    metrics = found["metrics"]
    k = len(classes)
    pred = proba.argmax(axis=1)
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp, support, predicted = np.diag(cm), cm.sum(axis=1), cm.sum(axis=0)
    present = support > 0
    f1 = 2 * tp / np.maximum(predicted + support, 1)  # 2TP / (2TP + FP + FN), 0 for an absent class
    recall = tp / np.maximum(support, 1)
    expected = {"n": len(y), "accuracy": tp.sum() / max(len(y), 1),
                "macro_f1": f1[present].mean() if present.any() else 0.0,
                "balanced_accuracy": recall[present].mean() if present.any() else 0.0}
    if metrics.get("confusion_matrix") != cm.tolist() or metrics.get("classes") != list(classes):
        return "its confusion matrix or classes differ from the predictions'"
    for name, value in expected.items():
        got = metrics.get(name)
        if isinstance(got, bool) or not isinstance(got, (int, float)) or abs(got - value) > 1e-9:
            return f"its {name} differs from the predictions'"
    return None


def _score(y, proba, classes, fold_of, n_folds: int, positive: str | None) -> tuple[dict, dict]:
    from ..metrics.scores import compute_metrics
    from ..metrics.summary import add_statistics

    metrics = compute_metrics(y, proba, classes, positive)
    if n_folds > 1:
        metrics["folds"] = [compute_metrics(y[fold_of == i], proba[fold_of == i], classes, positive)
                            for i in range(n_folds)]
    reliability = add_statistics(metrics, y, proba, classes)  # CIs, fold mean/std
    return metrics, reliability


def _bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return f"{a.dtype.str}{a.shape}".encode() + a.tobytes()


def _metrics_source() -> str:
    from .. import metrics

    digest = [key_for(p.name, p.read_bytes()) for p in sorted(Path(metrics.__file__).parent.glob("*.py"))]
    return key_for(*digest)


def _sklearn_version() -> str | None:
    try:
        return version("scikit-learn")
    except PackageNotFoundError:
        return None
