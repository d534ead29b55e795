"""Classifiers for tabular inputs (handcrafted features, embeddings): one registry entry each.

Each entry builds an estimator from the recipe, fits it with per-sample class weights and an
optional validation set (for early stopping), and saves/loads it in a safe format: XGBoost's
own JSON, scikit-learn models with skops (never pickle).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Callable

import numpy as np

from ..core.errors import RecipeError
from ..core.registry import Registry


@dataclass(frozen=True)
class ClassifierSettings:
    """What every classifier may use: ``n_estimators`` rounds/trees, tree ``max_depth``,
    ``learning_rate`` (boosting), ``C`` (linear/SVM), ``early_stopping`` rounds."""

    n_estimators: int
    max_depth: int
    learning_rate: float
    C: float
    early_stopping: int
    seed: int
    jobs: int


@dataclass(frozen=True)
class Classifier:
    name: str
    description: str
    fit: Callable  # (settings, x, y, weights, x_val, y_val, n_classes) -> fitted
    save: Callable  # (fitted, folder) -> None
    load: Callable  # (folder) -> fitted
    importances: Callable = lambda fitted, n: None  # -> (n_features,) or None


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

def _xgb_fit(s: ClassifierSettings, x, y, w, x_val, y_val, n_classes):
    from xgboost import XGBClassifier

    has_val = x_val is not None and len(x_val) > 0
    model = XGBClassifier(
        n_estimators=s.n_estimators, max_depth=s.max_depth, learning_rate=s.learning_rate,
        tree_method="hist", device="cuda" if cuda_visible() else "cpu", random_state=s.seed,
        n_jobs=s.jobs, objective="multi:softprob", num_class=n_classes, eval_metric="mlogloss",
        early_stopping_rounds=s.early_stopping if has_val else None)
    eval_set = [(x_val, y_val)] if has_val else None
    model.fit(x, y, sample_weight=w, eval_set=eval_set, verbose=False)
    return model


def _xgb_save(model, folder: Path) -> None:
    model.save_model(folder / "xgboost.json")


def _xgb_load(folder: Path):
    from xgboost import XGBClassifier

    model = XGBClassifier()
    model.load_model(folder / "xgboost.json")
    return model


def _xgb_importances(model, n: int) -> np.ndarray:
    gain = model.get_booster().get_score(importance_type="gain")
    out = np.zeros(n)
    for key, value in gain.items():
        out[int(key[1:])] = value
    return out


CLASSIFIERS.register("xgboost", Classifier(
    "xgboost", "gradient-boosted trees (hist; CUDA when a GPU is visible), early stopping on validation",
    _xgb_fit, _xgb_save, _xgb_load, _xgb_importances))


# --- scikit-learn (saved with skops) --------------------------------------------------------

def _sk_pipeline(estimator):
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         StandardScaler(), estimator)


def _sk_fit(build: Callable) -> Callable:
    def fit(s, x, y, w, x_val, y_val, n_classes):
        pipe = _sk_pipeline(build(s))
        pipe.fit(x, y, **{f"{pipe.steps[-1][0]}__sample_weight": w})
        return pipe
    return fit


def _sk_save(model, folder: Path) -> None:
    import skops.io as sio

    sio.dump(model, folder / "classifier.skops")
    (folder / "classifier.json").write_text(json.dumps({"types": sio.get_untrusted_types(
        file=folder / "classifier.skops")}))


def _sk_load(folder: Path):
    import skops.io as sio

    untrusted = sio.get_untrusted_types(file=folder / "classifier.skops")
    allowed = [t for t in untrusted if t.startswith(("sklearn.", "numpy."))]
    if set(untrusted) - set(allowed):
        raise RecipeError(f"{folder / 'classifier.skops'}: contains types outside scikit-learn "
                          f"and numpy ({sorted(set(untrusted) - set(allowed))}); refusing to load")
    return sio.load(folder / "classifier.skops", trusted=allowed)


def _random_forest(s):
    from sklearn.ensemble import RandomForestClassifier
    return RandomForestClassifier(n_estimators=s.n_estimators, max_depth=None, random_state=s.seed,
                                  n_jobs=s.jobs)


def _logistic(s):
    from sklearn.linear_model import LogisticRegression
    return LogisticRegression(C=s.C, max_iter=5000)


def _svm(s):
    from sklearn.calibration import CalibratedClassifierCV
    from sklearn.svm import SVC
    return CalibratedClassifierCV(SVC(C=s.C, kernel="rbf", random_state=s.seed), ensemble=False)


for _name, _desc, _build in (
        ("random_forest", "random forest (n_estimators trees)", _random_forest),
        ("logistic_regression", "multinomial logistic regression (C) on standardised features", _logistic),
        ("svm", "RBF support-vector machine (C), probabilities calibrated by cross-validation", _svm)):
    CLASSIFIERS.register(_name, Classifier(_name, _desc, _sk_fit(_build), _sk_save, _sk_load))
