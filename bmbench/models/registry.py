"""Model families: one registry maps a name to a family class.

A family is a class with ``name``, ``description``, an ``Options`` dataclass (its recipe
keys under ``model:``), ``fit(train, val, ctx) -> FittedModel`` and
``load(folder, recipe, ctx) -> FittedModel``. Modules import heavy libraries (TensorFlow,
XGBoost) inside methods, so reading recipes stays fast; a family's optional ``libraries``
(module names) are imported by the runner before it starts timing ``fit``, so
``timings.fit_seconds`` is training, not library start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np

from ..config.registries import FAMILIES



@dataclass(frozen=True)
class Subset:
    """Images of one split part: ``paths`` (n,) str, ``labels`` (n,) int class indices,
    ``classes`` the ordered class names shared by every part."""

    paths: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


class FittedModel(Protocol):
    classes: tuple[str, ...]

    def predict_proba(self, paths, ctx) -> np.ndarray:
        """``(n, n_classes)`` float probabilities; rows of unreadable images are NaN."""

    def save(self, folder: Path) -> None:
        """Write the model in a safe format (never pickle) into ``folder``."""

    def details(self) -> dict:
        """Facts worth keeping in the run record (e.g. best iteration)."""


def register_family(cls: type) -> type:
    """Class decorator: register a family under ``cls.name``."""
    return FAMILIES.register(cls.name, cls)


def get_family(name: str) -> type:
    return FAMILIES.get(name)


def list_families() -> list[type]:
    return [cls for _, cls in FAMILIES.items()]
