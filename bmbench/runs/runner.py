"""One run: recipe -> data set -> split -> family fit/predict -> shared metrics -> run store."""

from __future__ import annotations

import errno
import importlib
import json
import logging
import random
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .adaptation import draw_adaptations, root_scales, run_facts, with_adaptation
from .context import RunContext
from ..data import load_dataset
from ..data.duplicates import exact_duplicates
from .environment import environment
from .evaluation import evaluate_elsewhere
from ..models.registry import Subset, get_family
from ..models.tabular import CROSS_FIT_FOLDS
from ..deep.tta import views as tta_views
from .model_card import render_model_card
from ..config.recipe import Recipe, check_seeds, dump_recipe, load_recipe
from ..config.schema import Context
from ..data.splits import Split, recipe_split, subsample_train
from ..core.errors import DatasetError, RecipeError, StoreError
from ..core.atomic import write_json, write_text
from ..core.version import __version__
from .predictions import VALIDATION_FILE, predictions_frame, write_predictions
from .staged import StagedModel, fit_preprocessing
from ..config.locations import results_dir, using_results
from .scoring import score_predictions
from .store import RunWriter

log = logging.getLogger("bmbench.run")
#: What every run folder holds when complete (checked before it is stored).
RUN_FILES = ("run.json", "metrics.json", "predictions.csv", "recipe.yaml", "run.log", "model")
WRITE_ERRORS = {errno.ENOSPC, errno.EROFS, errno.EACCES, errno.EDQUOT, errno.EFBIG}


@dataclass
class FoldResult:
    test_rows: np.ndarray
    proba: np.ndarray
    fit_seconds: float
    predict_seconds: float
    details: dict
    model: object = None
    val_rows: np.ndarray | None = None
    val_proba: np.ndarray | None = None
    val_kind: str | None = None  # "holdout" | "out_of_fold"
    val_seconds: float = 0.0


def run_recipe(recipe: Recipe | str | Path, results: str | Path | None = None,
               overrides: tuple[str, ...] = (), tags: dict | None = None, tuning: dict | None = None) -> Path:
    """Train and score ``recipe``; return the stored run folder. ``tags`` (JSON-ready, e.g.
    an ablation id and its varied values) are stored as ``tags`` in ``run.json``; ``tuning``
    (the study that chose this recipe, :mod:`bmbench.runs.tune`) as ``tuning``."""
    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = recipe.with_overrides(list(overrides))
    store = results_dir(results)
    with using_results(store):  # a stored-run encoder named in the recipe is looked up here
        return _run_recipe(recipe, store, tags, tuning)


def _run_recipe(recipe: Recipe, store: Path, tags: dict | None, tuning: dict | None = None) -> Path:
    started = time.perf_counter()
    _seed_everything(recipe.seed)
    family = get_family(recipe.model.family)()
    family.preflight(recipe.model.options)
    if recipe.predict.tta and not family.supports_tta:
        raise RecipeError(f"predict.tta: the {family.name} family has no test-time augmentation (it is for "
                          "cnn, transfer and hybrid); remove predict.tta")
    with RunWriter(store, recipe.name) as writer:
        handler = _log_to(writer.path / "run.log")
        try:
            table = load_dataset(recipe.dataset)
            split = recipe_split(table, recipe, store / "splits", recipe.train.jobs)  # split.group_by
            split = subsample_train(split, table.labels, recipe.train.fraction,
                                    (recipe.split.seed, recipe.seed))
            log.info("%s: %s, %d images, %d classes; split %s (%s): %d train, %d val, %d test",
                     recipe.name, table.kind, len(table), len(table.classes), split.fingerprint,
                     split.strategy, len(split.folds[0].train), len(split.folds[0].val),
                     len(split.folds[0].test))
            ctx = RunContext.for_recipe(recipe, run_dir=writer.path)
            ctx.notes.duplicates = duplicate_report(table, split)
            ctx.n_folds = len(split.folds)
            if ctx.notes.duplicates["test_images_with_train_copy"] and recipe.split.on_leak == "error":
                raise DatasetError(f"{table.root}: {ctx.notes.duplicates['test_images_with_train_copy']} "
                                   "test image(s) have a byte-identical copy among the training images "
                                   "(split.on_leak: error); remove the copies or split by groups")
            adaptations = draw_adaptations(recipe, table)  # evaluate[i].adapt: few-shot images
            if root_scales(adaptations, recipe):
                ctx.images = ctx.images.with_root_scales(root_scales(adaptations, recipe))
            folds = [_run_fold(family, table, split, i, ctx, writer.path, adaptations)
                     for i in range(len(split.folds))]
            _write_outputs(writer, recipe, table, split, folds, ctx, time.perf_counter() - started, tags,
                           adaptations, tuning)
            if recipe.evaluate:
                _add_evaluations(writer.path, recipe, [f.model for f in folds], table, split, adaptations)
        except OSError as exc:
            if exc.errno not in WRITE_ERRORS:
                raise
            raise _write_error(exc, writer.path) from None
        finally:
            logging.getLogger("bmbench").removeHandler(handler)
            try:
                handler.close()  # flushes run.log: the first write a full disk may refuse
            except OSError as exc:
                handler.failed = handler.failed or exc
            if handler.failed is not None and handler.failed.errno in WRITE_ERRORS:
                raise _write_error(handler.failed, writer.path) from None
        final = writer.commit(required=RUN_FILES)
    log.info("stored run %s", final)
    return final


def _write_error(exc: OSError, run: Path) -> StoreError:
    """One line for a write the disk refused: the run's own files, or a cache's."""
    where = Path(exc.filename) if exc.filename else run
    if run == where or run in where.parents:
        fix = "free disk space or choose another --results-dir"
        what = "cannot write the run"
    else:
        fix = "free disk space or point $BMBENCH_CACHE (or the path named) elsewhere"
        what = "cannot write"
    return StoreError(f"{where}: {what} ({exc.strerror}); {fix}")


def duplicate_report(table, split: Split) -> dict:
    """Warn about byte-identical images: label noise across classes, and test images with a
    copy among the training/validation images of the same fold (a leak)."""
    groups = exact_duplicates(table)
    conflicts = [g for g in groups if g.conflicting]
    leaked = 0
    for fold in split.folds:
        seen = set(fold.train) | set(fold.val)
        test = set(fold.test)
        leaked += sum(len(test & set(g.rows)) for g in groups if seen & set(g.rows))
    paths = table.frame["relpath"].to_numpy()
    if conflicts:
        g = conflicts[0]
        log.warning("%d group(s) of byte-identical images carry different labels (label noise), "
                    "e.g. %s", len(conflicts), ", ".join(f"{paths[i]} [{l}]" for i, l in zip(g.rows, g.labels)))
    if leaked:
        log.warning("%d test image(s) have a byte-identical copy among the training images: the "
                    "scores are optimistic", leaked)
    return {"groups": len(groups), "label_conflicts": len(conflicts), "test_images_with_train_copy": leaked}


def run_repeats(recipe: Recipe | str | Path, results: str | Path | None = None,
                overrides: tuple[str, ...] = (), repeats: int | None = None) -> list[Path]:
    """Run ``recipe`` with seeds ``seed, seed+1, ...`` (``repeats`` or ``recipe.repeats``
    times) on the same split; return the run folders."""
    import dataclasses

    if not isinstance(recipe, Recipe):
        recipe = load_recipe(recipe, overrides)
    elif overrides:
        recipe = recipe.with_overrides(list(overrides))
    n = repeats or recipe.repeats
    check_seeds(recipe.seed, n, Context(recipe.source), "--repeats")
    return [run_recipe(dataclasses.replace(recipe, seed=recipe.seed + i), results) for i in range(n)]


def _add_evaluations(folder: Path, recipe, models, table, split, adaptations=None) -> None:
    """Cross-data-set evaluations, summarised into the run's ``run.json``."""
    info = json.loads((folder / "run.json").read_text())
    info["evaluations"] = evaluate_elsewhere(recipe, models, table, split, info, folder, adaptations)
    write_json(folder / "run.json", info)


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)


class _RunLog(logging.FileHandler):
    """``run.log``: a write the disk refuses is kept in ``failed`` (the run then stops with
    one line) instead of logging's "--- Logging error ---" traceback on stderr."""

    failed: OSError | None = None

    def handleError(self, record):
        exc = sys.exc_info()[1]
        if not isinstance(exc, OSError):
            return super().handleError(record)
        self.failed = self.failed or exc


def _log_to(path: Path) -> _RunLog:
    handler = _RunLog(path, encoding="utf-8")
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger("bmbench")
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    return handler


def _subset(table, rows: np.ndarray) -> Subset:
    return Subset(table.frame["path"].to_numpy()[rows], table.labels[rows], table.classes)


def _run_fold(family, table, split: Split, i: int, ctx: RunContext, folder: Path,
              adaptations: dict | None = None) -> FoldResult:
    fold = split.folds[i]
    ctx.fold = i
    if len(split.folds) > 1:
        log.info("fold %d/%d", i + 1, len(split.folds))
    train = with_adaptation(_subset(table, fold.train), adaptations or {})
    val = _subset(table, fold.val) if len(fold.val) else None
    for library in family.libraries:
        importlib.import_module(library)  # start-up (seconds for Keras) is not training time
    steps = fit_preprocessing(ctx.recipe.dataset.preprocess, train.paths, ctx)
    ctx.images = ctx.images.with_steps(steps)
    t0 = time.perf_counter()
    model = StagedModel(family.fit(train, val, ctx), steps)
    fit_s = time.perf_counter() - t0
    model.save(folder / "model" if len(split.folds) == 1 else folder / "model" / f"fold-{i}")
    t1 = time.perf_counter()
    proba = np.asarray(model.predict_proba(_subset(table, fold.test).paths, ctx), dtype=np.float64)
    predict_s = time.perf_counter() - t1
    t2 = time.perf_counter()
    val_proba, val_kind = validation_proba(model, val, ctx)  # after the test images: changes nothing there
    return FoldResult(fold.test, proba, fit_s, predict_s, model.details(), model,
                      fold.val if val_proba is not None else None, val_proba, val_kind, time.perf_counter() - t2)


def validation_proba(model: StagedModel, val, ctx) -> tuple[np.ndarray | None, str | None]:
    """Held-out probabilities of the fold's validation images (``validation.csv``), for
    ensemble weights fitted without the test images: the model's own predictions
    (``holdout``), or, from a model that trained on them, the family's cross-fitted ones
    (``out_of_fold``, :func:`bmbench.models.tabular.held_out_validation`)."""
    if val is None:
        return None, None
    own = getattr(model.model, "validation_proba", None)
    crossed = own(ctx) if own is not None else None
    if crossed is not None:
        return np.asarray(crossed, dtype=np.float64), "out_of_fold"
    return np.asarray(model.predict_proba(val.paths, ctx), dtype=np.float64), "holdout"


def _write_outputs(writer, recipe, table, split, folds: list[FoldResult], ctx, elapsed,
                   tags: dict | None = None, adaptations: dict | None = None, tuning: dict | None = None) -> None:
    rows = np.concatenate([f.test_rows for f in folds])
    proba = np.concatenate([f.proba for f in folds])
    fold_of = np.concatenate([np.full(len(f.test_rows), i) for i, f in enumerate(folds)])
    ok = np.isfinite(proba).all(axis=1)
    y = table.labels[rows]
    metrics, reliability = score_predictions(y[ok], proba[ok], table.classes, fold_of[ok], len(folds),
                                             ctx.cache_dir, recipe.dataset.positive_class)  # memoised
    write_predictions(writer.path, predictions_frame(table.frame["relpath"].to_numpy()[rows], table.classes,
                                                     y, proba, fold_of if len(folds) > 1 else None))
    write_json(writer.path / "metrics.json", metrics)
    write_json(writer.path / "reliability.json", reliability)
    info = _run_info(writer.id, recipe, table, split, folds, ctx, elapsed, int((~ok).sum()))
    validated = [f for f in folds if f.val_proba is not None]
    if validated:
        vrows = np.concatenate([f.val_rows for f in validated])
        vfold = np.concatenate([np.full(len(f.val_rows), i) for i, f in enumerate(folds) if f.val_proba is not None])
        write_predictions(writer.path, predictions_frame(
            table.frame["relpath"].to_numpy()[vrows], table.classes, table.labels[vrows],
            np.concatenate([f.val_proba for f in validated]), vfold if len(folds) > 1 else None),
            VALIDATION_FILE)
        info["validation"] = {"file": VALIDATION_FILE, "kind": validated[0].val_kind, "n": int(len(vrows)),
                              "seconds": round(sum(f.val_seconds for f in validated), 3),
                              **({"cross_fit_parts": CROSS_FIT_FOLDS}
                                 if validated[0].val_kind == "out_of_fold" else {})}
    if adaptations:
        info.update(run_facts(adaptations, info["n_train"]))
    if tags:
        info["tags"] = dict(tags)
    if tuning:
        info["tuning"] = dict(tuning)
    write_json(writer.path / "run.json", info)
    write_json(writer.path / "environment.json", environment(recipe.seed))
    write_text(writer.path / "recipe.yaml", dump_recipe(recipe))
    write_text(writer.path / "MODEL_CARD.md", render_model_card(info, metrics, dump_recipe(recipe)))
    log.info("macro-F1 %.4f, accuracy %.4f on %d test images", metrics["macro_f1"],
             metrics["accuracy"], metrics["n"])


def _run_info(run_id, recipe, table, split, folds, ctx, elapsed, n_unscored) -> dict:
    fold0 = split.folds[0]
    fit_s = sum(f.fit_seconds for f in folds)
    pred_s = sum(f.predict_seconds for f in folds)
    n_test = sum(len(f.test_rows) for f in folds)
    return {
        "id": run_id, "name": recipe.name, "description": recipe.description,
        "family": recipe.model.family, "settings": settings_summary(recipe),
        "recipe_fingerprint": recipe.fingerprint(), "seed": recipe.seed,
        "seed_group": recipe.fingerprint(ignore=("seed",)),
        "dataset": {"kind": table.kind, "root": str(table.root), "fingerprint": table.fingerprint,
                    "n_images": len(table), "classes": list(table.classes),
                    "class_counts": table.class_counts(), **_lab_facts(recipe, table, fold0)},
        "split_fingerprint": split.fingerprint, "split": split.settings,
        "n_folds": len(split.folds),
        "n_train": int(len(fold0.train)), "n_val": int(len(fold0.val)), "n_test": int(n_test),
        "n_unscored_test_images": n_unscored,
        "skipped_images": dict(ctx.images.skipped),
        "timings": {"fit_seconds": round(fit_s, 3), "predict_seconds": round(pred_s, 3),
                    "inference_images_per_s": round(n_test / pred_s, 2) if pred_s > 0 else None,
                    "total_seconds": round(elapsed, 3)},
        "model": [f.details for f in folds] if len(folds) > 1 else folds[0].details,
        "notes": ctx.notes.as_dict(), "bmbench_version": __version__,
    }


def _lab_facts(recipe, table, fold) -> dict:
    """Kind ``merged``: images per lab in each part of the (first) fold, and the lab left out."""
    if "lab" not in table.frame:
        return {}
    lab = table.frame["lab"].to_numpy()
    counts = {str(name): {part: int((lab[getattr(fold, part)] == name).sum()) for part in ("train", "val", "test")}
              for name in dict.fromkeys(lab)}
    leave_out = getattr(recipe.dataset.options, "leave_out", None)
    return {"labs": counts, **({"leave_out": leave_out} if leave_out else {})}


def settings_summary(recipe: Recipe) -> str:
    """A short human description of the settings that distinguish this recipe."""
    family = get_family(recipe.model.family)
    extra = family.summary(recipe.model.options)
    size = f"{recipe.dataset.image_size}px" if family.uses_image_size else ""
    share = f"train {recipe.train.fraction:.0%}" if recipe.train.fraction < 1 else ""
    tta = f"TTA x{len(tta_views(recipe.predict.tta))}" if recipe.predict.tta else ""
    adapted = [f"+{e.adapt.n_per_class}/class of {e.kind}" + (f" x{e.adapt.repeat}" if e.adapt.repeat > 1 else "")
               for e in recipe.evaluate if e.adapt.n_per_class]
    return ", ".join(x for x in (size, extra, share, tta, *adapted) if x)
