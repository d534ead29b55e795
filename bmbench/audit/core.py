"""The audit of one data set under one split: duplicates, groups, leak scores, verdict."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.cache import ArrayCache, default_root
from ..data.duplicates import exact_duplicates
from ..data.table import DatasetTable
from ..core.errors import BmbenchError
from ..core.progress import progress
from ..config.recipe import SplitSpec
from ..data.splits import IMAGE_GROUPINGS, Split, make_split
from .descriptors import Descriptors, describe_files
from .leak import (PartSummary, group_overlaps, leak_scores, merged_groups, part_of, part_summaries,
                   rows_with_training_copies)
from .neighbours import DuplicateFinding, NearDuplicateSettings, find_duplicates

log = logging.getLogger("bmbench.audit")
LEVELS = ("ok", "caution", "leak")


def audit_cache(root: Path | None = None) -> ArrayCache:
    """The descriptor cache: ``<bmbench cache>/audit`` unless ``root`` is given."""
    return ArrayCache(root if root is not None else default_root() / "audit")


def near_duplicates(table: DatasetTable, jobs: int = 1, cache: ArrayCache | None = None,
                    max_pixels: int = 50_000_000,
                    settings: NearDuplicateSettings = NearDuplicateSettings()
                    ) -> tuple[Descriptors, list, DuplicateFinding]:
    """Descriptors, exact duplicate groups and the duplicate finding of ``table``'s images."""
    cache = cache if cache is not None else audit_cache()
    with progress(len(table), "describing images") as bar:
        state = {"done": 0}

        def step(done: int) -> None:
            bar.update(done - state["done"])
            state["done"] = done

        desc = describe_files(table.frame["path"].tolist(), jobs, cache, max_pixels, step)
    for i, reason in list(desc.errors.items())[:5]:
        log.warning("audit skips an unreadable image: %s", reason)
    if len(desc.errors) > 5:
        log.warning("audit skips %d more unreadable images", len(desc.errors) - 5)
    exact = exact_duplicates(table)
    finding = find_duplicates(desc, exact, settings, jobs, cache=cache)
    sizes = finding.cluster_sizes
    log.info("near-duplicates: %s; %d candidate pair(s) checked by keypoints",
             clusters_line(sizes).removeprefix("clusters: "), finding.verified)
    return desc, exact, finding


@IMAGE_GROUPINGS.register("near_duplicates")
def split_groups(table: DatasetTable, jobs: int = 1, cache: ArrayCache | None = None,
                 max_pixels: int = 50_000_000) -> np.ndarray:
    """Group id per row for ``split.group_by: near_duplicates``: images linked by exact or
    near copies, or by a shared patient id, share a group. Pass it to
    :func:`bmbench.data.splits.make_split` as ``groups``."""
    _, _, finding = near_duplicates(table, jobs, cache, max_pixels)
    return merged_groups(table, finding.clusters)


@dataclass(frozen=True)
class Verdict:
    level: str  # one of LEVELS
    message: str

    @property
    def line(self) -> str:
        return f"Verdict: {self.level.upper()}: {self.message}"


@dataclass
class AuditResult:
    """Everything the audit found; rendered by :mod:`bmbench.audit.report`."""

    name: str
    table: DatasetTable
    spec: SplitSpec
    split: Split
    descriptors: Descriptors
    exact: list
    finding: DuplicateFinding
    pairs: pd.DataFrame
    parts: list[PartSummary]
    overlaps: list[dict]
    copies: list[np.ndarray]
    leak: dict
    verdict: Verdict
    seconds: float
    files: dict[str, Path] = field(default_factory=dict)

    @property
    def n_test(self) -> int:
        return int(sum(len(f.test) for f in self.split.folds))

    @property
    def n_test_with_copies(self) -> int:
        return int(sum(len(c) for c in self.copies))


def audit_table(table: DatasetTable, spec: SplitSpec, store: Path | None = None, jobs: int = 1,
                cache: ArrayCache | None = None, max_pixels: int = 50_000_000, name: str = "",
                settings: NearDuplicateSettings = NearDuplicateSettings()) -> AuditResult:
    """Audit ``table`` under the split ``spec`` makes (read from / saved to ``store``)."""
    started = time.perf_counter()
    desc, exact, finding = near_duplicates(table, jobs, cache, max_pixels, settings)
    groups = merged_groups(table, finding.clusters)
    split = make_split(table, spec, store, groups=groups if spec.group_by != "none" else None)
    copies = rows_with_training_copies(finding.clusters, split)
    overlaps = group_overlaps(table, split)
    leak = leak_scores(table, spec, split, desc.hist, groups)
    pairs = pair_table(table, split, finding)
    verdict = decide(leak, sum(len(c) for c in copies), sum(len(f.test) for f in split.folds), overlaps)
    return AuditResult(name or table.kind, table, spec, split, desc, exact, finding, pairs,
                       part_summaries(table, split), overlaps, copies, leak, verdict,
                       time.perf_counter() - started)


def pair_table(table: DatasetTable, split: Split, finding: DuplicateFinding) -> pd.DataFrame:
    """The duplicate pairs with paths, labels and split parts, worst first: label conflicts,
    then pairs across the split (test against train/val before train against val), then
    exact copies, then by distance."""
    p = finding.pairs
    frame = table.frame
    rel, label = frame["relpath"].to_numpy(), frame["label"].to_numpy()
    a, b = p["a"].to_numpy(), p["b"].to_numpy()
    parts = part_of(split, len(table))
    if len(parts) == 1:
        pa, pb = parts[0][a], parts[0][b]
        crosses = pa != pb
        where = [f"{x}/{y}" for x, y in zip(pa, pb)]
    else:
        fold_of = np.full(len(table), -1)
        for i, fold in enumerate(split.folds):
            fold_of[fold.test] = i
        crosses = fold_of[a] != fold_of[b]
        where = [f"test@fold{x}/test@fold{y}" for x, y in zip(fold_of[a], fold_of[b])]
    distance = np.where(p["kind"] == "exact", 0.0,
                        np.where(p["evidence"] == "hash", p["hash_distance"], p["colour_distance"]))
    out = pd.DataFrame({
        "path_a": rel[a], "path_b": rel[b], "label_a": label[a], "label_b": label[b],
        "kind": p["kind"].to_numpy(), "distance": np.round(distance.astype(float), 4),
        "parts": where, "evidence": p["evidence"].to_numpy(),
        "hash_distance": p["hash_distance"].round(4).to_numpy(),
        "colour_distance": p["colour_distance"].round(4).to_numpy(),
        "matches": p["matches"].to_numpy(), "label_conflict": label[a] != label[b],
        "crosses_split": np.asarray(crosses, bool), "cluster": finding.clusters[a],
        "row_a": a, "row_b": b})
    touches_test = np.array(["test" in w for w in where], bool)
    severity = 2 * out["crosses_split"].to_numpy() * (1 + touches_test)  # 4: train/test, 2: train/val
    order = np.lexsort((-out["matches"].to_numpy(), out["distance"].to_numpy(),
                        (out["kind"] != "exact").to_numpy(), -severity,
                        ~out["label_conflict"].to_numpy()))
    return out.iloc[order].reset_index(drop=True)


def decide(leak: dict, n_copies: int, n_test: int, overlaps: list[dict]) -> Verdict:
    """The verdict: LEAK when patients straddle the split or the 1-NN gap is larger than
    noise; CAUTION when test images have copies in training but the gap is within noise."""
    comp = leak["comparison"]
    scores = {s.name: s for s in leak["scores"]}
    share = f"{n_copies} of {n_test} test images ({n_copies / max(n_test, 1):.1%})"
    patients = (f"{sum(len(o['groups']) for o in overlaps)} patient group(s) are on both sides "
                f"of the split (e.g. {overlaps[0]['groups'][0]})" if overlaps else "")
    advice = "split by patient (split.strategy: grouped) and/or use split.group_by: near_duplicates"
    if leak["predefined"]:
        official = scores["recipe"]
        if patients:
            level, first = "leak", f"the predefined split is not honest: {patients}"
        elif n_copies:
            level, first = "caution", f"in the predefined split {share} have an exact or near copy in training"
        else:
            level, first = "ok", "the predefined split keeps copies apart"
        if not comp.possible:
            second = (f"1-NN {official.accuracy:.1%} on the predefined test; no re-split leak score: "
                      f"{(comp.honest if comp.leaky.n else comp.leaky).description}")
        else:
            second = (f"a random re-split of its training part {'LEAKS' if comp.leaks else 'does not leak'}: "
                      f"1-NN {comp.leaky.accuracy:.1%} vs {comp.honest.accuracy:.1%} with near-duplicate "
                      f"clusters kept together, {official.accuracy:.1%} on the predefined test")
        tail = (". Evaluate on the predefined test set; to re-split, use split.group_by: near_duplicates"
                if comp.leaks else "")
        return Verdict(level, f"{first}; {second}{tail}.".replace("..", "."))
    if not comp.possible:
        gap = f"no leak score: {(comp.honest if comp.leaky.n else comp.leaky).description}"
    else:
        gap = (f"1-NN {comp.leaky.accuracy:.1%} under the recipe's split vs {comp.honest.accuracy:.1%} "
               f"with near-duplicate clusters kept together (gap {100 * comp.gap:.1f} points, "
               f"noise threshold {100 * comp.threshold:.1f})")
    if patients or comp.leaks:
        why = "; ".join(x for x in (patients, gap if comp.leaks else "") if x)
        return Verdict("leak", f"{why}; {share} have an exact or near copy in training. Scores "
                               f"under this split are optimistic: {advice}.")
    if n_copies:
        noise = "but the 1-NN gap is within noise: " if comp.possible else ""
        return Verdict("caution", f"{share} have an exact or near copy in training, {noise}{gap}; "
                                  "consider split.group_by: near_duplicates.")
    return Verdict("ok", f"no test image has a copy in training and no patient straddles the split; {gap}.")


def audit_source(source: str, kind: str = "folder", options: dict | None = None,
                 overrides: tuple[str, ...] = (), results=None, jobs: int = 1,
                 cache: ArrayCache | None = None) -> AuditResult:
    """Audit a recipe (``.yaml``/``.yml``: its data set and split, ``overrides`` applied) or a
    data folder of ``kind`` (with kind ``options``) under the default split settings (or
    ``--set split.*`` overrides)."""
    from ..data import load_dataset
    from ..config.recipe import load_recipe, recipe_from_dict
    from ..config.locations import results_dir

    if jobs == 0 or jobs < -1:
        raise BmbenchError(f"--jobs {jobs}: give a number of worker processes, or -1 for all cores")
    if str(source).lower().endswith((".yaml", ".yml")):
        recipe = load_recipe(source, overrides)
    else:
        if not Path(source).exists():
            raise BmbenchError(f"{source}: no such recipe file or data folder")
        raw = {"name": "audit", "model": {"family": "baseline"},
               "dataset": {"kind": kind, "root": str(Path(source).resolve()), "on_bad_image": "skip",
                           **(options or {})}}
        recipe = recipe_from_dict(raw, "bmbench audit")
        if overrides:
            recipe = recipe.with_overrides(list(overrides))
    table = load_dataset(recipe.dataset)
    name = recipe.name if recipe.name != "audit" else table.kind
    return audit_table(table, recipe.split, results_dir(results) / "splits", jobs, cache,
                       recipe.dataset.max_pixels, name)


def clusters_line(sizes) -> str:
    """The near-duplicate clusters in words (``sizes``: images per cluster, singletons included)."""
    many = sizes[sizes > 1]
    if not len(many):
        return "clusters: none (no image has a near-duplicate)"
    return (f"clusters: {int(many.sum()):,} images in {len(many):,} cluster(s) of two or more "
            f"(largest {int(many.max())})")
