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
    try:
        return found["metrics"], found["reliability"]
    except (KeyError, TypeError):
        pass  # a miss (None) or an entry of another shape
    metrics, reliability = _score(y, proba, classes, fold_of, n_folds, positive)
    # what a rerun reads back, so the first run stores the same types
    found = json.loads(json.dumps({"metrics": metrics, "reliability": reliability}, default=jsonable))
    try:
        cache.put(key, found)
    except OSError as exc:
        log.debug("scores cache: %s", exc)
    return found["metrics"], found["reliability"]


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
