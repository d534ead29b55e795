"""One description table of data set kinds: it drives the loaders, the docs and
``bmbench datasets``. Adding a kind is one :func:`register_kind` call in ``layouts.py``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from ..config.registries import DATASET_KINDS


@dataclass(frozen=True)
class NoOptions:
    """This kind has no options of its own."""


@dataclass(frozen=True)
class DatasetKind:
    """Facts about one published data set layout.

    ``classes`` pairs class codes (as they appear in the layout) with full names; empty
    means the classes are discovered from the data. ``loader(root, spec)`` returns a
    DataFrame with columns ``relpath, label[, group][, split]`` and the resolved root.
    """

    name: str
    title: str
    layout: str
    images: str
    citation: str
    url: str
    loader: Callable
    classes: tuple[tuple[str, str], ...] = ()
    options: type = NoOptions
    predefined_split: bool = False
    groups: str = ""
    notes: str = ""
    aliases: tuple[str, ...] = field(default=())
    augmented: bool = False  # holds augmented near-duplicates: only its own split is honest
    microns_per_pixel: float | None = None  # as documented by the source; None: not documented
    pixel_size_note: str = "not documented by the source"

    @property
    def pixel_size(self) -> str:
        """The pixel size as the data set table states it."""
        if self.microns_per_pixel is None:
            return f"unknown ({self.pixel_size_note}; `bmbench datasets check --scale-reference` estimates it)"
        return f"{self.microns_per_pixel:g} µm/px ({self.pixel_size_note})"

    @property
    def class_codes(self) -> tuple[str, ...]:
        return tuple(code for code, _ in self.classes)


def register_kind(**facts) -> Callable:
    """Decorator: register the decorated loader under ``facts['name']`` (and its aliases)."""

    def wrap(loader: Callable) -> Callable:
        kind = DatasetKind(loader=loader, **facts)
        DATASET_KINDS.register(kind.name, kind, aliases=kind.aliases)
        return loader

    return wrap


def get_kind(name: str) -> DatasetKind:
    return DATASET_KINDS.get(name)


def list_kinds() -> list[DatasetKind]:
    return [kind for _, kind in DATASET_KINDS.items()]
