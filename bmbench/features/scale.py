"""Relative pixel scale of two data sets, from the median size of the segmented nuclei.

Where a source does not document its pixel size, the cells themselves give a relative one:
the same cell type has about the same physical size in every lab, so the ratio of median
nucleus diameters (in px) of classes the two sets share is the ratio of their pixel sizes.
Classes are matched on their codes or full names from the data set table, case-insensitive,
then on the last word of the full name ("segmented neutrophil" ~ "neutrophil") where that
word is unique within each set.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..config.registries import DATASET_KINDS
from ..data.images import ImageSource
from ..data.table import DatasetTable
from .extract import FeatureSettings, extract_many, feature_names

#: Images per class segmented for the estimate (evenly spaced over the class).
PER_CLASS = 40
_MEASURE = "shape_nucleus_equivalent_diameter"
_SETTINGS = FeatureSettings(families=("shape",))


@dataclass
class SizeSummary:
    """Median nucleus equivalent diameter, px, per class (``{class: (median, n)}``)."""

    kind: str
    per_class: dict[str, tuple[float, int]] = field(default_factory=dict)


@dataclass
class ScaleEstimate:
    """``ratio``: median nucleus diameter here / in the reference (> 1: these images have
    smaller pixels); ``per_class`` holds the ratio of each shared class."""

    ratio: float
    per_class: dict[str, float]
    shared: bool  # False: no class in common, the ratio compares all images
    here: SizeSummary
    reference: SizeSummary

    def text(self, reference_mpp: float | None = None) -> str:
        detail = ", ".join(f"{c} {r:.2f}" for c, r in self.per_class.items())
        basis = f"median over shared classes ({detail})" if self.shared else \
            "no class in common: all images compared, so a different class mix biases it"
        lines = [f"relative scale vs {self.reference.kind}: nuclei measure {self.ratio:.2f}x the "
                 f"reference's size in px ({basis})"]
        if reference_mpp:
            lines.append(f"suggested: dataset.microns_per_pixel: {reference_mpp / self.ratio:.4g} "
                         f"(the reference's {reference_mpp:g} µm/px / {self.ratio:.2f})")
        else:
            lines.append(f"suggested: dataset.microns_per_pixel = (the reference's µm/px) / {self.ratio:.2f}")
        return "\n".join(lines)


def nucleus_sizes(table: DatasetTable, per_class: int = PER_CLASS, jobs: int = 1) -> SizeSummary:
    """Median nucleus diameter per class of up to ``per_class`` images of each class."""
    frame = table.frame
    rows = []
    for c in table.classes:
        idx = np.flatnonzero(frame["label"].to_numpy() == c)
        rows.append((c, idx[np.unique(np.linspace(0, len(idx) - 1, min(per_class, len(idx))).round().astype(int))]))
    paths = [frame["path"].iat[i] for _, idx in rows for i in idx]
    x, _ = extract_many(paths, _SETTINGS, ImageSource(on_bad_image="skip"), jobs=jobs)
    values = x[:, feature_names(_SETTINGS).index(_MEASURE)]
    out, start = SizeSummary(table.kind), 0
    for c, idx in rows:
        part = values[start:start + len(idx)]
        start += len(idx)
        part = part[np.isfinite(part)]
        if len(part):
            out.per_class[c] = (float(np.median(part)), len(part))
    return out


def estimate_scale(here: SizeSummary, reference: SizeSummary) -> ScaleEstimate:
    """Relative scale of ``here`` against ``reference`` (see :class:`ScaleEstimate`)."""
    names_here, names_ref = _names(here.kind, here.per_class), _names(reference.kind, reference.per_class)
    pairs = {names_here[k]: names_ref[k] for k in names_here.keys() & names_ref.keys()}
    loose_here = {k: c for k, c in _loose(here.kind, here.per_class).items() if c not in pairs}
    loose_ref = {k: c for k, c in _loose(reference.kind, reference.per_class).items() if c not in pairs.values()}
    pairs.update({loose_here[k]: loose_ref[k] for k in loose_here.keys() & loose_ref.keys()})
    per_class = {c: here.per_class[c][0] / reference.per_class[r][0] for c, r in sorted(pairs.items())}
    if per_class:
        return ScaleEstimate(float(np.median(list(per_class.values()))), per_class, True, here, reference)
    med = _pooled(here) / _pooled(reference)
    return ScaleEstimate(float(med), {}, False, here, reference)


def _names(kind: str, classes) -> dict[str, str]:
    """Lower-case code and full name -> class code, for the classes measured."""
    full = dict(getattr(DATASET_KINDS.get(kind), "classes", ()) or ())
    out = {}
    for c in classes:
        for key in (c, full.get(c, c)):
            out.setdefault(key.lower(), c)
    return out


def _loose(kind: str, classes) -> dict[str, str]:
    """The last word of each full name -> class code ("segmented neutrophil" -> neutrophil),
    for names no other class of the set shares."""
    full = dict(getattr(DATASET_KINDS.get(kind), "classes", ()) or ())
    words: dict[str, list[str]] = {}
    for c in classes:
        words.setdefault(full.get(c, c).lower().split()[-1], []).append(c)
    return {w: cs[0] for w, cs in words.items() if len(cs) == 1}


def _pooled(s: SizeSummary) -> float:
    return float(np.median([m for m, _ in s.per_class.values()]))
