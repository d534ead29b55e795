"""Texture family: grey-level co-occurrence (GLCM), local binary patterns and granularity.

All measures use the luminance image of the cell crop.

* GLCM (as ``skimage.feature.graycomatrix``; properties as ``graycoprops``) on the nucleus and
  on the cytoplasm (chromatin vs granules; FEATURE_VERSION 3 and older used the whole cell):
  region pixels are quantised to levels 1..GLCM_LEVELS over the region's own 1st-99th
  percentile range (so stain intensity does not change the texture scale), outside pixels
  get level 0, and only pairs of pixels in the same region count. Both regions share one
  pass: the cytoplasm's levels are shifted above the nucleus's, one co-occurrence count
  over the cell gives both matrices as diagonal blocks. Each property is averaged over 4
  angles, per distance in GLCM_DISTANCES. In cells over twice GLCM_SAMPLE_PIXELS, only the
  pairs that start on every k-th row count (FEATURE_VERSION 5).
* Uniform LBP (P=8 on the 3x3 neighbourhood: the diagonal neighbours are the corner pixels,
  not skimage's bilinear samples at radius 1, so the codes are integer comparisons)
  histogram inside the nucleus: fractions of the 10 pattern codes (0-8 uniform codes by
  number of neighbours at least as bright, 9 = non-uniform).
* Granularity: difference-of-Gaussians response (sigma 1 and 2 px) and black top-hat
  (closing with a disk of radius 2 px minus the image: dark spots narrower than ~5 px)
  inside the nucleus (chromatin clumps) and the cytoplasm (granules).
"""

from __future__ import annotations

import cv2
import numpy as np

from .regions import CellView, sample_step
from .segmentation import bounding_box
from .specs import Family, FeatureSpec, spec
from .registry import FEATURE_FAMILIES

FAMILY_NAME = "texture"

GLCM_LEVELS = 32
GLCM_DISTANCES = (1, 2, 4)
GLCM_ANGLES = (0.0, np.pi / 4, np.pi / 2, 3 * np.pi / 4)
GLCM_PROPERTIES: tuple[tuple[str, str, str], ...] = (
    ("contrast", "level^2", "GLCM contrast (mean squared level difference of pixel pairs)"),
    ("dissimilarity", "level", "GLCM dissimilarity (mean absolute level difference)"),
    ("homogeneity", "1", "GLCM homogeneity (inverse difference moment)"),
    ("energy", "1", "GLCM energy (square root of ASM; 1 for a constant region)"),
    ("correlation", "1", "GLCM correlation of paired levels (1 for a constant region)"),
    ("ASM", "1", "GLCM angular second moment (uniformity)"),
)
_GLCM_REGIONS = ("nucleus", "cytoplasm")
#: Co-occurrences are counted for pairs that start on every k-th row of the cell, k chosen
#: so about this many pixels start pairs (k = 1 for cells up to twice this size); the
#: pairs themselves keep full resolution (FEATURE_VERSION 5; all rows before).
GLCM_SAMPLE_PIXELS = 8192
LBP_POINTS, LBP_RADIUS = 8, 1
#: (row, column) of neighbour k, bit k of the pattern: counter-clockwise from the right.
_LBP_NEIGHBOURS = ((0, 1), (-1, 1), (-1, 0), (-1, -1), (0, -1), (1, -1), (1, 0), (1, 1))
LBP_BINS = LBP_POINTS + 2
#: LBP codes are histogrammed at every k-th row and column of the nucleus, k chosen so
#: about this many pixels remain (k = 1 for nuclei up to twice this size).
LBP_SAMPLE_PIXELS = 4096
#: Black top-hat responses above this many grey levels count as dark clumps/granules.
CLUMP_THRESHOLD = 12.0
_TOPHAT_DISK = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
#: Gaussian kernels of sigma 1 and 2 px over 4 sigma each side (GaussianBlur's sizes for
#: float images), applied straight to the uint8 image with float32 output: a quarter of
#: the cost of blurring a float copy (FEATURE_VERSION 5; values within 1e-4).
_DOG_KERNELS = tuple(cv2.getGaussianKernel(8 * s + 1, s, cv2.CV_32F) for s in (1, 2))
_GRANULARITY: tuple[tuple[str, str, str], ...] = (
    ("dog_mean", "0-255", "mean difference-of-Gaussians response (sigma 1 minus sigma 2 px)"),
    ("dog_std", "0-255", "standard deviation of the difference-of-Gaussians response"),
    ("tophat_mean", "0-255", "mean black top-hat response (dark spots under ~5 px)"),
    ("clump_fraction", "1", f"fraction of pixels with black top-hat response > {CLUMP_THRESHOLD:g} "
                            "grey levels (dark chromatin clumps / granules)"),
)
_GRANULARITY_REGIONS = ("nucleus", "cytoplasm")

SPECS: tuple[FeatureSpec, ...] = (
    tuple(
        spec(FAMILY_NAME, region, f"glcm_{prop}_d{d}", unit, f"{region}: {text}, distance {d} px")
        for region in _GLCM_REGIONS for prop, unit, text in GLCM_PROPERTIES for d in GLCM_DISTANCES
    )
    + tuple(
        spec(FAMILY_NAME, "nucleus", f"lbp_{code}", "1",
             f"nucleus: fraction of pixels with uniform LBP code {code}"
             + (" (non-uniform patterns)" if code == LBP_BINS - 1
                else f" ({code} of the 8 neighbours at least as bright)"))
        for code in range(LBP_BINS)
    )
    + tuple(
        spec(FAMILY_NAME, region, feature, unit, f"{region}: {text}")
        for region in _GRANULARITY_REGIONS for feature, unit, text in _GRANULARITY
    )
)



def quantise(gray: np.ndarray, mask: np.ndarray, levels: int = GLCM_LEVELS) -> np.ndarray:
    """``uint8[h, w]``: ``mask`` pixels of the uint8 ``gray`` mapped to 1..levels over their
    1st-99th percentile range (nearest-rank; a constant region maps to 1), others to 0."""
    mask_u8 = mask.view(np.uint8)
    hist = cv2.calcHist([gray], [0], mask_u8, [256], [0, 256]).ravel()
    n = hist.sum()
    if n == 0:
        return np.zeros(gray.shape, np.uint8)
    cdf = np.cumsum(hist)
    lo, hi = np.searchsorted(cdf, np.maximum(np.ceil(np.array([0.01, 0.99]) * n), 1))
    if hi <= lo:
        return mask_u8.copy()
    table = np.floor((np.arange(256) - lo) * (levels / (hi - lo))).clip(0, levels - 1) + 1
    return cv2.LUT(gray, table.astype(np.uint8)) * mask_u8


def _glcm_offset(distance: int, angle: float) -> tuple[int, int]:
    """(row, column) step of a pixel pair, rounded half away from zero as graycomatrix does."""
    r, c = np.sin(angle) * distance, np.cos(angle) * distance
    return int(np.copysign(np.floor(abs(r) + 0.5), r)), int(np.copysign(np.floor(abs(c) + 0.5), c))


#: Pixel-pair offsets per (distance, angle), distance-major; all point down or right.
_GLCM_OFFSETS = tuple(_glcm_offset(d, a) for d in GLCM_DISTANCES for a in GLCM_ANGLES)
_GLCM_PAD = max(max(abs(r), abs(c)) for r, c in _GLCM_OFFSETS)


def cooccurrence(q: np.ndarray, levels: int = GLCM_LEVELS, step: int = 1) -> np.ndarray:
    """``float64[levels, levels, n_dist, n_angle]``: symmetric co-occurrence counts of the
    levels 1..levels (at most 255) of ``q`` (``uint8[h, w]``, 0 = outside, ignored) at GLCM_DISTANCES x
    GLCM_ANGLES, over the pixel pairs that start on every ``step``-th row; with ``step=1``
    equal to ``graycomatrix(q, ..., levels + 1, symmetric=True)[1:, 1:]`` (tested); counts
    are exact below 2**24 per bin.

    The crop is padded with zeros below and on both sides, so each offset's pairs are two
    shifted views of it; each distinct offset is one 2-D histogram."""
    h, w = q.shape
    m = _GLCM_PAD
    pad = np.zeros((h + m, w + 2 * m), np.uint8)
    pad[:h, m:m + w] = q
    origin = pad[0:h:step, m:m + w]
    counts: dict[tuple[int, int], np.ndarray] = {}
    out = np.empty((levels, levels, len(_GLCM_OFFSETS)))
    for k, (dr, dc) in enumerate(_GLCM_OFFSETS):
        if (dr, dc) not in counts:
            partner = pad[dr:dr + h:step, m + dc:m + dc + w]
            pairs = cv2.calcHist([origin, partner], [0, 1], None, [levels, levels],
                                 [1, levels + 1, 1, levels + 1])
            counts[dr, dc] = pairs + pairs.T
        out[:, :, k] = counts[dr, dc]
    return out.reshape(levels, levels, len(GLCM_DISTANCES), len(GLCM_ANGLES))


_I, _J = (a.ravel().astype(np.float64) for a in np.indices((GLCM_LEVELS, GLCM_LEVELS)))
_DIFF = _I - _J
#: Per-entry weights of the properties that are linear in p: contrast, dissimilarity,
#: homogeneity; one matrix product gives them all.
_LINEAR = np.stack([_DIFF ** 2, np.abs(_DIFF), 1.0 / (1.0 + _DIFF ** 2)])


def glcm_properties(glcm: np.ndarray) -> np.ndarray:
    """``float64[6, n_dist, n_angle]``: the GLCM_PROPERTIES of normalised co-occurrence
    matrices ``float[levels, levels, n_dist, n_angle]``, in one vectorised pass (means and
    deviations from the row and column marginals); equal to
    ``skimage.feature.graycoprops`` property by property (tested)."""
    levels, _, n_dist, n_angle = glcm.shape
    grid = glcm.reshape(levels, levels, n_dist * n_angle)
    p = grid.reshape(levels * levels, -1)
    contrast, dissimilarity, homogeneity = _LINEAR @ p
    asm = np.einsum("kn,kn->n", p, p)
    level = np.arange(levels, dtype=np.float64)[:, None]
    rows, cols = grid.sum(axis=1), grid.sum(axis=0)  # (levels, n): marginals of i and j
    dev_i, dev_j = level - level.T @ rows, level - level.T @ cols
    std_i = np.sqrt(np.einsum("in,in->n", rows, dev_i ** 2))
    std_j = np.sqrt(np.einsum("jn,jn->n", cols, dev_j ** 2))
    cov = (np.einsum("in,ijn->jn", dev_i, grid) * dev_j).sum(axis=0)
    flat = (std_i < 1e-15) | (std_j < 1e-15)
    correlation = np.where(flat, 1.0, cov / np.where(flat, 1.0, std_i * std_j))
    props = np.stack([contrast, dissimilarity, homogeneity, np.sqrt(asm), correlation, asm])
    return props.reshape(len(GLCM_PROPERTIES), n_dist, n_angle)


def glcm_features(gray: np.ndarray, *masks: np.ndarray) -> np.ndarray:
    """``float64[len(masks) * 6 * len(GLCM_DISTANCES)]``: per mask (disjoint ``bool[h, w]``
    regions), GLCM properties (property-major, then distance, averaged over GLCM_ANGLES) of
    its pixels of ``gray``, each region quantised over its own range and only pairs within
    one region counted; NaN for a distance at which no pixel pair lies in the region."""
    n_props, n_dist, n = len(GLCM_PROPERTIES), len(GLCM_DISTANCES), len(masks)
    out = np.full((n, n_props, n_dist), np.nan)
    union = masks[0] if n == 1 else np.logical_or.reduce(masks)
    if not union.any():
        return out.ravel()
    y0, y1, x0, x1 = bounding_box(union)
    box = np.s_[y0:y1, x0:x1]
    q = quantise(gray[box], masks[0][box])
    for i, mask in enumerate(masks[1:], 1):  # region i's levels are i * L + 1 .. (i + 1) * L
        q += quantise(gray[box], mask[box]) + np.uint8(i * GLCM_LEVELS) * mask[box].view(np.uint8)
    step = max(1, int(np.count_nonzero(union) / GLCM_SAMPLE_PIXELS))
    glcm = cooccurrence(q, GLCM_LEVELS * n, step)
    L = GLCM_LEVELS
    blocks = np.concatenate([glcm[i * L:(i + 1) * L, i * L:(i + 1) * L] for i in range(n)], axis=3)
    totals = blocks.sum(axis=(0, 1))
    valid = totals > 0  # (distances, regions x angles)
    if valid.any():
        props = glcm_properties(blocks / np.where(valid, totals, 1.0))
        # The mean over the angles with pixel pairs (np.nanmean's arithmetic, without its
        # warning): NaN at a distance that no pair of pixels in the region spans.
        props = np.where(valid, props, 0.0).reshape(n_props, n_dist, n, -1)
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = props.sum(axis=3) / valid.reshape(n_dist, n, -1).sum(axis=2)
        out[:] = mean.transpose(2, 0, 1)
    return out.ravel()


def _uniform_codes() -> np.ndarray:
    """``uint8[256]``: uniform LBP code of each 8-bit pattern (bit k = neighbour k >= centre):
    its number of set bits if it has at most 2 transitions (counted without wrapping around,
    as skimage does), else LBP_POINTS + 1."""
    bits = (np.arange(256)[:, None] >> np.arange(LBP_POINTS)) & 1
    changes = np.count_nonzero(np.diff(bits, axis=1), axis=1)
    return np.where(changes <= 2, bits.sum(axis=1), LBP_POINTS + 1).astype(np.uint8)


_UNIFORM_CODES = _uniform_codes()


def uniform_lbp(image: np.ndarray, step: int = 1) -> np.ndarray:
    """``uint8[ceil(h / step), ceil(w / step)]`` uniform LBP codes (P=8 on the 3x3
    neighbourhood, zero padding) of a 2-D uint8 image at every ``step``-th row and column:
    bit k is set when neighbour k (:data:`_LBP_NEIGHBOURS`) is at least the centre."""
    h, w = image.shape
    pad = np.pad(image, 1)

    def at(dy: int, dx: int) -> np.ndarray:
        return pad[1 + dy: 1 + dy + h: step, 1 + dx: 1 + dx + w: step]

    center = at(0, 0)
    pattern = np.zeros(center.shape, np.uint8)
    for k, (dy, dx) in enumerate(_LBP_NEIGHBOURS):
        pattern |= (at(dy, dx) >= center).view(np.uint8) << k
    return cv2.LUT(pattern, _UNIFORM_CODES)


def lbp_histogram(gray: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``float64[LBP_BINS]``: fractions of uniform LBP codes over ``mask`` (over a regular
    sample of about LBP_SAMPLE_PIXELS of its pixels when it is larger); NaN if empty."""
    area = np.count_nonzero(mask)
    if area == 0:
        return np.full(LBP_BINS, np.nan)
    step = sample_step(area, LBP_SAMPLE_PIXELS)
    r0, r1, c0, c1 = bounding_box(mask)
    y0, y1 = max(r0 - LBP_RADIUS, 0), r1 + LBP_RADIUS
    x0, x1 = max(c0 - LBP_RADIUS, 0), c1 + LBP_RADIUS
    codes = uniform_lbp(gray[y0:y1, x0:x1], step)
    counts = np.bincount(codes[mask[y0:y1:step, x0:x1:step]], minlength=LBP_BINS)
    return counts / max(counts.sum(), 1)


def granularity(dog: np.ndarray, tophat: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``float64[4]``: DoG mean and std, top-hat mean, clump fraction over ``mask`` (float32
    ``dog`` and uint8 ``tophat``, ``bool[h, w]``; OpenCV's masked sums, in float64)."""
    area = np.count_nonzero(mask)
    if area == 0:
        return np.full(len(_GRANULARITY), np.nan)
    m = mask.view(np.uint8)
    mean, std = cv2.meanStdDev(dog, mask=m)
    clumps = cv2.countNonZero(cv2.compare(tophat, CLUMP_THRESHOLD, cv2.CMP_GT) & m)
    return np.array([mean[0, 0], std[0, 0], cv2.mean(tophat, m)[0], clumps / area])


def compute(view: CellView) -> np.ndarray:
    """``float64[len(SPECS)]`` texture features of ``view``."""
    gray = view.gray
    masks = view.masks
    parts = [glcm_features(gray, *(masks[region] for region in _GLCM_REGIONS)),
             lbp_histogram(gray, masks["nucleus"])]
    fine, coarse = (cv2.sepFilter2D(gray, cv2.CV_32F, k, k) for k in _DOG_KERNELS)
    dog = fine - coarse
    tophat = cv2.morphologyEx(gray, cv2.MORPH_BLACKHAT, _TOPHAT_DISK)
    parts += [granularity(dog, tophat, masks[region]) for region in _GRANULARITY_REGIONS]
    return np.concatenate(parts)


FAMILY = FEATURE_FAMILIES.register(FAMILY_NAME, Family(FAMILY_NAME, SPECS, compute))
