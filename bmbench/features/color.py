"""Colour family: distribution of 12 colour channels inside each region.

For every region (nucleus, cytoplasm, cell) and channel (RGB, HSV, CIE L*a*b*, HED stain
densities; codes and units in :data:`bmbench.features.regions.BYTE_VALUES` and
``HED_VALUES``): mean, standard deviation and the 10th/50th/90th percentiles, all from one
histogram per region and channel (the cell's is the sum of the nucleus and cytoplasm
ones), over a regular pixel sample for large cells (``COLOR_SAMPLE_PIXELS``). An empty
region gives NaN.
"""

from __future__ import annotations

import numpy as np

from .regions import BYTE_CHANNELS, BYTE_VALUES, CHANNELS, HED_BINS, HED_VALUES, CellView
from .specs import REGIONS, Family, FeatureSpec, spec

FAMILY_NAME = "color"

_CHANNEL_UNITS = {
    "rgb": ("0-255", "{c} intensity"),
    "hsv_h": ("deg", "hue, unwrapped to 90-450 deg (red-orange read as 360-450)"),
    "hsv": ("0-1", "HSV {c}"),
    "lab_l": ("0-100", "CIE L* lightness"),
    "lab": ("1", "CIE {c}* opponent colour coordinate"),
    "hed": ("OD", "{c} stain optical density from colour deconvolution"),
}
_CHANNEL_TEXT = {
    "rgb_r": "red", "rgb_g": "green", "rgb_b": "blue",
    "hsv_s": "saturation", "hsv_v": "value",
    "lab_a": "a", "lab_b": "b",
    "hed_h": "haematoxylin", "hed_e": "eosin", "hed_d": "DAB (residual)",
}
#: Statistics per channel, in output order: (name, description).
STATISTICS: tuple[tuple[str, str], ...] = (
    ("mean", "mean"),
    ("std", "standard deviation"),
    ("p10", "10th percentile"),
    ("p50", "median"),
    ("p90", "90th percentile"),
)


def _channel_doc(channel: str) -> tuple[str, str]:
    key = channel if channel in _CHANNEL_UNITS else channel.split("_")[0]
    unit, text = _CHANNEL_UNITS[key]
    return unit, text.format(c=_CHANNEL_TEXT.get(channel, channel))


SPECS: tuple[FeatureSpec, ...] = tuple(
    spec(FAMILY_NAME, region, f"{channel}_{stat}", _channel_doc(channel)[0],
         f"{region}: {stat_text} of {_channel_doc(channel)[1]}")
    for region in REGIONS for channel in CHANNELS for stat, stat_text in STATISTICS
)

_BYTE_OFFSETS = np.arange(BYTE_CHANNELS, dtype=np.int32) * 256
_HED_OFFSETS = np.arange(3, dtype=np.int32) * HED_BINS
_QUANTILES = np.array([0.10, 0.50, 0.90])
_SLOTS = {"cell": 0, "nucleus": 1, "cytoplasm": 2}


def code_histograms(codes: tuple[np.ndarray, np.ndarray], nucleus: np.ndarray, cytoplasm: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Per region (nucleus, cytoplasm, cell) and channel histograms of the sampled pixels'
    codes: ``(int64[3, 9, 256], int64[3, 3, HED_BINS])``; one bincount per channel group,
    with the pixel's region folded into the bin index."""
    byte, hed = codes
    region = (nucleus.view(np.uint8) + 2 * cytoplasm.view(np.uint8)).astype(np.int32)[..., None]
    b = np.bincount((byte + (_BYTE_OFFSETS + region * (BYTE_CHANNELS * 256))).ravel(),
                    minlength=3 * BYTE_CHANNELS * 256).reshape(3, BYTE_CHANNELS, 256)
    h = np.bincount((hed + (_HED_OFFSETS + region * (3 * HED_BINS))).ravel(),
                    minlength=3 * 3 * HED_BINS).reshape(3, 3, HED_BINS)
    b[0], h[0] = b[1] + b[2], h[1] + h[2]  # slot 0 (outside the cell) becomes the cell
    order = [_SLOTS[region] for region in REGIONS]
    return b[order], h[order]


def histogram_stats(hist: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``float64[n_regions, n_channels, 5]``: per region and channel mean, std, p10, p50,
    p90 of code histograms ``hist`` (``int[n_regions, n_channels, n_codes]``) whose codes
    have the physical ``values`` (``[n_channels, n_codes]``); NaN for an empty region.
    Percentiles are nearest-rank: the smallest value with at least that share of pixels
    at or below it."""
    n = hist[:, :1].sum(axis=2, keepdims=True).astype(np.float64)  # (regions, 1, 1)
    values = np.nan_to_num(values)
    safe_n = np.where(n > 0, n, 1.0)
    mean = (hist * values).sum(axis=2, keepdims=True) / safe_n
    var = (hist * (values - mean) ** 2).sum(axis=2) / safe_n[..., 0]
    cdf = np.cumsum(hist, axis=2)
    ranks = np.maximum(np.ceil(_QUANTILES * n), 1)  # (regions, 1, 3)
    idx = (cdf[..., None] < ranks[:, :, None, :]).sum(axis=2)  # first code reaching each rank
    out = np.empty(hist.shape[:2] + (len(STATISTICS),))
    out[..., 0] = mean[..., 0]
    out[..., 1] = np.sqrt(np.maximum(var, 0.0))
    out[..., 2:] = np.take_along_axis(values[None], np.minimum(idx, values.shape[1] - 1), axis=2)
    out[n[:, 0, 0] == 0] = np.nan
    return out


def compute(view: CellView) -> np.ndarray:
    """``float64[len(SPECS)]`` colour features of ``view``."""
    k = view.color_stride
    byte, hed = code_histograms(view.codes, view.masks["nucleus"][::k, ::k], view.masks["cytoplasm"][::k, ::k])
    stats = np.concatenate([histogram_stats(byte, BYTE_VALUES), histogram_stats(hed, HED_VALUES)], axis=1)
    return stats.ravel()


FAMILY = Family(FAMILY_NAME, SPECS, compute)
