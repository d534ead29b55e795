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

**Lazy reuse.** A fit (cached or new) is returned as a :class:`CachedFit`: the classifier
is loaded only when something needs the model itself. Its test probabilities (keyed by the
exact feature matrix), importances and details are kept beside the entry, and saving copies
the entry's files (checked against their sha256 in ``manifest.json``), so a rerun on cached
features neither imports the classifier's library (XGBoost, scikit-learn) nor predicts again.

**Trust.** A cache folder may be shared or tampered with, so an entry is no more trusted
than a run folder: its manifest must name plain files of the entry, the classifier's
``verify`` (for skops: the exact type allow-list, read without building anything) runs
before the entry is reused, models load only through :mod:`bmbench.core.loaders`, and an
entry found damaged later, when its model is first loaded, is discarded and refitted.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import shutil
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import numpy as np

from ..core.atomic import building_dir, write_json
from ..core.cache import ArrayCache, key_for
from ..core.hashing import file_sha256
from ..core.shapes import shape
from ..core.untrusted import DamagedFile, read_json
from ..config.schema import Context, option
from .classifiers import ClassifierChoice, ClassifierSettings, class_weights, get_classifier, parse_classifier

log = logging.getLogger("bmbench.run")

#: Bump when a classifier's fit or saved format changes, so cached fits are not reused.
FIT_CACHE_VERSION = 1


@dataclass(frozen=True)
class TabularOptions:
    """Recipe keys of a family that ends in a tabular classifier (``classical``, ``hybrid``).

    ``classifier`` is a name (its options from the flat shorthands below where it reads
    them, else its defaults) or ``{name: ..., <its own options>}``. A shorthand set to a
    value the named classifier does not read is never silently ignored: it warns (so old
    recipes still run); beside the mapping form it is an error.
    """

    classifier: Any = option("xgboost", parse=parse_classifier,
                             doc="classifier on the features: a name, or {name: ..., <its options>}")
    n_estimators: int = option(600, ge=1, le=100_000, doc="shorthand: boosting rounds / trees "
                                                          "(xgboost, random_forest)")
    max_depth: int = option(6, ge=1, le=64, doc="shorthand: tree depth (xgboost)")
    learning_rate: float = option(0.1, gt=0.0, le=1.0, doc="shorthand: boosting learning rate (xgboost)")
    C: float = option(1.0, gt=0.0, doc="shorthand: regularisation (logistic_regression, svm)")
    early_stopping: int = option(50, ge=0, le=1_000_000, doc="shorthand: stop after this many rounds without "
                                               "validation improvement (xgboost; 0: none, and the "
                                               "validation images are trained on too)")

    def __post_init__(self) -> None:
        if not isinstance(self.classifier, ClassifierChoice):
            object.__setattr__(self, "classifier", parse_classifier(self.classifier, Context("", "classifier")))
        choice = self.classifier
        own = {f.name for f in dataclasses.fields(choice.entry.Options)}
        for f in dataclasses.fields(TabularOptions)[1:]:
            value = getattr(self, f.name)
            if value == f.default:
                continue
            if choice.explicit:
                raise ValueError(f"{f.name}: give it inside the classifier ({{name: {choice.name}, "
                                 f"{f.name}: {value}}}), not beside it")
            if f.name not in choice.entry.legacy:  # a warning, so that old recipes still run
                hint = (f"use classifier: {{name: {choice.name}, {f.name}: {value}}}" if f.name in own
                        else f"{choice.name}'s options are: {', '.join(sorted(own)) or 'none'}")
                logging.getLogger("bmbench.recipe").warning(
                    "model.%s: %s has no effect on classifier %s; %s", f.name, value, choice.name, hint)

    def classifier_options(self):
        """The classifier's typed options: as given, or its defaults with the shorthands it reads."""
        choice = self.classifier
        if choice.explicit:
            return choice.options
        return dataclasses.replace(choice.options, **{k: getattr(self, k) for k in choice.entry.legacy})



def readable(x: np.ndarray) -> np.ndarray:
    """``bool[n]``: rows of ``x`` ``(n, d)`` that are not entirely NaN."""
    return ~np.isnan(x).all(axis=1)


def fit_classifier(name: str, options, settings: ClassifierSettings, x: np.ndarray, labels: np.ndarray,
                   x_val: np.ndarray | None, val_labels: np.ndarray | None, n_classes: int,
                   class_weight: str, cache_dir: Path | None):
    """Fit classifier ``name`` with its typed ``options`` on the readable rows of ``x``
    ``(n, d)`` with integer ``labels`` ``(n,)`` (validation: ``x_val``, ``val_labels``, for
    early stopping), per-sample weights from ``class_weight`` (``balanced`` | ``none``);
    reuse a cached fit when ``cache_dir`` holds one for exactly these inputs."""
    keep = readable(x)
    x, y = x[keep], labels[keep]
    w = class_weights(y, n_classes, class_weight)
    if x_val is not None:
        ok = readable(x_val)
        x_val, val_labels = x_val[ok], val_labels[ok]
    clf = get_classifier(name)
    folder = None
    if cache_dir is not None:
        key = _fit_key(clf, options, settings, n_classes, x, y, w, x_val, val_labels)
        folder = Path(cache_dir) / "fits" / key[:2] / key

        def refit():
            return clf.fit(options, settings, x, y, w, x_val, val_labels, n_classes)

        fitted = _load(clf, folder, refit)
        if fitted is not None:
            log.info("classifier: reusing the cached fit of %s on these exact inputs", name)
            return fitted
    fitted = clf.fit(options, settings, x, y, w, x_val, val_labels, n_classes)
    if folder is not None and _store(clf, fitted, folder):
        return CachedFit(clf, folder, fitted)
    return fitted


class CachedFit:
    """A fitted classifier stored in the fit cache at ``folder``; :attr:`model` loads it
    on first use (any other attribute is the model's); an entry that turns out damaged
    then is discarded and, given ``refit`` (``() -> model``), fitted again. Predictions,
    importances and details are remembered beside the entry."""

    def __init__(self, clf, folder: Path, model=None, refit=None):
        self.clf, self.folder, self._model, self._refit = clf, Path(folder), model, refit

    @property
    def model(self):
        if self._model is None:
            try:
                self._model = self.clf.load(self.folder)
            except DamagedFile as exc:
                if self._refit is None:
                    raise
                log.warning("discarding a damaged cached fit %s (%s)", self.folder, exc)
                shutil.rmtree(self.folder, ignore_errors=True)
                self._model = self._refit()
                _store(self.clf, self._model, self.folder)
        return self._model

    def __getattr__(self, name: str):
        if name.startswith("__") or name in ("_model", "_refit", "clf", "folder"):
            raise AttributeError(name)
        return getattr(self.model, name)

    def predict_proba_of(self, x: np.ndarray, n_classes: int) -> np.ndarray:
        """:func:`predict_proba` of ``x``, from ``<entry>/proba`` when this exact ``x`` was
        predicted before."""
        cache = ArrayCache(self.folder / "proba")
        key = key_for("bmbench.proba", n_classes, _array_bytes(x))
        out = cache.get(key, shape=(len(x), n_classes), check=_probabilities)
        if out is None:
            out = _predict(self.model, x, n_classes)
            _quietly(cache.put, key, out)
        return out

    def importances(self, n: int) -> np.ndarray | None:
        """The classifier's importances of the ``n`` features (None where it has none)."""
        cache = ArrayCache(self.folder / "meta")
        key = key_for("bmbench.importances", n)
        out = cache.get(key, shape=(n,))
        if out is None:
            out = self.clf.importances(self.model, n)
            if out is None:
                return None
            _quietly(cache.put, key, out)
        return out

    def best_iteration(self) -> int | None:
        path = self.folder / "meta" / "best_iteration.json"
        try:
            return read_json(path, shape({"best_iteration": (int, None)}))["best_iteration"]
        except DamagedFile:
            best = getattr(self.model, "best_iteration", None)
            best = int(best) if best is not None else None
            _quietly(write_json, path, {"best_iteration": best})
            return best

    def save(self, folder: Path) -> None:
        """What ``clf.save`` wrote for this fit, copied into ``folder``."""
        folder.mkdir(parents=True, exist_ok=True)
        for name in read_manifest(self.folder):
            shutil.copyfile(self.folder / name, folder / name)


def loaded(fitted):
    """The classifier itself (a :class:`CachedFit` loads its model): for code that inspects
    it, such as explanations."""
    return fitted.model if isinstance(fitted, CachedFit) else fitted


def check_fitted(fitted, n_features: int, n_classes: int, meta: Path) -> None:
    """One line naming the model JSON ``meta`` when the classifier loaded beside it does not
    take the ``n_features`` columns it names, or predicts classes outside ``0 .. n_classes - 1``."""
    from ..core.loaders import RERUN
    from ..core.untrusted import damaged

    n_in = getattr(fitted, "n_features_in_", None)
    if n_in is not None and int(n_in) != n_features:
        raise damaged(meta, f"names {n_features} features, but the classifier beside it takes {int(n_in)}", RERUN)
    classes = np.asarray(getattr(fitted, "classes_", np.arange(n_classes)))
    if classes.ndim != 1 or classes.dtype.kind not in "iu" or len(classes) > n_classes or (
            classes.size and (classes.min() < 0 or classes.max() >= n_classes)):
        raise damaged(meta, f"names {n_classes} classes, but the classifier beside it predicts "
                            f"{classes.tolist()!r:.60}", RERUN)


def save_fitted(name: str, fitted, folder: Path) -> None:
    """Save ``fitted`` (a :class:`CachedFit` or a model) as classifier ``name`` saves it."""
    if isinstance(fitted, CachedFit):
        fitted.save(folder)
    else:
        get_classifier(name).save(fitted, folder)


def importances_of(name: str, fitted, n: int) -> np.ndarray | None:
    if isinstance(fitted, CachedFit):
        return fitted.importances(n)
    return get_classifier(name).importances(fitted, n)


def best_iteration(fitted) -> int | None:
    if isinstance(fitted, CachedFit):
        return fitted.best_iteration()
    best = getattr(fitted, "best_iteration", None)
    return int(best) if best is not None else None


def _quietly(write, *args) -> None:
    try:
        write(*args)
    except OSError as exc:  # a read-only cache: it is only a cache
        log.debug("fit cache: %s", exc)


def fit_for_run(opts: TabularOptions, ctx, x: np.ndarray, train, x_val: np.ndarray | None, val):
    """:func:`fit_classifier` with a recipe's classifier and its options, the run's seed,
    class weighting and cache; ``train``/``val`` are the subsets ``x``/``x_val`` came from."""
    # Trees use every core whatever train.jobs says: that setting is for image work.
    settings = ClassifierSettings(ctx.seed, os.cpu_count() or 1)
    return fit_classifier(opts.classifier.name, opts.classifier_options(), settings, x, train.labels, x_val,
                          val.labels if val is not None else None, len(train.classes),
                          ctx.train.class_weight, ctx.cache_dir)


#: Parts the validation images are cut into when a classifier trains on them (see
#: :func:`held_out_validation`): each part is predicted by a fit on all the other images.
CROSS_FIT_FOLDS = 5


def held_out_validation(opts: TabularOptions, ctx, x: np.ndarray, train, x_val: np.ndarray | None,
                        val) -> np.ndarray | None:
    """Out-of-fold probabilities ``float64[len(val), n_classes]`` of the validation images when
    the run's classifier trains on them (XGBoost with ``early_stopping: 0``), else None (the
    fitted model's own predictions of them are held out already).

    The validation images are cut into :data:`CROSS_FIT_FOLDS` stratified parts (seeded by the
    run's seed); each part is predicted by the same classifier, settings and seed fitted on
    the training images plus the other parts, so no image is predicted by a fit that saw it
    and each fit is as close to the run's own model as the cross-fit allows. Fits go through
    the fit cache. Nothing here touches the run's own model or its test predictions.
    """
    if val is None or x_val is None or not len(val):
        return None
    name, options = opts.classifier.name, opts.classifier_options()
    if not get_classifier(name).trains_on_val(options):
        return None
    n_classes = len(train.classes)
    settings = ClassifierSettings(ctx.seed, os.cpu_count() or 1)
    out = np.full((len(val), n_classes), np.nan)
    parts = _parts(val.labels, ctx.seed, ctx.cache_dir)
    for part in parts:
        rest = np.setdiff1d(np.arange(len(val)), part)
        fitted = fit_classifier(name, options, settings, np.concatenate([x, x_val[rest]]),
                                np.concatenate([train.labels, val.labels[rest]]), None, None, n_classes,
                                ctx.train.class_weight, ctx.cache_dir)
        out[part] = predict_proba(fitted, x_val[part], n_classes)
    log.info("validation probabilities: out-of-fold, %d cross-fits of %s", len(parts), name)
    return out


def _parts(labels: np.ndarray, seed: int, cache_dir: Path | None = None) -> list[np.ndarray]:
    """Row indices (sorted) of the cross-fit's parts of ``labels``: stratified where every
    class has enough images, else shuffled. The assignment is cached, so a cached rerun
    imports no scikit-learn."""
    k = min(CROSS_FIT_FOLDS, len(labels))
    if k < 2:
        return [np.arange(len(labels))]
    cache = ArrayCache(Path(cache_dir) / "crossfit") if cache_dir is not None else None
    key = key_for("bmbench.crossfit_parts", k, seed, _array_bytes(np.asarray(labels)))
    part_of = cache.get(key, shape=(len(labels),), check=lambda a: None if a.dtype.kind == "i" and len(a)
                        and a.min() == 0 and a.max() == k - 1 else "not part numbers 0..k-1") if cache else None
    if part_of is None:
        part_of = _assign_parts(labels, seed, k)
        if cache is not None:
            _quietly(cache.put, key, part_of)
    return [np.flatnonzero(part_of == i) for i in range(k)]


def _assign_parts(labels: np.ndarray, seed: int, k: int) -> np.ndarray:
    from sklearn.model_selection import KFold, StratifiedKFold

    counts = np.bincount(labels)
    splitter = (StratifiedKFold(k, shuffle=True, random_state=seed) if counts[counts > 0].min() >= k
                else KFold(k, shuffle=True, random_state=seed))
    part_of = np.zeros(len(labels), np.int64)
    for i, (_, test) in enumerate(splitter.split(np.zeros(len(labels)), labels)):
        part_of[test] = i
    return part_of


def predict_proba(fitted, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``float64[n, n_classes]`` probabilities of ``x`` ``(n, d)``: NaN rows where ``x`` is
    unreadable; classes the classifier never saw in training get probability 0."""
    if isinstance(fitted, CachedFit):
        return fitted.predict_proba_of(x, n_classes)
    return _predict(fitted, x, n_classes)


def _predict(fitted, x: np.ndarray, n_classes: int) -> np.ndarray:
    ok = readable(x)
    out = np.full((len(x), n_classes), np.nan)
    if ok.any():
        p = fitted.predict_proba(x[ok])
        cols = getattr(fitted, "classes_", np.arange(p.shape[1]))
        out[np.flatnonzero(ok)[:, None], np.asarray(cols)[None, :]] = p
        out[ok] = np.nan_to_num(out[ok], nan=0.0)
    return out


def _library_versions(libraries: tuple[str, ...]) -> dict:
    out = {}
    for lib in libraries:
        try:
            out[lib] = version(lib)
        except PackageNotFoundError:
            out[lib] = None
    return out


def _fit_key(clf, options, settings: ClassifierSettings, n_classes: int, *arrays) -> str:
    data = [b"none" if a is None else _array_bytes(a) for a in arrays]
    return key_for("bmbench.fit", FIT_CACHE_VERSION, clf.name, asdict(options), asdict(settings), n_classes,
                   _library_versions(clf.libraries), *data)


def _probabilities(p: np.ndarray) -> str | None:
    """A cached ``predict_proba`` read back: finite values in [0, 1]."""
    ok = p.dtype.kind == "f" and bool(np.isfinite(p).all() and (p >= 0).all() and (p <= 1).all())
    return None if ok else "not probabilities"


def _array_bytes(a: np.ndarray) -> bytes:
    a = np.ascontiguousarray(a)
    return f"{a.dtype.str}{a.shape}".encode() + a.tobytes()


#: The entry's files as ``clf.save`` wrote them, with their sha256: checked instead of
#: loading the model (entries without it, from older versions, are loaded to check them).
MANIFEST = "manifest.json"


_DISCARD = "the entry is discarded and fitted again"


def _manifest_shape(value) -> str | None:
    if not isinstance(value, dict) or not value:
        return "expected a non-empty object of file name -> sha256"
    for name, digest in value.items():
        if name in (MANIFEST, "", ".", "..") or Path(name).name != name or name.startswith(".") or "\\" in name:
            return f"names {name!r}, not a file of this entry"
        if not (isinstance(digest, str) and len(digest) == 64):
            return f"the sha256 of {name!r} is not 64 hex digits"
    return None


def read_manifest(folder: Path) -> dict[str, str]:
    """The entry's ``manifest.json``: its plain file names (never paths) -> sha256."""
    return read_json(folder / MANIFEST, _manifest_shape, _DISCARD)


def _load(clf, folder: Path, refit=None):
    """The cached fit in ``folder`` (a :class:`CachedFit`, or the model of an entry from
    before manifests), or None when there is none or it is damaged (then it is removed).
    Nothing in the entry is built before its files match their manifest and pass the
    classifier's ``verify``."""
    if not folder.is_dir():
        return None
    try:
        manifest = folder / MANIFEST
        if manifest.is_file():
            for name, digest in read_manifest(folder).items():
                if file_sha256(folder / name) != digest:
                    raise ValueError(f"{name} does not match its sha256")
            clf.verify(folder)
            return CachedFit(clf, folder, refit=refit)
        return clf.load(folder)
    except Exception as exc:  # any damage means: refit (and replace the entry)
        log.warning("discarding a damaged cached fit %s (%s)", folder, exc)
        shutil.rmtree(folder, ignore_errors=True)
        return None



def _store(clf, fitted, folder: Path) -> bool:
    """Save into a temporary sibling folder, then rename it into place, so readers see a
    complete entry or none; a failure to cache never fails the run. True: the entry holds
    this fit."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        with building_dir(folder) as tmp:
            clf.save(fitted, tmp)
            files = sorted(p.name for p in tmp.iterdir())
            if any((tmp / name).is_dir() for name in files):
                return False  # only flat entries are copied file by file
            write_json(tmp / MANIFEST, {name: file_sha256(tmp / name) for name in files})
        return True
    except OSError as exc:
        if folder.is_dir():  # another process stored the same fit first
            return (folder / MANIFEST).is_file()
        log.warning("could not cache the fitted classifier (%s); the run goes on", exc)
        return False
