"""The cell's crop with its masks and colour spaces, computed once and shared by families."""

from __future__ import annotations

from functools import cached_property

import cv2
import numpy as np

from .segmentation import Segmentation, bounding_box

#: Pixels kept around the cell's bounding box so texture filters see real context.
CROP_MARGIN = 4

#: Names of the colour channels of :attr:`CellView.codes`, in order.
CHANNELS: tuple[str, ...] = (
    "rgb_r", "rgb_g", "rgb_b",
    "hsv_h", "hsv_s", "hsv_v",
    "lab_l", "lab_a", "lab_b",
    "hed_h", "hed_e", "hed_d",
)
#: Colour channels are stored as integer codes (see :data:`BYTE_VALUES`), so region
#: statistics come from histograms in O(pixels) instead of sorting float pixels: the first
#: 9 channels (RGB, HSV, Lab) are 8-bit codes, the 3 HED densities use HED_BINS levels.
BYTE_CHANNELS = 9
HED_BINS = 1024
#: Colour statistics use every k-th pixel in each direction, k chosen so that about this
#: many cell pixels remain (k = 1 for cells up to twice this size): a deterministic
#: sample whose statistics match the full region's within sampling noise.
COLOR_SAMPLE_PIXELS = 4096


def sample_step(n_pixels: int, target: int) -> int:
    """Step k of a regular sample (every k-th row and column) that leaves about ``target``
    of ``n_pixels`` pixels: 1 up to twice ``target``."""
    return max(1, int(np.sqrt(n_pixels / target)))


def _hed_matrix() -> np.ndarray:
    """``skimage.color.hed_from_rgb`` bit for bit (tests/features check it), written out so
    that importing the features (a cached rerun) does not import skimage and scipy."""
    return np.array([[float.fromhex(v) for v in row] for row in (
        ("0x1.e0c37a053b84ep+0", "-0x1.01f73afa7905ap+0", "-0x1.1cbb3667e94d8p-1"),
        ("-0x1.0df59cbcafdf5p-4", "0x1.227db08fa9f88p+0", "-0x1.158c73e80817ep-3"),
        ("-0x1.342d33b262fc8p-1", "-0x1.ebf1b27084585p-2", "0x1.92d6aafa763f3p+0"))], np.float64)


_HED = _hed_matrix()
# rgb2hed: OD = max(log(max(v / 255, 1e-6)) / log(1e-6) @ M, 0); the per-channel log term
# only depends on the uint8 value, so it is a 256-entry table.
_HED_LUT = (np.log(np.maximum(np.arange(256) / 255.0, 1e-6)) / np.log(1e-6)).astype(np.float32)
_HED_MAX = np.clip(_HED, 0, None).sum(axis=0)  # largest possible density per stain
_HED_T32 = _HED.T.astype(np.float32)
# OpenCV hue h (2-degree steps, 0..179) -> code (h - 45) mod 180, so codes increase with the
# unwrapped hue 90..450 deg and histogram percentiles stay ordered.
_HUE_CODE = ((np.arange(256) + 135) % 180).astype(np.uint8)
# The same as a 3-channel cv2.LUT table that leaves saturation and value alone.
_HSV_CODE = np.stack([_HUE_CODE, np.arange(256, dtype=np.uint8), np.arange(256, dtype=np.uint8)], axis=-1)[:, None]


def _byte_values() -> np.ndarray:
    byte = np.arange(256, dtype=np.float64)
    values = np.full((BYTE_CHANNELS, 256), np.nan)
    values[0:3] = byte
    values[3, :180] = 2.0 * byte[:180] + 90.0
    values[4:6] = byte / 255.0
    values[6] = byte * (100.0 / 255.0)
    values[7:9] = byte - 128.0
    return values


#: Physical value of each code: ``float64[9, 256]`` for the byte channels (NaN = unused
#: code) and ``float64[3, HED_BINS]`` for HED. RGB 0-255; HSV hue in degrees unwrapped to
#: [90, 450) so the stain's red-orange hues (0-90 deg) sit next to pink and purple instead
#: of wrapping to 0 (2-degree steps of OpenCV's 8-bit HSV; hue code c is 2c + 90 degrees),
#: saturation and value 0-1; CIE
#: L*a*b* from OpenCV's 8-bit conversion (L 0-100, a and b -128..127, D65); HED optical
#: densities of ``skimage.color.rgb2hed`` in HED_BINS steps over their possible range
#: (under 0.002 each).
BYTE_VALUES = _byte_values()
HED_VALUES = (np.arange(HED_BINS) + 0.5) * (_HED_MAX[:, None] / HED_BINS)


def rgb_to_codes(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Channel codes of ``uint8[..., 3]`` RGB pixels: ``(uint8[..., 9], uint16[..., 3])``
    for RGB/HSV/Lab and HED, see :data:`BYTE_VALUES` and :data:`HED_VALUES`."""
    rgb = np.ascontiguousarray(rgb)
    hsv = cv2.LUT(cv2.cvtColor(rgb, cv2.COLOR_RGB2HSV), _HSV_CODE)
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB)
    od = cv2.transform(cv2.LUT(rgb, _HED_LUT), _HED_T32)
    hed = np.clip(od * (HED_BINS / _HED_MAX.astype(np.float32)), 0, HED_BINS - 1).astype(np.uint16)
    return cv2.merge((rgb, hsv, lab)), hed


class CellView:
    """One segmented cell, cropped to its bounding box plus :data:`CROP_MARGIN` px.

    ``rgb``: ``uint8[h, w, 3]`` crop; ``masks``: ``{"nucleus"|"cytoplasm"|"cell": bool[h, w]}``;
    ``image`` and ``segmentation``: the uncropped ``uint8[H, W, 3]`` image and its masks.
    Derived images (``gray``, ``codes``) are computed on first use, once.
    """

    def __init__(self, image: np.ndarray, seg: Segmentation, margin: int = CROP_MARGIN):
        cell = seg.cell
        box = bounding_box(cell)
        h, w = cell.shape
        if box is not None:
            y0, y1 = max(box[0] - margin, 0), min(box[1] + margin, h)
            x0, x1 = max(box[2] - margin, 0), min(box[3] + margin, w)
        else:
            y0, y1, x0, x1 = 0, h, 0, w
        self.bbox = (int(y0), int(y1), int(x0), int(x1))
        self.image, self.segmentation = image, seg  # the whole field, for the radial family
        self.rgb = np.ascontiguousarray(image[y0:y1, x0:x1])
        nucleus = np.ascontiguousarray(seg.nucleus[y0:y1, x0:x1])
        cell = np.ascontiguousarray(cell[y0:y1, x0:x1])
        self.masks = {"nucleus": nucleus, "cytoplasm": cell & ~nucleus, "cell": cell}

    @cached_property
    def gray(self) -> np.ndarray:
        """``uint8[h, w]`` luminance (ITU-R BT.601, as OpenCV)."""
        return cv2.cvtColor(self.rgb, cv2.COLOR_RGB2GRAY)

    @cached_property
    def color_stride(self) -> int:
        """Sampling step k of the colour statistics (see :data:`COLOR_SAMPLE_PIXELS`)."""
        area = np.count_nonzero(self.masks["cell"])
        return sample_step(area, COLOR_SAMPLE_PIXELS)

    @cached_property
    def codes(self) -> tuple[np.ndarray, np.ndarray]:
        """Colour codes of the sampled pixels, see :func:`rgb_to_codes` (every
        ``color_stride``-th row and column of the crop)."""
        k = self.color_stride
        return rgb_to_codes(self.rgb[::k, ::k])
