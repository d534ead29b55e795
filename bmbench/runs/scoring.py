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

from ..core.atomic import jsonable, write_text
from ..core.cache import key_for

log = logging.getLogger(__name__)


def score_predictions(y: np.ndarray, proba: np.ndarray, classes, fold_of: np.ndarray, n_folds: int,
                      cache_dir: Path | None, positive: str | None = None) -> tuple[dict, dict]:
    """``(metrics, reliability)`` of the scored test images: ``y`` ``(n,)`` class indices,
    ``proba`` ``(n, k)`` (all finite), ``fold_of`` ``(n,)`` the fold of each image; with
    ``n_folds`` > 1 the per-fold metrics go under ``metrics["folds"]``; ``positive`` (a class
    name, ``dataset.positive_class``) adds the binary scores of that class."""
    path = None
    if cache_dir is not None:
        key = key_for("bmbench.scores", _metrics_source(), _sklearn_version(), list(classes),
                      _bytes(y), _bytes(proba), n_folds, _bytes(fold_of) if n_folds > 1 else b"", positive)
        path = Path(cache_dir) / "scores" / key[:2] / f"{key}.json"
        try:
            found = json.loads(path.read_text())
            return found["metrics"], found["reliability"]
        except FileNotFoundError:
            pass
        except (OSError, ValueError, KeyError, TypeError):
            log.debug("scores cache: discarding %s", path)
    metrics, reliability = _score(y, proba, classes, fold_of, n_folds, positive)
    if path is not None:
        text = json.dumps({"metrics": metrics, "reliability": reliability}, default=jsonable)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            write_text(path, text)
        except OSError as exc:
            log.debug("scores cache: %s", exc)
        found = json.loads(text)  # what a rerun reads back: the same types either way
        return found["metrics"], found["reliability"]
    return metrics, reliability


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
