"""Read a CSV manifest: ``path,label[,patient][,split]`` with paths relative to the CSV."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

import pandas as pd

from ..core.errors import BmbenchError, DatasetError
from ..core.paths import inside


def read_manifest(csv_path) -> tuple[Path, pd.DataFrame]:
    """Return ``(root, rows)`` where root is the CSV's folder; every path must exist inside it,
    symbolic links resolved (an absolute path, ``..`` or a link that leads out is refused
    with one line naming the CSV line)."""
    if csv_path is None:
        raise DatasetError("dataset.root is required for dataset kind 'manifest': the CSV file")
    csv_path = Path(csv_path)
    if not csv_path.is_file():
        raise DatasetError(f"{csv_path}: manifest CSV not found (dataset.root must be the CSV file)")
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        raise DatasetError(f"{csv_path}: cannot read manifest CSV ({str(exc).splitlines()[0]})") from None
    missing = {"path", "label"} - set(frame.columns)
    if missing:
        raise DatasetError(f"{csv_path}: manifest needs columns path,label[,patient][,split]; "
                           f"missing {', '.join(sorted(missing))}")
    root = csv_path.parent.resolve()
    rows = pd.DataFrame({"relpath": [_inside(root, p, csv_path, i) for i, p in enumerate(frame["path"], 2)],
                         "label": frame["label"].str.strip()})
    if (rows["label"] == "").any():
        line = int((rows["label"] == "").to_numpy().argmax()) + 2
        raise DatasetError(f"{csv_path}:{line}: empty label")
    rows["group"] = _optional(frame, "patient")
    rows["split"] = _optional(frame, "split")
    return root, rows


def _optional(frame: pd.DataFrame, column: str) -> list:
    if column not in frame:
        return [None] * len(frame)
    return [v.strip() or None for v in frame[column]]


def _inside(root: Path, raw: str, csv_path: Path, line: int) -> str:
    rel = PurePosixPath(raw.strip().replace("\\", "/"))
    if not raw.strip():
        raise DatasetError(f"{csv_path}:{line}: empty path")
    try:
        full = None if rel.is_absolute() else inside(root, rel)
    except (BmbenchError, ValueError, OSError):
        full = None
    if full is None or full == root:
        raise DatasetError(f"{csv_path}:{line}: path {raw!r} is outside the manifest's folder; "
                           "manifest paths must be relative and stay inside it (links included)")
    if not full.is_file():
        raise DatasetError(f"{csv_path}:{line}: image {raw!r} does not exist")
    return rel.as_posix()
