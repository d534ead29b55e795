"""A trained model together with the image-stage steps it was trained with.

Preprocessing steps (``dataset.preprocess``) are fitted on each fold's training images only;
the fitted steps travel with that fold's model (``preprocessing.json`` in its folder), so
test images, cross-data-set evaluations and ``bmbench predict`` all see exactly the pixels
the model was trained on. Model folders without the file (older runs, no steps) load with
no steps.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.recipe import StepSpec
from ..config.schema import Context, build
from ..core.atomic import write_json
from ..core.errors import BmbenchError
from ..core.loaders import RERUN
from ..core.shapes import ListOf, anything, shape
from ..core.untrusted import damaged, read_json
from ..data.imageio import is_image_file
from ..data.preprocessing import FittedStep, fit_rows, fit_steps, needs_fit, rebuild

PREPROCESSING_FILE = "preprocessing.json"


@dataclass
class StagedModel:
    """``model`` (a family's fitted model) and the fitted ``steps`` its inputs go through."""

    model: object
    steps: tuple[FittedStep, ...] = ()

    def predict_proba(self, paths, ctx) -> np.ndarray:
        ctx.images = ctx.images.with_steps(self.steps)
        return self.model.predict_proba(paths, ctx)

    def explain(self, paths, ctx, method: str | None = None, labels=None):
        """The model's explanation of ``paths`` (see its ``explain``), through the same steps."""
        explain = getattr(self.model, "explain", None)
        if explain is None:
            raise BmbenchError(f"{type(self.model).__name__} models cannot explain their predictions "
                               "(explanations exist for the cnn, transfer, classical and hybrid families)")
        ctx.images = ctx.images.with_steps(self.steps)
        return explain(paths, ctx, method, labels)

    def adapted(self, paths, ctx, mode: str) -> "StagedModel":
        """A copy whose model is adapted (transductive ``mode``) to the unlabelled images
        ``paths``, seen through the same steps; this one is unchanged."""
        adapt = getattr(self.model, "adapted", None)
        if adapt is None:
            raise BmbenchError(f"{type(self.model).__name__} models cannot adapt to unlabelled images "
                               "(transductive modes exist for the cnn, transfer, classical and hybrid families)")
        ctx.images = ctx.images.with_steps(self.steps)
        return StagedModel(adapt(paths, ctx, mode), self.steps)

    def details(self) -> dict:
        details = dict(self.model.details())
        if self.steps:
            details["preprocessing"] = [s.record() for s in self.steps]
        return details

    def save(self, folder: Path) -> None:
        self.model.save(folder)
        if self.steps:
            write_json(folder / PREPROCESSING_FILE, [s.record() for s in self.steps])


def fit_preprocessing(specs: tuple[StepSpec, ...], paths, ctx) -> tuple[FittedStep, ...]:
    """Fit ``specs`` on (at most :data:`~bmbench.data.preprocessing.FIT_IMAGES` of) the
    training image files ``paths``, decoded by the run's image stage without steps."""
    if not specs:
        return ()
    images = None
    reference = ctx.recipe.dataset.preprocess_reference
    if any(needs_fit(s) for s in specs):
        paths = reference_images(reference) if reference else np.asarray(paths)
        raw = ctx.images.with_steps(()).at(None)
        images = [im for im in (raw.read(p) for p in paths[fit_rows(len(paths))]) if im is not None]
    try:
        steps = fit_steps(specs, images)
    except ValueError as exc:
        raise BmbenchError(f"dataset.preprocess: {exc}") from None
    ctx.log.info("preprocessing: %s (fitted on %d %s)", ", ".join(s.spec.name for s in steps),
                 len(images or ()), f"images of {reference}" if reference else "training images")
    return steps


def reference_images(folder: str) -> np.ndarray:
    """Image files under ``folder`` (recursive, sorted): ``dataset.preprocess_reference``."""
    root = Path(folder)
    if not root.is_dir():
        raise BmbenchError(f"dataset.preprocess_reference: {root} is not a folder; give a folder of images")
    files = sorted(str(p) for p in root.rglob("*") if p.is_file() and is_image_file(p))
    if not files:
        raise BmbenchError(f"dataset.preprocess_reference: no image files under {root}")
    return np.asarray(files)


def load_steps(folder: Path) -> tuple[FittedStep, ...]:
    """The steps saved beside a model, or none; a damaged record is one line naming it."""
    path = folder / PREPROCESSING_FILE
    if not path.exists():
        return ()
    records = read_json(path, _steps_shape, RERUN)
    try:
        return rebuild(records, lambda cls, opts: build(cls, opts, Context(str(path), "options")))
    except BmbenchError as exc:
        raise damaged(path, f"damaged preprocessing record ({exc})", RERUN) from None
    except (ValueError, KeyError, TypeError, AttributeError, IndexError) as exc:
        raise damaged(path, f"damaged preprocessing record ({type(exc).__name__}: {exc})", RERUN) from None


_steps_shape = shape(ListOf({"name": str, "options": dict, "state": anything}))
