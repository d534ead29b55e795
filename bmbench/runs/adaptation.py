"""Few-shot adaptation (``evaluate[i].adapt``): a few labelled images of another lab join training.

With ``adapt: {n_per_class: k, seed: s}`` and k > 0, k images of every class an evaluation set
shares with the training set (matched by name after both label maps, as in
:mod:`bmbench.runs.evaluation`) are drawn before training, added with the training class
indices to the training images of every fold, and left out of that evaluation's test set;
its remaining images are the test set. The in-domain split is untouched.

The draw is stratified, deterministic and nested: the images of each class are taken in one
fixed random order from ``s`` (tables are sorted by relpath), so for one seed a smaller k draws
a subset of a larger one, and the evaluation test sets of a k series are nested. The drawn
relpaths, k and s are stored in the evaluation's ``run.json`` (``adaptation``); the run's own
``run.json`` says how many training images came from which evaluate entry.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from ..core.errors import DatasetError
from ..data import load_dataset
from ..data.table import DatasetTable
from ..models.registry import Subset

log = logging.getLogger("bmbench.run")


@dataclass(frozen=True)
class Adaptation:
    """The images drawn from ``evaluate[index]`` (its ``table``, loaded once for the run).

    rows: ``(m,)`` int64 sorted positions in ``table.frame``; labels: ``(m,)`` int64 training
    class indices; m = n_per_class x the number of shared classes.
    """

    index: int
    table: DatasetTable
    rows: np.ndarray
    labels: np.ndarray
    n_per_class: int
    seed: int
    repeat: int = 1

    @property
    def relpaths(self) -> list[str]:
        return self.table.frame["relpath"].to_numpy()[self.rows].tolist()

    def summary(self) -> dict:
        """The draw without its images (the run's ``run.json``, the evaluation summaries)."""
        return {"evaluate": self.index, "kind": self.table.kind, "root": str(self.table.root),
                "n_per_class": self.n_per_class, "seed": self.seed, "n_images": len(self.rows),
                **({"repeat": self.repeat} if self.repeat > 1 else {})}


def shared_classes(classes: tuple[str, ...], table: DatasetTable, i: int) -> list[str]:
    """The classes of evaluation set ``table`` (``evaluate[i]``) that the training set has,
    in ``table``'s order; an error when there is none."""
    shared = [c for c in table.classes if c in classes]
    if not shared:
        raise DatasetError(f"evaluate[{i}] ({table.kind} at {table.root}): no class in common with the "
                           f"training classes ({', '.join(classes)}); map them with label_map")
    return shared


def draw_rows(labels: np.ndarray, classes: list[str], k: int, seed: int) -> np.ndarray:
    """``(n,)`` class names of a table -> ``(k * len(classes),)`` int64 sorted row positions:
    exactly ``k`` rows of each of ``classes``, the first ``k`` of one random order per class
    (from ``seed``; independent of ``k``, so draws are nested). Every class needs > k rows."""
    rng = np.random.default_rng([seed, 0x61646170])
    picked = []
    for c in classes:
        members = np.flatnonzero(labels == c)
        picked.append(members[rng.permutation(len(members))][:k])
    return np.sort(np.concatenate(picked)).astype(np.int64)


def draw_adaptations(recipe, train_table: DatasetTable) -> dict[int, Adaptation]:
    """``{evaluate index: Adaptation}`` for every entry with ``adapt.n_per_class > 0``."""
    out = {}
    for i, spec in enumerate(recipe.evaluate):
        if spec.adapt.n_per_class:
            out[i] = _draw(recipe, train_table, load_dataset(spec), spec.adapt, i)
    return out


def _draw(recipe, train_table: DatasetTable, table: DatasetTable, adapt, i: int) -> Adaptation:
    shared = shared_classes(train_table.classes, table, i)
    k, counts = adapt.n_per_class, table.class_counts()
    short = {c: counts[c] for c in shared if counts[c] <= k}
    if short:
        raise DatasetError(
            f"{recipe.source or 'recipe'}: evaluate[{i}].adapt.n_per_class: {k} images per class are "
            f"drawn for training and at least one must stay for testing, but {table.kind} at "
            f"{table.root} has only {', '.join(f'{n} {c}' for c, n in short.items())}; lower n_per_class")
    rows = draw_rows(table.frame["label"].to_numpy(), shared, k, adapt.seed)
    index = {c: j for j, c in enumerate(train_table.classes)}
    labels = table.frame["label"].iloc[rows].map(index).to_numpy(np.int64)
    log.info("evaluate[%d] %s: %d labelled images (%d per class, seed %d) added to the training "
             "images; its other %d shared-class images are its test set", i, table.kind, len(rows), k,
             adapt.seed, sum(counts[c] for c in shared) - len(rows))
    return Adaptation(i, table, rows, labels, k, adapt.seed, adapt.repeat)


def with_adaptation(train: Subset, adaptations: dict[int, Adaptation]) -> Subset:
    """``train`` followed by every adaptation's images, each ``repeat`` times:
    ``(n + sum m * repeat,)`` paths and labels."""
    if not adaptations:
        return train
    extra = list(adaptations.values())
    paths = [train.paths, *(np.tile(a.table.frame["path"].to_numpy()[a.rows], a.repeat) for a in extra)]
    labels = [train.labels, *(np.tile(a.labels, a.repeat) for a in extra)]
    return Subset(np.concatenate(paths), np.concatenate(labels), train.classes)


def root_scales(adaptations: dict[int, "Adaptation"], recipe) -> list[tuple[str, float]]:
    """``(folder, scale)`` per adaptation set for the image stage: with
    ``dataset.target_microns_per_pixel`` its images are resampled from their own pixel size."""
    from ..data.pixel_size import physical_scale

    if recipe.dataset.target_microns_per_pixel is None:
        return []
    return [(str(a.table.root), physical_scale(recipe.evaluate[i], recipe.dataset)[0]) for i, a in adaptations.items()]


def run_facts(adaptations: dict[int, Adaptation], n_train: int) -> dict:
    """The run's ``run.json`` keys: ``n_train`` counts the adaptation images too, and
    ``adaptation`` says how many came from which evaluate entry."""
    added = sum(len(a.rows) for a in adaptations.values())
    return {"n_train": n_train + added,
            "adaptation": {"n_images": added, "n_train_in_domain": n_train,
                           "from": [a.summary() for a in adaptations.values()]}}
