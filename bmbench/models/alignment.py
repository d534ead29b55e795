"""Feature alignment to another lab's unlabelled images (``adapt.transductive`` of the tabular families).

A tabular model keeps :class:`FeatureStats` of the features it was trained on: the mean and
standard deviation of every column and the correlation matrix of the standardised columns
(``feature_stats.npz`` beside the classifier). Given the feature matrix of unlabelled images of
another lab, :func:`fit_alignment` returns a map that brings their features onto the training
features' statistics; the classifier then predicts the mapped features, unchanged:

* ``standardize``: every column z-scored with the target images' own mean and standard
  deviation, then given the training mean and standard deviation (per-lab standardisation:
  the same as standardising each lab by its own statistics and training on that, for
  classifiers that a per-column affine map does not change, such as trees).
* ``coral`` (CORAL, Sun et al. 2016, in the target-to-source direction): the target images'
  standardised features are whitened with their own correlation matrix and re-coloured with
  the training features' one, both regularised with the identity (``C + I``, as in the paper),
  then given the training mean and standard deviation: second-order statistics aligned too.

Missing values stay missing: they are filled with the column mean for the matrix product
and put back afterwards; rows of unreadable images stay all NaN. Constant columns keep
their training value. Labels are never an input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

STATS_FILE = "feature_stats.npz"
MODES = ("standardize", "coral")


@dataclass(frozen=True)
class FeatureStats:
    """``mean``, ``std`` ``float64[d]`` and ``corr`` ``float64[d, d]`` of a feature matrix."""

    mean: np.ndarray
    std: np.ndarray
    corr: np.ndarray

    @classmethod
    def of(cls, x: np.ndarray) -> "FeatureStats":
        """The statistics of the readable rows of ``x`` ``(n, d)`` (NaN entries ignored)."""
        x = np.asarray(x, np.float64)
        x = x[~np.isnan(x).all(axis=1)]
        if not len(x):
            raise ValueError("no readable image to compute feature statistics on")
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(x, axis=0))
            std = np.nan_to_num(np.nanstd(x, axis=0))
        z = _filled((x - mean) / _safe(std))
        return cls(mean, std, z.T @ z / len(z))

    def save(self, folder: Path) -> None:
        np.savez(Path(folder) / STATS_FILE, mean=self.mean, std=self.std, corr=self.corr.astype(np.float32))

    @classmethod
    def load(cls, folder: Path, d: int) -> "FeatureStats":
        """The statistics saved in ``folder`` for ``d`` features (a one-line error when they
        are missing or damaged)."""
        from ..core.errors import BmbenchError
        from ..core.loaders import load_npz

        path = Path(folder) / STATS_FILE
        if not path.exists():
            raise BmbenchError(f"{folder}: this model was saved without the statistics of its training "
                               f"features ({STATS_FILE}), which standardize and coral need; rerun its recipe")
        z = load_npz(path, {"mean": ("f", (d,)), "std": ("f", (d,)), "corr": ("f", (d, d))})
        return cls(z["mean"].astype(np.float64), z["std"].astype(np.float64), z["corr"].astype(np.float64))


@dataclass(frozen=True)
class Alignment:
    """``x -> ((x - mean) / std) @ transform * source.std + source.mean`` (NaN kept);
    ``transform`` None: the identity (``standardize``)."""

    mode: str
    mean: np.ndarray
    std: np.ndarray
    transform: np.ndarray | None
    source: FeatureStats
    n_images: int

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, np.float64)
        missing = np.isnan(x)
        z = (x - self.mean) / _safe(self.std)
        if self.transform is not None:
            z = _filled(z) @ self.transform
        out = z * self.source.std + self.source.mean
        out[missing] = np.nan
        return out.astype(np.float32)

    def record(self) -> dict:
        return {"mode": self.mode, "n_images": self.n_images, "n_features": int(len(self.mean))}


def fit_alignment(x: np.ndarray, source: FeatureStats, mode: str) -> Alignment:
    """The map of ``mode`` (``standardize`` | ``coral``) from the unlabelled features ``x``
    ``(n, d)`` onto ``source``. ``ValueError`` for another mode or no readable row."""
    if mode not in MODES:
        raise ValueError(f"tabular models adapt with {' or '.join(MODES)}, not {mode}")
    target = FeatureStats.of(x)
    transform = None
    if mode == "coral":
        eye = np.eye(len(target.mean))
        transform = _power(target.corr + eye, -0.5) @ _power(source.corr + eye, 0.5)
    n = int((~np.isnan(np.asarray(x, np.float64)).all(axis=1)).sum())
    return Alignment(mode, target.mean, target.std, transform, source, n)


def _power(c: np.ndarray, p: float) -> np.ndarray:
    """``c ** p`` of the symmetric positive definite matrix ``c``."""
    w, v = np.linalg.eigh((c + c.T) / 2)
    return (v * np.maximum(w, 1e-12) ** p) @ v.T


def _safe(std: np.ndarray) -> np.ndarray:
    return np.where(std > 0, std, 1.0)


def _filled(z: np.ndarray) -> np.ndarray:
    return np.nan_to_num(z, nan=0.0, posinf=0.0, neginf=0.0)


def adapted_copy(model, features, mode: str):
    """A copy of the tabular ``model`` (a dataclass with ``stats``, ``alignment``, ``names``,
    ``source`` and ``cross_fit``) that maps its features with the alignment of ``mode`` fitted
    on the unlabelled features ``features()`` (called once the training statistics are at
    hand); ``model`` itself is unchanged."""
    import dataclasses

    from ..core.errors import BmbenchError

    stats = model.stats if model.stats is not None else FeatureStats.load(model.source, len(model.names))
    try:
        alignment = fit_alignment(features(), stats, mode)
    except ValueError as exc:
        raise BmbenchError(f"transductive {mode}: {exc}") from None
    return dataclasses.replace(model, stats=stats, alignment=alignment, cross_fit=None)
