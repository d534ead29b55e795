"""Normalisation layers of networks trained from scratch (``model.norm``).

* ``batch``: BatchNormalization (the default): normalises with the training batches'
  statistics while training and with moving averages of them afterwards, so a change of
  lab shifts the features it normalises with (and :mod:`bmbench.deep.adabn` can
  re-estimate them on the new lab's images).
* ``group``: GroupNormalization (Wu & He 2018) over ``norm_groups`` groups of channels, per
  image: nothing is remembered from the training images.
* ``layer``: layer normalisation as Wu & He define it for convolutions: GroupNormalization
  with one group (all channels and positions of one image), a scale and offset per channel.
* ``none``: no normalisation (the convolutions get a bias instead).

Tsutsui et al. (ICASSP 2023) found BatchNorm the main cause of poor transfer between white-cell
data sets; ``group`` and ``layer`` are the per-image alternatives they measured.
"""

from __future__ import annotations

import math

NORMS = ("batch", "group", "layer", "none")
#: ``model.norm_groups`` default: divides every channel count of the small CNN at width >= 8.
DEFAULT_GROUPS = 8


def check_norm_groups(norm: str, groups: int, channels: int, width_key: str = "width") -> None:
    """``ValueError`` (named by the recipe loader) when ``norm_groups`` is set without
    ``norm: group`` or does not divide ``channels``."""
    if norm != "group" and groups != DEFAULT_GROUPS:
        raise ValueError(f"norm_groups: {groups} is read by norm: group only (norm is {norm}); remove it")
    if norm == "group" and channels % groups:
        raise ValueError(f"norm_groups: {groups} groups do not divide the {channels} filters of "
                         f"{width_key} {channels}; choose a divisor of {channels}")


def norm_layer(norm: str, groups: int, name: str, momentum: float):
    """The layer after a convolution for ``norm`` (None for ``none``), named ``name``."""
    from keras import layers

    if norm == "batch":
        return layers.BatchNormalization(momentum=momentum, name=name)
    if norm == "group":
        return layers.GroupNormalization(groups=groups, name=name)
    if norm == "layer":
        return layers.GroupNormalization(groups=1, name=name)
    return None


def replace_batchnorm(model, norm: str, groups: int):
    """A copy of the functional ``model`` (freshly initialised) in which every
    BatchNormalization layer is the ``norm`` layer instead (``none``: an Identity layer);
    GroupNorm takes ``gcd(groups, channels)`` groups where ``groups`` does not divide a
    layer's channels. ``ValueError`` when ``model`` has no BatchNormalization layer."""
    import keras
    from keras import layers

    if not any(isinstance(layer, layers.BatchNormalization) for layer in model.layers):
        raise ValueError(f"{model.name} has no BatchNormalization layers to replace; use norm: batch")

    def clone(layer):
        if not isinstance(layer, layers.BatchNormalization):
            return layer.__class__.from_config(layer.get_config())
        name = f"{layer.name}_{norm[0]}n"
        if norm == "none":
            return layers.Identity(name=name)
        channels = int(layer.moving_mean.shape[0])
        n = 1 if norm == "layer" else math.gcd(groups, channels)
        return layers.GroupNormalization(groups=n, axis=layer.axis if isinstance(layer.axis, int) else -1,
                                         epsilon=max(layer.epsilon, 1e-5), name=name)

    def call(layer, *args, **kwargs):  # the replacements take no mask/training arguments
        if isinstance(layer, (layers.GroupNormalization, layers.Identity)):
            kwargs = {}
        return layer(*args, **kwargs)

    return keras.models.clone_model(model, clone_function=clone, call_function=call)


def count_layers(model) -> dict[str, int]:
    """``{layer class name: count}`` over ``model`` and the models nested in it."""
    counts: dict[str, int] = {}
    for layer in model.layers:
        inner = getattr(layer, "layers", None)
        if inner is not None:
            for kind, n in count_layers(layer).items():
                counts[kind] = counts.get(kind, 0) + n
        else:
            counts[type(layer).__name__] = counts.get(type(layer).__name__, 0) + 1
    return counts
