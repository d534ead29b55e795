"""Training and validation images of a deep-family fit: decoded once, served as ``tf.data``.

Unreadable images (``dataset.on_bad_image: skip``) are left out of training. Per-sample
weights follow ``train.class_weight`` (inverse class frequency, mean 1, or all ones).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..data.images import ImageSet
from ..deep.pipeline import (inference_batches, pipeline_rate,
                             steps_per_epoch, training_batches)
from .classifiers import class_weights
from .registry import Subset

log = logging.getLogger("bmbench.run")


@dataclass(frozen=True)
class ImageData:
    """train / val: decoded images (val None without a validation split); *_rows: rows of
    readable images; *_labels: their class indices; weights: per-sample training weights."""

    train: ImageSet
    train_rows: np.ndarray
    train_labels: np.ndarray
    weights: np.ndarray
    val: ImageSet | None
    val_rows: np.ndarray
    val_labels: np.ndarray
    n_classes: int

    @classmethod
    def load(cls, train: Subset, val: Subset | None, ctx) -> "ImageData":
        tr = ctx.load_images(train.paths, "decoding train images")
        rows = np.flatnonzero(tr.valid)
        y = train.labels[rows]
        w = class_weights(y, len(train.classes), ctx.train.class_weight)
        va, val_rows, val_y = None, np.zeros(0, np.int64), np.zeros(0, np.int64)
        if val is not None:
            va = ctx.load_images(val.paths, "decoding validation images")
            val_rows = np.flatnonzero(va.valid)
            val_y = val.labels[val_rows]
            if not len(val_rows):
                va = None
        return cls(tr, rows, y, w, va, val_rows, val_y, len(train.classes))

    def training(self, ctx, preprocess, augment) -> tuple[object, int]:
        """``(endless dataset, steps per epoch)`` of augmented, preprocessed batches."""
        t = ctx.train
        data = training_batches(self.train, self.train_rows, self.train_labels, self.weights,
                                t.batch_size, augment, ctx.seed, preprocess)
        return data, steps_per_epoch(len(self.train_rows), t.batch_size)

    def validation(self, ctx, preprocess):
        """Ordered ``(x, y)`` batches of the validation images, or None."""
        if self.val is None:
            return None
        return inference_batches(self.val, self.val_rows, ctx.train.batch_size,
                                 preprocess, self.val_labels)

    def measure_input(self, ctx, data, steps: int) -> None:
        """Record how fast the input pipeline alone delivers training images
        (``notes.input_pipeline_images_per_s``), to compare with the training rate."""
        batches = min(steps, 20)
        rate = pipeline_rate(data, batches, ctx.train.batch_size)
        ctx.notes.record_input_rate(round(rate, 1))
        log.info("input pipeline: %.0f images/s (augment: %s)", rate,
                 ", ".join(ctx.train.augment))
