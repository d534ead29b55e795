"""The data set table: one row per image (path, label, optional group and predefined split)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import DatasetError

COLUMNS = ("relpath", "label", "group", "split")
#: Columns a loader may add: ``lab`` (kind ``merged``: the lab each image came from).
OPTIONAL_COLUMNS = ("lab",)
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class DatasetTable:
    """Images of one data set, decoded lazily.

    ``frame`` has columns ``path`` (absolute), ``relpath`` (to ``root``), ``label``,
    ``group`` (patient/smear id or None) and ``split`` (predefined train/val/test or None).
    ``classes`` is the ordered class list; ``fingerprint`` a hash of the sorted relative
    paths, file sizes and labels, so the same images and labels always give the same value.
    """

    kind: str
    root: Path
    frame: pd.DataFrame
    classes: tuple[str, ...]
    fingerprint: str

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def labels(self) -> np.ndarray:
        """``(n,)`` int class indices into :attr:`classes`."""
        return self.frame["label"].map({c: i for i, c in enumerate(self.classes)}).to_numpy(np.int64)

    @property
    def has_groups(self) -> bool:
        return bool(self.frame["group"].notna().any())

    @property
    def has_predefined_split(self) -> bool:
        return bool(self.frame["split"].notna().any())

    def class_counts(self) -> dict[str, int]:
        counts = self.frame["label"].value_counts()
        return {c: int(counts.get(c, 0)) for c in self.classes}


def make_table(kind: str, root: Path, rows: pd.DataFrame, classes: tuple[str, ...] | None = None,
               keep: tuple[str, ...] | None = None) -> DatasetTable:
    """Validate loader ``rows`` (columns ``relpath, label[, group][, split]``) into a table.

    ``classes`` fixes the class order (default: sorted labels); ``keep`` selects a subset.
    """
    key = rows.attrs.get("fingerprint_key")
    rows = rows.copy()
    for col in ("group", "split"):
        if col not in rows:
            rows[col] = None
    if rows.empty:
        raise DatasetError(f"{root}: no images found; check dataset.root and dataset.kind "
                           "(`bmbench datasets` lists the layouts)")
    found = sorted(rows["label"].unique())
    if keep:
        rows = _keep_classes(rows, keep, found, root)
    order = _class_order(rows, classes, keep)
    if len(order) < 2:
        raise DatasetError(f"{root}: found only {len(order)} class ({', '.join(order)}); "
                           "classification needs at least 2 class folders")
    bad = set(rows["split"].dropna()) - set(SPLITS)
    if bad:
        raise DatasetError(f"{root}: unknown split value(s) {sorted(bad)}; use train, val or test")
    twice = rows["relpath"].duplicated()
    if twice.any():  # one image in two rows could be in train and test at once
        raise DatasetError(f"{root}: image {rows['relpath'][twice].iloc[0]!r} is listed "
                           f"{int(rows['relpath'].isin(rows['relpath'][twice]).sum())} times; list every image once")
    rows = rows.sort_values("relpath", kind="stable").reset_index(drop=True)
    rows.insert(0, "path", join_paths(root, rows["relpath"]))
    columns = ["path", *COLUMNS, *[c for c in OPTIONAL_COLUMNS if c in rows]]
    return DatasetTable(kind, root, rows[columns], order, fingerprint(rows, root, key))


def join_paths(root: Path, relpaths) -> list[str]:
    """``str(root / rel)`` for every relative POSIX path, without a Path object per file
    where plain concatenation gives the same string (100,000 Path objects cost seconds and
    leave tens of MB of freed but still resident memory)."""
    base = str(root)
    prefix = "" if base == "." else base.rstrip("/") + "/"
    return [prefix + rel if _plain(rel) else str(root / rel) for rel in relpaths]


def _plain(rel: str) -> bool:
    """True when pathlib would keep ``rel`` as it is (no empty, ``.`` or absolute part)."""
    return bool(rel) and rel[0] != "/" and rel[-1] != "/" and "//" not in rel and not (
        rel == "." or rel.startswith("./") or rel.endswith("/.") or "/./" in rel)


def _keep_classes(rows: pd.DataFrame, keep: tuple[str, ...], found: list[str], root: Path) -> pd.DataFrame:
    from ..core.registry import did_you_mean

    twice = sorted({c for c in keep if keep.count(c) > 1})
    if twice:
        raise DatasetError(f"{root}: dataset.classes lists {', '.join(twice)} more than once; "
                           "name each class once")
    for c in keep:
        if c not in found:
            raise DatasetError(f"{root}: dataset.classes names '{c}', which is not in the data"
                               f"{did_you_mean(c, found)}; classes found: {', '.join(found)}")
    return rows[rows["label"].isin(keep)]


def _class_order(rows: pd.DataFrame, classes: tuple[str, ...] | None, keep) -> tuple[str, ...]:
    present = set(rows["label"])
    if keep:
        return tuple(keep)
    if classes:
        known = [c for c in classes if c in present]
        return tuple(known + sorted(present - set(known)))
    return tuple(sorted(present))


def fingerprint(rows: pd.DataFrame, root: Path, key: str | None = None) -> str:
    """sha256 over ``relpath, size, label`` lines, sorted by path; 16 hex characters. A loader
    whose options give the same images other roles (``rows.attrs["fingerprint_key"]``, e.g.
    merged's ``leave_out``) adds that ``key`` and every image's ``split``."""
    if key is not None:
        return _keyed_fingerprint(rows, root, key)
    h = hashlib.sha256()
    pairs = sorted(zip(rows["relpath"], rows["label"]))
    for (rel, label), path in zip(pairs, join_paths(root, [rel for rel, _ in pairs])):
        try:
            size = os.stat(path).st_size
        except OSError:
            raise DatasetError(f"{path}: listed image does not exist or cannot be read") from None
        h.update(f"{rel}\t{size}\t{label}\n".encode())
    return h.hexdigest()[:16]


def _keyed_fingerprint(rows: pd.DataFrame, root: Path, key: str) -> str:
    plain = fingerprint(rows, root)
    roles = sorted(zip(rows["relpath"], rows["split"].astype(str)))
    text = "\n".join([plain, key, *(f"{rel}\t{split}" for rel, split in roles)])
    return hashlib.sha256(text.encode()).hexdigest()[:16]
