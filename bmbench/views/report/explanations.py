"""The report's ``explanations`` section: why the model decided, per class.

Per class, the most confident right predictions and the most confident wrong one (test
images of that class). ``cnn`` / ``transfer``: the images with the Grad-CAM heatmap of the
predicted class. ``classical`` / ``hybrid`` with XGBoost: a table of each class's top
features by mean ``|TreeSHAP contribution|`` over its test images (with the data-dictionary
description), and the examples with their segmentation outlines and the three features
that pushed hardest towards the predicted class. Other classifiers: permutation
importance on the test images. The model is loaded from the run folder and the images
from the data set root; when that fails the section says why and the report goes on.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd

from ...core.paths import rows_inside
from . import html as H
from . import plots
from ...runs.records import data_root

log = logging.getLogger(__name__)
N_CORRECT = 2
N_WRONG = 1
N_TOP = 5


def explanation_section(record, figure, n_correct: int = N_CORRECT, n_wrong: int = N_WRONG) -> str:
    """HTML of the section (``figure(name, fig, alt)`` embeds and saves a figure)."""
    from ...runs.predict import load_run

    path = record.path / "predictions.csv"
    if record.info.get("family") not in ("cnn", "transfer", "classical", "hybrid"):
        return f'<p class="note">The {H.esc(record.info.get("family"))} family has no explanations.</p>'
    if not path.is_file():
        return '<p class="note">This run has no predictions.csv.</p>'
    try:
        run = load_run(record.path)
        root = data_root(record)
        frame = _scored_frame(path, run.classes, root)
        examples = pick_examples(frame, run.classes, n_correct, n_wrong)
        if run.recipe.model.family in ("cnn", "transfer"):
            return _heatmaps(run, examples, root, figure)
        return _contributions(run, frame, examples, root, figure)
    except Exception as exc:  # a report must not fail because its explanations do
        log.warning("explanations left out of the report: %s", exc)
        return f'<p class="note">Explanations could not be computed: {H.esc(exc)}</p>'


def _scored_frame(path: Path, classes, root: Path) -> pd.DataFrame:
    """The scored rows of ``predictions.csv`` whose image lies inside the data set ``root``
    (column ``file``, resolved); rows pointing elsewhere are left out (the report warns once)."""
    frame = pd.read_csv(path, dtype={"path": str, "true_label": str, "predicted_label": str},
                        keep_default_na=False)
    frame = frame[frame["predicted_label"] != ""].reset_index(drop=True)
    files, outside = rows_inside(root, frame["path"])
    frame["file"] = [str(f) if f is not None else "" for f in files]
    frame = frame.drop(index=outside).reset_index(drop=True)
    columns = [f"p_{c}" for c in classes]
    proba = frame[columns].apply(pd.to_numeric, errors="coerce").to_numpy(float)
    which = pd.Index(classes).get_indexer(frame["predicted_label"])
    frame["confidence"] = proba[np.arange(len(frame)), np.maximum(which, 0)]
    return frame


def pick_examples(frame: pd.DataFrame, classes, n_correct: int, n_wrong: int) -> pd.DataFrame:
    """Per true class (in ``classes`` order): its ``n_correct`` most confident right
    predictions, then its ``n_wrong`` most confident wrong ones; column ``kind``."""
    parts = []
    for c in classes:
        own = frame[frame["true_label"] == c].sort_values("confidence", ascending=False, kind="stable")
        right = own[own["predicted_label"] == c].head(n_correct).assign(kind="right")
        wrong = own[own["predicted_label"] != c].head(n_wrong).assign(kind="wrong")
        parts += [right, wrong]
    return pd.concat(parts, ignore_index=True) if parts else frame.head(0).assign(kind=[])


def _caption(row) -> dict:
    return {"true": row["true_label"], "predicted": row["predicted_label"],
            "probability": float(row["confidence"]), "path": row["path"]}


def _heatmaps(run, examples: pd.DataFrame, root: Path, figure) -> str:
    from ...runs.explain import heatmap_overlay

    if examples.empty:
        return '<p class="note">No scored test images.</p>'
    expl = run.explain(examples["file"].tolist(), "gradcam")
    missing = int((expl.target < 0).sum())
    if missing == len(examples):
        return (f'<p class="note">Explanations could not be computed: none of the {missing} example '
                f"images could be read from the data set root {H.esc(root)}.</p>")
    items = []
    for i, (_, row) in enumerate(examples.iterrows()):
        image = heatmap_overlay(expl.images[i], expl.heatmaps[i]) if expl.target[i] >= 0 else None
        items.append({**_caption(row), "image": image, "note": "right" if row["kind"] == "right" else "WRONG"})
    note = (f'<p class="note">Grad-CAM of the predicted class on the last feature map '
            f"({H.esc(expl.layer)}); red = the regions that raised that class's score most. Per "
            "class: its most confident right predictions and its most confident mistake (test "
            "images). A model that looks at the white cell, not the background or the red "
            "cells, is what you want to see."
            + (f" {missing} example images could not be read from {H.esc(root)}." if missing else "") + "</p>")
    return note + figure("explanations", plots.mistakes_figure(items, "Grad-CAM per class", cols=3),
                         "Grad-CAM heatmaps per class")


def _contributions(run, frame: pd.DataFrame, examples: pd.DataFrame, root: Path, figure) -> str:
    from ...runs.explain import descriptions, segmentation_overlay

    classes = list(run.classes)
    labels = pd.Index(classes).get_indexer(frame["true_label"])
    expl = run.explain(frame["file"].tolist(), labels=labels)
    if not np.isfinite(expl.proba).all(axis=1).any():
        return (f'<p class="note">Explanations could not be computed: none of the {len(frame)} test '
                f"images could be read from the data set root {H.esc(root)}.</p>")
    described = descriptions(run)
    if expl.method == "permutation":
        return _permutation_table(expl, described)
    if expl.method == "none":
        return '<p class="note">This classifier has no per-image contributions and no labels were available.</p>'
    by_class = {k: np.flatnonzero(labels == k) for k in range(len(classes))}
    top = expl.class_importance(by_class, N_TOP)
    rows = []
    for k, items in top.items():
        for rank, (name, value) in enumerate(items, 1):
            rows.append([classes[k] if rank == 1 else "", rank, name, f"{value:.3f}",
                         described.get(name, ("", ""))[1]])
    html = ('<p class="note">TreeSHAP (XGBoost\'s own <code>pred_contribs</code>): each feature\'s '
            "additive share of a class's margin (log-odds). Per class, the features with the largest "
            "mean |contribution| to that class over its test images.</p>"
            + H.table(["class", "rank", "feature", "mean |contribution|", "what it measures"], rows, numeric={1, 3}))
    items = []
    position = {p: i for i, p in enumerate(frame["path"])}
    for _, row in examples.iterrows():
        i = position[row["path"]]
        cls = classes.index(row["predicted_label"])
        image = segmentation_overlay(run, row["file"]) if run.recipe.model.family == "classical" else None
        tops = expl.top_for_image(i, cls)
        note = ("right" if row["kind"] == "right" else "WRONG") + ": " + "\n".join(
            f"{name} ({c:+.2f})" for name, c, _ in tops)
        items.append({**_caption(row), "image": image, "note": note})
    if items:
        html += ('<p class="note">Examples per class (most confident right predictions, most confident '
                 "mistake) with the segmentation the features were computed on (green: nucleus, yellow: "
                 "cell) and the three features that pushed hardest towards the predicted class.</p>"
                 + figure("explanations", plots.mistakes_figure(items, "Examples per class", cols=3),
                          "examples with segmentation and top features"))
    return html


def _permutation_table(expl, described) -> str:
    order = np.argsort(-expl.importance, kind="stable")[:15]
    rows = [[rank, expl.names[j], f"{expl.importance[j]:.4f}", described.get(expl.names[j], ("", ""))[1]]
            for rank, j in enumerate(order, 1)]
    return ('<p class="note">Permutation importance on the test images: the drop in macro-F1 when '
            "one feature is shuffled (mean of 5 shuffles). This classifier has no per-image "
            "contributions.</p>"
            + H.table(["rank", "feature", "macro-F1 drop", "what it measures"], rows, numeric={0, 2}))
