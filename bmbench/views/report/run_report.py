"""``bmbench report RUN``: one self-contained HTML page about a stored run.

Sections (each an ``<section id=...>``): ``summary``, ``metrics`` (every headline metric with
its 95% interval, and the fold mean and standard deviation for k-fold runs), ``per-class``,
``confusion-matrix``, ``reliability``, ``training-curves`` (when the run wrote
``history*.csv``), ``feature-importances`` (when it wrote ``feature_importances.csv``),
``mistakes`` (the most confident wrong predictions, with thumbnails), ``explanations``
(Grad-CAM or TreeSHAP per class, see :mod:`.explanations`) and ``environment``.
The figures are also written as PNG files into ``<run>/figures/``.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.errors import BmbenchError
from ...metrics.bootstrap import LEVEL
from ...metrics.scores import HEADLINE, LOWER_IS_BETTER
from ...core.atomic import check_writable, write_bytes, write_text
from ...core.paths import inside, rows_inside
from ...core.untrusted import damaged
from ...runs.records import data_root, require
from ...runs.store import RunRecord, load_record
from ..cells import format_amount
from . import html as H
from . import plots

log = logging.getLogger(__name__)
N_MISTAKES = 12
THUMBNAIL = 160


def write_report(run: str | Path, out: str | Path | None = None, n_mistakes: int = N_MISTAKES,
                 explain: bool = True, figures: str | Path | None = None) -> Path:
    """Write the report of the run folder ``run`` to ``out`` (default ``<run>/report.html``)
    and its figures to ``figures`` (default ``<run>/figures``) as PNG files; return the HTML
    path. ``explain``: add the explanations section (loads the model and reads test images)."""
    record = load_record(Path(run))
    require(record, "`bmbench report`", "macro_f1", "accuracy", "n", "classes", "per_class", "confusion_matrix")
    out = Path(out) if out else record.path / "report.html"
    folder = Path(figures) if figures else inside(record.path, "figures", "the report's figures folder")
    check_writable(out, "the report")  # before any work
    check_writable(folder, "the report's figures", folder=True)
    _warn_outside(record)
    pngs: dict[str, bytes] = {}

    def figure(name: str, fig, alt: str) -> str:
        pngs[name] = plots.png_bytes(fig)
        return H.image(pngs[name], alt)

    scored = _scored(record)
    metrics = dict(record.metrics)
    if "ci" not in metrics and scored is not None:  # a run stored before intervals existed
        from ...metrics.bootstrap import bootstrap_ci

        metrics["ci"] = bootstrap_ci(scored.y, scored.proba, scored.classes)
    body = [
        H.section("summary", "Summary", _summary(record, metrics)),
        H.section("metrics", "Metrics with 95% confidence intervals",
                  _metrics_table(metrics) + figure("metrics", plots.metric_ci_figure(metrics, LEVEL),
                                                   "headline scores with intervals")),
        H.section("per-class", "Per-class precision, recall, F1 and support", _per_class(metrics)),
        H.section("confusion-matrix", "Confusion matrix",
                  '<p class="note">Each row is a true class and sums to 100%; cells show the share '
                  "of that class predicted as each column (and the count).</p>"
                  + figure("confusion_matrix", plots.confusion_matrix_figure(
                      metrics["confusion_matrix"], metrics["classes"]), "normalised confusion matrix")),
        H.section("reliability", "Calibration: reliability diagram", _reliability(record, metrics, scored, figure)),
    ]
    if record.info.get("ensemble"):
        body.insert(1, H.section("members", "Ensemble members and weights", _members(record.info["ensemble"])))
    history = _history(record.path)
    if history is not None:
        body.append(H.section("training-curves", "Training curves",
                              figure("training_curves", plots.training_curves_figure(history),
                                     "training and validation curves")))
    importances, n_models = _importances(record.path)
    if importances is not None:
        note = (f'<p class="note">Mean gain over the {n_models} fold models.</p>' if n_models > 1 else "")
        body.append(H.section("feature-importances", "Top feature importances",
                              note + figure("feature_importances",
                                            plots.feature_importance_figure(importances),
                                            "top features by gain")))
    body.append(H.section("mistakes", "Most confident mistakes",
                          _mistakes(record, n_mistakes, figure)))
    if explain:
        from .explanations import explanation_section

        body.append(H.section("explanations", "Why: explanations per class", explanation_section(record, figure)))
    body.append(H.section("environment", "Environment", _environment(record.path)))
    info = record.info
    text = H.page(f"bmbench report: {info['name']}", "".join(body),
                  f"run {record.id} - {info['dataset']['kind']} - {info['family']}")
    if not figures:  # checked again: not a link leading elsewhere
        folder = inside(record.path, "figures", "the report's figures folder")
    try:
        folder.mkdir(parents=bool(figures), exist_ok=True)
        for name, png in pngs.items():
            write_bytes(folder / f"{name}.png", png)
        out.parent.mkdir(parents=True, exist_ok=True)
        write_text(out, text)
    except OSError as exc:
        raise BmbenchError(f"{exc.filename or out}: cannot write the report ({exc.strerror})") from None
    return out


def summary_card(record: RunRecord, image) -> str:
    """A run's card for a notebook: the summary, the headline metrics with their intervals,
    the confusion matrix and (when the run wrote a history) the training curves, drawn by
    ``image(figure, alt)``."""
    metrics = record.metrics
    figures = []
    if metrics.get("confusion_matrix") and metrics.get("classes"):
        figures.append(image(plots.confusion_matrix_figure(metrics["confusion_matrix"], metrics["classes"]),
                             "normalised confusion matrix"))
    history = _history(record.path)
    if history is not None:
        figures.append(image(plots.training_curves_figure(history), "training and validation curves"))
    return (_summary(record, metrics) + _metrics_table(metrics)
            + f'<div class="figures">{"".join(figures)}</div>')


def _scored(record: RunRecord):
    from ..compare import load_scored
    from ...core.errors import StoreError

    try:
        return load_scored(record)
    except StoreError as exc:
        if (record.path / "predictions.csv").is_file():
            raise  # damaged: the report would show a part of the run as if it were all of it
        log.warning("%s", exc)
        return None


def _summary(record: RunRecord, metrics: dict) -> str:
    info = record.info
    d, t = info["dataset"], info.get("timings", {})
    split = info.get("split", {})
    split_text = ", ".join(f"{k}={v}" for k, v in split.items())
    ci = (metrics.get("ci") or {}).get("macro_f1")
    headline = f"{metrics['macro_f1']:.4f}" + (f" [{ci[0]:.4f}, {ci[1]:.4f}]" if ci else "")
    pairs = [
        ("run", record.id), ("recipe", info["name"]), ("description", info.get("description")),
        ("family", info["family"]), ("settings", info.get("settings")),
        ("data set", f"{d['kind']} at {d['root']} ({d['n_images']} images, {len(d['classes'])} classes)"),
        ("split", f"{split_text} (fingerprint {info['split_fingerprint']})"),
        ("images", f"{info.get('n_train')} train, {info.get('n_val')} validation, "
                   f"{info.get('n_test')} test ({metrics['n']} scored)"
                   + (f"; {info['n_folds']} folds, test images pooled" if info.get("n_folds", 1) > 1 else "")),
        ("macro-F1 (95% CI)", headline),
        ("accuracy", f"{metrics['accuracy']:.4f}"),
        ("fit time", _duration(t["fit_seconds"]) if t.get("fit_seconds") is not None else None),
        ("inference", f"{format_amount(t['inference_images_per_s'])} images/s"
                      if t.get("inference_images_per_s") else None),
        ("seed", info.get("seed")), ("bmbench", info.get("bmbench_version")),
    ]
    if info.get("skipped_images"):
        pairs.append(("skipped images", f"{len(info['skipped_images'])} unreadable, not scored"))
    return H.facts(pairs)


def _members(e: dict) -> str:
    """The members of an ensemble run, their weights and scores (``run.json["ensemble"]``)."""
    rows = [[m["id"], m["family"], m.get("settings", ""), f"{m['weight']:.3f}",
             f"{m['validation_macro_f1']:.4f} ({m.get('validation_kind') or '?'})",
             f"{m['test_macro_f1']:.4f}" if m.get("test_macro_f1") is not None else "-"] for m in e["members"]]
    note = (f'<p class="note">Method {e["method"]}; weights fitted on {e["n_validation"]} validation images '
            "only (out_of_fold: cross-fitted, the member trained on its validation images); the ensemble's "
            f"validation macro-F1 {e['validation_macro_f1']:.4f} is in-sample for select and stack.</p>")
    return note + H.table(["member run", "family", "settings", "weight", "validation macro-F1", "test macro-F1"],
                          rows)


def _metrics_table(metrics: dict) -> str:
    ci = metrics.get("ci") or {}
    few = not any(ci.get(name) for name in HEADLINE) and metrics.get("n")
    spread = metrics.get("fold_summary") or {}
    header = ["metric", "value", "95% CI", "better"]
    if spread:
        header += ["fold mean", "fold std"]
    rows = []
    for name in HEADLINE:
        value = metrics.get(name)
        interval = ci.get(name)
        row = [name, "-" if value is None else f"{value:.4f}",
               f"[{interval[0]:.4f}, {interval[1]:.4f}]" if interval else "n too small" if few and value is not None else "-",
               "lower" if name in LOWER_IS_BETTER else "higher"]
        if spread:
            s = spread.get(name)
            row += [f"{s['mean']:.4f}", f"{s['std']:.4f}"] if s else ["-", "-"]
        rows.append(row)
    method = metrics.get("ci_method") or {}
    note = (f'<p class="note">Intervals: {method.get("method", "stratified percentile bootstrap")}, '
            f'{method.get("n_resamples", 1000)} resamples, seed {method.get("seed", 0)}. '
            "ECE: expected calibration error over 15 equal-width confidence bins; Brier: mean "
            "squared distance between the probabilities and the one-hot truth (0 to 2)."
            + (" Fold mean and standard deviation: across the folds' own test sets; the value "
               "column pools every fold's test images." if spread else "")
            + (" No intervals: n too small (every class has at most one test image, so every "
               "resample is the test set itself)." if few else "") + "</p>")
    return H.table(header, rows, numeric={1, 2, 4, 5}) + note


def _per_class(metrics: dict) -> str:
    rows = [[c, f"{v['precision']:.3f}", f"{v['recall']:.3f}", f"{v['f1']:.3f}", v["support"]]
            for c, v in metrics["per_class"].items()]
    return H.table(["class", "precision", "recall", "F1", "support"], rows, numeric={1, 2, 3, 4})


def _reliability(record: RunRecord, metrics: dict, scored, figure) -> str:
    path = record.path / "reliability.json"
    rel = None
    if path.is_file():
        try:
            rel = json.loads(path.read_text())
        except (OSError, ValueError):
            rel = None
    if rel is None and scored is not None:
        from ...metrics.calibration import reliability

        rel = reliability(scored.y, scored.proba)
    if rel is None:
        return '<p class="note">No reliability data and no predictions in this run.</p>'
    note = ('<p class="note">Bars: the share of right predictions among the test images whose '
            "confidence (largest probability) falls in each bin; a calibrated model follows the "
            "diagonal. Red hatching: the gap between accuracy and the bin's mean confidence (black "
            "tick); the grey bars below count the images per bin. "
            f"ECE {rel['ece']:.4f}, Brier {metrics.get('brier', float('nan')):.4f}.</p>")
    return note + figure("reliability", plots.reliability_figure(rel), "reliability diagram")


def _history(folder: Path) -> pd.DataFrame | None:
    """``history.csv`` (or per-fold ``history*.csv`` files, given a ``fold`` column)."""
    files = sorted(folder.glob("history*.csv")) or sorted(folder.glob("model/**/history*.csv"))
    frames = []
    for i, path in enumerate(files):
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            log.warning("%s: unreadable training history, left out of the report", path)
            continue
        if len(files) > 1 and "fold" not in frame.columns:
            frame["fold"] = i
        frames.append(frame)
    frames = [f for f in frames if len(f)]
    return pd.concat(frames, ignore_index=True) if frames else None


def _importances(folder: Path) -> tuple[pd.DataFrame | None, int]:
    files = sorted((folder / "model").glob("**/feature_importances.csv"))
    frames = []
    for path in files:
        try:
            frame = pd.read_csv(path)
        except (OSError, ValueError, pd.errors.EmptyDataError):
            continue
        if {"feature", "gain"} <= set(frame.columns):
            frames.append(frame[["feature", "gain"]])
    if not frames:
        return None, 0
    mean = pd.concat(frames).groupby("feature", as_index=False)["gain"].sum()
    mean["gain"] /= len(frames)
    return mean, len(frames)


def _mistakes(record: RunRecord, n: int, figure) -> str:
    path = record.path / "predictions.csv"
    if not path.is_file():
        return '<p class="note">This run has no predictions.csv.</p>'
    try:  # already read by _scored: what is checked here is what only this section uses
        frame = pd.read_csv(path, dtype={"path": str, "true_label": str, "predicted_label": str},
                            keep_default_na=False)
        frame["predicted_label"]
    except (OSError, ValueError, KeyError, pd.errors.ParserError) as exc:
        raise damaged(path, f"damaged predictions ({'no column ' if isinstance(exc, KeyError) else ''}"
                      f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__})",
                      "restore the file or delete that run folder") from None
    wrong = frame[(frame["predicted_label"] != "") & (frame["predicted_label"] != frame["true_label"])]
    if wrong.empty:
        return '<p class="note">No mistakes on the test images.</p>'
    classes = list(record.metrics.get("classes") or record.info["dataset"]["classes"])
    columns = [f"p_{c}" for c in classes]
    which = pd.Index(classes).get_indexer(wrong["predicted_label"])
    table = wrong[columns].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=float)
    prob = np.where(which >= 0, table[np.arange(len(wrong)), np.maximum(which, 0)], np.nan)
    order = np.argsort(-np.nan_to_num(prob, nan=-1), kind="stable")[:n]
    root = data_root(record)
    files, outside = rows_inside(root, [wrong.iloc[i]["path"] for i in order])
    items = []
    for i, file in zip(order, files):
        row = wrong.iloc[i]
        items.append({"image": _thumbnail(file) if file is not None else None, "true": row["true_label"],
                      "predicted": row["predicted_label"], "probability": prob[i],
                      "path": row["path"]})
    missing = sum(item["image"] is None for item in items) - len(outside)
    note = (f'<p class="note">The {len(items)} wrong predictions made with the highest '
            f"probability, out of {len(wrong)} mistakes on {len(frame)} test images. Images are "
            f"read from the data set root {H.esc(root)}"
            + (f"; {missing} could not be found there" if missing else "")
            + (f"; {len(outside)} point outside it and are not shown" if outside else "") + ".</p>")
    return note + figure("mistakes", plots.mistakes_figure(items), "most confident mistakes")


def _warn_outside(record: RunRecord) -> None:
    """One warning line when rows of the run's ``predictions.csv`` point outside its data set
    root: their images are neither read nor embedded, the report is written without them."""
    path = record.path / "predictions.csv"
    try:
        rows = pd.read_csv(path, dtype=str, keep_default_na=False, usecols=["path"])["path"].tolist()
    except (OSError, ValueError, pd.errors.ParserError, pd.errors.EmptyDataError):
        return  # no (readable) predictions: the sections say so
    root = data_root(record)
    _, outside = rows_inside(root, rows)
    if outside:
        log.warning("%s: %d row(s) point outside the data set root %s (first: line %d, %r); "
                    "their images are not read or shown", path, len(outside), root, outside[0] + 2,
                    rows[outside[0]])


def _thumbnail(path: Path) -> np.ndarray | None:
    from PIL import Image

    from ...data.imageio import read_rgb
    from ...core.errors import DatasetError

    try:
        rgb = read_rgb(path)
    except DatasetError:  # a missing or unreadable image becomes a placeholder
        return None
    im = Image.fromarray(rgb)
    im.thumbnail((THUMBNAIL, THUMBNAIL))
    return np.asarray(im)


def _environment(folder: Path) -> str:
    try:
        env = json.loads((folder / "environment.json").read_text())
    except (OSError, ValueError):
        return '<p class="note">No environment.json in this run.</p>'
    pairs = [("python", env.get("python")), ("platform", env.get("platform")),
             ("CPU", f"{env.get('cpu')} ({env.get('cores')} cores)"),
             ("GPUs", ", ".join(env.get("gpus") or []) or "none seen"),
             ("seed", env.get("seed")), ("bmbench git commit", env.get("bmbench_git_commit"))]
    packages = sorted((env.get("packages") or {}).items())
    return H.facts(pairs) + H.table(["package", "version"], [list(p) for p in packages])


def _duration(seconds: float) -> str:
    """``0.87 s``, ``12.3 s``, ``928 s (15.5 min)``: the leaderboard's rounding, minutes when long."""
    text = f"{format_amount(seconds)} s"
    return text + (f" ({seconds / 60:.1f} min)" if seconds >= 120 else "")
