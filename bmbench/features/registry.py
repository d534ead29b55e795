"""Feature families by name: adding a family is one entry in :data:`FAMILIES`."""

from __future__ import annotations

from . import color, shape, texture
from .specs import Family, FeatureSpec

FAMILIES: dict[str, Family] = {f.name: f for f in (shape.FAMILY, color.FAMILY, texture.FAMILY)}


def check_families(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple if all are known, non-empty and distinct; else ValueError."""
    names = tuple(names)
    unknown = [n for n in names if n not in FAMILIES]
    if unknown or not names or len(set(names)) != len(names):
        what = f"unknown feature famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}" \
            if unknown else f"families must be a non-empty list of distinct names, got {list(names)}"
        raise ValueError(f"{what}; known: {', '.join(FAMILIES)}")
    return names


def specs_for(names: tuple[str, ...]) -> tuple[FeatureSpec, ...]:
    """All feature specs of the families ``names``, in that order."""
    return tuple(s for n in check_families(names) for s in FAMILIES[n].specs)
