"""``predictions.csv``: the one per-image table every run (and evaluation) writes and every
view reads: ``path, true_label, predicted_label[, fold], p_<class>...``."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..core.atomic import write_text
from ..core.errors import StoreError

if TYPE_CHECKING:
    import pandas as pd

FILE = "predictions.csv"
#: The validation images' held-out probabilities (same columns), for ensemble weights.
VALIDATION_FILE = "validation.csv"


def predictions_frame(relpaths, classes, y: np.ndarray, proba: np.ndarray,
                      fold_of: np.ndarray | None = None) -> "pd.DataFrame":
    """The table of ``n`` scored images: relative ``relpaths`` ``(n,)``, integer true labels
    ``y`` ``(n,)`` indexing ``classes``, probabilities ``proba`` ``(n, len(classes))`` (NaN
    rows: unreadable, predicted label empty) and, for k-fold runs, ``fold_of`` ``(n,)``."""
    import pandas as pd

    names = np.array(classes)
    ok = np.isfinite(proba).all(axis=1)
    out = pd.DataFrame({"path": np.asarray(relpaths), "true_label": names[y]})
    out["predicted_label"] = np.where(ok, names[np.nan_to_num(proba, nan=-1).argmax(axis=1)], "")
    if fold_of is not None:
        out["fold"] = fold_of
    for j, c in enumerate(classes):
        out[f"p_{c}"] = proba[:, j]
    return out


def write_predictions(folder: Path, frame: "pd.DataFrame", name: str = FILE) -> Path:
    path = Path(folder) / name
    write_text(path, frame.to_csv(index=False))
    return path


def read_scored(folder: Path, classes, name: str = FILE) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(paths, y, proba)`` of the images a run scored (unreadable rows left out), from
    ``folder/predictions.csv``; a :class:`StoreError` naming the file when it is missing or
    damaged. Read with :mod:`csv` (the leaderboard reads every run's file and must not wait
    for pandas): ``paths`` (n,) object, ``y`` (n,) int64 indexing ``classes``, ``proba``
    (n, k) float64 parsed as pandas parses them (empty, ``nan``, ``NaN``: missing)."""
    path = Path(folder) / name
    classes = list(classes)
    columns = [f"p_{c}" for c in classes]
    if not path.is_file():
        raise StoreError(f"{path}: no {name}; paired tests need the per-image predictions")
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            rows = [r for r in csv.reader(fh) if r]
    except (OSError, ValueError, csv.Error) as exc:
        raise StoreError(f"{path}: cannot read predictions ({str(exc).splitlines()[0]})") from None
    header = rows[0] if rows else []
    missing = [c for c in ("path", "true_label", *columns) if c not in header]
    if missing:
        raise StoreError(f"{path}: damaged predictions (missing columns {', '.join(missing)})")
    bad = next((i for i, r in enumerate(rows) if len(r) != len(header)), None)
    if bad is not None:
        raise StoreError(f"{path}: cannot read predictions (line {bad + 1} has {len(rows[bad])} fields, "
                         f"the header {len(header)})")
    at = [header.index(c) for c in columns]
    try:
        proba = np.array([[_probability(r[j]) for j in at] for r in rows[1:]], dtype=np.float64)
    except ValueError as exc:
        raise StoreError(f"{path}: damaged predictions ({exc})") from None
    proba = proba.reshape(len(rows) - 1, len(columns))
    ok = np.isfinite(proba).all(axis=1)
    body = [r for r, keep in zip(rows[1:], ok) if keep]
    at_path, at_label = header.index("path"), header.index("true_label")
    labels = np.array([r[at_label] for r in body], dtype=object)
    index = {c: i for i, c in reversed(list(enumerate(classes)))}
    y = np.array([index.get(label, -1) for label in labels], dtype=np.int64)
    if (y < 0).any():
        unknown = sorted(set(labels[y < 0]))
        raise StoreError(f"{path}: true labels {unknown[:3]} are not among the run's classes")
    paths = np.array([r[at_path] for r in body], dtype=object)
    return paths, y, proba[ok]


def _probability(text: str) -> float:
    return float("nan") if text in ("", "nan", "NaN") else float(text)
