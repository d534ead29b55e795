"""Input pipeline of the deep families: ``tf.data`` over images decoded once by the image
stage (:func:`bmbench.data.images.load_images`, its decoded-image cache).

**tf.data.** :func:`training_batches` shuffles row indices (seeded, reshuffled each epoch),
repeats, batches, gathers the batch from the memory map in parallel, converts to float32,
augments (stateless, per image) and preprocesses on the fly, and prefetches. Shapes are
static so XLA compiles one program. :func:`inference_batches` is the same without
shuffling, repetition or augmentation; :func:`predict_rows` pads its last batch to the full
batch size, because CPU kernels chosen per batch shape round differently in the last bits,
and a prediction must not depend on how many images were predicted alongside it.
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Sequence

import numpy as np

from ..data.images import ImageSet

log = logging.getLogger("bmbench.run")

# --- tf.data -------------------------------------------------------------------------------

Preprocess = Callable  # float32[b, s, s, 3] in [0, 255] -> model input (same shape)


def _gather(images: np.ndarray, size: int, batch: int | None = None):
    """A tf.data map function: ``int64[b]`` row indices -> ``uint8[b, s, s, 3]`` (``b`` is
    static when ``batch`` is given)."""
    import tensorflow as tf

    def take(rows):
        return np.ascontiguousarray(images[rows])

    def fn(rows):
        batch_of = tf.numpy_function(take, [rows], tf.uint8, stateful=False)
        return tf.ensure_shape(batch_of, [batch, size, size, 3])
    return fn


def _options():
    import tensorflow as tf

    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return options


def training_batches(images: ImageSet, rows: np.ndarray, labels: np.ndarray, weights: np.ndarray,
                     batch_size: int, augment: Sequence[str], seed: int,
                     preprocess: Preprocess | None = None):
    """An endless ``tf.data.Dataset`` of ``(x float32[b, s, s, 3], y int32[b], w float32[b])``
    over ``images.images[rows]`` with labels ``labels`` ``(len(rows),)`` and per-sample
    weights ``weights`` ``(len(rows),)``; one epoch is ``ceil(len(rows) / batch_size)`` steps.
    The order is reshuffled every epoch from ``seed``; augmentation seeds are
    ``(seed, step)``."""
    import tensorflow as tf

    from .augment import augment_batch

    rows = np.asarray(rows, np.int64)
    y = tf.constant(np.asarray(labels, np.int32))
    w = tf.constant(np.asarray(weights, np.float32))
    gather = _gather(images.images, images.size, batch_size)
    names = [a for a in augment if a != "none"]

    def make(step, pos):
        x = augment_batch(gather(tf.gather(rows, pos)), names, tf.stack([tf.cast(seed, tf.int64), step]))
        if preprocess is not None:
            x = preprocess(x)
        return x, tf.gather(y, pos), tf.gather(w, pos)

    ds = (tf.data.Dataset.range(len(rows))
          .shuffle(len(rows), seed=seed, reshuffle_each_iteration=True)
          .repeat()
          .batch(batch_size, drop_remainder=True)
          .enumerate()
          .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
    return ds.with_options(_options())


def inference_batches(images: ImageSet, rows: np.ndarray, batch_size: int,
                      preprocess: Preprocess | None = None, labels: np.ndarray | None = None):
    """A finite, ordered ``tf.data.Dataset`` of ``x float32[b, s, s, 3]`` (or ``(x, y)``
    when ``labels`` ``(len(rows),)`` are given) over ``images.images[rows]``."""
    import tensorflow as tf

    rows = np.asarray(rows, np.int64)
    gather = _gather(images.images, images.size)
    y = tf.constant(np.asarray(labels if labels is not None else np.zeros(len(rows)), np.int32))

    def make(pos):
        x = tf.cast(gather(tf.gather(rows, pos)), tf.float32)
        if preprocess is not None:
            x = preprocess(x)
        return (x, tf.gather(y, pos)) if labels is not None else x

    ds = (tf.data.Dataset.range(len(rows)).batch(batch_size)
          .map(make, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
          .prefetch(tf.data.AUTOTUNE))
    return ds.with_options(_options())


def full_batches(rows: np.ndarray, batch_size: int) -> np.ndarray:
    """``rows`` with its last entry repeated up to a multiple of ``batch_size``."""
    rows = np.asarray(rows)
    pad = -len(rows) % batch_size
    return np.concatenate([rows, np.repeat(rows[-1:], pad, axis=0)]) if pad and len(rows) else rows


def predict_rows(model, images: ImageSet, rows: np.ndarray, batch_size: int,
                 preprocess: Preprocess | None = None) -> np.ndarray:
    """``model`` outputs ``(len(rows), ...)`` for ``images.images[rows]``, every batch of the
    same shape (see the module docstring)."""
    data = inference_batches(images, full_batches(rows, batch_size), batch_size, preprocess)
    return np.asarray(model.predict(data, verbose=0))[:len(rows)]


def steps_per_epoch(n: int, batch_size: int) -> int:
    """Batches per pass over ``n`` rows: ``ceil(n / batch_size)``."""
    return max(1, -(-n // batch_size))


def pipeline_rate(dataset, batches: int, batch_size: int) -> float:
    """Images per second the input pipeline alone delivers over ``batches`` batches (no
    model), to compare with the training rate: the pipeline must outpace the model."""
    it = iter(dataset)
    next(it)  # warm-up: tracing and the first gather
    t0 = time.perf_counter()
    for _ in range(batches):
        next(it)
    return batches * batch_size / max(time.perf_counter() - t0, 1e-9)
