"""A tabular classifier on a feature matrix: fit (memoised on disk) and predict.

Shared by the ``classical`` and ``hybrid`` families. Rows that are entirely NaN (images
that could not be read) are left out of fitting and get NaN probabilities.

**Fit cache.** Fitting is deterministic given its inputs (the seed is one of them), so a
fitted classifier is stored under ``<cache>/fits/`` in the classifier's own safe format,
keyed by the sha256 of the training and validation matrices, labels and weights, the
classifier name and settings (thread count included: tree libraries may sum in another
order with other threads), the
library versions and :data:`FIT_CACHE_VERSION`. Rerunning a recipe, or any ablation
variant that only changes what happens after fitting, loads the classifier instead of
training it again; a damaged entry is discarded and refitted.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np

from ..core.atomic import building_dir
from ..core.cache import key_for
from .classifiers import ClassifierSettings, class_weights, get_classifier

log = logging.getLogger("bmbench.run")

#: Bump when a classifier's fit or saved format changes, so cached fits are not reused.
FIT_CACHE_VERSION = 1
_LIBRARIES = ("xgboost", "scikit-learn", "numpy")


def readable(x: np.ndarray) -> np.ndarray:
    """``bool[n]``: rows of ``x`` ``(n, d)`` that are not entirely NaN."""
    return ~np.isnan(x).all(axis=1)


def fit_classifier(name: str, settings: ClassifierSettings, x: np.ndarray, labels: np.ndarray,
                   x_val: np.ndarray | None, val_labels: np.ndarray | None, n_classes: int,
                   class_weight: str, cache_dir: Path | None):
    """Fit classifier ``name`` on the readable rows of ``x`` ``(n, d)`` with integer
    ``labels`` ``(n,)`` (validation: ``x_val``, ``val_labels``, for early stopping), per-sample
    weights from ``class_weight`` (``balanced`` | ``none``); reuse a cached fit when
    ``cache_dir`` holds one for exactly these inputs."""
    keep = readable(x)
    x, y = x[keep], labels[keep]
    w = class_weights(y, n_classes, class_weight)
    if x_val is not None:
        ok = readable(x_val)
        x_val, val_labels = x_val[ok], val_labels[ok]
    clf = get_classifier(name)
    folder = None
    if cache_dir is not None:
        key = _fit_key(name, settings, n_classes, x, y, w, x_val, val_labels)
        folder = Path(cache_dir) / "fits" / key[:2] / key
        fitted = _load(clf, folder)
        if fitted is not None:
            log.info("classifier: reusing the cached fit of %s on these exact inputs", name)
            return fitted
    fitted = clf.fit(settings, x, y, w, x_val, val_labels, n_classes)
    if folder is not None:
        _store(clf, fitted, folder)
    return fitted


def fit_for_run(opts, ctx, x: np.ndarray, train, x_val: np.ndarray | None, val):
    """:func:`fit_classifier` with a recipe's classifier options ``opts`` (``classifier``,
    ``n_estimators``, ``max_depth``, ``learning_rate``, ``C``, ``early_stopping``), its seed,
    class weighting and cache; ``train``/``val`` are the subsets ``x``/``x_val`` came from."""
    # Trees use every core whatever train.jobs says: that setting is for image work.
    settings = ClassifierSettings(opts.n_estimators, opts.max_depth, opts.learning_rate, opts.C,
                                  opts.early_stopping, ctx.recipe.seed, os.cpu_count() or 1)
    return fit_classifier(opts.classifier, settings, x, train.labels, x_val,
                          val.labels if val is not None else None, len(train.classes),
                          ctx.recipe.train.class_weight, ctx.cache_dir)


def predict_proba(fitted, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``float64[n, n_classes]`` probabilities of ``x`` ``(n, d)``: NaN rows where ``x`` is
    unreadable; classes the classifier never saw in training get probability 0."""
    ok = readable(x)
    out = np.full((len(x), n_classes), np.nan)
    if ok.any():
        p = fitted.predict_proba(x[ok])
        cols = getattr(fitted, "classes_", np.arange(p.shape[1]))
        out[np.flatnonzero(ok)[:, None], np.asarray(cols)[None, :]] = p
        out[ok] = np.nan_to_num(out[ok], nan=0.0)
    return out


def _library_versions() -> dict:
    out = {}
    for lib in _LIBRARIES:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def _fit_key(name: str, settings: ClassifierSettings, n_classes: int, *arrays) -> str:
    parts = asdict(settings)
    data = [b"none" if a is None else _array_bytes(a) for a in arrays]
    return key_for("bmbench.fit", FIT_CACHE_VERSION, name, parts, n_classes, _library_versions(), *data)


def _array_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return f"{a.dtype.str}{a.shape}".encode() + a.tobytes()


def _load(clf, folder: Path):
    if not folder.is_dir():
        return None
    try:
        return clf.load(folder)
    except Exception as exc:  # any damage means: refit (and replace the entry)
        log.warning("discarding a damaged cached fit %s (%s)", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None


def _store(clf, fitted, folder: Path) -> None:
    """Save into a temporary sibling folder, then rename it into place, so readers see a
    complete entry or none; a failure to cache never fails the run."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with building_dir(folder) as tmp:
            clf.save(fitted, tmp)
    except OSError as exc:
        if folder.is_dir():  # another process stored the same fit first
            return
        log.warning("could not cache the fitted classifier (%s); the run goes on", exc)
