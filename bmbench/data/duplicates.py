"""Exact duplicate images (byte-identical files) in a data set table.

Cheap enough to run before every training run: files are first grouped by size and only
files sharing a size are hashed (sha256).
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ..core.hashing import file_sha256
from .table import DatasetTable


@dataclass(frozen=True)
class DuplicateGroup:
    """Row indices (into the table) of files with identical bytes, and their labels."""

    rows: tuple[int, ...]
    labels: tuple[str, ...]

    @property
    def conflicting(self) -> bool:
        """True when the copies carry different labels (label noise)."""
        return len(set(self.labels)) > 1


def exact_duplicates(table: DatasetTable) -> list[DuplicateGroup]:
    """Groups of two or more byte-identical images, in table order."""
    paths = table.frame["path"].tolist()
    sizes = np.array([os.stat(p).st_size for p in paths])
    labels = table.frame["label"].tolist()
    by_hash: dict[str, list[int]] = {}
    unique, counts = np.unique(sizes, return_counts=True)
    for size in unique[counts > 1]:
        for i in np.flatnonzero(sizes == size):
            by_hash.setdefault(file_sha256(paths[i]), []).append(int(i))
    groups = [rows for rows in by_hash.values() if len(rows) > 1]
    return [DuplicateGroup(tuple(r), tuple(labels[i] for i in r)) for r in sorted(groups)]

