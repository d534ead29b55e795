"""Load a data set table from a recipe's ``dataset`` section."""

from __future__ import annotations

from pathlib import Path

from .labels import apply_label_map
from .registry import get_kind
from .table import DatasetTable, make_table


def load_dataset(spec) -> DatasetTable:
    """``spec`` is a :class:`bmbench.config.recipe.DatasetSpec`; images are not decoded here."""
    kind = get_kind(spec.kind)
    root, rows = kind.loader(Path(spec.root) if spec.root else None, spec)
    rows = apply_label_map(rows, spec.label_map, str(root))
    return make_table(kind.name, Path(root), rows, kind.class_codes or None, spec.classes)
