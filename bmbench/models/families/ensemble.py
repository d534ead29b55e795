"""``ensemble``: a weighted combination of stored runs' probabilities.

The members are stored runs; this module never reads them. :mod:`bmbench.runs.ensemble`
reads each member's held-out validation probabilities (``validation.csv``), gives them to
:func:`fit_combiners` (pure numpy/scikit-learn), and only then reads the members' test
predictions to score the result. :class:`EnsembleModel` predicts new images by asking its
members (anything with ``predict_proba(paths) -> float64[n, k]``, handed in by the run
store) and combining their probabilities.

Methods (the weights are fitted on the validation images only, never on test images):

- ``mean``: the plain average of the members' probabilities.
- ``select``: greedy ensemble selection with replacement (Caruana et al. 2004, as in
  AutoGluon's ``WeightedEnsemble``): start empty, add ``rounds`` times the member whose
  addition gives the lowest validation log loss of the running average; the weights are the
  counts divided by ``rounds``.
- ``stack``: a multinomial logistic regression on the members' log-probabilities; its
  regularisation ``C`` is chosen by stratified cross-validation on the validation images,
  then it is refitted on all of them.

Saved as ``ensemble.json`` (method, member ids, weights, stacker coefficients): no pickle.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np

from ...config.schema import option
from ...core.errors import RecipeError, StoreError
from ...core import shapes
from ...core.untrusted import damaged, read_json
from ..registry import Family, Subset, register_family

METHODS = ("mean", "select", "stack")
EPS = 1e-7
STACK_C = (0.01, 0.1, 1.0, 10.0)
#: Newton steps on the few stacking features: a few iterations where lbfgs needs hundreds
SOLVER = "newton-cholesky"
FILE = "ensemble.json"


@dataclass(frozen=True)
class EnsembleOptions:
    members: tuple[str, ...] = option((), doc="ids of the stored member runs (set by `bmbench ensemble`)")
    method: Literal["mean", "select", "stack"] = option(
        "select", doc="mean: plain average; select: greedy selection with replacement on the "
                      "validation probabilities (Caruana 2004); stack: logistic regression on them")
    rounds: int = option(25, ge=1, le=10_000, doc="select: greedy rounds (weights are multiples of 1/rounds)")


@dataclass
class Combiner:
    """How member probabilities become one: ``weights`` ``float[m]`` (mean, select) or a
    stacker (``coef`` ``float[k, m*k]``, ``intercept`` ``float[k]``) on their log-probabilities."""

    method: str
    weights: np.ndarray
    coef: np.ndarray | None = None
    intercept: np.ndarray | None = None
    C: float | None = None

    def combine(self, probas: list[np.ndarray]) -> np.ndarray:
        """``float64[n, k]`` from the members' ``probas`` (each ``[n, k]``, in member order);
        a row that is NaN in any member is NaN."""
        stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probas])  # [m, n, k]
        bad = ~np.isfinite(stacked).all(axis=(0, 2))
        if self.method == "stack":
            z = _stack_features(np.nan_to_num(stacked, nan=1.0 / stacked.shape[2])) @ self.coef.T + self.intercept
            out = _softmax(z)
        else:
            out = np.tensordot(self.weights, stacked, axes=1)
        out[bad] = np.nan
        return out

    def to_dict(self) -> dict:
        out = {"method": self.method, "weights": [float(w) for w in self.weights]}
        if self.coef is not None:
            out.update(coef=self.coef.tolist(), intercept=self.intercept.tolist(), C=self.C)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> "Combiner":
        coef = np.asarray(d["coef"], dtype=np.float64) if d.get("coef") is not None else None
        intercept = np.asarray(d["intercept"], dtype=np.float64) if d.get("intercept") is not None else None
        return cls(d["method"], np.asarray(d["weights"], dtype=np.float64), coef, intercept, d.get("C"))


def fit_combiner(method: str, probas: list[np.ndarray], y: np.ndarray, seed: int = 0,
                 rounds: int = 25) -> Combiner:
    """Fit ``method`` on the members' validation ``probas`` (each ``float[n, k]``, finite,
    same rows) with true classes ``y`` ``int[n]``."""
    m = len(probas)
    if method == "mean":
        return Combiner("mean", np.full(m, 1.0 / m))
    if method == "select":
        return Combiner("select", greedy_selection(probas, y, rounds))
    if method == "stack":
        return _fit_stack(probas, y, seed)
    raise RecipeError(f"model.method: unknown ensemble method {method!r}; known: {', '.join(METHODS)}")


def greedy_selection(probas: list[np.ndarray], y: np.ndarray, rounds: int = 25) -> np.ndarray:
    """Caruana's ensemble selection with replacement: ``float[m]`` weights (counts / rounds)
    minimising the validation log loss of the running average; ties go to the earlier member."""
    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probas])  # [m, n, k]
    rows = np.arange(len(y))
    counts = np.zeros(len(probas))
    total = np.zeros(stacked.shape[1:])
    for r in range(rounds):
        candidates = (total[None] + stacked) / (r + 1)  # [m, n, k]
        loss = -np.log(np.clip(candidates[:, rows, y], EPS, 1.0)).mean(axis=1)
        best = int(np.argmin(loss))
        counts[best] += 1
        total += stacked[best]
    return counts / rounds


def _stack_features(stacked: np.ndarray) -> np.ndarray:
    """``[m, n, k]`` probabilities -> ``[n, m*k]`` log-probabilities."""
    m, n, k = stacked.shape
    return np.log(np.clip(stacked, EPS, 1.0)).transpose(1, 0, 2).reshape(n, m * k)


def _softmax(z: np.ndarray) -> np.ndarray:
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def _fit_stack(probas: list[np.ndarray], y: np.ndarray, seed: int) -> Combiner:
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    stacked = np.stack([np.asarray(p, dtype=np.float64) for p in probas])
    x = _stack_features(stacked)
    k = stacked.shape[2]
    counts = np.bincount(y, minlength=k)
    folds = int(min(5, counts[counts > 0].min()))
    best_c = 1.0
    if folds >= 2:
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        scores = [cross_val_score(LogisticRegression(C=c, max_iter=2000, solver=SOLVER), x, y, cv=cv,
                                  scoring="neg_log_loss").mean() for c in STACK_C]
        best_c = STACK_C[int(np.argmax(scores))]
    lr = LogisticRegression(C=best_c, max_iter=2000, solver=SOLVER).fit(x, y)
    coef = np.zeros((k, x.shape[1]))
    intercept = np.full(k, -1e9)  # classes absent from the validation images are never predicted
    if len(lr.classes_) == 2:  # sklearn's binary form: one row for classes_[1]
        coef[lr.classes_[1]], intercept[lr.classes_[1]] = lr.coef_[0], lr.intercept_[0]
        coef[lr.classes_[0]], intercept[lr.classes_[0]] = 0.0, 0.0
    else:
        coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    # A stacker has no member weights; report each member's share of the coefficients' size.
    size = np.abs(coef).reshape(k, len(probas), k).sum(axis=(0, 2))
    return Combiner("stack", size / size.sum() if size.sum() > 0 else np.full(len(probas), 1 / len(probas)),
                    coef, intercept, best_c)


@dataclass
class EnsembleModel:
    """``members``: objects with ``predict_proba(paths) -> float64[n, k]`` (loaded stored
    runs, in member order); ``combiners``: one per fold of the members' split (k-fold runs:
    the mean of the folds' combinations)."""

    classes: tuple[str, ...]
    member_ids: list[str]
    combiners: list[Combiner]
    members: list = field(default_factory=list)

    def predict_proba(self, paths, ctx=None) -> np.ndarray:
        probas = [np.asarray(m.predict_proba(list(paths)), dtype=np.float64) for m in self.members]
        return np.mean([c.combine(probas) for c in self.combiners], axis=0)

    def details(self) -> dict:
        return {"members": list(self.member_ids), "combiners": [c.to_dict() for c in self.combiners]}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        (folder / FILE).write_text(json.dumps({"classes": list(self.classes), **self.details()}, indent=2))

    @classmethod
    def load(cls, folder: Path, members: list) -> "EnsembleModel":
        """The ensemble saved in ``folder`` with its loaded ``members`` (in saved order);
        ``ensemble.json`` is untrusted: every array must have the shape its members give it."""
        path = Path(folder) / FILE
        d = read_json(path, shapes.shape({"classes": list, "members": list, "combiners": list}),
                      "re-create it with bmbench ensemble")
        try:
            combiners = [Combiner.from_dict(c) for c in d["combiners"]]
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise damaged(path, f"cannot read the ensemble ({type(exc).__name__}: {exc})",
                          "re-create it with bmbench ensemble") from None
        problem = _shape_problem(combiners, len(d["members"]), len(d["classes"]))
        if problem or len(d["members"]) != len(members):
            raise damaged(path, problem or f"names {len(d['members'])} members, {len(members)} were loaded",
                          "re-create it with bmbench ensemble")
        return cls(tuple(map(str, d["classes"])), [str(m) for m in d["members"]], combiners, members)


def _shape_problem(combiners: list[Combiner], m: int, k: int) -> str | None:
    if not combiners:
        return "holds no combination"
    for c in combiners:
        arrays = [("weights", c.weights, (m,))]
        if c.method == "stack":
            arrays += [("coef", c.coef, (k, m * k)), ("intercept", c.intercept, (k,))]
        elif c.method not in METHODS:
            return f"unknown method {c.method!r}"
        for name, a, shape in arrays:
            if a is None or a.shape != shape or not np.isfinite(a).all():
                return f"its {name} is not {shape} finite numbers"
    return None


@register_family
class Ensemble(Family):
    name = "ensemble"
    train_keys = ()
    description = "weighted combination of stored runs (mean, greedy selection or stacking on validation)"
    Options = EnsembleOptions
    uses_image_size = False
    #: the run store loads the member runs and passes them to :meth:`EnsembleModel.load`
    stored_members = True

    @staticmethod
    def summary(opts: EnsembleOptions) -> str:
        return f"{opts.method} of {len(opts.members)} runs"

    @staticmethod
    def preflight(options) -> None:
        raise RecipeError("model.family: ensemble combines stored runs, it is not trained from a recipe; "
                          "make one with bmbench ensemble RUN RUN... [--method mean|select|stack]")

    def fit(self, train: Subset, val: Subset | None, ctx):
        self.preflight(ctx.options)

    @staticmethod
    def load(folder: Path, recipe, ctx):
        raise StoreError(f"{folder}: an ensemble is loaded with its member runs; use bmbench.runs.predict.load_run")
