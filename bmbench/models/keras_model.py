"""The fitted model of the ``cnn`` and ``transfer`` families: a Keras image classifier.

Saved as ``model.keras`` (Keras's zip of JSON config and HDF5 weights, loaded back with
``safe_mode=True`` so no code can hide in it) and ``model.json`` (classes, input size, the
backbone whose ``preprocess_input`` prepares inputs, training details).
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

    def predict_proba(self, paths, ctx) -> np.ndarray:
        """``(n, n_classes)`` float64; NaN rows for images that could not be read."""
        from ..deep.devices import quiet_tensorflow

        quiet_tensorflow()
        return self._proba_of(ctx.load_images(paths, "predicting", size=self.image_size), ctx)

    def _proba_of(self, images, ctx) -> np.ndarray:
        from ..deep.pipeline import predict_rows

        if self.embedding_head is not None:
            return self.embedding_head.predict(images, ctx, ctx.train.batch_size)
        out = np.full((len(images), len(self.classes)), np.nan)
        rows = np.flatnonzero(images.valid)
        if len(rows):
            out[rows] = predict_rows(self.model, images, rows, ctx.train.batch_size,
                                     preprocess_for(self.backbone))
        return out

    def explain(self, paths, ctx, method: str = "gradcam", labels=None):
        """:class:`~bmbench.models.gradcam.HeatmapExplanation` of the predicted class of
        every image (``labels`` unused: heatmaps need no truth)."""
        from ..deep.devices import quiet_tensorflow
        from .gradcam import explain_images

        quiet_tensorflow()
        images = ctx.load_images(paths, "explaining", size=self.image_size)
        return explain_images(self.model, images.images, images.valid, self._proba_of(images, ctx),
                              preprocess_for(self.backbone), method, ctx.train.batch_size)

    def details(self) -> dict:
        return {"n_parameters": int(self.model.count_params()), **self.info}

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.model.save(folder / "model.keras")
        (folder / "model.json").write_text(json.dumps(
            {"classes": list(self.classes), "image_size": self.image_size,
             "backbone": self.backbone, "info": self.info}, indent=2, default=str))

    @classmethod
    def load(cls, folder: Path) -> "KerasClassifier":
        import keras

        meta = json.loads((folder / "model.json").read_text())
        model = keras.saving.load_model(folder / "model.keras", safe_mode=True, compile=False)
        return cls(tuple(meta["classes"]), model, int(meta["image_size"]), meta["backbone"],
                   meta.get("info", {}))
