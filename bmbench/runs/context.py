"""What a family needs from the run around it: the recipe, the image stage, the cache,
logging and progress bars. Built once per run by :mod:`bmbench.runs.runner`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from ..data.images import ImageSet, ImageSource, load_images
from ..data.pixel_size import scaled
from ..models.registry import RunNotes
from ..config.recipe import Recipe

#: Environment variable capping every run's worker processes/threads (``train.jobs``).
MAX_JOBS_ENV = "BMBENCH_MAX_JOBS"


@dataclass
class RunContext:
    recipe: Recipe
    images: ImageSource
    cache_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("bmbench.run"))
    notes: RunNotes = field(default_factory=RunNotes)
    run_dir: Path | None = None  # the run folder being written (artifacts such as history.csv)
    fold: int = 0  # index of the fold being trained (k-fold runs)
    n_folds: int = 1  # folds the run trains (for its ETA)
    #: ``on_epoch(stage, epoch, row)`` after every training epoch of a deep family (a study's
    #: pruning: it may raise to stop the trial); None in ordinary runs
    on_epoch: Callable | None = None

    @property
    def options(self):
        """The family's typed options (``recipe.model.options``)."""
        return self.recipe.model.options

    @property
    def train(self):
        """The training settings (``recipe.train``)."""
        return self.recipe.train

    @property
    def seed(self) -> int:
        """The training seed (``recipe.seed``)."""
        return self.recipe.seed

    @property
    def tta(self) -> tuple[str, ...]:
        """Test-time augmentation generators (``predict.tta``; empty: one view)."""
        return self.recipe.predict.tta

    @property
    def image_size(self) -> int:
        """The model input side, px (``dataset.image_size``)."""
        return self.recipe.dataset.image_size

    @property
    def jobs(self) -> int:
        """``train.jobs`` (-1: all cores), capped by ``$BMBENCH_MAX_JOBS`` when set: parallel
        ablation variants each get their share of the cores (:mod:`bmbench.runs.backends`)."""
        j = self.recipe.train.jobs
        j = (os.cpu_count() or 1) if j == -1 else j
        cap = os.environ.get(MAX_JOBS_ENV, "")
        return max(1, min(j, int(cap))) if cap.isdigit() and int(cap) > 0 else j

    @classmethod
    def for_recipe(cls, recipe: Recipe, cache_dir: Path | None = None,
                   run_dir: Path | None = None) -> "RunContext":
        from ..core.cache import default_root as default_cache_dir

        d = recipe.dataset
        images = scaled(ImageSource(d.image_size, d.keep_aspect, d.on_bad_image, d.max_pixels), d, d)
        return cls(recipe, images, Path(cache_dir) if cache_dir else default_cache_dir(),
                   run_dir=run_dir)

    def load_images(self, paths, label: str = "decoding images", size: int | None = None) -> ImageSet:
        """The image stage's output for ``paths`` at ``size`` (default ``dataset.image_size``),
        through the decoded-image cache."""
        return load_images(paths, self.images.at(size or self.images.size), self.cache_dir, self.jobs, label)
