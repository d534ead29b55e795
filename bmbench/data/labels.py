"""Label maps: rename, merge or drop classes, or derive a task such as blast vs rest.

A map is ``{source label: target label or null}``; ``null`` drops the class and the key
``"*"`` catches every label not listed (e.g. ``{BLA: blast, "*": other}``). Without ``"*"``,
labels not listed keep their name.
"""

from __future__ import annotations

import logging

import pandas as pd

from ..core.errors import DatasetError
from ..core.registry import did_you_mean

log = logging.getLogger(__name__)
WILDCARD = "*"


def apply_label_map(rows: pd.DataFrame, mapping: dict | None, where: str) -> pd.DataFrame:
    """``rows`` with labels mapped; dropped rows removed (and logged with their count)."""
    if not mapping:
        return rows
    present = set(rows["label"])
    for key in mapping:
        if key != WILDCARD and key not in present:
            raise DatasetError(f"{where}: dataset.label_map names '{key}', which is not a label of "
                               f"the data{did_you_mean(key, present)}; labels: {', '.join(sorted(present))}")
    default = mapping.get(WILDCARD, KEEP)
    mapped = rows["label"].map(lambda label: mapping.get(label, label if default is KEEP else default))
    dropped = mapped.isna()
    if dropped.any():
        counts = rows.loc[dropped, "label"].value_counts()
        log.info("label_map drops %d image(s): %s", int(dropped.sum()),
                 ", ".join(f"{k} {v}" for k, v in counts.items()))
    return rows.assign(label=mapped)[~dropped].reset_index(drop=True)


class _Keep:
    def __repr__(self) -> str:
        return "KEEP"


KEEP = _Keep()
