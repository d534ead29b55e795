"""Preprocessing steps of the image stage (``dataset.preprocess``): a registry, empty by default.

A step changes the decoded ``uint8[H, W, 3]`` RGB image before any resizing, for every
family at once (handcrafted features, CNN inputs, embeddings), because it runs inside
:class:`~bmbench.data.images.ImageSource`. Its identity (name, options, fitted reference)
enters every cache key. A recipe lists steps in order::

    dataset:
      preprocess:
        - my_step                       # default options
        - other_step: {strength: 0.5}   # options validated like any recipe key

**Adding a step** is one module: a class registered in
:data:`bmbench.config.registries.PREPROCESSING` (bmbench's own steps live in modules of this
package's ``steps`` list below; a plug-in registers through the ``bmbench.preprocessing``
entry-point group). The class has ``Options`` (a dataclass of its recipe keys), a
``description``, ``__init__(options, state=None)``, ``apply(image) -> image``, and, when it
needs a reference computed from the training images (a target stain, a background colour),
``fit(images) -> state`` returning JSON-ready data. The runner fits steps on the training
images only and stores ``(name, options, state)`` in ``run.json``, so ``bmbench predict``
applies exactly the same transformation to new images.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import pkgutil
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np

from ..config.recipe import StepSpec
from ..config.registries import PREPROCESSING
from ..core.cache import key_for

#: Training images read to fit a step's reference (evenly spaced over the training set).
FIT_IMAGES = 200


@dataclass(frozen=True)
class FittedStep:
    """A step ready to apply: its spec, the fitted ``state`` (JSON-ready, None when the step
    needs no fitting) and the step object built from both."""

    spec: StepSpec
    state: Any
    step: Any = dataclasses.field(compare=False, repr=False)

    @property
    def identity(self) -> str:
        return key_for("bmbench.preprocess", self.spec.name, dataclasses.asdict(self.spec.options),
                       json.dumps(self.state, sort_keys=True))

    def apply(self, image: np.ndarray) -> np.ndarray:
        out = self.step.apply(image)
        if out.dtype != np.uint8 or out.shape != image.shape:
            raise ValueError(f"preprocessing step {self.spec.name!r} returned {out.dtype} {out.shape}; "
                             f"it must return uint8 of the input's shape {image.shape}")
        return out

    def record(self) -> dict:
        """What ``run.json`` keeps to rebuild the step: name, options, state."""
        return {"name": self.spec.name, "options": dataclasses.asdict(self.spec.options), "state": self.state}


def needs_fit(spec: StepSpec) -> bool:
    return callable(getattr(PREPROCESSING.get(spec.name), "fit", None))


def fit_steps(specs: Iterable[StepSpec], images: Iterable[np.ndarray] | None = None) -> tuple[FittedStep, ...]:
    """Fit each step in order on ``images`` (decoded training images, consumed once per
    step that needs fitting, each seeing the output of the steps before it)."""
    fitted: list[FittedStep] = []
    images = list(images) if images is not None else []
    for spec in specs:
        cls = PREPROCESSING.get(spec.name)
        state = None
        if needs_fit(spec):
            if not images:
                raise ValueError(f"preprocessing step {spec.name!r} needs training images to fit its reference")
            state = cls(spec.options).fit(images)
        step = FittedStep(spec, state, cls(spec.options, state))
        images = [step.apply(im) for im in images] if images else images
        fitted.append(step)
    return tuple(fitted)


def rebuild(records: Iterable[dict], build_options) -> tuple[FittedStep, ...]:
    """Steps from the ``run.json`` records of :meth:`FittedStep.record`; ``build_options(cls,
    mapping)`` validates the stored options into the step's ``Options``."""
    out = []
    for r in records:
        cls = PREPROCESSING.get(r["name"])
        spec = StepSpec(r["name"], build_options(cls.Options, r["options"]))
        out.append(FittedStep(spec, r["state"], cls(spec.options, r["state"])))
    return tuple(out)


def fit_rows(n: int, limit: int = FIT_IMAGES) -> np.ndarray:
    """Indices of at most ``limit`` evenly spaced rows of ``n`` (deterministic)."""
    return np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)) if n else np.zeros(0, int)


def _load_builtin_steps() -> None:
    """bmbench's own steps: every module of the package ``bmbench.data.steps``."""
    package = importlib.import_module(f"{__package__}.steps")
    for info in pkgutil.iter_modules(package.__path__):
        importlib.import_module(f"{package.__name__}.{info.name}")


_load_builtin_steps()
