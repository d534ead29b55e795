"""Feature family ``intensity``: grey-level statistics of the nucleus and the cytoplasm.

Registered through the ``bmbench.feature_families`` entry point; a recipe selects it with
``model.features: [shape, intensity]``. Names follow bmbench's ``<family>_<region>_<what>``.
"""

from __future__ import annotations

import numpy as np

from bmbench.features.registry import FEATURE_FAMILIES
from bmbench.features.specs import Family, spec

NAME = "intensity"
_STATS = (("mean", "mean grey level (0-255)"), ("std", "standard deviation of the grey level"),
          ("dark_fraction", "fraction of pixels darker than 100 (0-1)"))
_REGIONS = ("nucleus", "cytoplasm")

SPECS = tuple(spec(NAME, region, stat, "1" if stat == "dark_fraction" else "0-255", f"{doc} of the {region}")
              for region in _REGIONS for stat, doc in _STATS)


def compute(view) -> np.ndarray:
    """``float64[6]``: the statistics of ``view.gray`` (``uint8``, cropped to the cell) over
    each region's mask; NaN for an empty region."""
    gray = view.gray.astype(np.float64)
    out = []
    for mask in (view.masks["nucleus"], view.masks["cytoplasm"]):
        values = gray[mask]
        if values.size == 0:
            out += [np.nan] * len(_STATS)
        else:
            out += [values.mean(), values.std(), float((values < 100).mean())]
    return np.array(out)


FAMILY = FEATURE_FAMILIES.register(NAME, Family(NAME, SPECS, compute))
