"""``classical``: segment the cell and nucleus, compute handcrafted features, classify them.

Features come from :mod:`bmbench.features` (families switchable by name, cached on disk
per image content and settings); the classifier from :mod:`.classifiers` (XGBoost by
default, early-stopped on the validation split; fits memoised, see :mod:`.tabular`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ...core.progress import progress
from ...config.schema import option
from ..classifiers import get_classifier
from ..alignment import Alignment, FeatureStats, adapted_copy
from ..registry import Family, Subset, register_family
from ..tabular import (TabularOptions, best_iteration, check_fitted, fit_for_run, held_out_validation,
                       importances_of, loaded, predict_proba, save_fitted)

log = logging.getLogger("bmbench.run")


def _feature_families():
    from ...features.registry import FEATURE_FAMILIES
    return FEATURE_FAMILIES.names()


def _segmentation_methods():
    from ...features.segmentation import METHODS
    return METHODS


@dataclass(frozen=True)
class ClassicalOptions(TabularOptions):
    features: tuple[str, ...] = option(("shape", "color", "texture"), choices=_feature_families,
                                       doc="feature families to compute")
    segmentation: str = option("otsu", choices=_segmentation_methods, doc="segmentation method")
    feature_size: int | None = option(
        None, ge=16, le=4096, doc="resize the longer image side to this before extraction "
                                  "(None: native resolution; shape features are in its pixels)")


def feature_settings(opts: ClassicalOptions, ctx=None):
    """The extraction settings of ``opts``; with a run context (or a loaded run: anything with
    a ``recipe``) whose recipe resamples images to ``dataset.target_microns_per_pixel``,
    lengths and areas are reported in µm and µm²."""
    from ...core.errors import RecipeError
    from ...features.extract import FeatureSettings

    mpp = ctx.recipe.dataset.target_microns_per_pixel if ctx is not None else None
    try:
        return FeatureSettings(families=opts.features, segmentation=opts.segmentation,
                               image_size=opts.feature_size, microns_per_pixel=mpp)
    except ValueError as exc:
        raise RecipeError(f"model.feature_size: {exc}") from None


def feature_matrix(paths, settings, ctx, label: str) -> np.ndarray:
    """``(n, n_features)`` float32 handcrafted features; unreadable images give NaN rows.

    Segmentation flags are counted into ``ctx.notes.segmentation_flags``.
    """
    from ...core.cache import ArrayCache
    from ...features.extract import extract_many

    with progress(len(paths), label) as bar:
        done = [0]

        def advance(n: int) -> None:
            bar.update(n - done[0])
            done[0] = n

        x, flags = extract_many(list(paths), settings, ctx.images, jobs=ctx.jobs,
                                cache=ArrayCache(ctx.cache_dir / "features"), progress=advance)
    ctx.notes.count_flags([name for f in flags for name in f])
    for path, f in zip(paths, flags):
        if "unreadable" in f:
            ctx.images.skipped.setdefault(str(path), "unreadable image (skipped)")
    return x


def columns_for(saved: list[str], current: list[str], source: Path | None = None) -> np.ndarray | None:
    """Indices of a saved model's feature names ``saved`` among the ``current`` extraction's
    names (None when they are the same list): a model trained before a FEATURE_VERSION that
    only added features still predicts on the columns it was trained on. Raises
    BmbenchError naming the first missing feature (and the model's folder ``source``) when the
    current extraction lacks some."""
    from ...core.errors import BmbenchError

    if saved == current:
        return None
    where = {name: i for i, name in enumerate(current)}
    missing = [name for name in saved if name not in where]
    if missing:
        prefix = f"{source}: " if source is not None else ""
        raise BmbenchError(f"{prefix}the saved model uses {len(missing)} feature(s) this bmbench does not compute "
                           f"(first: {missing[0]}); re-run its recipe to retrain it")
    return np.array([where[name] for name in saved])


def saved_columns(x: np.ndarray, saved: list[str], current: list[str], source: Path | None = None) -> np.ndarray:
    """``x`` (``[n, len(current)]``) restricted to the saved model's columns, in its order."""
    idx = columns_for(saved, current, source)
    return x if idx is None else x[:, idx]


@register_family
class Classical(Family):
    name = "classical"
    train_keys = ("class_weight", "jobs", "fraction")
    # No library imported before timing fit: the classifier's (XGBoost, scikit-learn) is
    # imported only when its fit is not in the fit cache, so a cached rerun never pays for it;
    # a first run's fit_seconds then includes that import beside the feature extraction.
    libraries = ()
    description = "handcrafted shape/colour/texture features of the segmented cell + XGBoost"
    Options = ClassicalOptions
    transductive = ("standardize", "coral")
    uses_image_size = False  # features are computed at native resolution (or feature_size)

    @staticmethod
    def summary(opts: ClassicalOptions) -> str:
        size = f"{opts.feature_size}px" if opts.feature_size else "native px"
        return f"{size}, {'+'.join(opts.features)}, {opts.segmentation}, {opts.classifier.name}"

    def fit(self, train: Subset, val: Subset | None, ctx) -> "ClassicalModel":
        from ...features.extract import feature_names

        opts: ClassicalOptions = ctx.options
        settings = feature_settings(opts, ctx)
        x = feature_matrix(train.paths, settings, ctx, "features (train)")
        x_val = feature_matrix(val.paths, settings, ctx, "features (val)") if val is not None else None
        model = ClassicalModel(train.classes, opts, fit_for_run(opts, ctx, x, train, x_val, val),
                               feature_names(settings), stats=FeatureStats.of(x))
        model.cross_fit = lambda run_ctx: held_out_validation(opts, run_ctx, x, train, x_val, val)
        model.log_top_features()
        return model

    def tabular_inputs(self, paths, ctx) -> np.ndarray:
        """The matrix the classifier of ``ctx.options`` is fitted on, ``float32[n, d]``: a study
        (:mod:`bmbench.runs.tune`) computes it once and refits only the classifier per trial."""
        return feature_matrix(paths, feature_settings(ctx.options, ctx), ctx, "features (study)")

    @staticmethod
    def load(folder: Path, recipe, ctx) -> "ClassicalModel":
        return ClassicalModel.load(folder, recipe.model.options)


@dataclass
class ClassicalModel:
    classes: tuple[str, ...]
    options: ClassicalOptions
    fitted: object
    names: list[str]
    source: Path | None = None  # the folder it was loaded from, named in errors
    #: in the run that fitted it: ``ctx -> float64[n_val, k] | None``, out-of-fold validation
    #: probabilities when the classifier trained on the validation images (never saved)
    cross_fit: object = None
    #: statistics of the training features (:mod:`bmbench.models.alignment`; read from the
    #: model folder when first needed)
    stats: FeatureStats | None = None
    #: in a transductive copy (:meth:`adapted`): the map of its features onto ``stats``
    alignment: Alignment | None = None

    def validation_proba(self, ctx) -> np.ndarray | None:
        """Held-out probabilities of the run's validation images when this model trained on
        them (cross-fitted), else None: its own predictions of them are held out."""
        return self.cross_fit(ctx) if self.cross_fit is not None else None

    def matrix(self, paths, ctx, label: str) -> np.ndarray:
        """``float32[n, len(names)]``: the features this model was trained on."""
        from ...features.extract import feature_names

        settings = feature_settings(self.options, ctx)
        x = feature_matrix(paths, settings, ctx, f"features ({label})")
        x = saved_columns(x, self.names, feature_names(settings), self.source)
        return x if self.alignment is None else self.alignment(x)

    def adapted(self, paths, ctx, mode: str) -> "ClassicalModel":
        """A copy whose features are aligned (``mode`` standardize | coral) from the
        statistics of the unlabelled images ``paths`` onto the training features' ones."""
        return adapted_copy(self, lambda: self.matrix(paths, ctx, "target statistics"), mode)

    def predict_proba(self, paths, ctx) -> np.ndarray:
        return predict_proba(self.fitted, self.matrix(paths, ctx, "test"), len(self.classes))

    def explain(self, paths, ctx, method: str | None = None, labels=None):
        """:class:`~bmbench.models.contributions.FeatureExplanation` of ``paths``: TreeSHAP
        for XGBoost, else permutation importance on the images with ``labels`` (``int[n]``)."""
        from ..contributions import explain_matrix

        x = self.matrix(paths, ctx, "explain")
        proba = predict_proba(self.fitted, x, len(self.classes))
        return explain_matrix(self.options.classifier.name, loaded(self.fitted), x, self.names, len(self.classes),
                              proba, labels)

    def importances(self) -> np.ndarray | None:
        return importances_of(self.options.classifier.name, self.fitted, len(self.names))

    def log_top_features(self, k: int = 10) -> None:
        imp = self.importances()
        if imp is None or not imp.any():
            return
        top = np.argsort(imp)[::-1][:k]
        log.info("top features by gain: %s", ", ".join(f"{self.names[i]} ({imp[i]:.3g})" for i in top))

    def details(self) -> dict:
        best = best_iteration(self.fitted)
        return {"n_features": len(self.names), "classifier": self.options.classifier.name,
                "best_iteration": int(best) if best is not None else None,
                **({"transductive": self.alignment.record()} if self.alignment is not None else {})}

    def save(self, folder: Path) -> None:
        import pandas as pd

        folder.mkdir(parents=True, exist_ok=True)
        save_fitted(self.options.classifier.name, self.fitted, folder)
        if self.stats is not None:
            self.stats.save(folder)
        (folder / "classical.json").write_text(json.dumps(
            {"classes": list(self.classes), "feature_names": self.names}, indent=2))
        imp = self.importances()
        if imp is not None:
            order = np.argsort(imp)[::-1]
            pd.DataFrame({"feature": np.array(self.names)[order], "gain": imp[order]}).to_csv(
                folder / "feature_importances.csv", index=False)

    @classmethod
    def load(cls, folder: Path, options: ClassicalOptions) -> "ClassicalModel":
        from ...core.loaders import read_model_json
        from ...core.shapes import ListOf

        names = ListOf(str, non_empty=True)
        meta = read_model_json(folder / "classical.json", {"classes": names, "feature_names": names})
        fitted = get_classifier(options.classifier.name).load(folder)
        check_fitted(fitted, len(meta["feature_names"]), len(meta["classes"]), folder / "classical.json")
        return cls(tuple(meta["classes"]), options, fitted, meta["feature_names"], folder)
