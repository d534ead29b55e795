"""Radial family: profiles of the masks and the colour in rings around the crop's centre.

Every supported layout crops one white cell at the centre of its image, sized to that cell,
so how far nucleus, cytoplasm and stain reach from the centre describes size, N:C ratio and
nucleus position without trusting one outline: a leaky mask or a touching neighbour moves a
few rings, not the whole feature. Ring ``i`` (of :data:`RINGS`) holds the pixels whose
distance from the image centre is in ``[i, i + 1) / RINGS`` of half the shorter side (the
corners beyond the inscribed disk are left out). Per ring: the fraction of its pixels in the
nucleus and in the cell mask, and the mean red, green, blue, HSV saturation and nucleus score
(B - 2G, see :mod:`.segmentation`) of the field.

Computed on a regular sample of the central square (:data:`PROFILE_PIXELS`), as one matrix
product of per-ring averaging weights (cached per image size) and the sampled channels.
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np

from .regions import CellView, sample_step
from .specs import FIELD, Family, FeatureSpec, spec
from .registry import FEATURE_FAMILIES

FAMILY_NAME = "radial"
RINGS = 10
#: The rings are averaged over every k-th row and column of the central square, k chosen
#: so that about this many pixels remain (k = 3 on 250 px crops).
PROFILE_PIXELS = 4096

_PROFILES: tuple[tuple[str, str, str, str], ...] = (
    ("nucleus", "fraction", "1", "fraction of the ring's pixels in the nucleus mask"),
    ("cell", "fraction", "1", "fraction of the ring's pixels in the cell mask"),
    (FIELD, "rgb_r", "0-255", "mean red intensity"),
    (FIELD, "rgb_g", "0-255", "mean green intensity"),
    (FIELD, "rgb_b", "0-255", "mean blue intensity"),
    (FIELD, "hsv_s", "0-1", "mean HSV saturation"),
    (FIELD, "nucleus_score", "-510 to 255", "mean nucleus score B - 2G (the segmentation's chromatin score; "
                                             "one column splits what red, green and blue need two for)"),
)


def _ring_text(i: int) -> str:
    return f"ring {i} ({i / RINGS:.1f}-{(i + 1) / RINGS:.1f} of half the shorter image side from the centre)"


SPECS: tuple[FeatureSpec, ...] = tuple(
    spec(FAMILY_NAME, region, f"{what}_ring{i}", unit, f"{_ring_text(i)}: {text}")
    for region, what, unit, text in _PROFILES for i in range(RINGS)
)


@lru_cache(maxsize=16)
def ring_weights(side: int, step: int) -> np.ndarray:
    """``float64[RINGS, n]``: row i averages the ring-i pixels of a ``side``-px square sampled
    at every ``step``-th row and column (``n`` samples, row-major); all NaN for an empty ring."""
    c = (side - 1) / 2
    pos = np.arange(0, side, step)
    radius = np.hypot(pos[:, None] - c, pos[None, :] - c) / (side / 2)
    ring = (radius * RINGS).astype(np.int64).ravel()
    onehot = (ring[None, :] == np.arange(RINGS)[:, None]).astype(np.float64)
    count = onehot.sum(axis=1, keepdims=True)
    # A ring with no sample (only in images of a few pixels) averages to NaN.
    return np.where(count > 0, onehot / np.where(count > 0, count, 1), np.nan)


def central_square(a: np.ndarray, step: int = 1) -> np.ndarray:
    """Every ``step``-th row and column of the centred ``min(H, W)`` square of ``a``."""
    h, w = a.shape[:2]
    s = min(h, w)
    y0, x0 = (h - s) // 2, (w - s) // 2
    return a[y0:y0 + s:step, x0:x0 + s:step]


def profiles(image: np.ndarray, nucleus: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """``float64[7, RINGS]``: nucleus and cell fractions, mean R, G, B (0-255), saturation
    (0-1) and nucleus score B - 2G per ring of ``image`` (``uint8[H, W, 3]``) and its ``bool[H, W]`` masks,
    over a regular sample of about :data:`PROFILE_PIXELS` pixels of the central square."""
    side = min(image.shape[:2])
    step = sample_step(side * side, PROFILE_PIXELS)
    rgb = np.ascontiguousarray(central_square(image, step))
    saturation = cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV)[..., 1]
    channels = np.dstack([central_square(nucleus, step), central_square(cell, step), rgb, saturation])
    means = ring_weights(side, step) @ channels.reshape(-1, 6).astype(np.float64)  # (RINGS, 6)
    means[:, 5] /= 255.0  # saturation 0-255 -> 0-1; the masks are 0/1 already
    return np.vstack([means.T, means[:, 4] - 2 * means[:, 3]])


def compute(view: CellView) -> np.ndarray:
    """``float64[len(SPECS)]`` radial features of ``view``."""
    seg = view.segmentation
    return profiles(view.image, seg.nucleus, seg.cell).ravel()


FAMILY = FEATURE_FAMILIES.register(FAMILY_NAME, Family(FAMILY_NAME, SPECS, compute))
