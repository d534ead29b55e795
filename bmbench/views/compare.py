"""Paired comparison of two stored runs on the test images they share.

Predictions are paired by image path from each run's ``predictions.csv``; runs scored on
different test splits (different split fingerprints) are never compared. The statistics
themselves live in :mod:`bmbench.metrics.paired`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.errors import BmbenchError, StoreError
from ..metrics.bootstrap import LEVEL, N_RESAMPLES, SEED
from ..metrics.paired import mcnemar_exact, paired_bootstrap
from ..metrics.scores import HEADLINE, LOWER_IS_BETTER
from ..core.registry import did_you_mean
from ..runs.predictions import read_scored
from ..runs.store import RunRecord
from .cells import format_p


@dataclass(frozen=True)
class Scored:
    """A run's scored test images: ``paths`` (n,), ``y`` (n,) class indices, ``proba``
    (n, k); images the run could not score (NaN probabilities) are left out."""

    record: RunRecord
    paths: np.ndarray
    y: np.ndarray
    proba: np.ndarray
    classes: tuple[str, ...]


def run_classes(record: RunRecord) -> tuple[str, ...]:
    return tuple(record.metrics.get("classes") or record.info["dataset"]["classes"])


def load_scored(record: RunRecord) -> Scored:
    """Read ``predictions.csv`` of ``record``; a clear :class:`StoreError` when it is missing."""
    if record.path is None or not (Path(record.path) / "predictions.csv").is_file():
        raise StoreError(f"run {record.id} has no predictions.csv; paired tests need the "
                         "per-image predictions of both runs")
    classes = run_classes(record)
    paths, y, proba = read_scored(Path(record.path), classes)
    return Scored(record, paths, y, proba, classes)


def check_same_split(a: RunRecord, b: RunRecord) -> None:
    fa, fb = a.info["split_fingerprint"], b.info["split_fingerprint"]
    if fa != fb:
        ka, kb = a.info["dataset"]["kind"], b.info["dataset"]["kind"]
        raise BmbenchError(
            f"cannot compare {a.id} ({ka}, split {fa}) with {b.id} ({kb}, split {fb}): they were "
            "tested on different images; paired tests need runs with the same data set and "
            "split settings (same split fingerprint, see `bmbench leaderboard`)")


def align(a: Scored, b: Scored) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(y, proba_a, proba_b)`` on the images both runs scored, paired by path."""
    if a.classes != b.classes:
        raise BmbenchError(f"runs {a.record.id} and {b.record.id} have different class lists "
                           f"({', '.join(a.classes)} vs {', '.join(b.classes)})")
    for s in (a, b):
        if len(set(s.paths)) != len(s.paths):
            raise BmbenchError(f"run {s.record.id}: predictions.csv lists an image twice")
    position = {p: i for i, p in enumerate(b.paths)}
    where = np.array([position.get(p, -1) for p in a.paths], dtype=np.int64)  # -1: not scored by b
    rows_a = np.flatnonzero(where >= 0)
    rows_b = where[rows_a]
    if len(rows_a) == 0:
        raise BmbenchError(f"runs {a.record.id} and {b.record.id} share no scored test image")
    if (a.y[rows_a] != b.y[rows_b]).any():
        raise BmbenchError(f"runs {a.record.id} and {b.record.id} disagree on the true labels "
                           "of shared images; was the data set changed between them?")
    return a.y[rows_a], a.proba[rows_a], b.proba[rows_b]


def check_metric(metric: str) -> None:
    if metric not in HEADLINE:
        raise BmbenchError(f"unknown metric '{metric}'{did_you_mean(metric, HEADLINE)}; "
                           f"choose one of {', '.join(HEADLINE)}")


def compare_runs(a: RunRecord, b: RunRecord, metric: str = "macro_f1",
                 n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = SEED) -> dict:
    """Exact McNemar test and paired bootstrap of ``metric`` for runs ``a`` and ``b``.

    Refuses (:class:`BmbenchError`) runs with different split fingerprints. JSON-ready.
    """
    check_metric(metric)
    check_same_split(a, b)
    sa, sb = load_scored(a), load_scored(b)
    y, pa, pb = align(sa, sb)
    k = len(sa.classes)
    boot = paired_bootstrap(y, pa, pb, k, metric, n_resamples, level, seed)
    mcn = mcnemar_exact(pa.argmax(axis=1) == y, pb.argmax(axis=1) == y)

    def side(r: RunRecord, s: Scored) -> dict:
        ci = (r.metrics.get("ci") or {}).get(metric)
        return {"run": r.id, "recipe": r.info["name"], "family": r.info["family"],
                "settings": r.info.get("settings", ""), "n_scored": int(len(s.y)),
                "value_on_shared": boot["a" if s is sa else "b"], "stored_value": r.metrics.get(metric),
                "stored_ci": ci}

    return {"metric": metric, "split_fingerprint": a.info["split_fingerprint"],
            "dataset": a.info["dataset"]["kind"], "n_shared": int(len(y)),
            "a": side(a, sa), "b": side(b, sb), "mcnemar": mcn, "bootstrap": boot,
            "lower_is_better": metric in LOWER_IS_BETTER}


def compare_refs(run_a: str, run_b: str, metric: str = "macro_f1", n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, dataset: str | None = None, results_dir=None,
                 dataset_option: str | None = None) -> dict:
    """:func:`compare_runs` of two stored runs named as ``bmbench compare`` takes them (a run
    folder, an id prefix, a recipe name or ``latest``; ``dataset``: chosen among that data
    set kind's runs) in the store ``results_dir``; ``dataset_option``: the caller's option that
    sets ``dataset``, named in the hint when a reference is ambiguous."""
    from ..config.locations import results_dir as resolve
    from ..runs.store import load_record, resolve_run

    store = resolve(results_dir)
    a, b = (load_record(resolve_run(store, ref, dataset, dataset_option)) for ref in (run_a, run_b))
    return compare_runs(a, b, metric, n_resamples, seed=seed)


def format_comparison(result: dict) -> str:
    """The terminal text of :func:`compare_runs`."""
    m, boot, mcn = result["metric"], result["bootstrap"], result["mcnemar"]
    level = round(boot["level"] * 100)
    lines = [f"Paired comparison on the {result['n_shared']} test images both runs scored "
             f"({result['dataset']}, split {result['split_fingerprint']}):"]
    width = max(len(result[s]["run"]) for s in "ab")
    names = {s: f"{result[s]['recipe']} ({result[s]['family']})" for s in "ab"}
    name_width = max(map(len, names.values()))
    for s in "ab":
        r = result[s]
        ci = r["stored_ci"] if r["n_scored"] == result["n_shared"] else None  # same images only
        ci_text = f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else ""
        lines.append(f"  {s.upper()}  {r['run']:<{width}}  {names[s]:<{name_width}}  "
                     f"{m} {r['value_on_shared']:.4f}{ci_text}  ({r['n_scored']} scored)")
    lines.append(f"McNemar exact test on right/wrong: A right & B wrong {mcn['a_only']}, "
                 f"A wrong & B right {mcn['b_only']}, p = {format_p(mcn['p_value'])}")
    ci = boot["ci"]
    ci_text = f"{level}% CI [{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "no interval (undefined)"
    lines.append(f"Paired bootstrap of {m} (A - B): {boot['difference']:+.4f}, {ci_text}, "
                 f"p = {format_p(boot['p_value'])} ({boot['n_resamples']} stratified resamples)")
    direction = "lower" if result["lower_is_better"] else "higher"
    if boot["better"] is None:
        verdict = (f"A and B are not significantly different in {m} (the {level}% CI of the "
                   "difference contains 0).")
    else:
        win = boot["better"].upper()
        verdict = (f"{win} ({result[boot['better']]['recipe']}) is better in {m} ({direction} is "
                   f"better; the {level}% CI of the difference excludes 0).")
    lines.append(f"Verdict: {verdict}")
    return "\n".join(lines) + "\n"


