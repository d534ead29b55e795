"""Cross-data-set evaluation: test a trained model on other data sets (``recipe.evaluate``).

Each evaluation set is stored inside the run as ``evaluations/<n>-<kind>/`` with its own
``run.json``, ``metrics.json`` and ``predictions.csv``, so the leaderboard ranks it in its
own table ("trained on pbc, tested on matek_bm"). Classes are matched by name after each
side's ``label_map``; classes present on one side only are reported and excluded from the
evaluation set explicitly, never silently. With ``adapt`` (:mod:`bmbench.runs.adaptation`) the
images drawn into training are left out of the set's test images, and the draw (k, seed) is
part of its title and split fingerprint, so each k gets its own leaderboard table.

With ``adapt.transductive`` (a mode other than ``none``) every model is first adapted to the
set's test images, unlabelled (:meth:`bmbench.runs.staged.StagedModel.adapted`: AdaBN for the
deep families, feature standardisation or CORAL for the tabular ones), and the adapted copy
predicts them; the run's own test predictions and other evaluations use the model as trained.
Only the images are read: their labels score the predictions afterwards, as for every
evaluation. The test images being the same, the split fingerprint is too (the evaluation ranks
in the same table as inductive runs); its ``run.json`` says ``transductive`` (mode, images) and
its settings start with ``transductive <mode>``, which the leaderboard shows.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from pathlib import Path

import numpy as np

from .adaptation import shared_classes
from .context import RunContext
from ..data import load_dataset
from ..data.pixel_size import scaled
from ..metrics.scores import compute_metrics
from ..core.atomic import write_json
from .predictions import predictions_frame, write_predictions

log = logging.getLogger("bmbench.run")


def evaluate_elsewhere(recipe, models: list, train_table, split, info: dict, run_dir: Path,
                       adaptations: dict | None = None) -> list[dict]:
    """Score ``models`` (one per fold; probabilities averaged) on every ``recipe.evaluate`` set.

    ``adaptations`` (:func:`bmbench.runs.adaptation.draw_adaptations`): the images of a set
    that were drawn into training are left out of its test set.
    Returns one summary dict per set (also written into each set's folder).
    """
    summaries = []
    for i, spec in enumerate(recipe.evaluate):
        adaptation = (adaptations or {}).get(i)
        table = adaptation.table if adaptation else load_dataset(spec)
        folder = run_dir / "evaluations" / f"{i}-{table.kind}"
        folder.mkdir(parents=True)
        summaries.append(_evaluate_one(recipe, models, train_table, split, info, spec, table, folder, i,
                                       adaptation))
    return summaries


def _evaluate_one(recipe, models, train_table, split, info, spec, table, folder: Path, i: int,
                  adaptation=None) -> dict:
    classes = train_table.classes
    shared = shared_classes(classes, table, i)
    excluded = {c: n for c, n in table.class_counts().items() if c not in classes}
    untested = [c for c in classes if c not in table.classes]
    keep = table.frame["label"].isin(shared).to_numpy()
    if adaptation is not None:  # drawn into training: not test images
        keep = keep & ~np.isin(np.arange(len(table)), adaptation.rows)
    frame = table.frame[keep]
    y = frame["label"].map({c: j for j, c in enumerate(classes)}).to_numpy(np.int64)
    if excluded or untested:
        log.warning("evaluate[%d] %s: excluded classes not seen in training: %s; training classes "
                    "absent here: %s", i, table.kind, _fmt(excluded), ", ".join(untested) or "none")
    ctx = RunContext.for_recipe(recipe, run_dir=folder)
    ctx.images.on_bad_image, ctx.images.max_pixels = spec.on_bad_image, spec.max_pixels
    ctx.images = scaled(ctx.images.with_scale(1.0, None), spec, recipe.dataset)  # this set's own µm/px
    paths = frame["path"].to_numpy()
    mode = spec.adapt.transductive
    t0 = time.perf_counter()
    if mode != "none":  # only the images: y is not an argument
        models = [m.adapted(paths, ctx, mode) for m in models]
    adapt_seconds = time.perf_counter() - t0
    t0 = time.perf_counter()
    proba = np.mean([np.asarray(m.predict_proba(paths, ctx), dtype=np.float64) for m in models], axis=0)
    seconds = time.perf_counter() - t0
    ok = np.isfinite(proba).all(axis=1)
    positive = recipe.dataset.positive_class if recipe.dataset.positive_class in shared else None
    metrics = compute_metrics(y[ok], proba[ok], classes, positive)
    write_predictions(folder, predictions_frame(frame["relpath"].to_numpy(), classes, y, proba))
    write_json(folder / "metrics.json", metrics)
    eval_info = _info(info, recipe, train_table, split, table, spec, i, len(frame), seconds,
                      excluded, untested, int((~ok).sum()), ctx.images.skipped, adaptation)
    if mode != "none":
        eval_info.update(transductive_facts(mode, models, len(frame), adapt_seconds, table.kind, info))
    write_json(folder / "run.json", eval_info)
    log.info("%s: macro-F1 %.4f on %d images", eval_info["title"], metrics["macro_f1"], metrics["n"])
    return {"folder": str(folder.relative_to(folder.parent.parent)), "kind": table.kind,
            "root": str(table.root), "n_images": int(len(frame)), "macro_f1": metrics["macro_f1"],
            "accuracy": metrics["accuracy"], "excluded_classes": excluded, "untested_classes": untested,
            **({"adaptation": adaptation.summary()} if adaptation else {}),
            **({"transductive": mode} if mode != "none" else {})}


def transductive_facts(mode: str, models: list, n: int, seconds: float, kind: str, info: dict) -> dict:
    """What an evaluation's ``run.json`` says of its transductive adaptation: ``transductive``
    (mode, which images, that no label was read, what each model changed) and the settings
    text starting with ``transductive <mode>`` (so a leaderboard's narrow column shows it)."""
    changed = [m.model.details().get("transductive") for m in models]
    return {"settings": ", ".join(x for x in (f"transductive {mode}", info.get("settings", "")) if x),
            "transductive": {"mode": mode, "images": f"the {n} test images of this {kind} evaluation, unlabelled",
                             "labels_read": False, "adapt_seconds": round(seconds, 3), "models": changed}}


def _info(info, recipe, train_table, split, table, spec, i, n, seconds, excluded, untested,
          unscored, skipped, adaptation=None) -> dict:
    fp = _fingerprint(split, table, train_table.classes, adaptation)
    drawn = adaptation.n_per_class if adaptation else 0  # per class, out of the test set
    adapted = (f", adapted with {drawn} labelled target images per class (seed {adaptation.seed})"
               if adaptation else "")
    title = (f"trained on {train_table.kind} (split {split.fingerprint}), tested on {table.kind} "
             f"({n} images, {len([c for c in table.classes if c in train_table.classes])} shared "
             f"classes){adapted} - evaluation {fp}")
    facts = {"adaptation": {**adaptation.summary(), "relpaths": adaptation.relpaths}} if adaptation else {}
    return {**{k: info[k] for k in ("name", "description", "family", "settings", "recipe_fingerprint",
                                    "seed", "timings", "model", "bmbench_version") if k in info},
            "id": f"{info['id']}/evaluations/{i}-{table.kind}", "title": title,
            "dataset": {"kind": table.kind, "root": str(table.root), "fingerprint": table.fingerprint,
                        "n_images": n, "classes": list(train_table.classes),
                        "class_counts": {c: int(v) - drawn for c, v in table.class_counts().items()
                                         if c in train_table.classes}},
            "split_fingerprint": fp,
            "split": {"strategy": f"trained on {train_table.kind}", "trained_on_split": split.fingerprint},
            "n_folds": 1, "n_train": info["n_train"], "n_val": info["n_val"], "n_test": n,
            "n_unscored_test_images": unscored, "skipped_images": dict(skipped),
            "evaluation": {"of_run": info["id"], "index": i, "label_map": spec.label_map,
                           "excluded_classes": excluded, "untested_classes": untested,
                           "predict_seconds": round(seconds, 3)}, **facts}


def _fingerprint(split, table, classes, adaptation) -> str:
    """The evaluation's split fingerprint: training split, test images, classes and, when
    images were drawn into training, the draw (k, seed); without one, the pre-adapt value."""
    key = {"trained_on": split.fingerprint, "tested_on": table.fingerprint, "classes": list(classes)}
    if adaptation:
        key["adapt"] = {"n_per_class": adaptation.n_per_class, "seed": adaptation.seed}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]


def _fmt(counts: dict) -> str:
    return ", ".join(f"{c} ({n})" for c, n in counts.items()) or "none"
