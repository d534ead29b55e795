"""Why a tabular classifier decided: per-image feature contributions and global importance.

* **TreeSHAP** (Lundberg et al. 2020) for XGBoost, from its own ``pred_contribs``: for
  every image, class and feature, the feature's additive share of that class's margin
  (log-odds); per image and class the contributions plus the bias column sum exactly to the
  margin XGBoost outputs (``output_margin=True``), which the tests check.
* **Permutation importance** for the other (scikit-learn) classifiers: the drop in macro-F1
  on labelled images when one feature's column is shuffled (mean over repeats); global,
  not per image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .tabular import readable

#: Shuffles per feature for permutation importance.
PERMUTATION_REPEATS = 5


@dataclass
class FeatureExplanation:
    """names: ``d`` feature names. values: ``float32[n, d]`` the images' features.
    proba: ``float64[n, n_classes]``. contributions: ``float64[n, n_classes, d + 1]``
    TreeSHAP margins, bias last, NaN rows for unreadable images (None: the classifier has
    no per-image contributions). importance: ``float64[d]`` permutation importance (only
    with labels and no contributions), else None."""

    names: list[str]
    values: np.ndarray
    proba: np.ndarray
    contributions: np.ndarray | None = None
    importance: np.ndarray | None = None

    @property
    def method(self) -> str:
        if self.contributions is not None:
            return "treeshap"
        return "permutation" if self.importance is not None else "none"

    def top_for_image(self, row: int, cls: int, k: int = 3) -> list[tuple[str, float, float]]:
        """The ``k`` features pushing image ``row`` most towards class ``cls``: ``(name,
        contribution in margin units, feature value)``, largest contribution first."""
        if self.contributions is None or not np.isfinite(self.contributions[row]).all():
            return []
        c = self.contributions[row, cls, :-1]
        order = np.argsort(-c, kind="stable")[:k]
        return [(self.names[j], float(c[j]), float(self.values[row, j])) for j in order]

    def class_importance(self, rows_by_class: dict[int, np.ndarray], k: int = 10) -> dict[int, list[tuple[str, float]]]:
        """Per class ``c``: the ``k`` features with the largest mean ``|contribution|`` to
        class ``c``'s margin over the images in ``rows_by_class[c]``."""
        out = {}
        if self.contributions is None:
            return out
        for cls, rows in rows_by_class.items():
            c = self.contributions[np.asarray(rows, int), cls, :-1]
            c = c[np.isfinite(c).all(axis=1)]
            if not len(c):
                continue
            mean = np.abs(c).mean(axis=0)
            order = np.argsort(-mean, kind="stable")[:k]
            out[cls] = [(self.names[j], float(mean[j])) for j in order]
        return out


def tree_contributions(fitted, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``float64[n, n_classes, d + 1]`` TreeSHAP contributions of an ``XGBClassifier`` on
    ``x`` ``(n, d)`` (bias last); NaN rows where ``x`` is unreadable."""
    import xgboost as xgb

    ok = readable(x)
    out = np.full((len(x), n_classes, x.shape[1] + 1), np.nan)
    if ok.any():
        booster = fitted.get_booster()
        contribs = booster.predict(xgb.DMatrix(x[ok]), pred_contribs=True, iteration_range=_rounds(fitted))
        out[ok] = contribs.reshape(int(ok.sum()), n_classes, x.shape[1] + 1)
    return out


def tree_margins(fitted, x: np.ndarray, n_classes: int) -> np.ndarray:
    """``float64[n, n_classes]`` XGBoost margins (log-odds before softmax) of ``x``."""
    import xgboost as xgb

    m = fitted.get_booster().predict(xgb.DMatrix(x), output_margin=True, iteration_range=_rounds(fitted))
    return np.asarray(m, np.float64).reshape(len(x), n_classes)


def _rounds(fitted) -> tuple[int, int]:
    best = getattr(fitted, "best_iteration", None)
    return (0, int(best) + 1) if best is not None else (0, 0)


def permutation_importance(fitted, x: np.ndarray, y: np.ndarray, seed: int = 0) -> np.ndarray:
    """``float64[d]``: mean drop in macro-F1 on ``(x, y)`` when each column is shuffled."""
    from sklearn.inspection import permutation_importance as sk_permutation

    ok = readable(x)
    result = sk_permutation(fitted, x[ok], y[ok], scoring="f1_macro", n_repeats=PERMUTATION_REPEATS,
                            random_state=seed, n_jobs=1)
    return np.asarray(result.importances_mean, np.float64)


def explain_matrix(classifier: str, fitted, x: np.ndarray, names: list[str], n_classes: int,
                   proba: np.ndarray, labels: np.ndarray | None = None) -> FeatureExplanation:
    """TreeSHAP for ``xgboost``; for the other classifiers permutation importance when
    ``labels`` (``int[n]``, -1 = unknown) are given."""
    explanation = FeatureExplanation(list(names), x, proba)
    if classifier == "xgboost":
        explanation.contributions = tree_contributions(fitted, x, n_classes)
    elif labels is not None and (np.asarray(labels) >= 0).sum() > 1:
        known = np.asarray(labels) >= 0
        explanation.importance = permutation_importance(fitted, x[known], np.asarray(labels)[known])
    return explanation
