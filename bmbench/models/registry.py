"""Model families: the contract between a family and the run around it, and its registry.

A family subclasses :class:`Family` and is registered with :func:`register_family` (or a
``bmbench.families`` entry point). The run gives it the train/validation :class:`Subset`
and a :class:`FitContext`; it returns a :class:`FittedModel`. Splitting, scoring and
storing are shared and never re-done inside a family. Modules import heavy libraries
(TensorFlow, XGBoost) inside methods, so reading recipes stays fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Protocol

import numpy as np

from ..config.registries import FAMILIES



@dataclass(frozen=True)
class Subset:
    """Images of one split part: ``paths`` (n,) str, ``labels`` (n,) int class indices,
    ``classes`` the ordered class names shared by every part."""

    paths: np.ndarray
    labels: np.ndarray
    classes: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.paths)


@dataclass
class RunNotes:
    """Facts a run records in ``run.json["notes"]``, written by the stages that know them.

    duplicates: byte-identical images (groups, label conflicts, test images with a training
    copy). devices: where Keras trained. segmentation_flags: flag -> images. embedding_cache:
    hits and computed embeddings. input_pipeline_images_per_s: one rate per training stage.
    """

    duplicates: dict | None = None
    devices: dict | None = None
    segmentation_flags: dict[str, int] | None = None
    embedding_cache: dict[str, int] | None = None
    input_pipeline_images_per_s: list[float] | None = None

    def count_flags(self, flags) -> None:
        """Count each image's segmentation ``flags`` (a family that segments always records
        the counts, empty or not)."""
        counts = self.segmentation_flags if self.segmentation_flags is not None else {}
        for name in flags:
            counts[name] = counts.get(name, 0) + 1
        self.segmentation_flags = counts

    def record_input_rate(self, images_per_s: float) -> None:
        self.input_pipeline_images_per_s = [*(self.input_pipeline_images_per_s or []), images_per_s]

    def count_embeddings(self, hits: int, computed: int) -> None:
        stats = self.embedding_cache or {"hits": 0, "computed": 0}
        self.embedding_cache = {"hits": stats["hits"] + hits, "computed": stats["computed"] + computed}

    def as_dict(self) -> dict:
        """The JSON form: only the facts some stage recorded."""
        return {k: v for k, v in self.__dict__.items() if v is not None}


class FitContext(Protocol):
    """What a family may use from the run (:class:`bmbench.runs.context.RunContext`).

    options: the family's own typed options (``model:``). train: the training settings
    (``train:``). seed: the training seed. image_size: the model input side, px. images:
    the image stage (:class:`bmbench.data.images.ImageSource`). cache_dir: the content
    cache root. jobs: worker processes/threads for image work. notes: the run's
    :class:`RunNotes`. run_dir: the run folder being written (artifacts). fold: the index
    of the fold being trained. A family reads these, never the raw recipe.
    """

    options: Any
    train: Any
    seed: int
    tta: tuple[str, ...]
    image_size: int
    images: Any
    cache_dir: Path
    notes: RunNotes
    run_dir: Path | None
    fold: int

    @property
    def jobs(self) -> int: ...

    def load_images(self, paths, label: str = ..., size: int | None = None): ...


class FittedModel(Protocol):
    classes: tuple[str, ...]

    def predict_proba(self, paths, ctx) -> np.ndarray:
        """``(n, n_classes)`` float probabilities; rows of unreadable images are NaN."""

    def save(self, folder: Path) -> None:
        """Write the model in a safe format (never pickle) into ``folder``."""

    def details(self) -> dict:
        """Facts worth keeping in the run record (e.g. best iteration)."""


class Family:
    """Base class of a model family.

    name / description: registry name and one line for ``bmbench datasets``-style listings
    and docs. Options: the dataclass of its ``model:`` keys. libraries: modules the runner
    imports before timing ``fit`` (so ``timings.fit_seconds`` is training, not library
    start-up). uses_image_size: whether ``dataset.image_size`` shapes its inputs (shown in
    the leaderboard's settings column). tuned_train: the ``train`` keys this family reads
    whose declared search spaces ``bmbench tune`` searches by default (beside every option of
    ``Options`` that declares a ``space``).
    the leaderboard's settings column). supports_tta: its models average ``predict.tta``
    views (``ctx.tta``).
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    Options: ClassVar[type]
    libraries: ClassVar[tuple[str, ...]] = ()
    uses_image_size: ClassVar[bool] = True
    tuned_train: ClassVar[tuple[str, ...]] = ()
    #: whether its models honour ``predict.tta`` (test-time augmentation over image views)
    supports_tta: ClassVar[bool] = False
    #: the ``train`` keys its runs read (``bmbench validate`` shows only these); None: all
    train_keys: ClassVar[tuple[str, ...] | None] = None
    #: the ``evaluate[i].adapt.transductive`` modes its models implement in
    #: ``adapted(paths, ctx, mode)`` (a copy of the model fitted to the statistics of the
    #: unlabelled images ``paths``; the model itself unchanged)
    transductive: ClassVar[tuple[str, ...]] = ()

    @staticmethod
    def summary(options) -> str:
        """A short description of the options that distinguish one run from another."""
        return ""

    @staticmethod
    def preflight(options) -> None:
        """Cheap checks run before any image is decoded (and by ``bmbench validate``):
        raise :class:`~bmbench.core.errors.BmbenchError` for what would fail later."""

    def fit(self, train: Subset, val: Subset | None, ctx: FitContext) -> FittedModel:
        raise NotImplementedError

    @staticmethod
    def load(folder: Path, recipe, ctx: FitContext) -> FittedModel:
        """The model :meth:`FittedModel.save` wrote into ``folder``."""
        raise NotImplementedError


def register_family(cls: type) -> type:
    """Class decorator: register a :class:`Family` subclass under ``cls.name``."""
    if not (isinstance(cls, type) and issubclass(cls, Family)):
        raise TypeError(f"model family {cls!r} must subclass bmbench.models.registry.Family")
    for attr in ("name", "Options"):
        if not hasattr(cls, attr):
            raise TypeError(f"model family {cls.__name__} lacks the class attribute {attr!r}")
    return FAMILIES.register(cls.name, cls)


def get_family(name: str) -> type:
    return FAMILIES.get(name)


def list_families() -> list[type]:
    return [cls for _, cls in FAMILIES.items()]
