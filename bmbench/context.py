"""What a family needs from the run around it: the recipe, the image reader, the cache,
logging and progress bars. Built once per run by :mod:`bmbench.runner`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

from .datasets.imageio import ImageReader
from .recipe import Recipe


@dataclass
class RunContext:
    recipe: Recipe
    reader: ImageReader
    cache_dir: Path
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("bmbench.run"))
    notes: dict = field(default_factory=dict)
    run_dir: Path | None = None  # the run folder being written (artifacts such as history.csv)
    fold: int = 0  # index of the fold being trained (k-fold runs)

    @property
    def jobs(self) -> int:
        j = self.recipe.train.jobs
        return (os.cpu_count() or 1) if j == -1 else j

    @classmethod
    def for_recipe(cls, recipe: Recipe, cache_dir: Path | None = None,
                   run_dir: Path | None = None) -> "RunContext":
        from .cache import default_root as default_cache_dir

        d = recipe.dataset
        reader = ImageReader(d.image_size, d.keep_aspect, d.on_bad_image, d.max_pixels)
        return cls(recipe, reader, Path(cache_dir) if cache_dir else default_cache_dir(),
                   run_dir=run_dir)
