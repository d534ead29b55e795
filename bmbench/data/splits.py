"""Comparable splits: the same data and split settings always give the same test images.

A split's fingerprint hashes the data set fingerprint and the settings that matter for the
chosen strategy; the split itself (relative paths per part and fold) is saved as JSON under
``results/splits/`` so anyone can see exactly which images were tested. The file is read
back only after proving that it is the split its fingerprint defines (see :func:`_read`).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import math
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config.recipe import Recipe, SplitSpec
from ..core.atomic import write_text
from ..core.cache import JsonCache, default_root, key_for
from ..core.errors import DatasetError, RecipeError
from ..core.registry import Registry
from ..core.shapes import ListOf, problem
from ..core.untrusted import damaged, read_json
from .table import DatasetTable

SPLIT_FORMAT = 1
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Fold:
    """Row indices into the data set table: ``(n_part,)`` int arrays, disjoint."""

    train: np.ndarray
    val: np.ndarray
    test: np.ndarray


@dataclass(frozen=True)
class Split:
    strategy: str
    settings: dict
    fingerprint: str
    dataset_fingerprint: str
    folds: tuple[Fold, ...]


def resolve_strategy(spec: SplitSpec, table: DatasetTable) -> str:
    if spec.strategy != "auto":
        return spec.strategy
    if table.has_predefined_split and spec.folds is None:
        return "predefined"
    return "grouped" if table.has_groups or spec.group_by != "none" else "stratified"


def split_settings(spec: SplitSpec, strategy: str) -> dict:
    """Only the settings that change the result, so equal splits share a fingerprint."""
    settings = {"strategy": strategy, "val": spec.val, "seed": spec.seed}
    if spec.folds:
        settings["folds"] = spec.folds
    elif strategy != "predefined":
        settings["test"] = spec.test
    if spec.group_by != "none":
        settings["group_by"] = spec.group_by
    return settings


def make_split(table: DatasetTable, spec: SplitSpec, store: Path | None = None,
               groups: np.ndarray | None = None) -> Split:
    """Compute (or read back from ``store``) the split of ``table`` under ``spec``.

    ``groups`` (one id per row) replaces the table's patient groups in a grouped split; it
    is required by ``split.group_by: near_duplicates`` (the caller computes the clusters,
    see :func:`bmbench.audit.split_groups`) and its digest is part of the fingerprint.
    """
    if spec.group_by != "none" and groups is None:
        raise DatasetError(f"split.group_by: {spec.group_by} needs the near-duplicate groups; "
                           "compute them with bmbench.audit.split_groups(table) and pass groups=")
    if groups is not None and len(groups) != len(table):
        raise ValueError(f"groups has {len(groups)} entries for a table of {len(table)} images")
    strategy = resolve_strategy(spec, table)
    _check_strategy(strategy, spec, table, groups is not None)
    settings = split_settings(spec, strategy)
    if groups is not None:
        settings["groups"] = _digest(groups)
    fp = _fingerprint(table.fingerprint, settings)
    path = store / f"{fp}.json" if store else None
    if path is not None and path.exists():
        folds = _read(path, fp, table, settings, spec, strategy, groups)
    else:
        folds = _compute(table, spec, strategy, groups)
        if store:
            _write(store, fp, table, settings, folds)
            _mark_verified(path)
    return Split(strategy, settings, fp, table.fingerprint, folds)


def subsample_train(split: Split, labels: np.ndarray, fraction: float,
                    seed: int | tuple[int, ...]) -> Split:
    """``split`` with each fold's training rows cut to ``fraction`` (``train.fraction``).

    Stratified: every class keeps ``ceil(fraction * n_class)`` of its training images (at
    least one). Deterministic and nested: the images are drawn in one fixed random order per
    class (from ``seed`` and the fold index), so for one seed a smaller fraction is always a
    subset of a larger one. Validation and test rows, and the split fingerprint, are
    unchanged: runs with different fractions are scored on exactly the same test images.
    """
    if fraction >= 1.0:
        return split
    entropy = list(seed) if isinstance(seed, (tuple, list)) else [seed]
    folds = []
    for i, fold in enumerate(split.folds):
        rng = np.random.default_rng([*entropy, i, 0x7261696E])
        keep = []
        for c in np.unique(labels[fold.train]):
            members = fold.train[labels[fold.train] == c]
            order = members[rng.permutation(len(members))]
            keep.append(order[:max(1, math.ceil(round(fraction * len(members), 9)))])
        train = np.sort(np.concatenate(keep)) if keep else fold.train
        folds.append(Fold(train, fold.val, fold.test))
    return dataclasses.replace(split, folds=tuple(folds))


def _digest(groups: np.ndarray) -> str:
    """Hash of the partition ``groups`` makes: renaming the groups keeps the digest."""
    _, codes = np.unique(np.asarray(groups).astype(str), return_inverse=True)
    _, first = np.unique(codes, return_index=True)
    canonical = np.argsort(np.argsort(first))[codes]  # groups numbered by first appearance
    return hashlib.sha256(canonical.astype(np.int64).tobytes()).hexdigest()[:16]


def _check_strategy(strategy: str, spec: SplitSpec, table: DatasetTable, has_groups: bool = False) -> None:
    from .registry import get_kind

    if spec.group_by != "none" and strategy == "stratified":
        raise DatasetError(f"split.group_by: {spec.group_by} keeps groups together, which "
                           "split.strategy: stratified cannot; use auto or grouped")
    if (strategy != "predefined" and get_kind(table.kind).augmented and not spec.allow_leaky
            and spec.group_by == "none"):
        raise DatasetError(f"data set kind '{table.kind}' holds augmented near-duplicates, so a "
                           f"{strategy} re-split leaks; use its official split (split.strategy: "
                           "auto or predefined) or set split.allow_leaky: true")
    if strategy == "predefined" and not table.has_predefined_split:
        raise DatasetError(f"split.strategy: predefined, but data set kind '{table.kind}' at "
                           f"{table.root} has no predefined split; use stratified or grouped")
    if strategy == "predefined" and spec.folds:
        raise DatasetError("split.folds cannot be combined with split.strategy: predefined")
    if strategy == "grouped" and not (table.has_groups or has_groups):
        raise DatasetError(f"split.strategy: grouped, but data set kind '{table.kind}' has no "
                           "patient/group ids; use stratified, or give groups (manifest 'patient' "
                           "column or folder group_pattern)")


def _fingerprint(dataset_fp: str, settings: dict) -> str:
    text = json.dumps({"data": dataset_fp, "split": settings, "format": SPLIT_FORMAT}, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _compute(table: DatasetTable, spec: SplitSpec, strategy: str,
             given: np.ndarray | None = None) -> tuple[Fold, ...]:
    y = table.labels
    groups = None if strategy != "grouped" else (_groups(table) if given is None else np.asarray(given).astype(str))
    idx = np.arange(len(y))
    if strategy == "predefined":
        return (_predefined(table, spec, given),)
    if spec.folds:
        return tuple(_with_val(tr, te, y, groups, spec, table) for tr, te in
                     _kfold(idx, y, groups, spec.folds, spec.seed, table))
    rest, test = _holdout(idx, y, groups, spec.test, spec.seed, table)
    return (_with_val(rest, test, y, groups, spec, table),)


def _groups(table: DatasetTable) -> np.ndarray:
    g = table.frame["group"].astype(object).to_numpy(copy=True)
    missing = np.array([v is None or v != v for v in g])
    g[missing] = ["__image__" + p for p in table.frame["relpath"][missing]]
    return g.astype(str)


def _holdout(idx, y, groups, fraction: float, seed: int, table) -> tuple[np.ndarray, np.ndarray]:
    """Stratified (optionally grouped) division of ``idx`` into (rest, held out)."""
    if groups is None:
        from sklearn.model_selection import train_test_split
        _need_members(y[idx], 2, table, "a stratified split")
        try:
            rest, held = train_test_split(idx, test_size=fraction, stratify=y[idx], random_state=seed)
        except ValueError as exc:
            raise DatasetError(f"{table.root}: cannot make a stratified split ({exc}); lower "
                               "split.test/split.val or add images") from None
        return np.sort(rest), np.sort(held)
    n_splits = max(2, round(1 / fraction))
    # StratifiedGroupKFold refuses when every class is smaller than the number of parts
    if len(np.unique(groups[idx])) >= n_splits and np.bincount(y[idx]).max() >= n_splits:
        return next(_kfold(idx, y, groups, n_splits, seed, table))
    return _group_shuffle(idx, groups, fraction, seed, table)


def _group_shuffle(idx, groups, fraction: float, seed: int, table) -> tuple[np.ndarray, np.ndarray]:
    """Too few groups for stratified group folds: hold out a random share of whole groups."""
    from sklearn.model_selection import GroupShuffleSplit

    if len(np.unique(groups[idx])) < 2:
        raise DatasetError(f"{table.root}: a grouped split needs at least 2 patient groups")
    a, b = next(GroupShuffleSplit(n_splits=1, test_size=fraction, random_state=seed).split(
        idx, groups=groups[idx]))
    return np.sort(idx[a]), np.sort(idx[b])


def _kfold(idx, y, groups, k: int, seed: int, table):
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    if groups is None:
        _need_members(y[idx], k, table, f"{k}-fold splitting")
        splitter = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed).split(idx, y[idx])
    else:
        if len(np.unique(groups[idx])) < k:
            raise DatasetError(f"{table.root}: only {len(np.unique(groups[idx]))} patient groups, "
                               f"fewer than the {k} parts the split needs")
        _warn_small_classes(y[idx], k, table)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", "The least populated class", UserWarning)
            splitter = list(StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed).split(
                idx, y[idx], groups[idx]))
    for a, b in splitter:
        yield np.sort(idx[a]), np.sort(idx[b])


def _warn_small_classes(y, k: int, table) -> None:
    counts = np.bincount(y, minlength=len(table.classes))
    for i, c in enumerate(table.classes):
        if 0 < counts[i] < k:
            log.warning("class '%s' has %d image(s), fewer than the %d parts of the grouped split: "
                        "some parts will lack it", c, counts[i], k)


def _need_members(y, k: int, table, what: str) -> None:
    counts = np.bincount(y, minlength=len(table.classes))
    totals = np.bincount(table.labels, minlength=len(table.classes))
    for i, c in enumerate(table.classes):
        if 0 < counts[i] < k:
            left = f" ({counts[i]} left once the test images are held out)" if counts[i] != totals[i] else ""
            raise DatasetError(f"{table.root}: class '{c}' has {totals[i]} image(s){left}, too few for "
                               f"{what} (needs {k}); add images or drop it with dataset.classes "
                               "(`bmbench datasets check` lists every class too small for a split)")


def images_needed(spec: SplitSpec, strategy: str) -> int | None:
    """The fewest images a class needs so that a stratified split under ``spec`` always keeps
    it in training (and validation), however the shares round; None where patient groups or
    a predefined split decide instead."""
    if strategy != "stratified":
        return None
    held = 1.0 / spec.folds if spec.folds else spec.test
    keep = 2 if spec.val > 0 else 1  # the validation draw is itself a stratified split
    n = spec.folds or 2
    while n - math.ceil(n * held - 1e-9) < keep:  # a class's share rounds up by at most one
        n += 1
    return n


def _with_val(rest, test, y, groups, spec: SplitSpec, table: DatasetTable) -> Fold:
    if spec.val <= 0:
        return Fold(rest, np.array([], np.int64), test)
    share = spec.val / (1.0 - (spec.test if not spec.folds else 1.0 / spec.folds))
    share = min(max(share, 0.01), 0.5)
    train, val = _holdout(rest, y, groups, share, spec.seed + 1, table)
    return Fold(train, val, test)


def _predefined(table: DatasetTable, spec: SplitSpec, given: np.ndarray | None = None) -> Fold:
    part = table.frame["split"].to_numpy()
    if any(v is None or v != v for v in part):
        raise DatasetError(f"{table.root}: some images have no predefined split; give every "
                           "manifest row a split or use split.strategy: stratified")
    y = table.labels
    test = np.flatnonzero(part == "test")
    train = np.flatnonzero(part == "train")
    val = np.flatnonzero(part == "val")
    if len(test) == 0:
        raise DatasetError(f"{table.root}: the predefined split has no test images")
    if len(val) == 0 and spec.val > 0:
        groups = np.asarray(given).astype(str) if given is not None else (_groups(table) if table.has_groups else None)
        train, val = _holdout(train, y, groups, min(0.5, spec.val), spec.seed + 1, table)
    return Fold(train, val, test)


def _write(store: Path, fp: str, table: DatasetTable, settings: dict, folds) -> None:
    rel = table.frame["relpath"].to_numpy()
    data = {"format": SPLIT_FORMAT, "fingerprint": fp, "dataset_fingerprint": table.fingerprint,
            "kind": table.kind, "settings": settings, "classes": list(table.classes),
            "folds": [{part: rel[getattr(f, part)].tolist() for part in ("train", "val", "test")}
                      for f in folds]}
    store.mkdir(parents=True, exist_ok=True)
    write_text(store / f"{fp}.json", json.dumps(data))


def _rebuild(path: Path) -> str:
    return f"delete it (rm '{path}') and run again: bmbench rebuilds it from the data and split settings"


def _read(path: Path, fp: str, table: DatasetTable, settings: dict, spec: SplitSpec, strategy: str,
          groups: np.ndarray | None) -> tuple[Fold, ...]:
    """The folds of the saved split ``path``, proven to be the split that ``fp`` names.

    The fingerprint covers the data and the split settings, not the assignment, so the file
    is checked against what those define: its header must match, every fold must divide
    the table's images into disjoint parts, and the assignment must equal the split
    recomputed from the table (which also keeps groups together). Recomputing a grouped
    split of many groups takes a while (a minute for 100,000 near-duplicate groups), so a
    file whose exact bytes were once proven on this machine is remembered (in the cache
    folder, where a shared results folder cannot reach) and then only checked for shape.
    Any mismatch raises :class:`DamagedFile` naming ``path`` and how to rebuild it."""
    fix = _rebuild(path)
    data = read_json(path, _split_shape, fix)
    for key, want in (("fingerprint", fp), ("dataset_fingerprint", table.fingerprint),
                      ("settings", json.loads(json.dumps(settings))), ("classes", list(table.classes))):
        if data[key] != want:
            raise damaged(path, f"its '{key}' does not match the split it is named after", fix)
    index = {p: i for i, p in enumerate(table.frame["relpath"])}
    folds = []
    for n, fold in enumerate(data["folds"], 1):
        parts = []
        for part in ("train", "val", "test"):
            unknown = next((p for p in fold[part] if p not in index), None)
            if unknown is not None:
                raise damaged(path, f"fold {n} {part} lists {unknown!r}, which is not in the data set", fix)
            parts.append(np.array([index[p] for p in fold[part]], np.int64))
        _check_partition(path, n, parts, len(table), fix)
        folds.append(Fold(*parts))
    folds = tuple(folds)
    if _proven(path):
        return folds
    expected = _compute(table, spec, strategy, groups)
    same = len(expected) == len(folds) and all(
        np.array_equal(np.sort(getattr(a, part)), np.sort(getattr(b, part)))
        for a, b in zip(expected, folds) for part in ("train", "val", "test"))
    if not same:
        raise damaged(path, "assigns images to train/val/test differently from the split its fingerprint "
                      "defines (edited, or written by a scikit-learn that splits differently)", fix)
    _mark_verified(path)
    return expected


def _split_shape(value) -> str | None:
    paths = ListOf(str)
    return problem(value, {"fingerprint": str, "dataset_fingerprint": str, "settings": dict, "classes": list,
                           "folds": ListOf({"train": paths, "val": paths, "test": paths}, non_empty=True)})


def _check_partition(path: Path, n: int, parts: list[np.ndarray], size: int, fix: str) -> None:
    """Each image of the table in exactly one of ``parts`` (train, val, test)."""
    counts = np.bincount(np.concatenate(parts), minlength=size)
    if counts.max(initial=0) > 1:
        where = [name for name, p in zip(("train", "val", "test"), parts)
                 if np.any(counts[p] > 1)]
        raise damaged(path, f"fold {n} puts {int((counts > 1).sum())} image(s) in more than one part "
                      f"({', '.join(where)})", fix)
    if counts.min(initial=1) == 0:
        raise damaged(path, f"fold {n} leaves out {int((counts == 0).sum())} image(s) of the data set", fix)
    if len(parts[2]) == 0 or len(parts[0]) == 0:
        raise damaged(path, f"fold {n} has no {'test' if len(parts[2]) == 0 else 'training'} images", fix)


def _proof_key(path: Path) -> str | None:
    try:
        return key_for("bmbench.split_proven", SPLIT_FORMAT, path.name, path.read_bytes())
    except OSError:
        return None


def _proven(path: Path) -> bool:
    """True when these exact bytes of ``path`` were once recomputed and matched here."""
    key = _proof_key(path)
    return key is not None and JsonCache(default_root() / "splits").get(key) is not None


def _mark_verified(path: Path) -> None:
    key = _proof_key(path)
    if key is None:
        return
    try:
        JsonCache(default_root() / "splits").put(key, {"split": path.name})
    except OSError as exc:  # no cache folder: the next run recomputes the split again
        log.debug("split cache: %s", exc)


#: ``split.group_by`` values whose groups come from the images themselves: a function
#: ``(table, jobs, cache, max_pixels) -> int[n]`` group id per row. The leakage audit
#: registers ``near_duplicates``; plug-ins add groupings through ``bmbench.split_groupings``.
IMAGE_GROUPINGS: Registry = Registry("image grouping", "bmbench.split_groupings", ("bmbench.audit.core",),
                                     error=RecipeError, key="split.group_by")


def recipe_split(table: DatasetTable, recipe: Recipe, store: Path | None = None, jobs: int = 1,
                 cache=None) -> Split:
    """The split a run of ``recipe`` uses (saved under ``store``), with image-derived groups
    computed when ``split.group_by`` asks for them."""
    groups = None
    if recipe.split.group_by != "none":
        groups = IMAGE_GROUPINGS.get(recipe.split.group_by)(table, jobs, cache, recipe.dataset.max_pixels)
    return make_split(table, recipe.split, store, groups=groups)
