"""Decode any supported image file to RGB uint8, and resize it the same way everywhere.

Grayscale, RGBA/LA (composited on white, like a pale smear background), palette, CMYK,
16-bit and float images all become ``(H, W, 3) uint8`` RGB. Images whose pixel count
exceeds ``max_pixels`` are refused before decoding (decompression-bomb guard).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np

from ..core.errors import DatasetError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff")
DEFAULT_MAX_PIXELS = 50_000_000
# 8-bit TIFF modes that PIL converts correctly; other TIFFs (16-bit, float) go to tifffile
_PIL_TIFF_MODES = ("1", "L", "LA", "P", "PA", "RGB", "RGBA", "CMYK", "YCbCr")
log = logging.getLogger(__name__)


def is_image_file(path: str | os.PathLike) -> bool:
    return str(path).lower().endswith(IMAGE_EXTENSIONS)


def read_rgb(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Decode ``path`` to an ``(H, W, 3) uint8`` RGB array or raise :class:`DatasetError`."""
    from PIL import Image, ImageOps

    path = Path(path)
    try:
        with Image.open(path) as im:
            _check_pixels(path, im.size, max_pixels)
            if path.suffix.lower() in (".tif", ".tiff") and im.mode not in _PIL_TIFF_MODES:
                return _read_tiff(path, max_pixels)
            fast = _jpeg_fast_path(path, im)
            if fast is not None:
                return fast
            im.load()
            im = ImageOps.exif_transpose(im)
            return _to_rgb(im)
    except DatasetError:
        raise
    except FileNotFoundError:
        raise DatasetError(f"{path}: image file not found") from None
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{path}: cannot decode image ({_reason(exc)}){SKIP_ADVICE}") from None


#: Appended to a decoding error where skipping is the recipe's choice (training, evaluation).
SKIP_ADVICE = "; replace or remove the file, or set dataset.on_bad_image: skip"

_EXIF_ORIENTATION = 0x0112


def read_rgb_draft(data: bytes, name: str, max_pixels: int = DEFAULT_MAX_PIXELS,
                   side: int = 128) -> np.ndarray:
    """Decode image ``data`` (the bytes of file ``name``) to ``uint8[H, W, 3]`` RGB, letting
    the JPEG decoder shrink the image by up to 8x while its longer side stays at least
    ``side`` px (DCT scaling: several times faster than a full decode; other formats decode
    in full). Raises :class:`DatasetError`."""
    import io

    from PIL import Image, ImageOps

    try:
        with Image.open(io.BytesIO(data)) as im:
            _check_pixels(Path(name), im.size, max_pixels)
            if im.format == "TIFF" and im.mode not in _PIL_TIFF_MODES:
                return read_rgb(name, max_pixels)
            if im.format == "JPEG":
                scale = side / max(im.size)
                im.draft("RGB", (int(np.ceil(im.size[0] * scale)), int(np.ceil(im.size[1] * scale))))
            im.load()
            return _to_rgb(ImageOps.exif_transpose(im))
    except DatasetError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise DatasetError(f"{name}: cannot decode image ({_reason(exc)})") from None


def _jpeg_fast_path(path: Path, im) -> np.ndarray | None:
    """Plain RGB JPEGs (complete, no EXIF rotation) decoded by OpenCV: the same
    libjpeg-turbo pixels as PIL's (tested), a third faster. None: use PIL."""
    if im.format != "JPEG" or im.mode != "RGB" or im.getexif().get(_EXIF_ORIENTATION, 1) != 1:
        return None
    import cv2

    data = np.fromfile(path, np.uint8)
    # libjpeg only warns about a truncated stream and returns grey rows; PIL refuses it.
    if data.size < 4 or data[-2] != 0xFF or data[-1] != 0xD9:
        return None
    bgr = cv2.imdecode(data, cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if bgr is None or bgr.shape[:2] != im.size[::-1]:
        return None
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def _check_pixels(path: Path, size: tuple[int, int], max_pixels: int) -> None:
    w, h = size
    if w * h > max_pixels:
        raise DatasetError(f"{path}: image is {w}x{h} = {w * h:,} pixels, above the limit of "
                           f"{max_pixels:,}; raise dataset.max_pixels if the file is trusted")
    if w < 1 or h < 1:
        raise DatasetError(f"{path}: image has no pixels ({w}x{h})")


def _to_rgb(im) -> np.ndarray:
    from PIL import Image

    if im.mode == "RGB":
        return np.asarray(im, dtype=np.uint8).copy()
    if im.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return np.repeat(_scale_to_uint8(np.asarray(im))[..., None], 3, axis=2)
    if im.mode == "P":
        im = im.convert("RGBA")
    if im.mode in ("RGBA", "LA", "PA"):
        im = im.convert("RGBA")
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        im = Image.alpha_composite(white, im)
    return np.asarray(im.convert("RGB"), dtype=np.uint8).copy()


def _scale_to_uint8(a: np.ndarray) -> np.ndarray:
    """16-bit integer images map their full range 0..65535 to 0..255; float images 0..1."""
    a = np.asarray(a)
    if a.dtype.kind == "f":
        top = 1.0 if np.nanmax(a) <= 1.0 else float(np.nanmax(a))
        return np.clip(np.nan_to_num(a) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    if a.dtype.itemsize == 1:
        return a.astype(np.uint8)
    top = 65535.0 if a.max(initial=0) > 255 or a.dtype == np.uint16 else 255.0
    return np.clip(a.astype(np.float64) / top * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _read_tiff(path: Path, max_pixels: int) -> np.ndarray:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        page = tif.pages[0]
        _check_pixels(path, (page.shape[1], page.shape[0]), max_pixels)
        a = page.asarray()
    a = _scale_to_uint8(a)
    if a.ndim == 2:
        return np.repeat(a[..., None], 3, axis=2)
    if a.shape[2] >= 3:
        return np.ascontiguousarray(a[..., :3])
    return np.repeat(a[..., :1], 3, axis=2)


def _reason(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text.replace(" '" + str(getattr(exc, "filename", "")) + "'", "")[:200]


def resize(image: np.ndarray, size: int, keep_aspect: bool = False) -> np.ndarray:
    """Resize ``(H, W, 3)`` to ``(size, size, 3)`` with area interpolation.

    With ``keep_aspect`` the longest side becomes ``size`` and the rest is padded with the
    median colour of the image border (the smear background), centred.
    """
    import cv2

    h, w = image.shape[:2]
    if (h, w) == (size, size):
        return image
    if not keep_aspect:
        interp = cv2.INTER_AREA if size < max(h, w) else cv2.INTER_LINEAR
        return cv2.resize(image, (size, size), interpolation=interp)
    small = resize_longest(image, size)
    nh, nw = small.shape[:2]
    fill = _border_median(image)
    top, left = (size - nh) // 2, (size - nw) // 2
    out = np.empty((size, size, 3), np.uint8)
    out[:] = fill
    out[top:top + nh, left:left + nw] = small
    return out


def resize_longest(image: np.ndarray, side: int | None) -> np.ndarray:
    """``image`` scaled so its longer side is ``side`` px, aspect ratio kept (area
    interpolation when shrinking, bilinear when enlarging); unchanged when ``side`` is None
    or already the longer side."""
    import cv2

    if side is None or max(image.shape[:2]) == side:
        return image
    scale = side / max(image.shape[:2])
    h, w = (max(1, round(d * scale)) for d in image.shape[:2])
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)


def rescale(image: np.ndarray, factor: float) -> np.ndarray:
    """``image`` with both sides multiplied by ``factor`` (rounded; area interpolation when
    shrinking, bilinear when enlarging); unchanged for ``factor == 1``."""
    import cv2

    if factor == 1:
        return image
    h, w = (max(1, round(d * factor)) for d in image.shape[:2])
    return cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if factor < 1 else cv2.INTER_LINEAR)


def centre_field(image: np.ndarray, side: int) -> np.ndarray:
    """The centred ``side`` x ``side`` square of ``image``: cropped where the image is
    larger, padded with the median colour of its border (the smear background) where
    smaller, so every image covers the same field of view."""
    h, w = image.shape[:2]
    if (h, w) == (side, side):
        return image
    out = np.empty((side, side, 3), np.uint8)
    out[:] = _border_median(image)
    top, left = (h - side) // 2, (w - side) // 2  # negative: the image sits inside the field
    src = image[max(top, 0):max(top, 0) + side, max(left, 0):max(left, 0) + side]
    oy, ox = max(-top, 0), max(-left, 0)
    out[oy:oy + src.shape[0], ox:ox + src.shape[1]] = src
    return out


def _border_median(image: np.ndarray) -> np.ndarray:
    border = np.concatenate([image[0], image[-1], image[:, 0], image[:, -1]])
    return np.median(border, axis=0).astype(np.uint8)
