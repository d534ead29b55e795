"""Colour and stain normalisation steps, each fitted on the training images only.

Smear crops are mostly background and red cells, in shares that differ per crop, so a
statistic of the whole crop mixes them (a naive whole-image Reinhard transfer made
PBC -> Matek worse). Each step therefore says which pixels its statistics come from:

* ``white_balance``: divides each channel by the crop's own background colour (the mean of
  its brightest pixels) and multiplies by the training images' median background, so every
  crop gets the training set's illumination whatever its content.
* ``reinhard``: Reinhard et al. 2001 colour transfer in CIE L*a*b*, matching mean and
  standard deviation per channel to the training images'; ``region: foreground`` (default)
  takes both from the stained pixels only (colour distance from the background above an
  Otsu cut), ``image`` from every pixel.
* ``histogram_match``: maps each RGB channel's cumulative histogram onto the training
  images' pooled one (the quantile mapping of scikit-image's ``match_histograms``, with the
  reference stored as 256-bin histograms instead of a reference image).
* ``macenko``: Macenko et al. 2009 stain-vector normalisation (torchstain's numpy backend,
  MIT, numpy only): the reference stain matrix and maximum concentrations come from a
  mosaic of training crops.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

from ...config.registries import PREPROCESSING
from ...config.schema import option

#: Share of a crop's pixels (the brightest, by grey level) taken as its background.
BACKGROUND_SHARE = 0.05
#: Crops (resized to this side) tiled into the mosaic Macenko's reference is fitted on.
MOSAIC_SIDE = 128
MOSAIC_IMAGES = 64
#: Fewest stained pixels (optical density above ``beta`` in every channel) Macenko needs.
MIN_STAINED_PIXELS = 20


def background(image: np.ndarray) -> np.ndarray:
    """``float64[3]``: mean RGB of the brightest :data:`BACKGROUND_SHARE` of the pixels
    (black padding, e.g. from rotations, excluded)."""
    pixels = image.reshape(-1, 3).astype(np.float64)
    pixels = pixels[pixels.max(axis=1) > 10] if (pixels.max(axis=1) > 10).any() else pixels
    grey = pixels.mean(axis=1)
    cut = np.quantile(grey, 1 - BACKGROUND_SHARE)
    return pixels[grey >= cut].mean(axis=0)


def foreground(image: np.ndarray) -> np.ndarray:
    """``bool[H, W]``: stained pixels, i.e. colour distance from the background above the
    Otsu threshold of that distance (all pixels when the crop is uniform)."""
    from skimage.filters import threshold_otsu

    dist = np.linalg.norm(image.astype(np.float64) - background(image), axis=2)
    if np.ptp(dist) < 1e-6:
        return np.ones(image.shape[:2], bool)
    return dist > threshold_otsu(dist)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class WhiteBalanceOptions:
    pass


@PREPROCESSING.register("white_balance")
class WhiteBalance:
    """Background-referenced white balance to the training images' median background."""

    Options = WhiteBalanceOptions
    description = "per-crop background colour -> the training images' median background"

    def __init__(self, options, state=None):
        self.target = None if state is None else np.asarray(state["background"], np.float64)

    def fit(self, images) -> dict:
        return {"background": np.median([background(im) for im in images], axis=0).round(3).tolist()}

    def apply(self, image: np.ndarray) -> np.ndarray:
        gain = self.target / np.maximum(background(image), 1.0)
        return _to_uint8(image.astype(np.float64) * gain)


@dataclass(frozen=True)
class ReinhardOptions:
    region: Literal["foreground", "image"] = option(
        "foreground", doc="pixels the statistics come from: the stained foreground, or all")


def _lab_pixels(image: np.ndarray, region: str) -> tuple[np.ndarray, np.ndarray]:
    import cv2

    lab = cv2.cvtColor(image, cv2.COLOR_RGB2LAB).astype(np.float64)
    mask = foreground(image) if region == "foreground" else np.ones(image.shape[:2], bool)
    return lab, lab[mask]


@PREPROCESSING.register("reinhard")
class Reinhard:
    """Reinhard colour transfer in L*a*b*, statistics from the chosen pixels."""

    Options = ReinhardOptions
    description = "L*a*b* mean/std of the chosen pixels -> the training images'"

    def __init__(self, options: ReinhardOptions, state=None):
        self.region = options.region
        self.state = state

    def fit(self, images) -> dict:
        stats = np.array([[p.mean(axis=0), p.std(axis=0)] for p in (_lab_pixels(im, self.region)[1] for im in images)
                          if len(p)])
        return {"mean": stats[:, 0].mean(axis=0).round(4).tolist(), "std": stats[:, 1].mean(axis=0).round(4).tolist()}

    def apply(self, image: np.ndarray) -> np.ndarray:
        import cv2

        lab, pixels = _lab_pixels(image, self.region)
        if not len(pixels):
            return image
        scale = np.asarray(self.state["std"]) / np.maximum(pixels.std(axis=0), 1e-6)
        out = (lab - pixels.mean(axis=0)) * scale + np.asarray(self.state["mean"])
        return cv2.cvtColor(_to_uint8(out), cv2.COLOR_LAB2RGB)


@dataclass(frozen=True)
class HistogramMatchOptions:
    pass


@PREPROCESSING.register("histogram_match")
class HistogramMatch:
    """Per-channel histogram matching to the training images' pooled histogram."""

    Options = HistogramMatchOptions
    description = "each RGB channel's histogram -> the training images' pooled histogram"

    def __init__(self, options, state=None):
        self.state = state
        if state is not None:
            counts = np.asarray(state["histograms"], np.float64)
            self.ref_cdf = np.cumsum(counts, axis=1) / counts.sum(axis=1, keepdims=True)

    def fit(self, images) -> dict:
        counts = np.zeros((3, 256), np.int64)
        for im in images:
            for c in range(3):
                counts[c] += np.bincount(im[..., c].ravel(), minlength=256)
        return {"histograms": counts.tolist()}

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = np.empty_like(image)
        levels = np.arange(256, dtype=np.float64)
        for c in range(3):
            src_cdf = np.cumsum(np.bincount(image[..., c].ravel(), minlength=256)) / image[..., c].size
            lut = np.interp(src_cdf, self.ref_cdf[c], levels)
            out[..., c] = _to_uint8(lut)[image[..., c]]
        return out


@dataclass(frozen=True)
class MacenkoOptions:
    intensity: int = option(240, ge=1, le=255, doc="transmitted light intensity Io")
    beta: float = option(0.15, gt=0.0, le=2.0, doc="optical density below which a pixel is background")


@PREPROCESSING.register("macenko")
class Macenko:
    """Macenko stain-vector normalisation to a reference fitted on training crops."""

    Options = MacenkoOptions
    description = "Macenko stain vectors and concentrations -> the training images' (torchstain)"

    def __init__(self, options: MacenkoOptions, state=None):
        self.options, self.state = options, state

    def _normalizer(self):
        from torchstain.numpy.normalizers import NumpyMacenkoNormalizer

        return NumpyMacenkoNormalizer()

    def fit(self, images) -> dict:
        import cv2

        tiles = [cv2.resize(im, (MOSAIC_SIDE, MOSAIC_SIDE), interpolation=cv2.INTER_AREA)
                 for im in images[:MOSAIC_IMAGES]]
        norm = self._normalizer()
        norm.fit(np.concatenate(tiles, axis=1), Io=self.options.intensity, beta=self.options.beta)
        return {"stain_matrix": np.round(norm.HERef, 6).tolist(), "max_concentrations": np.round(norm.maxCRef, 6).tolist()}

    def apply(self, image: np.ndarray) -> np.ndarray:
        od = -np.log((image.reshape(-1, 3).astype(np.float64) + 1) / self.options.intensity)
        if np.count_nonzero((od >= self.options.beta).all(axis=1)) < MIN_STAINED_PIXELS:
            return image  # too few stained pixels to estimate this crop's stain vectors
        norm = self._normalizer()
        norm.HERef = np.asarray(self.state["stain_matrix"], np.float64)
        norm.maxCRef = np.asarray(self.state["max_concentrations"], np.float64)
        try:
            with np.errstate(all="ignore"):
                out, _, _ = norm.normalize(I=image, Io=self.options.intensity, beta=self.options.beta, stains=False)
        except (np.linalg.LinAlgError, ValueError, IndexError):
            return image
        out = np.asarray(out, np.float64)
        return image if not np.isfinite(out).all() else np.ascontiguousarray(_to_uint8(out))
