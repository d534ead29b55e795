"""AdaBN (Li et al. 2016): a network's BatchNorm statistics re-estimated on unlabelled images.

A network trained on one lab normalises each BatchNorm layer's input with the mean and
variance it saw in training; on another lab's images those no longer centre the features.
AdaBN replaces them by the statistics of the new images. Here they are exact pooled
statistics of one pass over the images in batches: every BatchNorm layer normalises with its
batch's own statistics (training mode, as while training; the layers below it adapted the
same way), its momentum is 0 so the moving statistics read after each batch are that batch's,
and the pooled mean and variance over all batches become the layer's moving statistics.
Dropout is off during the pass and no weight is trained: only the moving statistics change.
The labels of the images are never an input.
"""

from __future__ import annotations

import numpy as np

from ..data.images import ImageSet
from .pipeline import Preprocess, inference_batches


def layers_of(model, kind) -> list:
    """Every layer of class ``kind`` in ``model`` and in the models nested in it, in order."""
    found = []
    for layer in model.layers:
        if isinstance(layer, kind):
            found.append(layer)
        elif getattr(layer, "layers", None) is not None:
            found += layers_of(layer, kind)
    return found


def adapt_batchnorm(model, images: ImageSet, rows: np.ndarray, batch_size: int,
                    preprocess: Preprocess | None = None) -> int:
    """Set the moving mean and variance of every BatchNorm layer of ``model`` (in place) to
    the pooled statistics of its inputs over ``images.images[rows]`` (see the module
    documentation); returns the number of layers. ``ValueError`` when it has none or
    ``rows`` is empty."""
    from keras import layers

    bns = layers_of(model, layers.BatchNormalization)
    if not bns:
        raise ValueError(f"{model.name} has no BatchNormalization layers (model.norm other than batch)")
    if not len(rows):
        raise ValueError("no readable image to estimate statistics on")
    drops = layers_of(model, layers.Dropout)
    saved = [(layer.momentum, layer.trainable) for layer in bns]
    rates = [layer.rate for layer in drops]
    sums = [[0.0, 0.0] for _ in bns]
    n = 0
    try:
        for layer in bns:
            layer.momentum, layer.trainable = 0.0, True
        for layer in drops:
            layer.rate = 0.0
        for x in inference_batches(images, rows, batch_size, preprocess):
            b = int(x.shape[0])
            model(x, training=True)
            for acc, layer in zip(sums, bns):
                mean = np.asarray(layer.moving_mean.numpy(), np.float64)
                var = np.asarray(layer.moving_variance.numpy(), np.float64)
                acc[0] = acc[0] + b * mean
                acc[1] = acc[1] + b * (var + mean * mean)
            n += b
    finally:
        for layer, (momentum, trainable) in zip(bns, saved):
            layer.momentum, layer.trainable = momentum, trainable
        for layer, rate in zip(drops, rates):
            layer.rate = rate
    for (s1, s2), layer in zip(sums, bns):
        mean = s1 / n
        layer.moving_mean.assign(mean.astype(np.float32))
        layer.moving_variance.assign(np.maximum(s2 / n - mean * mean, 0.0).astype(np.float32))
    return len(bns)
