"""``bmbench ensemble``: combine stored runs into a new stored run (family ``ensemble``).

The order is the point of this module: (1) every member is checked (same data set, split
fingerprint, class list and folds; held-out validation probabilities present); (2) the
combination is fitted on the members' ``validation.csv`` only
(:func:`bmbench.models.families.ensemble.fit_combiner`, one per fold); (3) only then are the
members' test predictions (``predictions.csv``) read, combined with the fitted weights and
scored like any run. The result is stored like any run (``run.json``, ``metrics.json``,
``predictions.csv``, ``MODEL_CARD.md``, ``model/ensemble.json``), so the leaderboard ranks it
with CIs and paired tests against its members, and ``bmbench predict`` runs its members and
combines them (:func:`load_members`).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from ..config.locations import results_dir
from ..config.recipe import dump_recipe, load_recipe, recipe_from_dict
from ..core.atomic import write_json, write_text
from ..core.errors import BmbenchError, StoreError
from ..core.version import __version__
from ..models.families.ensemble import METHODS, EnsembleModel, fit_combiner
from .environment import environment
from .model_card import render_model_card
from .predictions import FILE, VALIDATION_FILE, predictions_frame, write_predictions
from .scoring import score_predictions
from .store import RunRecord, RunWriter, load_record, resolve_run

log = logging.getLogger("bmbench.run")


def build_ensemble(refs: list[str], method: str = "select", name: str | None = None,
                   results: str | Path | None = None, rounds: int = 25) -> Path:
    """Store the ensemble of the runs ``refs`` (folders, ids or recipe names) fitted with
    ``method`` (mean | select | stack); return its run folder."""
    if method not in METHODS:
        raise BmbenchError(f"--method {method}: unknown; use one of {', '.join(METHODS)}")
    if len(refs) < 2:
        raise BmbenchError("bmbench ensemble: give at least two runs to combine")
    store = results_dir(results)
    started = time.perf_counter()
    members = [load_record(resolve_run(store, str(ref))) for ref in refs]
    if len({m.id for m in members}) < len(members):
        raise BmbenchError("bmbench ensemble: a run is named twice; each member once "
                           "(select gives a better member a larger weight itself)")
    check_members(members, store)
    classes = tuple(members[0].info["dataset"]["classes"])
    n_folds = int(members[0].info.get("n_folds", 1))

    # (2) fit on validation probabilities only
    val = [read_member_table(m, VALIDATION_FILE, classes) for m in members]
    val_keys, val_y, val_p = aligned(val, members, VALIDATION_FILE)
    combiners = []
    for fold in range(n_folds):
        rows = val_keys[:, 0] == fold
        if not rows.any():
            raise BmbenchError(f"{members[0].path / VALIDATION_FILE}: fold {fold} has no validation images "
                               "that every member predicted; the ensemble cannot be fitted")
        combiners.append(fit_combiner(method, [p[rows] for p in val_p], val_y[rows], 0, rounds))
    fit_s = time.perf_counter() - started
    log.info("ensemble weights (%s, fitted on %d validation images): %s", method, len(val_y),
             ", ".join(f"{m.info['name']} {w:.3f}" for m, w in zip(members, _mean_weights(combiners))))

    # (3) only now: the members' test predictions, combined and scored
    test = read_member_predictions(members, classes)
    keys, y, probas = aligned(test, members, FILE)
    fold_of = keys[:, 0]
    proba = np.full((len(y), len(classes)), np.nan)
    for fold, combiner in enumerate(combiners):
        rows = fold_of == fold
        proba[rows] = combiner.combine([p[rows] for p in probas])
    return _store(members, store, method, name, rounds, classes, combiners, keys, y, proba, val_y, val_p,
                  val_keys, fit_s, started)


def check_members(members: list[RunRecord], store: Path) -> None:
    """One error line naming what differs between the members (data set, split fingerprint,
    classes, folds) or which member cannot join (an ensemble, an evaluation, no validation
    probabilities)."""
    first = members[0]
    for m in members:
        if m.info.get("family") == "ensemble":
            raise BmbenchError(f"{m.path}: run {m.id} is an ensemble (its validation images fitted its weights); "
                               "list its members instead")
        if m.info.get("evaluation"):
            raise BmbenchError(f"{m.path}: {m.id} is a cross-data-set evaluation, not a trained run; "
                               "give the run it belongs to")
    for m in members[1:]:
        for what, get in (("data set fingerprint", lambda i: i["dataset"]["fingerprint"]),
                          ("split fingerprint", lambda i: i["split_fingerprint"]),
                          ("class list", lambda i: list(i["dataset"]["classes"])),
                          ("number of folds", lambda i: int(i.get("n_folds", 1)))):
            if get(m.info) != get(first.info):
                raise BmbenchError(f"{m.id}: its {what} ({get(m.info)}) differs from {first.id}'s "
                                   f"({get(first.info)}); ensemble members must share data set, split and classes")
    for m in members:
        if not (m.path / VALIDATION_FILE).is_file():
            raise BmbenchError(f"{m.path}: run {m.id} has no validation probabilities ({VALIDATION_FILE}: runs "
                               f"made before bmbench stored them); re-run it with: bmbench run "
                               f"{m.path / 'recipe.yaml'} --results-dir {store}")


def read_member_table(member: RunRecord, name: str, classes) -> dict:
    """``{(fold, path): (label index, float64[k] probabilities)}`` of one member's ``name``
    (``validation.csv`` or ``predictions.csv``)."""
    import pandas as pd

    path = member.path / name
    try:
        frame = pd.read_csv(path, dtype={"path": str, "true_label": str}, keep_default_na=False,
                            na_values={f"p_{c}": ["", "nan", "NaN"] for c in classes})
        p = frame[[f"p_{c}" for c in classes]].to_numpy(np.float64)
        index = {c: i for i, c in enumerate(classes)}
        y = frame["true_label"].map(index)
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise StoreError(f"{path}: cannot read the member's probabilities ({str(exc).splitlines()[0]})") from None
    if y.isna().any():
        raise StoreError(f"{path}: true labels outside the run's classes")
    folds = frame["fold"].to_numpy(np.int64) if "fold" in frame else np.zeros(len(frame), np.int64)
    return {(int(f), str(r)): (int(t), row) for f, r, t, row in zip(folds, frame["path"], y, p)}


def read_member_predictions(members: list[RunRecord], classes) -> list[dict]:
    """The members' test predictions (``predictions.csv``): read only after the weights are fitted."""
    return [read_member_table(m, FILE, classes) for m in members]


def aligned(tables: list[dict], members: list[RunRecord], name: str):
    """``(keys int/str[n, 2] as (fold, path) object array, y int[n], [float64[n, k] per member])``
    over the images every member scored (finite probabilities in all)."""
    common = set(tables[0])
    for t, m in zip(tables[1:], members[1:]):
        if set(t) != common:
            raise BmbenchError(f"{m.path / name}: holds other images than {members[0].path / name}; "
                               "the members were not scored on the same split")
    keys = sorted(k for k in common if all(np.isfinite(t[k][1]).all() for t in tables))
    if not keys:
        raise BmbenchError(f"{members[0].path / name}: no image that every member predicted")
    y = np.array([tables[0][k][0] for k in keys], dtype=np.int64)
    probas = [np.array([t[k][1] for k in keys], dtype=np.float64) for t in tables]
    return np.array(keys, dtype=object), y, probas


def _mean_weights(combiners) -> np.ndarray:
    return np.mean([c.weights for c in combiners], axis=0)


def _store(members, store, method, name, rounds, classes, combiners, keys, y, proba, val_y, val_p, val_keys,
           fit_s, started) -> Path:
    from ..metrics.scores import compute_metrics

    first = members[0]
    member_recipe = load_recipe(first.path / "recipe.yaml")
    name = name or f"ensemble_{method}"
    raw = member_recipe.to_dict()
    raw.update(name=name, seed=0, evaluate=[],
               description=f"{method} ensemble of {', '.join(m.info['name'] for m in members)}",
               model={"family": "ensemble", "members": [m.id for m in members], "method": method,
                      "rounds": rounds})
    recipe = recipe_from_dict(raw, "bmbench ensemble")
    weights = _mean_weights(combiners)
    n_folds = len(combiners)
    ok = np.isfinite(proba).all(axis=1)
    val_proba = np.full((len(val_y), len(classes)), np.nan)
    for fold, c in enumerate(combiners):
        rows = val_keys[:, 0] == fold
        val_proba[rows] = c.combine([p[rows] for p in val_p])
    member_facts = []
    for m, w, p in zip(members, weights, val_p):
        member_facts.append({
            "id": m.id, "name": m.info["name"], "family": m.info["family"], "settings": m.info.get("settings", ""),
            "seed": m.info.get("seed"), "weight": round(float(w), 6),
            "validation_kind": (m.info.get("validation") or {}).get("kind"),
            "validation_macro_f1": round(compute_metrics(val_y, p, classes)["macro_f1"], 6),
            "test_macro_f1": m.metrics.get("macro_f1")})
    with RunWriter(store, name) as writer:
        model = EnsembleModel(classes, [m.id for m in members], combiners)
        model.save(writer.path / "model")
        metrics, reliability = score_predictions(y[ok], proba[ok], classes, keys[ok, 0].astype(np.int64), n_folds,
                                                 None, recipe.dataset.positive_class)
        write_predictions(writer.path, predictions_frame(keys[:, 1], classes, y, proba,
                                                         keys[:, 0].astype(np.int64) if n_folds > 1 else None))
        write_json(writer.path / "metrics.json", metrics)
        write_json(writer.path / "reliability.json", reliability)
        pred_s = sum(m.info.get("timings", {}).get("predict_seconds") or 0.0 for m in members)
        info = {
            "id": writer.id, "name": name, "description": recipe.description, "family": "ensemble",
            "settings": f"{method}: " + " + ".join(f"{m.info['name']}@{m.info.get('seed')} {w:.2f}"
                                                   for m, w in zip(members, weights)),
            "recipe_fingerprint": recipe.fingerprint(), "seed": 0,
            "seed_group": recipe.fingerprint(ignore=("seed",)),
            **{k: first.info[k] for k in ("dataset", "split_fingerprint", "split", "n_folds", "n_train", "n_val")},
            "n_test": int(len(y)), "n_unscored_test_images": int((~ok).sum()), "skipped_images": {},
            "timings": {"fit_seconds": round(fit_s, 3), "predict_seconds": round(pred_s, 3),
                        "inference_images_per_s": round(len(y) / pred_s, 2) if pred_s > 0 else None,
                        "total_seconds": round(time.perf_counter() - started, 3),
                        "members_fit_seconds": round(sum(m.info.get("timings", {}).get("fit_seconds") or 0.0
                                                         for m in members), 3)},
            "model": model.details(),
            "ensemble": {"method": method, "rounds": rounds if method == "select" else None,
                         "n_validation": int(len(val_y)), "members": member_facts,
                         "validation_macro_f1": round(compute_metrics(val_y, val_proba, classes)["macro_f1"], 6),
                         "weights_fitted_on": "validation images only (validation.csv of every member)",
                         **({"stack_C": [c.C for c in combiners]} if method == "stack" else {})},
            "notes": {}, "bmbench_version": __version__,
        }
        write_json(writer.path / "run.json", info)
        write_json(writer.path / "environment.json", environment(0))
        write_text(writer.path / "recipe.yaml", dump_recipe(recipe))
        write_text(writer.path / "MODEL_CARD.md", render_model_card(info, metrics, dump_recipe(recipe)))
        log.info("ensemble macro-F1 %.4f (best member %.4f) on %d test images", metrics["macro_f1"],
                 max(f["test_macro_f1"] or 0 for f in member_facts), metrics["n"])
        final = writer.commit()
    return final


def load_members(folder: Path, member_ids: list[str], load) -> list:
    """The loaded member runs of the ensemble stored in ``folder`` (``load``: folder ->
    loaded run); a deleted member is one error line, never a prediction without it."""
    runs = Path(folder).parent
    out = []
    for run_id in member_ids:
        if not isinstance(run_id, str) or Path(run_id).name != run_id or run_id.startswith("."):
            raise StoreError(f"{folder}: member {run_id!r} is not a run id of {runs}; re-create the ensemble "
                             "with bmbench ensemble")
        member = runs / run_id
        if (member / "model" / "ensemble.json").exists():  # a crafted cycle would recurse forever
            raise StoreError(f"{folder}: member {run_id} is itself an ensemble; re-create the ensemble from "
                             "plain runs with bmbench ensemble")
        if not (member / "run.json").is_file():
            raise StoreError(f"{folder}: member run {run_id} is missing from {runs}; the ensemble cannot "
                             "predict without every member (restore it, or build a new ensemble with "
                             "bmbench ensemble)")
        out.append(load(member))
    return out
