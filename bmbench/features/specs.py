"""What a feature is: its documented name, and what a feature family provides.

Every feature name reads ``<family>_<region>_<feature>`` with region one of
:data:`SPEC_REGIONS`. Families declare their :class:`FeatureSpec` tuples next to the code that
computes them, and the data dictionary (``features.json``) is generated from those tuples,
so documentation cannot drift from the code.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Callable

import numpy as np

if TYPE_CHECKING:
    from .regions import CellView

#: Regions of the cell a feature can describe: the nucleus, the cytoplasm (cell minus
#: nucleus), the whole cell (nucleus + cytoplasm).
REGIONS: tuple[str, ...] = ("nucleus", "cytoplasm", "cell")
#: ... and the field of view: the pixels around the crop's centre whatever the masks say
#: (the radial family's colour profile).
FIELD = "field"
SPEC_REGIONS: tuple[str, ...] = REGIONS + (FIELD,)


@dataclass(frozen=True)
class FeatureSpec:
    """One documented feature. ``name`` is ``<family>_<region>_<feature>``; ``unit`` is
    e.g. ``px``, ``px^2``, ``1`` (unitless) or ``0-255``; ``description`` is one line."""

    name: str
    family: str
    region: str
    unit: str
    description: str

    def __post_init__(self) -> None:
        if self.region not in SPEC_REGIONS:
            raise ValueError(f"{self.name}: region {self.region!r} is not one of {SPEC_REGIONS}")
        if not self.name.startswith(f"{self.family}_{self.region}_"):
            raise ValueError(f"{self.name}: name must start with '{self.family}_{self.region}_'")

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def spec(family: str, region: str, feature: str, unit: str, description: str) -> FeatureSpec:
    """Build the spec of feature ``<family>_<region>_<feature>``."""
    return FeatureSpec(f"{family}_{region}_{feature}", family, region, unit, description)


@dataclass(frozen=True)
class Family:
    """A feature family: its specs and ``compute(view) -> float64[len(specs)]`` returning
    values in spec order (NaN where a region is empty or a value is undefined)."""

    name: str
    specs: tuple[FeatureSpec, ...]
    compute: Callable[["CellView"], np.ndarray]

    @property
    def description(self) -> str:
        regions = sorted({s.region for s in self.specs}, key=SPEC_REGIONS.index)
        return f"{len(self.specs)} features of the {', '.join(regions)}"

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(s.name for s in self.specs)
