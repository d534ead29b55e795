"""Classifiers for tabular inputs (handcrafted features, embeddings): one registry entry each.

Each entry builds an estimator from the recipe, fits it with per-sample class weights and an
optional validation set (for early stopping), and saves/loads it in a safe format: XGBoost's
own JSON, scikit-learn models with skops (never pickle), through the loaders of
:mod:`bmbench.core.loaders`. A scikit-learn entry declares the exact types its saved file
holds (``trusted``); a file with any other type is refused before anything in it is built.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable, Literal, Optional, Union

import numpy as np

from ..core.errors import BmbenchError, RecipeError
from ..core.loaders import check_skops, load_skops, load_xgboost, skops_types
from ..config.schema import option
from ..config.space import floats, ints
from ..core.registry import Registry, did_you_mean, known_list


@dataclass(frozen=True)
class ClassifierSettings:
    """What a run gives every classifier besides its own options: the training ``seed`` and
    the CPU threads it may use (``jobs``)."""

    seed: int
    jobs: int


@dataclass(frozen=True)
class NoOptions:
    """This classifier has no options."""


@dataclass(frozen=True)
class Classifier:
    """One tabular classifier.

    Options: dataclass of its recipe keys (``model.classifier: {name: ..., <key>: ...}``).
    fit: ``(options, settings, x, y, weights, x_val, y_val, n_classes) -> fitted`` (``x_val``
    may be None; use it only for early stopping). save/load: a safe format in a folder
    (never pickle). importances: ``(fitted, n_features) -> float[n] | None``. libraries:
    the distributions whose versions enter the fit-cache key. legacy: the flat
    ``model.<key>`` shorthands this classifier reads when it is named without options.
    trusted: the exact type names (``module.Name``) its saved skops file may hold (empty
    for classifiers not saved with skops). verify: ``(folder) -> None``, a cheap check of
    the saved files that builds nothing (raises
    :class:`~bmbench.core.untrusted.DamagedFile`); the fit cache runs it before reusing a fit.
    trains_on_val: ``options -> bool``, True where ``fit`` trains on the validation images
    too (then a run cross-fits its validation probabilities, see
    :func:`bmbench.models.tabular.held_out_validation`).
    """

    name: str
    description: str
    fit: Callable
    save: Callable
    load: Callable
    Options: type = NoOptions
    importances: Callable = lambda fitted, n: None
    libraries: tuple[str, ...] = ("numpy",)
    legacy: tuple[str, ...] = ()
    trusted: frozenset[str] = frozenset()
    verify: Callable = lambda folder: None
    trains_on_val: Callable = lambda options: False


class ClassifierChoice:
    """A validated ``model.classifier``: the entry's ``name``, its typed ``options``, and
    whether they were given (``{name: ..., ...}``) rather than implied by a bare name."""

    def __init__(self, name: str, options, explicit: bool):
        self.name, self.options, self.explicit = name, options, explicit

    def __eq__(self, other) -> bool:
        return isinstance(other, ClassifierChoice) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return f"ClassifierChoice({self.to_plain()!r})"

    def _key(self):
        return self.name, self.options, self.explicit

    def to_plain(self):
        """The recipe form: the bare name, or the mapping with every option (options added
        later are left out while at their default, so older recipes keep their fingerprints)."""
        from dataclasses import asdict

        if not self.explicit:
            return self.name
        plain = asdict(self.options)
        for key, default in ADDED_OPTIONS.get(self.name, {}).items():
            if plain.get(key) == default:
                del plain[key]
        return {"name": self.name, **plain}

    @property
    def entry(self) -> "Classifier":
        return CLASSIFIERS.get(self.name)


def parse_classifier(value, ctx) -> ClassifierChoice:
    """``model.classifier``: a name, or ``{name: ..., <its options>}``, validated against the
    classifier's own ``Options``; errors name the key."""
    from ..config.schema import build

    if isinstance(value, ClassifierChoice):
        return value
    explicit = isinstance(value, dict)
    if explicit:
        value = dict(value)
        if "name" not in value:
            raise ctx.child("name").error("required key is missing (the classifier's name)")
        name = value.pop("name")
    else:
        name = value
    if not isinstance(name, str) or name not in CLASSIFIERS:
        raise ctx.error(f"unknown classifier {name!r}{did_you_mean(name, CLASSIFIERS.names())}; "
                        f"known: {known_list(CLASSIFIERS.names())}")
    entry = CLASSIFIERS.get(name)
    return ClassifierChoice(name, build(entry.Options, value if explicit else {}, ctx), explicit)


#: ``{classifier: {option: default}}``: options added after recipes with the mapping form were
#: stored; absent from a recipe's plain form while at their default.
ADDED_OPTIONS: dict[str, dict] = {"xgboost": {"min_child_weight": 1.0}}

CLASSIFIERS: Registry[Classifier] = Registry("classifier", "bmbench.classifiers", ("bmbench.models.classifiers",),
                                             error=RecipeError, key="model.classifier")


def get_classifier(name: str) -> Classifier:
    return CLASSIFIERS.get(name)


def class_weights(y: np.ndarray, n_classes: int, mode: str) -> np.ndarray:
    """Per-sample weights ``(n,)``: inverse class frequency (mean 1) or all ones."""
    if mode != "balanced":
        return np.ones(len(y))
    counts = np.bincount(y, minlength=n_classes).astype(float)
    per_class = len(y) / (np.maximum(counts, 1) * (counts > 0).sum())
    return per_class[y]


@lru_cache(maxsize=1)
def cuda_visible() -> bool:
    """True when an NVIDIA GPU answers ``nvidia-smi -L``."""
    if not shutil.which("nvidia-smi"):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


# --- XGBoost -----------------------------------------------------------------------------

@dataclass(frozen=True)
class XGBoostOptions:
    n_estimators: int = option(600, ge=1, le=100_000, doc="boosting rounds", space=ints(100, 1000, log=True))
    max_depth: int = option(6, ge=1, le=64, doc="tree depth", space=ints(2, 10))
    learning_rate: float = option(0.1, gt=0.0, le=1.0, doc="boosting learning rate",
                                  space=floats(0.01, 0.3, log=True))
    early_stopping: int = option(50, ge=0, le=1_000_000, doc="stop after this many rounds without validation improvement; "
                                               "0: no early stopping, the validation images are trained on too")
    subsample: float = option(1.0, gt=0.0, le=1.0, doc="share of the training images each tree sees",
                              space=floats(0.5, 1.0))
    colsample_bytree: float = option(1.0, gt=0.0, le=1.0, doc="share of the features each tree sees",
                                     space=floats(0.2, 1.0))
    min_child_weight: float = option(1.0, ge=0.0, le=1000.0, doc="least (weighted) images in a leaf",
                                     space=floats(0.5, 20.0, log=True))


def _xgb_fit(o: XGBoostOptions, s: ClassifierSettings, x, y, w, x_val, y_val, n_classes):
    from xgboost import XGBClassifier

    has_val = x_val is not None and len(x_val) > 0
    if has_val and o.early_stopping == 0:
        # A small validation split (10% of a few hundred images per class) stops boosting
        # early on noise; with no stopping those images are better spent on training.
        mode = "none" if np.allclose(w, 1.0) else "balanced"
        x, y = np.concatenate([x, x_val]), np.concatenate([y, y_val])
        w, has_val = class_weights(y, n_classes, mode), False
    model = XGBClassifier(
        n_estimators=o.n_estimators, max_depth=o.max_depth, learning_rate=o.learning_rate,
        subsample=o.subsample, colsample_bytree=o.colsample_bytree, min_child_weight=o.min_child_weight,
        tree_method="hist", device="cuda" if cuda_visible() else "cpu", random_state=s.seed,
        n_jobs=s.jobs, objective="multi:softprob", num_class=n_classes, eval_metric="mlogloss",
        early_stopping_rounds=o.early_stopping if has_val else None)
    eval_set = [(x_val, y_val)] if has_val else None
    model.fit(x, y, sample_weight=w, eval_set=eval_set, verbose=False)
    return model


def _xgb_save(model, folder: Path) -> None:
    model.save_model(folder / "xgboost.json")


def _xgb_load(folder: Path):
    return load_xgboost(folder / "xgboost.json")


def _xgb_importances(model, n: int) -> np.ndarray:
    gain = model.get_booster().get_score(importance_type="gain")
    out = np.zeros(n)
    for key, value in gain.items():
        out[int(key[1:])] = value
    return out


CLASSIFIERS.register("xgboost", Classifier(
    "xgboost", "gradient-boosted trees (hist; CUDA when a GPU is visible), early stopping on validation",
    _xgb_fit, _xgb_save, _xgb_load, XGBoostOptions, _xgb_importances, ("xgboost", "numpy"),
    ("n_estimators", "max_depth", "learning_rate", "early_stopping"),
    trains_on_val=lambda o: o.early_stopping == 0))


# --- scikit-learn (saved with skops) --------------------------------------------------------

def _sk_pipeline(estimator, scale: bool = True):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    steps = [SimpleImputer(strategy="median", keep_empty_features=True)]
    if scale:
        steps.append(StandardScaler())
    return make_pipeline(*steps, estimator)


def _sk_fit(build: Callable, prepare: Callable | None = None, scale: bool = True) -> Callable:
    def fit(o, s, x, y, w, x_val, y_val, n_classes):
        import inspect

        if prepare is not None:  # options chosen on the data (e.g. C on the validation split)
            o, x, y, w = prepare(o, s, x, y, w, x_val, y_val, n_classes)
        estimator = build(o, s)
        pipe = _sk_pipeline(estimator, scale)
        weighted = "sample_weight" in inspect.signature(estimator.fit).parameters
        pipe.fit(x, y, **({f"{pipe.steps[-1][0]}__sample_weight": w} if weighted else {}))
        return pipe
    return fit


SKOPS_FILE = "classifier.skops"

#: Types every saved scikit-learn classifier holds: containers and numpy data, and the
#: imputer + scaler pipeline in front of the estimator. An entry adds its own.
SKLEARN_PIPELINE_TYPES = frozenset({
    "builtins.dict", "builtins.list", "builtins.tuple", "builtins.str", "builtins.int", "builtins.float",
    "builtins.bool", "builtins.NoneType", "numpy.ndarray", "numpy.dtype", "numpy.float64", "numpy.float32",
    "numpy.int64", "numpy.int32", "sklearn.pipeline.Pipeline", "sklearn.impute._base.SimpleImputer",
    "sklearn.preprocessing._data.StandardScaler"})


def _sk_save(name: str, trusted: frozenset[str]) -> Callable:
    def save(model, folder: Path) -> None:
        import skops.io as sio

        sio.dump(model, folder / SKOPS_FILE)
        types = skops_types(folder / SKOPS_FILE)
        foreign = sorted(types - trusted)
        if foreign:  # a file bmbench could not load again: say so now, not at predict time
            raise BmbenchError(f"classifier {name} saves the type(s) {', '.join(foreign)} that it does not "
                               "declare; add them to sklearn_classifier(..., trusted=...)")
        (folder / "classifier.json").write_text(json.dumps({"types": sorted(types)}))
    return save


def _sk_verify(trusted: frozenset[str]) -> Callable:
    def verify(folder: Path) -> None:
        check_skops(folder / SKOPS_FILE, trusted)
    return verify


def _sk_load(trusted: frozenset[str]) -> Callable:
    def load(folder: Path):
        return load_skops(folder / SKOPS_FILE, trusted)
    return load


@dataclass(frozen=True)
class RandomForestOptions:
    n_estimators: int = option(600, ge=1, le=100_000, doc="trees", space=ints(100, 1000, log=True))
    max_depth: Optional[int] = option(None, ge=1, le=1024, doc="tree depth (null: grow until pure)",
                                      space=ints(4, 64, log=True))


@dataclass(frozen=True)
class LogisticRegressionOptions:
    C: float = option(1.0, gt=0.0, doc="inverse L2 regularisation strength", space=floats(1e-3, 1e3, log=True))
    max_iter: int = option(5000, ge=10, le=1_000_000, doc="solver iterations")


@dataclass(frozen=True)
class SVMOptions:
    C: float = option(1.0, gt=0.0, doc="regularisation", space=floats(1e-2, 1e3, log=True))


def _random_forest(o: RandomForestOptions, s: ClassifierSettings):
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=o.n_estimators, max_depth=o.max_depth, random_state=s.seed,
                                  n_jobs=s.jobs)


def _logistic(o: LogisticRegressionOptions, s: ClassifierSettings):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=o.C, max_iter=o.max_iter)


def _svm(o: SVMOptions, s: ClassifierSettings):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC
    return CalibratedClassifierCV(SVC(C=o.C, kernel="rbf", random_state=s.seed), ensemble=False)


SKLEARN_LIBRARIES = ("scikit-learn", "skops", "numpy")


def sklearn_classifier(name: str, description: str, build: Callable, options: type = NoOptions,
                       legacy: tuple[str, ...] = (), trusted: tuple[str, ...] = (),
                       prepare: Callable | None = None, scale: bool = True) -> Classifier:
    """A :class:`Classifier` for any scikit-learn estimator ``build(options, settings)``:
    median imputation and (``scale``) standardisation in front, sample weights passed to
    the estimator, saved with skops. ``trusted``: the exact type names (``module.Name``) the
    fitted estimator adds to :data:`SKLEARN_PIPELINE_TYPES` in its saved file (its own class
    and what it holds, e.g. ``sklearn.tree._tree.Tree``); only those are ever loaded, and
    saving a type not declared is an error. ``prepare(options, settings, x, y, w, x_val,
    y_val, n_classes) -> (options, x, y, w)`` may choose options on the data first (a probe's
    C on the validation split). For plug-ins:
    ``CLASSIFIERS.register(name, sklearn_classifier(..., trusted=(...)))``."""
    allowed = SKLEARN_PIPELINE_TYPES | frozenset(trusted)
    return Classifier(name, description, _sk_fit(build, prepare, scale), _sk_save(name, allowed),
                      _sk_load(allowed), options, libraries=SKLEARN_LIBRARIES, legacy=legacy, trusted=allowed,
                      verify=_sk_verify(allowed))


for _name, _desc, _build, _options, _legacy, _trusted in (
        ("random_forest", "random forest", _random_forest, RandomForestOptions, ("n_estimators",),
         ("sklearn.ensemble._forest.RandomForestClassifier", "sklearn.tree._classes.DecisionTreeClassifier",
          "sklearn.tree._tree.Tree")),
        ("logistic_regression", "multinomial logistic regression on standardised features", _logistic,
         LogisticRegressionOptions, ("C",), ("sklearn.linear_model._logistic.LogisticRegression",)),
        ("svm", "RBF support-vector machine, probabilities calibrated by cross-validation", _svm,
         SVMOptions, ("C",), ("sklearn.calibration.CalibratedClassifierCV", "sklearn.calibration._CalibratedClassifier",
                              "sklearn.calibration._SigmoidCalibration", "sklearn.svm._classes.SVC"))):
    CLASSIFIERS.register(_name, sklearn_classifier(_name, _desc, _build, _options, _legacy, _trusted))


# --- probes on frozen embeddings (the foundation-model protocol) ----------------------------

#: C values tried by ``logistic`` with ``C: validation`` (inverse L2 strength, on standardised inputs).
PROBE_C_GRID = (1e-4, 3e-4, 1e-3, 3e-3, 1e-2, 3e-2, 0.1, 0.3, 1.0, 3.0, 10.0)


@dataclass(frozen=True)
class LogisticProbeOptions:
    C: Union[float, Literal["validation", "dinobloom"]] = option(
        "validation", gt=0.0,
        doc="inverse L2 strength: a number; validation = the value of PROBE_C_GRID with the lowest "
            "log-loss on the validation split, then refit on training + validation images; "
            "dinobloom = DinoBloom's fixed 100 / (dimensions x classes)")
    max_iter: int = option(1000, ge=10, le=1_000_000, doc="L-BFGS iterations")


@dataclass(frozen=True)
class KNNOptions:
    k: int = option(20, ge=1, le=10_000, doc="neighbours (DinoBloom reports k = 1 and 20)")
    metric: Literal["euclidean", "cosine"] = option("euclidean", doc="distance between embeddings")
    weights: Literal["uniform", "distance"] = option("uniform", doc="neighbour votes: equal or 1/distance")


def _logistic_probe(o: LogisticProbeOptions, s: ClassifierSettings):
    from sklearn.linear_model import LogisticRegression

    return LogisticRegression(C=float(o.C), solver="lbfgs", max_iter=o.max_iter)


def choose_c(o: LogisticProbeOptions, s: ClassifierSettings, x, y, w, x_val, y_val, n_classes):
    """Resolve ``C``: DinoBloom's rule, or the grid value with the lowest weighted log-loss on
    the validation images (then those images join training). Without validation images
    ``validation`` falls back to DinoBloom's rule, with a warning."""
    import logging
    from dataclasses import replace

    log = logging.getLogger("bmbench.run")
    if isinstance(o.C, float):
        return o, x, y, w
    has_val = x_val is not None and len(x_val) > 0 and len(np.unique(y_val)) > 1
    if o.C == "dinobloom" or not has_val:
        if o.C == "validation":
            log.warning("logistic: C: validation needs validation images (split.val > 0); using "
                        "DinoBloom's 100 / (dimensions x classes)")
        c = 100.0 / (x.shape[1] * n_classes)
        log.info("logistic: C = 100 / (%d dimensions x %d classes) = %.3g", x.shape[1], n_classes, c)
        return replace(o, C=c), x, y, w
    from sklearn.metrics import log_loss

    mode = "none" if np.allclose(w, 1.0) else "balanced"
    w_val = class_weights(y_val, n_classes, mode)
    prefix = _sk_pipeline(None)[:-1].fit(x)  # imputation and scaling, fitted once
    xt, xvt = prefix.transform(x), prefix.transform(x_val)
    model = _logistic_probe(replace(o, C=PROBE_C_GRID[0]), s)
    model.set_params(warm_start=True)  # each C starts from the previous (ascending) C's optimum
    losses = []
    for c in PROBE_C_GRID:
        model.set_params(C=c).fit(xt, y, sample_weight=w)
        proba = np.zeros((len(x_val), n_classes))
        proba[:, model.classes_] = model.predict_proba(xvt)
        proba = np.clip(proba, 1e-12, 1)
        losses.append(log_loss(y_val, proba / proba.sum(1, keepdims=True), sample_weight=w_val,
                               labels=list(range(n_classes))))
    best = PROBE_C_GRID[int(np.argmin(losses))]
    log.info("logistic: C = %g (lowest validation log-loss %.4f over %d values); refit on training + "
             "validation images", best, min(losses), len(PROBE_C_GRID))
    x, y = np.concatenate([x, x_val]), np.concatenate([y, y_val])
    return replace(o, C=best), x, y, class_weights(y, n_classes, mode)


def _knn(o: KNNOptions, s: ClassifierSettings):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=o.k, metric=o.metric, weights=o.weights,
                                algorithm="brute", n_jobs=s.jobs)


def _knn_prepare(o: KNNOptions, s: ClassifierSettings, x, y, w, x_val, y_val, n_classes):
    """k is capped at the number of training images."""
    from dataclasses import replace

    return (replace(o, k=len(x)) if o.k > len(x) else o), x, y, w


CLASSIFIERS.register("logistic", sklearn_classifier(
    "logistic", "linear probe: multinomial L-BFGS logistic regression, C chosen on validation "
    "or DinoBloom's 100/(dims x classes)", _logistic_probe, LogisticProbeOptions,
    trusted=("sklearn.linear_model._logistic.LogisticRegression",), prepare=choose_c))
CLASSIFIERS.register("knn", sklearn_classifier(
    "knn", "k-nearest-neighbour probe on raw (unscaled) inputs, euclidean or cosine", _knn, KNNOptions,
    trusted=("sklearn.neighbors._classification.KNeighborsClassifier",), prepare=_knn_prepare, scale=False))
