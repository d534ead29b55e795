"""A small table of rows (one dict per row, same keys) that the terminal leaderboard reads
without pandas: importing pandas costs more than the whole ``bmbench leaderboard`` may take.

Column values follow pandas' inference for a frame built from the same dicts, so every view
shows the same text whether it reads :meth:`Rows.column` or :meth:`Rows.frame`: a column of
numbers with a missing value or any float holds floats (missing: NaN), a column of ints
holds ints, anything else keeps its values (missing: None, where pandas may hold NaN:
:func:`is_missing` treats both alike).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from numbers import Integral, Real

NAN = float("nan")


def is_missing(value) -> bool:
    """None, NaN, or pandas' NA (which only exists once pandas has been imported)."""
    if value is None:
        return True
    kind = type(value)
    if kind is str or kind is int:
        return False
    if isinstance(value, float):
        return value != value
    pd = sys.modules.get("pandas")
    return pd is not None and value is pd.NA


def _normalise(values: list) -> list:
    numbers = [v for v in values if v is not None]
    kinds = set(map(type, numbers))
    if not numbers or not kinds <= {int, float} and any(
            issubclass(k, bool) or not issubclass(k, Real) for k in kinds):
        return values
    if len(numbers) == len(values) and all(issubclass(k, Integral) for k in kinds):
        return [int(v) for v in values]
    return [NAN if v is None else float(v) for v in values]


@dataclass(frozen=True)
class Rows:
    """``columns`` in order and ``data``: one dict per row holding every column."""

    columns: tuple[str, ...]
    data: tuple[dict, ...]
    #: columns stored as pandas' nullable Int64 in :meth:`frame` (values: ints or None)
    nullable_ints: tuple[str, ...] = ()
    _cache: dict = field(default_factory=dict, compare=False, repr=False)

    def __len__(self) -> int:
        return len(self.data)

    def column(self, name: str) -> list:
        if name not in self._cache:
            values = [row[name] for row in self.data]
            self._cache[name] = values if name in self.nullable_ints else _normalise(values)
        return self._cache[name]

    def records(self) -> list[dict]:
        """The rows with normalised values (what :meth:`frame` holds, row by row)."""
        cols = {c: self.column(c) for c in self.columns}
        return [{c: cols[c][i] for c in self.columns} for i in range(len(self.data))]

    def frame(self):
        """The rows as a pandas DataFrame (imports pandas)."""
        import pandas as pd

        frame = pd.DataFrame(list(self.data), columns=list(self.columns))
        for c in self.nullable_ints:
            frame[c] = frame[c].astype("Int64")
        return frame


def sort_rows(data: list[dict], key: str, then: str, descending: bool) -> list[dict]:
    """``data`` ordered by ``key`` (descending or not), ties by ``then`` ascending, rows
    whose ``key`` is missing last (by ``then``): pandas' ``sort_values([key, then])``."""
    by_then = sorted(data, key=lambda r: r[then])
    present = [r for r in by_then if not is_missing(r[key])]
    missing = [r for r in by_then if is_missing(r[key])]
    return sorted(present, key=lambda r: r[key], reverse=descending) + missing


def min_rank(values: list, descending: bool) -> list:
    """pandas' ``rank(method="min")``: 1 + the number of strictly better values; None for
    missing values."""
    present = sorted((v for v in values if not is_missing(v)), reverse=descending)
    first: dict = {}
    for i, v in enumerate(present):
        first.setdefault(v, i + 1)
    return [None if is_missing(v) else first[v] for v in values]
