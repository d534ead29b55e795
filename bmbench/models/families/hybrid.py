"""``hybrid``: handcrafted features beside frozen-backbone embeddings, one tabular classifier.

Each image becomes ``[handcrafted features | backbone embedding]``: the ``classical``
family's features (same options: ``features``, ``segmentation``, ``feature_size``; cached
per image) and the pooled embedding of a frozen ``keras.applications`` backbone at
``dataset.image_size`` (same options as ``transfer``: ``backbone``, ``weights``,
``pooling``; from the embedding cache). A classifier from :mod:`.classifiers` (XGBoost by
default, early-stopped on the validation split) learns on the concatenation. Published work
finds frozen features plus a classical classifier competitive with, or better than,
fine-tuning when labelled cells are few; this family tests that on your own cells.
``features: []`` uses the embeddings alone: with ``classifier: logistic`` or ``knn`` that is
the foundation-model probe protocol. The encoder may be any kind of
:mod:`bmbench.models.encoders` (an ONNX file included), decoded at its own input size.

The saved model is the classifier (safe formats) and ``hybrid.json``; the backbone is
rebuilt from its weights when predicting (``none`` weights from the recorded seed, a
weights file only if its content is unchanged).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal

import numpy as np

from ...core.errors import BmbenchError
from ...config.schema import option
from .classical import ClassicalOptions, _feature_families, feature_matrix, feature_settings, saved_columns
from ..alignment import Alignment, FeatureStats, adapted_copy
from ..classifiers import get_classifier
from ..registry import Family, Subset, register_family
from ..tabular import (best_iteration, check_fitted, fit_for_run, held_out_validation, importances_of,
                       loaded, predict_proba, save_fitted)
from ...config.recipe import WEIGHT_KEYWORDS

log = logging.getLogger("bmbench.run")


def _encoder(value, ctx):
    from ..encoders import parse_encoder
    return parse_encoder(value, ctx)


@dataclass(frozen=True)
class HybridOptions(ClassicalOptions):
    features: tuple[str, ...] = option(("shape", "color", "texture"), choices=_feature_families,
                                       doc="handcrafted feature families ([]: embeddings only)")
    backbone: Any = option("DenseNet121", parse=_encoder,
                           doc="encoder: a keras.applications name, or {kind: onnx|keras_file|run, ...} "
                               "(see Benchmark a foundation model)")
    weights: str = option("imagenet", doc="imagenet (Keras download/cache), none (random, seeded) "
                                          "or a .weights.h5/.h5 file of this backbone; with a file or "
                                          "run encoder: none = random, anything else = its own weights")
    pooling: Literal["avg", "max"] = option("avg", doc="global pooling of the last feature map")


@register_family
class Hybrid(Family):
    name = "hybrid"
    train_keys = ("batch_size", "class_weight", "jobs", "fraction", "mixed_precision", "jit_compile",
                  "deterministic")
    libraries = ("keras", "xgboost")
    description = "handcrafted features + frozen-backbone embeddings (cached) + XGBoost or another classifier"
    Options = HybridOptions
    transductive = ("standardize", "coral")
    supports_tta = True  # over the embeddings; handcrafted features are the same in every view

    @staticmethod
    def preflight(opts: HybridOptions) -> None:
        from .transfer import check_encoder

        check_encoder(opts)

    @staticmethod
    def summary(opts: HybridOptions) -> str:
        from .transfer import weights_label

        handcrafted = "+".join(opts.features) if opts.features else "no handcrafted"
        return (f"{opts.backbone} {weights_label(opts.weights, opts.backbone)} + {handcrafted}, "
                f"{opts.classifier.name}")

    def fit(self, train: Subset, val: Subset | None, ctx) -> "HybridModel":
        from ...deep.devices import prepare_devices
        from ..embeddings import spec_of

        opts: HybridOptions = ctx.options
        encoder = opts.backbone.open()  # checks the file or run before any image is decoded
        encoder.check_size(ctx.image_size)
        if encoder.key_name != "onnx":
            devices = prepare_devices(ctx)
            policy = devices.policy
        else:  # ONNX Runtime: no Keras devices to prepare
            devices, policy = None, "float32"
        model = HybridModel(train.classes, opts, None, [],
                            spec_of(encoder, opts.weights, opts.pooling, ctx.seed, policy),
                            ctx.seed)
        x = model.features(train.paths, ctx, "train", devices)
        x_val = model.features(val.paths, ctx, "val", devices) if val is not None else None
        model.fitted = fit_for_run(opts, ctx, x, train, x_val, val)
        model.stats = FeatureStats.of(x)
        model.cross_fit = lambda run_ctx: held_out_validation(opts, run_ctx, x, train, x_val, val)
        model.log_shares()
        return model

    @staticmethod
    def load(folder: Path, recipe, ctx) -> "HybridModel":
        return HybridModel.load(folder, recipe.model.options)


@dataclass
class HybridModel:
    classes: tuple[str, ...]
    options: HybridOptions
    fitted: object
    names: list[str]
    spec: object  # EmbeddingSpec
    seed: int
    source: Path | None = None  # the folder it was loaded from, named in errors
    cross_fit: object = None  # in the fitting run: see ClassicalModel.cross_fit
    stats: FeatureStats | None = None  # as ClassicalModel.stats
    alignment: Alignment | None = None  # as ClassicalModel.alignment

    def validation_proba(self, ctx) -> np.ndarray | None:
        """Cross-fitted validation probabilities when the classifier trained on them, else None."""
        return self.cross_fit(ctx) if self.cross_fit is not None else None

    def features(self, paths, ctx, label: str, devices=None, view: tuple[int, bool] = (0, False)) -> np.ndarray:
        """``float32[n, n_handcrafted + d]``; rows of unreadable images are all NaN. ``view``:
        the embeddings of the images turned/mirrored (:mod:`bmbench.deep.tta`)."""
        from contextlib import nullcontext

        from ...deep.devices import select_devices
        from ..embeddings import embed
        from ...features.extract import feature_names

        opts = self.options
        encoder = opts.backbone.open()
        size = encoder.size_for(ctx.image_size)
        parts, names = [], []
        if opts.features:
            settings = feature_settings(opts, ctx)
            parts.append(feature_matrix(paths, settings, ctx, f"features ({label})"))
            names += feature_names(settings)
        if encoder.key_name == "onnx":
            scope = nullcontext()
        else:
            if devices is None:
                devices = replace(select_devices(ctx.train), policy=self.spec.precision)
            scope = devices.scope()
        images = ctx.load_images(paths, f"decoding {label} images", size=size)
        if view != (0, False):
            from ...deep.tta import view_of

            images = view_of(images, *view)
        with scope:
            emb = embed(images, self.spec, ctx,
                        lambda: encoder.embedder(opts.weights, size, self.seed),
                        ctx.train.batch_size, f"{label} embeddings")
        parts.append(emb)
        names += [f"{self.prefix}_{i:04d}" for i in range(emb.shape[1])]
        x = np.hstack(parts).astype(np.float32, copy=False)
        x[~images.valid] = np.nan
        if self.names:  # a fitted model: its own columns, even after features were added
            x = saved_columns(x, self.names, names, self.source)
            return x if self.alignment is None else self.alignment(x)
        self.names = names
        return x

    def adapted(self, paths, ctx, mode: str) -> "HybridModel":
        """As :meth:`ClassicalModel.adapted`, over handcrafted features and embeddings."""
        self._check_weights_file()
        return adapted_copy(self, lambda: self.features(paths, ctx, "target statistics"), mode)

    def predict_proba(self, paths, ctx) -> np.ndarray:
        self._check_weights_file()
        if getattr(ctx, "tta", ()):  # test-time augmentation of the embeddings: mean over the views
            from ...deep.tta import views

            chosen = views(ctx.tta)
            return sum(predict_proba(self.fitted, self.features(paths, ctx, "test", view=v), len(self.classes))
                       for v in chosen) / len(chosen)
        return predict_proba(self.fitted, self.features(paths, ctx, "test"), len(self.classes))

    def explain(self, paths, ctx, method: str | None = None, labels=None):
        """As :meth:`ClassicalModel.explain`, over handcrafted features and embedding dimensions."""
        from ..contributions import explain_matrix

        self._check_weights_file()
        x = self.features(paths, ctx, "explain")
        proba = predict_proba(self.fitted, x, len(self.classes))
        return explain_matrix(self.options.classifier.name, loaded(self.fitted), x, self.names, len(self.classes),
                              proba, labels)

    @property
    def prefix(self) -> str:
        """Embedding columns are ``<prefix>_0000``...: the encoder's name."""
        return str(self.options.backbone)

    def _check_weights_file(self) -> None:
        from ..backbones import weights_identity
        from .transfer import is_application

        w = self.options.weights
        if not is_application(self.options.backbone):
            found = self.options.backbone.open().identity(w, self.seed)
            if found != self.spec.identity:
                raise BmbenchError(f"model.backbone: {self.options.backbone} is not the encoder this hybrid "
                                   f"model was trained with (its file or run changed: {found[:40]}... vs "
                                   f"{self.spec.identity[:40]}...); put the original back, or rerun the recipe")
            return
        if w not in WEIGHT_KEYWORDS and weights_identity(w, self.seed) != self.spec.identity:
            raise BmbenchError(f"model.weights: {w} is not the weights file this hybrid model was "
                               "trained with (missing or its content changed)")

    def importances(self) -> np.ndarray | None:
        return importances_of(self.options.classifier.name, self.fitted, len(self.names))

    def shares(self) -> dict | None:
        """Fraction of the classifier's total importance on handcrafted features and on
        embedding dimensions (None for classifiers without importances)."""
        imp = self.importances()
        if imp is None or not imp.sum():
            return None
        emb = np.array([n.startswith(f"{self.prefix}_") for n in self.names])
        return {"handcrafted": round(float(imp[~emb].sum() / imp.sum()), 4),
                "embedding": round(float(imp[emb].sum() / imp.sum()), 4)}

    def log_shares(self) -> None:
        shares = self.shares()
        if shares:
            log.info("importance share: handcrafted %.1f%%, embedding %.1f%%",
                     100 * shares["handcrafted"], 100 * shares["embedding"])

    def details(self) -> dict:
        best = best_iteration(self.fitted)
        n_emb = sum(n.startswith(f"{self.prefix}_") for n in self.names)
        return {"n_features": len(self.names), "n_handcrafted": len(self.names) - n_emb,
                "n_embedding": n_emb, "classifier": self.options.classifier.name,
                "best_iteration": int(best) if best is not None else None,
                "importance_share": self.shares(),
                **({"transductive": self.alignment.record()} if self.alignment is not None else {})}

    def save(self, folder: Path) -> None:
        import pandas as pd

        folder.mkdir(parents=True, exist_ok=True)
        save_fitted(self.options.classifier.name, self.fitted, folder)
        if self.stats is not None:
            self.stats.save(folder)
        (folder / "hybrid.json").write_text(json.dumps(
            {"classes": list(self.classes), "feature_names": self.names, "seed": self.seed,
             "embedding": vars(self.spec)}, indent=2))
        imp = self.importances()
        if imp is not None:
            order = np.argsort(imp)[::-1]
            pd.DataFrame({"feature": np.array(self.names)[order], "gain": imp[order]}).to_csv(
                folder / "feature_importances.csv", index=False)

    @classmethod
    def load(cls, folder: Path, options: HybridOptions) -> "HybridModel":
        from ..embeddings import EmbeddingSpec

        from dataclasses import fields

        from ...core.loaders import read_model_json
        from ...core.shapes import ListOf, integer, problem

        kinds = {f.name: str for f in fields(EmbeddingSpec)}
        kinds["preprocess"] = (str, None)  # None: the encoder takes RGB [0, 255] as it is
        names = ListOf(str, non_empty=True)

        def embedding(value):
            extra = set(value if isinstance(value, dict) else {}) - set(kinds)
            return (f"unknown key {sorted(extra)[0]!r}" if extra else
                    problem(value, {k if k in ("backbone", "identity") else f"{k}?": v for k, v in kinds.items()}))

        meta = read_model_json(folder / "hybrid.json", {"classes": names, "feature_names": names,
                                                        "seed": integer(0, 2**63 - 1), "embedding": embedding})
        fitted = get_classifier(options.classifier.name).load(folder)
        check_fitted(fitted, len(meta["feature_names"]), len(meta["classes"]), folder / "hybrid.json")
        return cls(tuple(meta["classes"]), options, fitted, meta["feature_names"],
                   EmbeddingSpec(**meta["embedding"]), int(meta["seed"]), folder)
