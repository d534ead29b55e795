"""The fitted model of the ``cnn`` and ``transfer`` families: a Keras image classifier.

Saved as ``model.keras`` (Keras's zip of JSON config and HDF5 weights, loaded back with
``safe_mode=True`` so no code can hide in it) and ``model.json`` (classes, input size, the
backbone whose ``preprocess_input`` prepares inputs, training details). A ``transfer``
model whose backbone stayed frozen (head only) is saved as ``head.keras`` (embedding ->
probabilities) and, in ``model.json``, ``frozen_backbone``: the backbone's weights (keyword
or file), their identity (the file's sha256), seed and pooling; loading rebuilds the
backbone from them and puts the same ``image -> backbone -> pool -> dropout -> dense``
model together, so the run never has to build and write the whole network itself.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .backbones import preprocess_for


@dataclass
class KerasClassifier:
    """classes: class names in output order. model: ``keras.Model`` mapping preprocessed
    ``float32[b, s, s, 3]`` to ``(b, n_classes)`` softmax probabilities. image_size: ``s``.
    backbone: registry name whose ``preprocess_input`` is applied to [0, 255] RGB inputs
    (None: the model takes [0, 255] RGB itself). info: training details for the run record."""

    classes: tuple[str, ...]
    model: object
    image_size: int
    backbone: str | None = None
    info: dict = field(default_factory=dict)
    #: in a run whose backbone stayed frozen: predict through cached embeddings (not saved;
    #: a loaded model always runs the full network, with the same result)
    embedding_head: object | None = None
    #: a :class:`FrozenModel` (``model`` None until :meth:`full_model` builds it)
    frozen: object | None = None

    def full_model(self):
        """The ``keras.Model`` on images (built from :attr:`frozen` on first use)."""
        if self.model is None:
            self.model = self.frozen.build()
        return self.model

    def predict_proba(self, paths, ctx) -> np.ndarray:
        """``(n, n_classes)`` float64; NaN rows for images that could not be read."""
        from ..deep.devices import quiet_tensorflow

        quiet_tensorflow()
        return self._proba_of(ctx.load_images(paths, "predicting", size=self.image_size), ctx)

    def _proba_of(self, images, ctx) -> np.ndarray:
        """One view, or with ``predict.tta`` the mean over its views (:mod:`bmbench.deep.tta`)."""
        if getattr(ctx, "tta", ()):
            from ..deep.tta import averaged, stacked

            if self.embedding_head is not None:  # cached embeddings: one pass per view, each its own keys
                return averaged(lambda view: self._one_view(view, ctx), images, ctx.tta)
            return stacked(lambda views: self._one_view(views, ctx), images, ctx.tta)
        return self._one_view(images, ctx)

    def _one_view(self, images, ctx) -> np.ndarray:
        from ..deep.pipeline import predict_rows

        if self.embedding_head is not None:
            return self.embedding_head.predict(images, ctx, ctx.train.batch_size)
        out = np.full((len(images), len(self.classes)), np.nan)
        rows = np.flatnonzero(images.valid)
        if len(rows):
            out[rows] = predict_rows(self.full_model(), images, rows, ctx.train.batch_size,
                                     preprocess_for(self.backbone))
        return out

    def explain(self, paths, ctx, method: str = "gradcam", labels=None):
        """:class:`~bmbench.models.gradcam.HeatmapExplanation` of the predicted class of
        every image (``labels`` unused: heatmaps need no truth)."""
        from ..deep.devices import quiet_tensorflow
        from .gradcam import explain_images

        quiet_tensorflow()
        images = ctx.load_images(paths, "explaining", size=self.image_size)
        return explain_images(self.full_model(), images.images, images.valid, self._proba_of(images, ctx),
                              preprocess_for(self.backbone), method, ctx.train.batch_size)

    def adapted(self, paths, ctx, mode: str) -> "KerasClassifier":
        """A copy of this classifier whose BatchNorm statistics are those of the unlabelled
        images ``paths`` (``mode`` adabn: :mod:`bmbench.deep.adabn`); this one is unchanged.
        The copy always runs the whole network (cached embeddings are of the unadapted one)."""
        import keras

        from ..core.errors import BmbenchError
        from ..deep.adabn import adapt_batchnorm
        from ..deep.devices import quiet_tensorflow

        if mode != "adabn":
            raise BmbenchError(f"transductive {mode}: Keras classifiers adapt with adabn only")
        quiet_tensorflow()
        images = ctx.load_images(paths, "target statistics", size=self.image_size)
        source = self.full_model()
        model = keras.models.clone_model(source)
        model.set_weights(source.get_weights())
        try:
            n = adapt_batchnorm(model, images, np.flatnonzero(images.valid), ctx.train.batch_size,
                                preprocess_for(self.backbone))
        except ValueError as exc:
            raise BmbenchError(f"transductive adabn: {exc}") from None
        info = {**self.info, "transductive": {"mode": mode, "n_images": int(images.valid.sum()),
                                              "batchnorm_layers": n}}
        return KerasClassifier(self.classes, model, self.image_size, self.backbone, info)

    def details(self) -> dict:
        if self.model is None:
            n = self.frozen.reference["n_backbone_parameters"] + self.frozen.head.count_params()
        else:
            n = self.model.count_params()
        return {"n_parameters": int(n), **self.info}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        meta = {"classes": list(self.classes), "image_size": self.image_size, "backbone": self.backbone,
                "info": self.info}
        if self.frozen is not None:
            self.frozen.head.save(folder / "head.keras")
            meta["frozen_backbone"] = self.frozen.reference
        else:
            self.model.save(folder / "model.keras")
        (folder / "model.json").write_text(json.dumps(meta, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> "KerasClassifier":
        from ..core.loaders import load_keras, read_model_json

        meta = read_model_json(folder / "model.json", MODEL_JSON)
        size = meta["image_size"]
        if "frozen_backbone" in meta:
            head = load_keras(folder / "head.keras")
            model = _attach(head, meta["backbone"], meta["frozen_backbone"], size, folder)
        else:
            model = load_keras(folder / "model.keras")
        _check_outputs(model, len(meta["classes"]), folder)
        return cls(tuple(meta["classes"]), model, size, meta["backbone"], meta.get("info", {}))


def _model_json_shape():
    from ..core.shapes import ListOf, integer

    count = integer(0, 2**63 - 1)
    frozen = {"weights": str, "weights_identity": str, "seed": count, "pooling": str, "n_backbone_parameters?": count}
    return {"classes": ListOf(str, non_empty=True), "image_size": integer(8, 4096), "backbone": (str, None),
            "info?": dict, "frozen_backbone?": frozen}


#: The shape of ``model.json``.
MODEL_JSON = _model_json_shape()


def _check_outputs(model, n_classes: int, folder: Path) -> None:
    """One line when the loaded network does not end in the ``n_classes`` probabilities
    ``model.json`` names."""
    from ..core.loaders import RERUN
    from ..core.untrusted import damaged

    outputs = getattr(model, "outputs", None) or []
    last = tuple(outputs[0].shape)[-1:] if len(outputs) == 1 else ()
    if last != (n_classes,):
        raise damaged(folder, f"its Keras model gives {last or 'no single output'} values per image, but "
                              f"model.json names {n_classes} classes", RERUN)


@dataclass
class FrozenModel:
    """A transfer model saved as its ``head`` (``keras.Model``: embedding -> probabilities)
    and ``reference`` (``frozen_backbone`` in model.json); ``build()`` gives the model on
    images."""

    head: object
    reference: dict
    build: object


def _attach(head, backbone: str, ref: dict, size: int, folder: Path):
    """``image -> backbone -> pool -> head's dropout -> head's dense``, named as the
    ``transfer`` family names it, the backbone rebuilt from ``ref``."""
    import keras

    from ..core.errors import StoreError
    from .backbones import build_backbone, weights_identity
    from .embeddings import pooling_layer

    weights = ref["weights"]
    try:
        found = weights_identity(weights, ref["seed"])
    except OSError:
        found = "missing"
    if found != ref["weights_identity"]:
        raise StoreError(f"{folder}: this model's frozen backbone {backbone} needs its weights {weights} "
                         f"({ref['weights_identity']}), found {found}; put that file back, or rerun the recipe")
    net = build_backbone(backbone, weights, size, ref["seed"])
    net.trainable = False
    inputs = keras.Input((size, size, 3), name="image")
    x = pooling_layer(ref["pooling"])(net(inputs, training=False))
    out = head.get_layer("probabilities")(head.get_layer("head_dropout")(x))
    return keras.Model(inputs, out, name="transfer")
