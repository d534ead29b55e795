"""Feature families by name: adding a family is one :data:`FEATURE_FAMILIES` entry.

bmbench's own families register themselves in :mod:`.shape`, :mod:`.color`,
:mod:`.texture` and :mod:`.radial` (in that order, the order of the feature vector); plug-ins add
:class:`~bmbench.features.specs.Family` objects through the entry-point group
``bmbench.feature_families``.
"""

from __future__ import annotations

from ..core.registry import Registry
from .specs import Family, FeatureSpec

FEATURE_FAMILIES: Registry[Family] = Registry(
    "feature family", "bmbench.feature_families",
    ("bmbench.features.shape", "bmbench.features.color", "bmbench.features.texture",
     "bmbench.features.radial"), error=ValueError)


def check_families(names: tuple[str, ...] | list[str]) -> tuple[str, ...]:
    """Return ``names`` as a tuple if all are known, non-empty and distinct; else ValueError."""
    names = tuple(names)
    unknown = [n for n in names if n not in FEATURE_FAMILIES]
    if unknown or not names or len(set(names)) != len(names):
        what = f"unknown feature famil{'y' if len(unknown) == 1 else 'ies'} {', '.join(map(repr, unknown))}" \
            if unknown else f"families must be a non-empty list of distinct names, got {list(names)}"
        raise ValueError(f"{what}; known: {', '.join(FEATURE_FAMILIES.names())}")
    return names


def specs_for(names: tuple[str, ...]) -> tuple[FeatureSpec, ...]:
    """All feature specs of the families ``names``, in that order."""
    return tuple(s for n in check_families(names) for s in FEATURE_FAMILIES.get(n).specs)
