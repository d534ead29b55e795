"""``cnn``: a small convolutional network trained from scratch on the run's images.

Architecture (input ``s x s`` RGB, ``s = dataset.image_size``)::

    Rescaling(1/255)
    depth x [Conv3x3-Norm-ReLU, Conv3x3-Norm-ReLU, MaxPool 2x2]   filters width * 2**min(block, 3)
    GlobalAveragePooling -> Dropout(dropout) -> Dense(n_classes, softmax, float32)

With ``dense: [u1, u2, ...]`` the pooled features go through hidden layers
``Dense(u, ReLU) -> Dropout(dropout)`` each, then the softmax (the "dense layers with dropout"
head of many published notebooks); without it the network is exactly the one above.

``Norm`` is ``model.norm`` (:mod:`bmbench.models.norm`): BatchNorm (``batch``, default),
GroupNorm over ``norm_groups`` groups (``group``), GroupNorm over one group (``layer``) or
nothing (``none``, the convolutions then have a bias).

The defaults (4 blocks = 8 convolutions, width 32, about 1.2 M parameters) fit 64 px cells
on a CPU. BatchNorm momentum is 0.9 (see ``SCRATCH_BN_MOMENTUM``). Training:
:mod:`bmbench.deep.training` (Adam at ``train.learning_rate``, early stopping on validation
loss with the best epoch restored, learning rate halved on plateaus) on augmented batches
from :mod:`bmbench.deep.pipeline`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Optional

from ...core.errors import RecipeError
from ...config.schema import option
from ...config.space import floats, ints
from ..norm import DEFAULT_GROUPS, check_norm_groups, norm_layer
from ..keras_model import KerasClassifier
from ..registry import Family, Subset, register_family


@dataclass(frozen=True)
class CNNOptions:
    depth: int = option(4, ge=1, le=7, doc="convolution blocks (two 3x3 conv-BN-ReLU layers and "
                                           "2x2 max pooling each); needs image_size >= 2**depth",
                        space=ints(2, 5))
    width: int = option(32, ge=4, le=256, doc="filters of the first block, doubled per block up to 8x",
                        space=ints(16, 64, log=True))
    dropout: float = option(0.3, ge=0.0, lt=1.0, doc="dropout rate before the softmax layer "
                                                     "(and after every dense layer)", space=floats(0.0, 0.6))
    dense: Optional[tuple[int, ...]] = option(
        None, ge=1, le=65_536, doc="hidden dense layers (ReLU units each, e.g. [256, 128]) between "
                                   "the pooling and the softmax, each followed by dropout")
    norm: Literal["batch", "group", "layer", "none"] = option(
        "batch", doc="normalisation after every convolution: batch (BatchNorm), group (GroupNorm, "
                     "norm_groups groups), layer (GroupNorm with one group) or none")
    norm_groups: int = option(DEFAULT_GROUPS, ge=1, le=256, doc="groups of norm: group; must divide width")

    def __post_init__(self) -> None:
        check_norm_groups(self.norm, self.norm_groups, self.width)


def build_cnn(size: int, n_classes: int, depth: int = 4, width: int = 32, dropout: float = 0.3,
              dense: tuple[int, ...] | None = None, norm: str = "batch", norm_groups: int = DEFAULT_GROUPS):
    """The network above as a ``keras.Model``: ``float32[b, size, size, 3]`` RGB in
    [0, 255] -> ``float32[b, n_classes]`` probabilities."""
    import keras
    from keras import layers

    from ...deep.training import SCRATCH_BN_MOMENTUM

    inputs = keras.Input((size, size, 3), name="image")
    x = layers.Rescaling(1.0 / 255.0, name="scale")(inputs)
    for block in range(depth):
        filters = width * 2 ** min(block, 3)
        for conv in range(2):
            x = layers.Conv2D(filters, 3, padding="same", use_bias=norm == "none",
                              kernel_initializer="he_normal", name=f"block{block + 1}_conv{conv + 1}")(x)
            normalise = norm_layer(norm, norm_groups, f"block{block + 1}_{_SHORT[norm]}{conv + 1}",
                                   SCRATCH_BN_MOMENTUM)
            x = normalise(x) if normalise is not None else x
            x = layers.ReLU(name=f"block{block + 1}_relu{conv + 1}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block + 1}_pool")(x)
    x = layers.GlobalAveragePooling2D(name="pool")(x)
    for i, units in enumerate(dense or ()):
        x = layers.Dense(units, activation="relu", kernel_initializer="he_normal", name=f"dense{i + 1}")(x)
        x = layers.Dropout(dropout, name=f"dense{i + 1}_dropout")(x)
    if not dense:
        x = layers.Dropout(dropout, name="dropout")(x)
    outputs = layers.Dense(n_classes, activation="softmax", dtype="float32", name="probabilities")(x)
    return keras.Model(inputs, outputs, name="small_cnn")


#: layer-name infix per norm (``block1_bn1``: the names of every earlier model)
_SHORT = {"batch": "bn", "group": "gn", "layer": "ln", "none": ""}


@register_family
class CNN(Family):
    name = "cnn"
    libraries = ("keras",)
    description = "small CNN (conv-norm-ReLU blocks, global pooling, dropout) trained from scratch"
    Options = CNNOptions
    transductive = ("adabn",)
    tuned_train = ("learning_rate", "batch_size", "augment")
    supports_tta = True

    @staticmethod
    def summary(opts: CNNOptions) -> str:
        dense = f", dense {'-'.join(map(str, opts.dense))}" if opts.dense else ""
        norm = "" if opts.norm == "batch" else f", {opts.norm} norm"
        return f"{2 * opts.depth} conv, width {opts.width}{dense}, dropout {opts.dropout:g}{norm}"

    def fit(self, train: Subset, val: Subset | None, ctx) -> KerasClassifier:
        from ...deep.devices import prepare_devices
        from ...deep.training import compile_model, fit_stage
        from ..image_data import ImageData

        opts: CNNOptions = ctx.options
        t, size = ctx.train, ctx.image_size
        if size < 2 ** opts.depth:
            raise RecipeError(f"model.depth: {opts.depth} blocks halve the image {opts.depth} times; "
                              f"dataset.image_size {size} must be at least {2 ** opts.depth}")
        devices = prepare_devices(ctx)
        data = ImageData.load(train, val, ctx)
        with devices.scope():
            model = build_cnn(size, len(train.classes), opts.depth, opts.width, opts.dropout, opts.dense,
                              opts.norm, opts.norm_groups)
            compile_model(model, t.learning_rate, devices)
            batches, steps = data.training(ctx, None, t.augment)
            data.measure_input(ctx, batches, steps)
            result = fit_stage(model, batches, steps, data.validation(ctx, None), stage="train",
                               epochs=t.epochs, patience=t.patience, batch_size=t.batch_size,
                               ctx=ctx)
        return KerasClassifier(train.classes, model, size, None, {"stages": {"train": result.as_dict()}})

    @staticmethod
    def load(folder: Path, recipe, ctx) -> KerasClassifier:
        return KerasClassifier.load(folder)
