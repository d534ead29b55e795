"""On-the-fly augmentation of training batches: one registry entry per transform.

Every transform maps a batch ``[b, s, s, 3]`` with values in [0, 255] and a stateless
seed ``int32[2]`` to a batch of the same shape and range; geometric ones (flips, right-angle
turns) are pixel maps composed and applied in one gather. Random values
are drawn per image, so one batch never shares a single flip, colour shift or zoom. Seeds are
stateless: the augmented images are a function of (seed, step), identical on every rerun.
Cells have no preferred orientation, so flips and right-angle rotations are label-safe;
colour jitter is kept small because stain colour carries class information.

Stain and scale differences between labs get their own transforms: ``hed`` jitters the
haematoxylin, eosin and DAB optical densities of Ruifrok & Johnston's colour deconvolution
and ``hsv`` hue, saturation and value together (Tellez et al. 2019, "Quantifying the effects
of data augmentation and stain color normalization in convolutional neural networks for
computational pathology", Med Image Anal); ``rescale`` zooms each image about its centre
(physical cell size in pixels differs between scanners and labs), padding with the image's
own border colour. All three are photometric in this module's sense (not pixel permutations).

This module imports no TensorFlow at load time: recipe validation reads the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config.registries import AUGMENTATIONS

NONE = "none"

#: Largest brightness shift, as a fraction of the 0-255 range.
BRIGHTNESS = 0.08
#: Contrast factor range is 1 +- CONTRAST (about each image's per-channel mean).
CONTRAST = 0.1
#: Largest hue shift, as a fraction of the colour circle (0.02 = 7.2 degrees).
HUE = 0.02
#: Saturation factor range is 1 +- SATURATION.
SATURATION = 0.1
#: ``hed``: per stain, optical density x U(1 - HED, 1 + HED) + U(-HED, HED) (Tellez's HED-light).
HED = 0.05
#: ``hsv``: hue shift of at most HSV_HUE of the colour circle (0.05 = 18 degrees) ...
HSV_HUE = 0.05
#: ... saturation factor range 1 +- HSV_SATURATION ...
HSV_SATURATION = 0.2
#: ... and value (brightness) factor range 1 +- HSV_VALUE.
HSV_VALUE = 0.1
#: ``rescale``: zoom factor range [1 / RESCALE, RESCALE], log-uniform (as likely in as out).
RESCALE = 1.2

#: Rows: optical density (RGB) of one unit of haematoxylin, eosin and DAB; Ruifrok & Johnston
#: 2001, as ``skimage.color.rgb_from_hed``. Concentrations are ``od @ inv(RGB_FROM_HED)``.
RGB_FROM_HED = ((0.65, 0.70, 0.29), (0.07, 0.99, 0.11), (0.27, 0.57, 0.78))


@dataclass(frozen=True)
class Augmentation:
    """A photometric transform: ``apply(images float32[b, s, s, 3], seed) -> same``. A
    geometric one (``geometric=True``) only moves pixels: ``apply(b, seed)`` draws a variant
    per image, ``int32[b]``, and ``maps(s)`` gives, per variant, the source pixel of every
    output pixel, ``int[n_variants, s * s]`` (row-major)."""

    name: str
    description: str
    apply: Callable
    geometric: bool = False
    maps: Callable | None = None


def _register(name: str, description: str, maps: Callable | None = None):
    def wrap(fn):
        AUGMENTATIONS.register(name, Augmentation(name, description, fn, maps is not None, maps))
        return fn
    return wrap


def augmentation_names() -> list[str]:
    """Valid values of ``train.augment`` items: every transform, and ``none``."""
    return [*AUGMENTATIONS.names(), NONE]


def _pixel_index(s: int):
    import numpy as np
    return np.arange(s * s, dtype=np.int32).reshape(s, s)


def _flip_maps(s: int):
    import numpy as np

    idx = _pixel_index(s)
    return np.stack([idx, idx[:, ::-1], idx[::-1, :], idx[::-1, ::-1]]).reshape(4, -1)


def _rotate_maps(s: int):
    import numpy as np

    idx = _pixel_index(s)
    return np.stack([np.rot90(idx, k) for k in range(4)]).reshape(4, -1)


@_register("flip", "random horizontal and vertical flips (each with probability 1/2)", _flip_maps)
def _flip(b, seed):
    import tensorflow as tf

    u = tf.random.stateless_uniform([b, 2], seed)
    return tf.cast(u[:, 0] < 0.5, tf.int32) + 2 * tf.cast(u[:, 1] < 0.5, tf.int32)


@_register("rotate90", "random rotation by 0, 90, 180 or 270 degrees (square images)", _rotate_maps)
def _rotate90(b, seed):
    import tensorflow as tf

    return tf.random.stateless_uniform([b], seed, 0, 4, dtype=tf.int32)


@_register("brightness", f"add a random shift of at most {BRIGHTNESS:.0%} of the range")
def _brightness(x, seed):
    import tensorflow as tf

    b = tf.shape(x)[0]
    delta = tf.random.stateless_uniform([b, 1, 1, 1], seed, -BRIGHTNESS, BRIGHTNESS) * 255.0
    return tf.clip_by_value(x + delta, 0.0, 255.0)


@_register("contrast", f"scale about the image mean by 1 +- {CONTRAST}")
def _contrast(x, seed):
    import tensorflow as tf

    b = tf.shape(x)[0]
    factor = tf.random.stateless_uniform([b, 1, 1, 1], seed, 1.0 - CONTRAST, 1.0 + CONTRAST)
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.clip_by_value((x - mean) * factor + mean, 0.0, 255.0)


def _hsv_jitter(x, seed, hue: float, saturation: float, value: float = 0.0):
    """Per image: hue + U(-hue, hue) (mod 1), saturation and value x U(1 -+ their range). Each
    active component takes the next of ``seed``, ``fold_in(seed, 1)``, ``fold_in(seed, 2)``:
    independent draws, and the single-component jitters keep the draws they always had."""
    import tensorflow as tf

    b = tf.shape(x)[0]
    seeds = iter([seed, *(tf.random.experimental.stateless_fold_in(seed, i) for i in (1, 2))])
    hsv = tf.image.rgb_to_hsv(x / 255.0)
    h, s, v = tf.unstack(hsv, axis=-1)
    if hue:
        h = tf.math.floormod(h + tf.random.stateless_uniform([b, 1, 1], next(seeds), -hue, hue), 1.0)
    if saturation:
        factor = tf.random.stateless_uniform([b, 1, 1], next(seeds), 1.0 - saturation, 1.0 + saturation)
        s = tf.clip_by_value(s * factor, 0.0, 1.0)
    if value:
        factor = tf.random.stateless_uniform([b, 1, 1], next(seeds), 1.0 - value, 1.0 + value)
        v = tf.clip_by_value(v * factor, 0.0, 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0, 0.0, 255.0)


@_register("hue", f"rotate the hue by at most {HUE} of the colour circle")
def _hue(x, seed):
    return _hsv_jitter(x, seed, HUE, 0.0)


@_register("saturation", f"scale the saturation by 1 +- {SATURATION}")
def _saturation(x, seed):
    return _hsv_jitter(x, seed, 0.0, SATURATION)


@_register("hsv", f"HSV jitter (Tellez 2019): hue +- {HSV_HUE} of the circle, saturation x 1 +- "
                  f"{HSV_SATURATION}, value x 1 +- {HSV_VALUE}")
def _hsv(x, seed):
    return _hsv_jitter(x, seed, HSV_HUE, HSV_SATURATION, HSV_VALUE)


def rgb_to_hed(x):
    """``[..., 3]`` RGB in [0, 255] to haematoxylin, eosin and DAB concentrations in natural
    optical-density units: ``od = -ln(max(x, 1) / 255)`` (no log of 0), ``od @ inv(RGB_FROM_HED)``.
    This is ``skimage.color.rgb2hed * ln(1e6)`` for pixels >= 1, without its clip at 0 (kept so
    that the round trip is exact)."""
    import numpy as np
    import tensorflow as tf

    od = -tf.math.log(tf.maximum(x, 1.0) / 255.0)
    return od @ tf.constant(np.linalg.inv(np.array(RGB_FROM_HED)), tf.float32)


def hed_to_rgb(c):
    """Inverse of :func:`rgb_to_hed`: concentrations to RGB in [0, 255] (clipped)."""
    import tensorflow as tf

    od = c @ tf.constant(RGB_FROM_HED, tf.float32)
    return tf.clip_by_value(255.0 * tf.exp(-od), 0.0, 255.0)


def hed_jitter(x, alpha, beta):
    """``x`` ``[b, s, s, 3]`` with each stain concentration ``c`` replaced by ``c * alpha + beta``
    (``alpha``, ``beta`` broadcast against ``[b, s, s, 3]``, e.g. ``[b, 1, 1, 3]``)."""
    return hed_to_rgb(rgb_to_hed(x) * alpha + beta)


@_register("hed", f"HED stain jitter (Tellez 2019): per stain, optical density x 1 +- {HED}, "
                  f"+- {HED}")
def _hed(x, seed):
    import tensorflow as tf

    u = tf.random.stateless_uniform([2, tf.shape(x)[0], 1, 1, 3], seed, -HED, HED)
    return hed_jitter(x, 1.0 + u[0], u[1])


def border_colour(x):
    """Per image and channel, the median of the outermost ring of pixels: ``[b, 1, 1, 3]``."""
    import tensorflow as tf

    ring = tf.concat([x[:, 0], x[:, -1], x[:, 1:-1, 0], x[:, 1:-1, -1]], axis=1)  # (b, 4s - 4, 3)
    ring = tf.sort(ring, axis=1)
    return ring[:, (tf.shape(ring)[1] - 1) // 2][:, None, None, :]


def zoom(x, factor):
    """Zoom each image of ``x`` ``[b, s, s, 3]`` about its centre by ``factor`` ``[b]`` (bilinear,
    same size out): above 1 crops the centre, below 1 shrinks and pads with the image's
    :func:`border_colour`."""
    import tensorflow as tf

    half = 0.5 / factor
    boxes = tf.stack([0.5 - half, 0.5 - half, 0.5 + half, 0.5 + half], axis=1)
    # Sample points outside the image read -1: no pixel is below 0, not even after interpolation.
    out = tf.image.crop_and_resize(x, boxes, tf.range(tf.shape(x)[0]), tf.shape(x)[1:3],
                                   extrapolation_value=-1.0)
    out = tf.ensure_shape(out, x.shape)  # crop_size is a tensor: keep the static sizes in graphs
    return tf.clip_by_value(tf.where(out < 0.0, border_colour(x), out), 0.0, 255.0)


@_register("rescale", f"zoom about the centre by a factor in [1/{RESCALE}, {RESCALE}] "
                      "(log-uniform), padded with the border colour")
def _rescale(x, seed):
    import math

    import tensorflow as tf

    r = math.log(RESCALE)
    return zoom(x, tf.exp(tf.random.stateless_uniform([tf.shape(x)[0]], seed, -r, r)))


def augment_batch(images, names, seed):
    """Apply the transforms ``names`` (in order) to ``images`` ``[b, s, s, 3]`` in
    [0, 255] (uint8 or float32) and return float32; ``seed`` is an ``int32[2]`` stateless
    seed. Consecutive geometric transforms are composed into one source-pixel map per image
    and applied as a single gather on the batch as it is (uint8: a quarter of the bytes),
    just before the first photometric transform or the end; the result equals applying them
    one by one. ``[]`` or ``["none"]`` returns float32 input unchanged."""
    import tensorflow as tf

    maps = None
    for i, name in enumerate(n for n in names if n != NONE):
        aug = AUGMENTATIONS.get(name)
        step_seed = tf.random.experimental.stateless_fold_in(seed, i)
        if aug.geometric:
            maps = _compose(maps, images, aug, step_seed)
        else:
            images = aug.apply(tf.cast(_remap(images, maps), tf.float32), step_seed)
            maps = None
    return tf.cast(_remap(images, maps), tf.float32)


def _compose(maps, images, aug: Augmentation, seed):
    """Per-image source maps ``int32[b, s * s]`` after also applying ``aug``: output pixel p
    of the new step reads pixel ``table[p]`` of the previous step's output."""
    import tensorflow as tf

    b, s = tf.shape(images)[0], images.shape[1]
    table = tf.constant(aug.maps(s))
    step = tf.gather(table, aug.apply(b, seed))  # (b, s*s)
    if maps is None:
        return step
    return tf.gather(maps, step, batch_dims=1)


def _remap(images, maps):
    import tensorflow as tf

    if maps is None:
        return images
    shape = tf.shape(images)
    flat = tf.reshape(images, [shape[0], -1, shape[3]])
    return tf.reshape(tf.gather(flat, maps, batch_dims=1), shape)
