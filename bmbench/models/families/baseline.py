"""``baseline``: logistic regression on downsampled pixels — the leaderboard's floor.

Each image is resized to ``pixels x pixels`` RGB, scaled to [0, 1], flattened to
``3 * pixels**2`` values and standardised. Any method that cannot beat this is not
learning morphology.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...config.schema import option
from ...core.loaders import RERUN, load_npz, read_model_json
from ...core.shapes import ListOf, integer
from ...core.untrusted import damaged
from ...config.space import choice, floats
from ...core.progress import progress
from ..registry import Family, Subset, register_family


@dataclass(frozen=True)
class BaselineOptions:
    pixels: int = option(16, ge=2, le=128, doc="side of the downsampled image, px", space=choice(8, 16, 24, 32))
    C: float = option(1.0, gt=0.0, doc="inverse L2 regularisation strength", space=floats(1e-3, 1e3, log=True))
    max_iter: int = option(2000, ge=10, le=10_000_000, doc="solver iterations")


def pixel_matrix(paths, ctx, pixels: int, label: str) -> np.ndarray:
    """``(n, 3 * pixels**2)`` float32 in [0, 1]; rows of unreadable images are NaN."""
    import cv2

    out = np.full((len(paths), 3 * pixels * pixels), np.nan, np.float32)
    with progress(len(paths), label) as bar:
        for i, path in enumerate(paths):
            image = ctx.images.read(path)
            if image is not None:
                small = cv2.resize(image, (pixels, pixels), interpolation=cv2.INTER_AREA)
                out[i] = small.reshape(-1) / 255.0
            bar.update(1)
    return out


@register_family
class Baseline(Family):
    name = "baseline"
    train_keys = ("class_weight", "jobs", "fraction")
    libraries = ("sklearn.linear_model",)
    description = "logistic regression on downsampled pixels (the floor)"
    Options = BaselineOptions

    @staticmethod
    def summary(opts: BaselineOptions) -> str:
        return f"{opts.pixels}x{opts.pixels} pixels, C {opts.C:g}"

    def fit(self, train: Subset, val: Subset | None, ctx) -> "BaselineModel":
        from sklearn.linear_model import LogisticRegression
        from sklearn.preprocessing import StandardScaler

        opts: BaselineOptions = ctx.options
        x = pixel_matrix(train.paths, ctx, opts.pixels, "reading train images")
        ok = ~np.isnan(x).any(axis=1)
        x, y = x[ok], train.labels[ok]
        scaler = StandardScaler().fit(x)
        weight = "balanced" if ctx.train.class_weight == "balanced" else None
        lr = LogisticRegression(C=opts.C, max_iter=opts.max_iter, class_weight=weight)
        lr.fit(scaler.transform(x), y)
        coef, intercept = _full_rank(lr, len(train.classes))
        return BaselineModel(train.classes, opts.pixels, scaler.mean_, scaler.scale_, coef, intercept)

    @staticmethod
    def load(folder: Path, recipe, ctx) -> "BaselineModel":
        return BaselineModel.load(folder)


def _full_rank(lr, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Coefficients as ``(n_classes, d)``, also for classes absent from training."""
    coef = np.full((n_classes, lr.coef_.shape[1]), 0.0)
    intercept = np.full(n_classes, -1e9)
    if len(lr.classes_) == 2:
        coef[lr.classes_[1]], intercept[lr.classes_[1]] = lr.coef_[0], lr.intercept_[0]
        coef[lr.classes_[0]], intercept[lr.classes_[0]] = 0.0, 0.0
        return coef, intercept
    coef[lr.classes_], intercept[lr.classes_] = lr.coef_, lr.intercept_
    return coef, intercept


@dataclass
class BaselineModel:
    classes: tuple[str, ...]
    pixels: int
    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray
    intercept: np.ndarray

    def predict_proba(self, paths, ctx) -> np.ndarray:
        x = pixel_matrix(paths, ctx, self.pixels, "predicting")
        ok = ~np.isnan(x).any(axis=1)
        z = ((x[ok] - self.mean) / self.scale) @ self.coef.T + self.intercept
        p = np.exp(z - z.max(axis=1, keepdims=True))
        out = np.full((len(x), len(self.classes)), np.nan)
        out[ok] = p / p.sum(axis=1, keepdims=True)
        return out

    def details(self) -> dict:
        return {"n_parameters": int(self.coef.size + self.intercept.size)}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "baseline.npz", mean=self.mean, scale=self.scale, coef=self.coef,
                 intercept=self.intercept)
        (folder / "baseline.json").write_text(json.dumps(
            {"classes": list(self.classes), "pixels": self.pixels}, indent=2))

    @classmethod
    def load(cls, folder: Path) -> "BaselineModel":
        meta = read_model_json(folder / "baseline.json", {"classes": ListOf(str, non_empty=True), "pixels": integer(2, 128)})
        n, d = len(meta["classes"]), 3 * meta["pixels"] ** 2
        z = load_npz(folder / "baseline.npz", {"mean": ("f", (d,)), "scale": ("f", (d,)), "coef": ("f", (n, d)),
                                                "intercept": ("f", (n,))})
        if not z["scale"].all():  # StandardScaler never saves a zero scale
            raise damaged(folder / "baseline.npz", "array 'scale' holds zeros", RERUN)
        return cls(tuple(meta["classes"]), meta["pixels"], z["mean"], z["scale"], z["coef"], z["intercept"])
