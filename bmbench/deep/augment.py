"""On-the-fly augmentation of training batches: one registry entry per transform.

Every transform maps a batch ``float32[b, s, s, 3]`` with values in [0, 255] and a
stateless seed ``int32[2]`` to a batch of the same shape, dtype and range. Random values
are drawn per image, so one batch never shares a single flip or colour shift. Seeds are
stateless: the augmented images are a function of (seed, step), identical on every rerun.
Cells have no preferred orientation, so flips and right-angle rotations are label-safe;
colour jitter is kept small because stain colour carries class information.

This module imports no TensorFlow at load time: recipe validation reads the names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

NONE = "none"

#: Largest brightness shift, as a fraction of the 0-255 range.
BRIGHTNESS = 0.08
#: Contrast factor range is 1 +- CONTRAST (about each image's per-channel mean).
CONTRAST = 0.1
#: Largest hue shift, as a fraction of the colour circle (0.02 = 7.2 degrees).
HUE = 0.02
#: Saturation factor range is 1 +- SATURATION.
SATURATION = 0.1


@dataclass(frozen=True)
class Augmentation:
    name: str
    description: str
    apply: Callable  # (images [b, s, s, 3] in [0, 255], seed int32[2]) -> same
    #: moves pixels without changing values: runs on the uint8 batch, before the float cast
    geometric: bool = False


AUGMENTATIONS: dict[str, Augmentation] = {}


def _register(name: str, description: str, geometric: bool = False):
    def wrap(fn):
        AUGMENTATIONS[name] = Augmentation(name, description, fn, geometric)
        return fn
    return wrap


def augmentation_names() -> list[str]:
    """Valid values of ``train.augment`` items: every transform, and ``none``."""
    return [*AUGMENTATIONS, NONE]


def _per_image(mask, b):
    import tensorflow as tf
    return tf.reshape(mask, [b, 1, 1, 1])


@_register("flip", "random horizontal and vertical flips (each with probability 1/2)", geometric=True)
def _flip(x, seed):
    import tensorflow as tf

    b = tf.shape(x)[0]
    u = tf.random.stateless_uniform([b, 2], seed)
    x = tf.where(_per_image(u[:, 0] < 0.5, b), tf.reverse(x, [2]), x)
    return tf.where(_per_image(u[:, 1] < 0.5, b), tf.reverse(x, [1]), x)


@_register("rotate90", "random rotation by 0, 90, 180 or 270 degrees (square images)", geometric=True)
def _rotate90(x, seed):
    import tensorflow as tf

    b = tf.shape(x)[0]
    k = tf.random.stateless_uniform([b], seed, 0, 4, dtype=tf.int32)
    out = x
    for turns in (1, 2, 3):
        out = tf.where(_per_image(tf.equal(k, turns), b), tf.image.rot90(x, turns), out)
    return out


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


def _hsv_jitter(x, seed, hue: float, saturation: float):
    import tensorflow as tf

    b = tf.shape(x)[0]
    hsv = tf.image.rgb_to_hsv(x / 255.0)
    h, s, v = tf.unstack(hsv, axis=-1)
    if hue:
        h = tf.math.floormod(h + tf.random.stateless_uniform([b, 1, 1], seed, -hue, hue), 1.0)
    if saturation:
        factor = tf.random.stateless_uniform([b, 1, 1], seed, 1.0 - saturation, 1.0 + saturation)
        s = tf.clip_by_value(s * factor, 0.0, 1.0)
    return tf.clip_by_value(tf.image.hsv_to_rgb(tf.stack([h, s, v], axis=-1)) * 255.0, 0.0, 255.0)


@_register("hue", f"rotate the hue by at most {HUE} of the colour circle")
def _hue(x, seed):
    return _hsv_jitter(x, seed, HUE, 0.0)


@_register("saturation", f"scale the saturation by 1 +- {SATURATION}")
def _saturation(x, seed):
    return _hsv_jitter(x, seed, 0.0, SATURATION)


def augment_batch(images, names, seed):
    """Apply the transforms ``names`` (in order) to ``images`` ``[b, s, s, 3]`` in
    [0, 255] (uint8 or float32) and return float32; ``seed`` is an ``int32[2]`` stateless
    seed. Geometric transforms run on uint8 input as it is (a quarter of the bytes to move;
    same result), the cast comes just before the first photometric one. ``[]`` or
    ``["none"]`` returns float32 input unchanged."""
    import tensorflow as tf

    for i, name in enumerate(n for n in names if n != NONE):
        aug = AUGMENTATIONS[name]
        if not aug.geometric:
            images = tf.cast(images, tf.float32)
        images = aug.apply(images, tf.random.experimental.stateless_fold_in(seed, i))
    return tf.cast(images, tf.float32)
