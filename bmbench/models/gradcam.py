"""Grad-CAM and Grad-CAM++ heatmaps of a Keras image classifier, with ``tf.GradientTape``.

Selvaraju et al. 2017 (Grad-CAM) weight each channel of the last convolutional feature map
by the mean gradient of the class score over it; Chattopadhay et al. 2018 (Grad-CAM++)
weight each position's positive gradient by second- and third-order terms, which spreads
the map over several instances of a class. The class score is the pre-softmax logit.

The model is run layer by layer instead of through a sub-model cut at the feature map: a
``keras.applications`` backbone nested in the classifier has its own graph, so a sub-model
from the outer input to a layer inside it fails ("Graph disconnected"). Calling each
top-level layer in turn works for every chain-shaped model (the ``cnn`` family; the
``transfer`` family's ``image -> backbone -> pool -> dropout -> softmax``): the feature map
is the output of the last top-level layer with a 4-D output that is not pooling, i.e. the
last convolution block of the small CNN and the whole backbone of a transfer model.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Heatmap methods by name.
METHODS = ("gradcam", "gradcam++")


@dataclass
class HeatmapExplanation:
    """images: ``uint8[n, s, s, 3]`` the model's inputs (before ``preprocess_input``).
    proba: ``float64[n, n_classes]`` (NaN rows: unreadable). target: ``int[n]`` the class
    each map explains (the predicted one; -1 for unreadable images). heatmaps:
    ``float32[n, s, s]`` in [0, 1] (NaN for unreadable images). method: ``METHODS`` entry;
    layer: the feature map's layer."""

    images: np.ndarray
    proba: np.ndarray
    target: np.ndarray
    heatmaps: np.ndarray
    method: str
    layer: str


def _chain(model) -> list:
    """Top-level layers of ``model`` after its input, checked to form a single chain."""
    layers = [layer for layer in model.layers if layer.__class__.__name__ != "InputLayer"]
    for layer in layers:
        if len(getattr(layer, "_inbound_nodes", [None])) > 1 or isinstance(layer.input, (list, tuple)):
            raise ValueError(f"Grad-CAM needs a chain of layers; {layer.name!r} of {model.name!r} "
                             "is shared or has several inputs")
    return layers


def feature_layer(model) -> str:
    """Name of the layer whose output Grad-CAM weights (see the module docstring)."""
    found = None
    for layer in _chain(model):
        shape = layer.output.shape
        if len(shape) == 4 and "Pooling" not in layer.__class__.__name__:
            found = layer.name
    if found is None:
        raise ValueError(f"model {model.name!r} has no 4-D feature map for Grad-CAM")
    return found


def _run(model, x, layer_name: str, tape):
    """``(feature map, logits)`` of ``x``: the chain run in inference mode, the last
    softmax ``Dense`` layer replaced by its pre-activation."""
    import keras
    from keras import ops

    fmap = None
    layers = _chain(model)
    for i, layer in enumerate(layers):
        last = i == len(layers) - 1
        if last and isinstance(layer, keras.layers.Dense):
            x = ops.matmul(ops.cast(x, layer.kernel.dtype), layer.kernel)
            if layer.use_bias:
                x = x + layer.bias
        else:
            x = layer(x, training=False)
        if layer.name == layer_name:
            fmap = x
            tape.watch(fmap)
    return fmap, x


def heatmaps(model, x: np.ndarray, classes: np.ndarray, method: str = "gradcam",
             batch_size: int = 32) -> np.ndarray:
    """``float32[n, s, s]`` heatmaps in [0, 1] for the preprocessed inputs ``x``
    (``float32[n, s, s, 3]``), one per image for class index ``classes[i]``.

    Maps are computed at the feature map's resolution, brought to ``s x s`` bilinearly and
    scaled so each image's maximum is 1 (all zero where no position raises the score).
    """
    import tensorflow as tf

    if method not in METHODS:
        raise ValueError(f"unknown heatmap method {method!r}; known: {', '.join(METHODS)}")
    layer_name = feature_layer(model)
    out = []
    for start in range(0, len(x), batch_size):
        xb = tf.convert_to_tensor(x[start:start + batch_size], tf.float32)
        cb = tf.convert_to_tensor(np.asarray(classes[start:start + batch_size]), tf.int32)
        with tf.GradientTape(persistent=False) as tape:
            fmap, logits = _run(model, xb, layer_name, tape)
            score = tf.gather(tf.cast(logits, tf.float32), cb, batch_dims=1)
        grads = tf.cast(tape.gradient(score, fmap), tf.float32)
        fmap = tf.cast(fmap, tf.float32)
        cam = _gradcam_pp(fmap, grads) if method == "gradcam++" else _gradcam(fmap, grads)
        cam = tf.image.resize(cam[..., None], x.shape[1:3], method="bilinear")[..., 0]
        peak = tf.reduce_max(cam, axis=(1, 2), keepdims=True)
        out.append((cam / tf.where(peak > 0, peak, 1.0)).numpy())
    return np.concatenate(out).astype(np.float32) if out else np.zeros((0,) + x.shape[1:3], np.float32)


def explain_images(model, images: np.ndarray, valid: np.ndarray, proba: np.ndarray, preprocess=None,
                   method: str = "gradcam", batch_size: int = 32) -> HeatmapExplanation:
    """Heatmaps of the predicted class (largest of ``proba``) for the ``valid`` rows of the
    ``uint8[n, s, s, 3]`` ``images``, preprocessed by ``preprocess`` (a backbone's
    ``preprocess_input``; None: the model takes [0, 255] RGB)."""
    rows = np.flatnonzero(valid)
    target = np.full(len(images), -1)
    target[rows] = np.nan_to_num(proba[rows], nan=-1).argmax(axis=1)
    maps = np.full(images.shape[:3], np.nan, np.float32)
    if len(rows):
        x = np.asarray(images[rows], np.float32)
        x = preprocess(x) if preprocess is not None else x
        maps[rows] = heatmaps(model, np.asarray(x, np.float32), target[rows], method, batch_size)
    return HeatmapExplanation(np.asarray(images), proba, target, maps, method, feature_layer(model))


def _gradcam(fmap, grads):
    import tensorflow as tf

    weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))


def _gradcam_pp(fmap, grads):
    import tensorflow as tf

    # With score = exp(logit), the higher derivatives are powers of the first (paper, eq. 19).
    g2, g3 = grads ** 2, grads ** 3
    denom = 2.0 * g2 + tf.reduce_sum(fmap, axis=(1, 2), keepdims=True) * g3
    alpha = g2 / tf.where(denom != 0, denom, 1.0)
    weights = tf.reduce_sum(alpha * tf.nn.relu(grads), axis=(1, 2), keepdims=True)
    return tf.nn.relu(tf.reduce_sum(weights * fmap, axis=-1))


def overlay(image: np.ndarray, heatmap: np.ndarray, alpha: float = 0.45) -> np.ndarray:
    """``uint8[H, W, 3]``: ``image`` (RGB) blended with the ``heatmap`` ([0, 1], any size,
    resized to the image) in the JET colour map, where 1 is red."""
    import cv2

    h, w = image.shape[:2]
    heat = cv2.resize(np.clip(heatmap, 0, 1).astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR)
    colour = cv2.applyColorMap(np.uint8(np.round(heat * 255)), cv2.COLORMAP_JET)[..., ::-1]
    return cv2.addWeighted(np.ascontiguousarray(image), 1 - alpha, np.ascontiguousarray(colour), alpha, 0)
