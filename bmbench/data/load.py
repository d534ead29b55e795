"""Load a data set table from a recipe's ``dataset`` section."""

from __future__ import annotations

from pathlib import Path

from ..core.errors import DatasetError, RecipeError
from .labels import apply_label_map
from .registry import get_kind
from .table import DatasetTable, make_table


#: Kinds whose layout the user makes (their own errors say what is wrong): no layout hint.
GENERIC_KINDS = ("folder", "manifest", "synthetic")


def load_dataset(spec) -> DatasetTable:
    """``spec`` is a :class:`bmbench.config.recipe.DatasetSpec`; images are not decoded here.

    A folder in another layout than the kind's is an error that says so: its message names
    the layout the kind expects (and the classes it found, when none is the kind's)."""
    kind = get_kind(spec.kind)
    try:
        return _load(kind, spec)
    except DatasetError as exc:
        if kind.name in GENERIC_KINDS or "expected layout" in str(exc):
            raise
        raise DatasetError(f"{exc}; is this a '{kind.name}' data set? expected layout: {kind.layout}") from None


def _load(kind, spec) -> DatasetTable:
    root, rows = kind.loader(Path(spec.root) if spec.root else None, spec)
    known = set(kind.class_codes or ())
    found = sorted(set(rows["label"].dropna())) if len(rows) else []
    if known and found and not spec.label_map and not known & set(found):
        raise DatasetError(f"{root}: none of the classes found ({', '.join(found[:6])}"
                           f"{', ...' if len(found) > 6 else ''}) is a class of kind '{kind.name}' "
                           f"({', '.join(sorted(known))})")
    rows = apply_label_map(rows, spec.label_map, str(root))
    table = make_table(kind.name, Path(root), rows, kind.class_codes or None, spec.classes)
    positive = getattr(spec, "positive_class", None)
    if positive is not None and positive not in table.classes:
        from ..core.registry import did_you_mean

        raise RecipeError(f"dataset.positive_class: '{positive}' is not a class of the data at {root}"
                          f"{did_you_mean(positive, table.classes)}; classes: {', '.join(table.classes)}")
    return table
