"""``transfer``: a pretrained Keras encoder with a new classification head.

The encoder is ``model.backbone`` (:mod:`bmbench.models.encoders`): a ``keras.applications``
name, a ``.keras`` file or a stored ``cnn``/``transfer`` run (ONNX encoders are frozen and
belong to ``hybrid``). With a file or run encoder, ``weights: none`` is its architecture
freshly initialised; the head-only stage then always runs the full model (no saved
backbone reference), everything else below is the same.

Model: ``image -> backbone -> global pooling -> dropout -> dense softmax (float32)``, with
the backbone's own ``preprocess_input`` applied in the input pipeline.

With pretrained weights (``imagenet`` or a weights file), training has two stages:

1. **Head**: the backbone is frozen (and runs in inference mode, so BatchNorm statistics
   stay as pretrained); only the head trains, for ``train.epochs`` epochs at
   ``train.learning_rate``. By default it trains on cached backbone embeddings
   (:mod:`.embeddings`): the backbone runs once per image, and reruns or head ablations
   skip it entirely; without fine-tuning, the run's test predictions go through the
   cached embeddings too. ``augment_head: true`` trains on augmented images through the frozen
   backbone instead (slower; no cache).
2. **Fine-tuning** (when ``fine_tune_layers > 0``): the top ``fine_tune_layers`` backbone
   layers are unfrozen (BatchNorm layers stay frozen) and the whole model trains on
   augmented images for ``fine_tune_epochs`` at ``fine_tune_learning_rate``.

With ``weights: none`` the same architecture trains from scratch in one stage (every layer
trainable, BatchNorm included, with momentum 0.9 as in ``cnn``) on augmented images: the
pretrained-versus-scratch comparison. Every stage early-stops on validation loss and keeps its best epoch.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from ...config.schema import option
from ...config.space import floats, ints
from ..keras_model import KerasClassifier
from ..norm import DEFAULT_GROUPS, check_norm_groups
from ..registry import Family, Subset, register_family
from ...config.recipe import WEIGHT_KEYWORDS

log = logging.getLogger("bmbench.run")


def _encoder(value, ctx):
    from ..encoders import parse_encoder
    return parse_encoder(value, ctx)


@dataclass(frozen=True)
class TransferOptions:
    backbone: Any = option("DenseNet121", parse=_encoder,
                           doc="encoder: a keras.applications name, or {kind: keras_file, path: F} | "
                               "{kind: run, run: ID} (see Benchmark a foundation model)")
    weights: str = option("imagenet", doc="imagenet (Keras download/cache), none (train from "
                                          "scratch) or a .weights.h5/.h5 file of this backbone; with "
                                          "a file or run encoder: none = its architecture from scratch, "
                                          "anything else = its own weights")
    pooling: Literal["avg", "max"] = option("avg", doc="global pooling of the last feature map")
    dropout: float = option(0.3, ge=0.0, lt=1.0, doc="dropout rate before the softmax layer",
                            space=floats(0.0, 0.6))
    augment_head: bool = option(False, doc="stage 1 on augmented images through the frozen backbone "
                                           "(false: on cached embeddings, no augmentation)")
    fine_tune_layers: int = option(0, ge=0, le=10_000, doc="stage 2: unfreeze the top N backbone "
                                                           "layers (0: no stage 2)",
                                  space=ints(0, 60))
    fine_tune_epochs: int = option(10, ge=1, le=10_000, doc="stage 2 maximum epochs")
    fine_tune_learning_rate: float = option(1e-5, gt=0.0, le=1.0, doc="stage 2 learning rate",
                                            space=floats(1e-6, 1e-4, log=True))
    norm: Literal["batch", "group", "layer", "none"] = option(
        "batch", doc="with weights: none, replace every BatchNorm layer of the backbone by group "
                     "(GroupNorm), layer (GroupNorm, one group) or none (identity); batch keeps them")
    norm_groups: int = option(DEFAULT_GROUPS, ge=1, le=256, doc="groups of norm: group (fewer where "
                              "they do not divide a layer's channels: their greatest common divisor)")

    def __post_init__(self) -> None:
        check_norm_groups(self.norm, self.norm_groups, self.norm_groups)
        if self.norm != "batch" and self.weights != "none":
            raise ValueError(f"norm: {self.norm} replaces the BatchNorm layers that the pretrained "
                             f"weights ({self.weights}) need; use norm: batch, or weights: none to train "
                             "from scratch")


def weights_label(weights: str, backbone=None) -> str:
    if backbone is not None and getattr(backbone, "kind", "keras_applications") != "keras_applications":
        return "from scratch" if weights == "none" else "pretrained"
    return weights if weights in WEIGHT_KEYWORDS else f"file {Path(weights).name}"


def is_application(backbone) -> bool:
    return getattr(backbone, "kind", "keras_applications") == "keras_applications"


def check_encoder(opts) -> None:
    """Preflight of ``model.backbone`` / ``model.weights``: the ImageNet weights of a
    keras.applications name, or the encoder's file or run (opened and checked), before any
    image is decoded."""
    if is_application(opts.backbone):
        if opts.weights == "imagenet":
            from ..backbones import check_imagenet_available

            check_imagenet_available(opts.backbone.name)
        return
    opts.backbone.open()


@register_family
class Transfer(Family):
    name = "transfer"
    libraries = ("keras",)
    description = "keras.applications backbone (ImageNet, local or no weights) + new head, 1-2 stages"
    Options = TransferOptions
    transductive = ("adabn",)
    tuned_train = ("learning_rate", "batch_size")
    supports_tta = True

    @staticmethod
    def preflight(opts: TransferOptions) -> None:
        check_encoder(opts)
        if not is_application(opts.backbone) and not opts.backbone.open().trainable:
            from ...core.errors import RecipeError

            raise RecipeError(f"model.backbone: the {opts.backbone.kind} encoder {opts.backbone.name} is "
                              "frozen and not a Keras network; use family hybrid with features: [] and "
                              "classifier logistic or knn (a probe)")

    @staticmethod
    def summary(opts: TransferOptions) -> str:
        if opts.weights == "none":
            return f"{opts.backbone} from scratch" + ("" if opts.norm == "batch" else f", {opts.norm} norm")
        stages = f", fine-tune top {opts.fine_tune_layers}" if opts.fine_tune_layers else ", head only"
        return f"{opts.backbone} {weights_label(opts.weights, opts.backbone)}{stages}"

    def fit(self, train: Subset, val: Subset | None, ctx) -> KerasClassifier:
        from ...deep.devices import prepare_devices
        from ..backbones import preprocess_for
        from ..embeddings import EmbeddingHead, spec_of
        from ..image_data import ImageData

        opts: TransferOptions = ctx.options
        size = ctx.image_size
        encoder = opts.backbone.open()
        encoder.check_size(size)  # before any image is decoded
        if not encoder.trainable:
            self.preflight(opts)
        devices = prepare_devices(ctx)
        data = ImageData.load(train, val, ctx)
        preprocess = preprocess_for(encoder.preprocess_name)
        with devices.scope():
            if (opts.weights != "none" and not opts.fine_tune_layers and not opts.augment_head
                    and is_application(opts.backbone)):
                return _fit_frozen(opts, train, data, size, ctx, devices)
            backbone = encoder.build(opts.weights, size, ctx.seed)
            head = _Head(opts, len(train.classes), len(backbone.output_shape) == 4)
            if opts.weights == "none":
                if opts.fine_tune_layers:
                    log.warning("weights: none trains every layer in one stage; fine_tune_layers, "
                                "fine_tune_epochs and fine_tune_learning_rate are not used")
                backbone = scratch_norm(backbone, opts)
                model = head.attach(backbone, frozen=False)
                stages = {"scratch": _train_images(model, data, preprocess, ctx, devices, "scratch")}
            else:
                backbone.trainable = False
                model = head.attach(backbone, frozen=True)
                if opts.augment_head:
                    stages = {"head": _train_images(model, data, preprocess, ctx, devices, "head",
                                                    later_epochs=opts.fine_tune_epochs if opts.fine_tune_layers else 0)}
                else:
                    stages = {"head": _train_head_on_embeddings(head, lambda: backbone, data, ctx, devices,
                                                                encoder)}
                if opts.fine_tune_layers:
                    n = unfreeze_top(backbone, opts.fine_tune_layers)
                    log.info("fine-tuning the top %d layers of %s (%d trainable weights)",
                             opts.fine_tune_layers, opts.backbone, n)
                    stages["fine_tune"] = _train_images(
                        model, data, preprocess, ctx, devices, "fine_tune",
                        epochs=opts.fine_tune_epochs, learning_rate=opts.fine_tune_learning_rate)
            shortcut = None
            if opts.weights != "none" and not opts.fine_tune_layers:
                shortcut = EmbeddingHead(spec_of(encoder, opts.weights, opts.pooling, ctx.seed, devices.policy),
                                         head.on_embeddings(backbone.output_shape[-1]), lambda: backbone)
        info = {"backbone": str(opts.backbone), "weights": weights_label(opts.weights, opts.backbone),
                "stages": stages}
        if not is_application(opts.backbone):
            info["encoder"] = {"kind": opts.backbone.kind,
                               "identity": encoder.identity(opts.weights, ctx.seed)}
        return KerasClassifier(train.classes, model, size, encoder.preprocess_name, info, shortcut)

    @staticmethod
    def load(folder: Path, recipe, ctx) -> KerasClassifier:
        return KerasClassifier.load(folder)


class _Head:
    """Pooling, dropout and softmax layers, shared by the full model and the model that
    trains them on cached embeddings."""

    def __init__(self, opts: TransferOptions, n_classes: int, feature_map: bool = True):
        from keras import layers

        from ..embeddings import pooling_layer

        #: None when the encoder already gives a vector (a file with its own pooling)
        self.pool = pooling_layer(opts.pooling) if feature_map else None
        self.dropout = layers.Dropout(opts.dropout, name="head_dropout")
        self.dense = layers.Dense(n_classes, activation="softmax", dtype="float32",
                                  name="probabilities")

    def attach(self, backbone, frozen: bool):
        """``image -> backbone -> head`` (backbone in inference mode when ``frozen``)."""
        import keras

        inputs = keras.Input(backbone.input_shape[1:], name="image")
        x = backbone(inputs, training=False) if frozen else backbone(inputs)
        if self.pool is not None:
            x = self.pool(x)
        return keras.Model(inputs, self.dense(self.dropout(x)), name="transfer")

    def on_embeddings(self, dims: int):
        import keras

        inputs = keras.Input((dims,), name="embedding")
        return keras.Model(inputs, self.dense(self.dropout(inputs)), name="head")


def scratch_norm(backbone, opts: TransferOptions):
    """The backbone to train from scratch, every layer trainable: its BatchNorm layers with
    the momentum for training from scratch (see
    :data:`bmbench.deep.training.SCRATCH_BN_MOMENTUM`), or replaced as ``opts.norm`` says."""
    from keras import layers

    from ...core.errors import RecipeError
    from ...deep.training import SCRATCH_BN_MOMENTUM
    from ..norm import replace_batchnorm

    if opts.norm != "batch":
        try:
            backbone = replace_batchnorm(backbone, opts.norm, opts.norm_groups)
        except ValueError as exc:
            raise RecipeError(f"model.norm: {exc}") from None
    backbone.trainable = True
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.momentum = SCRATCH_BN_MOMENTUM
    return backbone


def unfreeze_top(backbone, n_layers: int) -> int:
    """Make the last ``n_layers`` layers of ``backbone`` trainable, keeping every
    BatchNormalization layer frozen; returns the number of trainable weight tensors."""
    from keras import layers

    backbone.trainable = True
    for layer in backbone.layers[:-n_layers]:
        layer.trainable = False
    for layer in backbone.layers:
        if isinstance(layer, layers.BatchNormalization):
            layer.trainable = False
    return len(backbone.trainable_weights)


def _train_images(model, data, preprocess, ctx, devices, stage: str, epochs: int | None = None,
                  learning_rate: float | None = None, later_epochs: int = 0) -> dict:
    from ...deep.training import compile_model, fit_stage

    t = ctx.train
    compile_model(model, learning_rate or t.learning_rate, devices)
    batches, steps = data.training(ctx, preprocess, t.augment)
    data.measure_input(ctx, batches, steps)
    result = fit_stage(model, batches, steps, data.validation(ctx, preprocess), stage=stage,
                       epochs=epochs or t.epochs, patience=t.patience, batch_size=t.batch_size,
                       ctx=ctx, later_epochs=later_epochs)
    return result.as_dict()


def _fit_frozen(opts: TransferOptions, train: Subset, data, size: int, ctx, devices) -> KerasClassifier:
    """Stage 1 only, on cached embeddings, the backbone frozen: the backbone is built only
    when an embedding is missing (or the full model is asked for), and the model is saved as
    its head and a reference to the backbone and its weights (see :class:`FrozenBackbone`)."""
    from ..embeddings import EmbeddingHead, spec_for
    from ..keras_model import FrozenModel

    spec = spec_for(opts.backbone.name, opts.weights, opts.pooling, ctx, devices)
    backbone = FrozenBackbone.prepare(opts, size, ctx, devices, spec.identity)
    head = _Head(opts, len(train.classes))
    stages = {"head": _train_head_on_embeddings(head, backbone.get, data, ctx, devices)}
    head_model = head.on_embeddings(backbone.facts["dims"])
    reference = {"weights": opts.weights, "weights_identity": spec.identity, "seed": ctx.seed,
                 "pooling": opts.pooling, "n_backbone_parameters": backbone.facts["n_parameters"]}
    frozen = FrozenModel(head_model, reference, lambda: head.attach(backbone.get(), frozen=True))
    info = {"backbone": opts.backbone.name, "weights": weights_label(opts.weights), "stages": stages}
    return KerasClassifier(train.classes, None, size, opts.backbone.name, info,
                           EmbeddingHead(spec, head_model, backbone.get), frozen)


class FrozenBackbone:
    """A frozen backbone built on first :meth:`get`. Building one draws Python's and NumPy's
    random numbers (Keras seeds every initialiser from Python's ``random``), and they decide
    the head's initial weights; so where it is not built, the state those draws leave is
    read from ``<cache>/backbones/`` (recorded by a run that built it from the same state):
    the same recipe and seed train the same head whether the backbone was built or not.
    ``facts``: ``dims`` (channels of its feature map), ``n_parameters``, ``rng`` (that state)."""

    def __init__(self, build, devices, facts: dict, model=None):
        self._build, self._devices, self.facts, self._model = build, devices, facts, model

    @classmethod
    def prepare(cls, opts: TransferOptions, size: int, ctx, devices, identity: str) -> "FrozenBackbone":
        from ...core.cache import JsonCache, key_for
        from ..backbones import build_backbone
        from importlib.metadata import version

        def build():
            model = build_backbone(opts.backbone.name, opts.weights, size, ctx.seed)
            model.trainable = False
            return model

        key = key_for("bmbench.backbone_build", 1, opts.backbone.name, identity, size, devices.policy, _rng_state(),
                      version("keras"), version("tensorflow"))
        cache = JsonCache(Path(ctx.cache_dir) / "backbones")
        facts = cache.get(key)
        try:
            _set_rng_state(facts["rng"])
            return cls(build, devices, facts)
        except (ValueError, KeyError, TypeError, IndexError):
            pass  # a miss (None) or an entry of another shape
        model = build()
        facts = {"dims": int(model.output_shape[-1]), "n_parameters": int(model.count_params()), "rng": _rng_state()}
        try:
            cache.put(key, facts)
        except OSError as exc:
            log.debug("backbone cache: %s", exc)
        return cls(build, devices, facts, model)

    def get(self):
        """The backbone (built now if it was not; the random state is left as it was)."""
        if self._model is None:
            state = _rng_state()
            with self._devices.scope():
                self._model = self._build()
            _set_rng_state(state)
        return self._model


def _rng_state() -> list:
    """Python's and NumPy's global random states, JSON-ready."""
    import random

    import numpy as np

    version, internal, gauss = random.getstate()
    kind, keys, pos, has_gauss, cached = np.random.get_state()
    return [[version, list(internal), gauss], [kind, keys.tolist(), int(pos), int(has_gauss), float(cached)]]


def _set_rng_state(state: list) -> None:
    import random

    import numpy as np

    (version, internal, gauss), (kind, keys, pos, has_gauss, cached) = state
    random.setstate((version, tuple(internal), gauss))
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, cached))


def _train_head_on_embeddings(head: _Head, build_backbone, data, ctx, devices, encoder=None) -> dict:
    from ...deep.pipeline import steps_per_epoch
    from ...deep.training import compile_model, fit_stage
    from ..embeddings import embed, embedding_batches, spec_of

    t = ctx.train
    opts: TransferOptions = ctx.options
    spec = spec_of(encoder or opts.backbone.open(), opts.weights, opts.pooling, ctx.seed, devices.policy)
    x = embed(data.train, spec, ctx, build_backbone, t.batch_size, "train embeddings")[data.train_rows]
    head_model = head.on_embeddings(x.shape[1])
    steps = steps_per_epoch(len(x), t.batch_size)
    compile_model(head_model, t.learning_rate, devices, steps_per_execution=steps)
    batches = embedding_batches(x, data.train_labels, data.weights, t.batch_size, ctx.seed)
    val = None
    if data.val is not None:
        xv = embed(data.val, spec, ctx, build_backbone, t.batch_size, "validation embeddings")
        val = embedding_batches(xv[data.val_rows], data.val_labels, None, t.batch_size)
    result = fit_stage(head_model, batches, steps, val,
                       stage="head", epochs=t.epochs, patience=t.patience,
                       batch_size=t.batch_size, ctx=ctx,
                       later_epochs=opts.fine_tune_epochs if opts.fine_tune_layers else 0)
    return {**result.as_dict(), "on": "cached embeddings"}
