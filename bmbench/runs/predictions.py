"""``predictions.csv``: the one per-image table every run (and evaluation) writes and every
view reads: ``path, true_label, predicted_label[, fold], p_<class>...``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import write_text
from ..core.errors import StoreError

FILE = "predictions.csv"


def predictions_frame(relpaths, classes, y: np.ndarray, proba: np.ndarray,
                      fold_of: np.ndarray | None = None) -> pd.DataFrame:
    """The table of ``n`` scored images: relative ``relpaths`` ``(n,)``, integer true labels
    ``y`` ``(n,)`` indexing ``classes``, probabilities ``proba`` ``(n, len(classes))`` (NaN
    rows: unreadable, predicted label empty) and, for k-fold runs, ``fold_of`` ``(n,)``."""
    names = np.array(classes)
    ok = np.isfinite(proba).all(axis=1)
    out = pd.DataFrame({"path": np.asarray(relpaths), "true_label": names[y]})
    out["predicted_label"] = np.where(ok, names[np.nan_to_num(proba, nan=-1).argmax(axis=1)], "")
    if fold_of is not None:
        out["fold"] = fold_of
    for j, c in enumerate(classes):
        out[f"p_{c}"] = proba[:, j]
    return out


def write_predictions(folder: Path, frame: pd.DataFrame) -> Path:
    path = Path(folder) / FILE
    write_text(path, frame.to_csv(index=False))
    return path


def read_scored(folder: Path, classes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(paths, y, proba)`` of the images a run scored (unreadable rows left out), from
    ``folder/predictions.csv``; a :class:`StoreError` naming the file when it is missing or
    damaged."""
    path = Path(folder) / FILE
    classes = list(classes)
    columns = [f"p_{c}" for c in classes]
    if not path.is_file():
        raise StoreError(f"{path}: no predictions.csv; paired tests need the per-image predictions")
    try:
        frame = pd.read_csv(path, dtype={"path": str, "true_label": str, "predicted_label": str},
                            keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in columns})
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: cannot read predictions ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("path", "true_label", *columns) if c not in frame.columns]
    if missing:
        raise StoreError(f"{path}: damaged predictions (missing columns {', '.join(missing)})")
    proba = frame[columns].to_numpy(dtype=np.float64)
    ok = np.isfinite(proba).all(axis=1)
    labels = frame["true_label"].to_numpy()[ok]
    y = pd.Index(classes).get_indexer(labels).astype(np.int64)
    if (y < 0).any():
        unknown = sorted(set(labels[y < 0]))
        raise StoreError(f"{path}: true labels {unknown[:3]} are not among the run's classes")
    return frame["path"].to_numpy()[ok], y, proba[ok]
