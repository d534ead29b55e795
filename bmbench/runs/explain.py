"""Explanations of a stored run's predictions, as files: ``bmbench predict ... --explain DIR``.

Per image (files named ``<index>_<file stem>``, index = position in the input list):

* ``cnn`` / ``transfer``: ``.<method>.png``, the model's input image with the Grad-CAM
  (or Grad-CAM++) heatmap of the predicted class over it;
* ``classical`` / ``hybrid``: ``.contributions.csv`` (every feature: value, TreeSHAP
  contribution to the predicted class's margin, data-dictionary description; largest
  ``|contribution|`` first) and ``.segmentation.png`` (the nucleus and cell outlines the
  handcrafted features were computed on; classical runs).
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.atomic import open_atomic, write_bytes
from ..core.errors import BmbenchError

#: Overlays are written at least this many pixels wide (model inputs are often 64 px).
MIN_OVERLAY_SIDE = 256


@dataclass
class ExplainedBatch:
    """What :func:`write_explanations` wrote for one batch: ``top_features[i]`` is the
    image's top-3 text for the predictions CSV ("" when the family has no per-image
    contributions), ``files`` the paths written, ``proba`` the explained model's
    probabilities (``float64[n, n_classes]``, NaN rows for unreadable images)."""

    top_features: list[str]
    files: list[Path]
    proba: np.ndarray


def descriptions(run) -> dict[str, tuple[str, str]]:
    """Feature name -> (unit, description) from the data dictionary of the run's handcrafted
    features (embedding dimensions of a hybrid run have none)."""
    opts = run.recipe.model.options
    if not hasattr(opts, "segmentation"):
        return {}
    from ..features.extract import data_dictionary
    from ..models.families.classical import feature_settings

    if not getattr(opts, "features", ()):
        return {}
    return {d["name"]: (d["unit"], d["description"]) for d in data_dictionary(feature_settings(opts, run))}


def top_text(items: list[tuple[str, float, float]]) -> str:
    """``name (+contribution); ...`` for the predictions CSV."""
    return "; ".join(f"{name} ({c:+.3g})" for name, c, _ in items)


def write_explanations(run, paths: list[str], out: Path, start: int, method: str = "gradcam") -> ExplainedBatch:
    """Explain ``paths`` (a batch starting at input position ``start``) into the folder
    ``out``; unreadable images are skipped."""
    from ..models.gradcam import HeatmapExplanation

    out.mkdir(parents=True, exist_ok=True)
    explanation = run.explain(paths, method)
    names = [f"{start + i:05d}_{_stem(p)}" for i, p in enumerate(paths)]
    if isinstance(explanation, HeatmapExplanation):
        return _write_heatmaps(explanation, names, out, method)
    return _write_contributions(run, explanation, paths, names, out)


def _stem(path: str) -> str:
    stem = Path(path).stem
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in stem)[:80] or "image"


def _png(path: Path, rgb: np.ndarray) -> Path:
    import cv2

    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))
    if not ok:
        raise BmbenchError(f"{path}: could not encode the PNG")
    write_bytes(path, buf.tobytes())
    return path


def heatmap_overlay(image: np.ndarray, heatmap: np.ndarray) -> np.ndarray:
    """The heatmap over the image, enlarged to at least :data:`MIN_OVERLAY_SIDE` px."""
    import cv2

    from ..models.gradcam import overlay

    h, w = image.shape[:2]
    scale = max(1.0, MIN_OVERLAY_SIDE / max(h, w))
    if scale > 1:
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC)
    return overlay(image, heatmap)


def _write_heatmaps(expl, names, out: Path, method: str) -> ExplainedBatch:
    files = []
    for i, name in enumerate(names):
        if expl.target[i] < 0:
            continue
        files.append(_png(out / f"{name}.{method}.png", heatmap_overlay(expl.images[i], expl.heatmaps[i])))
    return ExplainedBatch([""] * len(names), files, expl.proba)


def segmentation_overlay(run, path: str) -> np.ndarray | None:
    """The image as the classical features saw it, with its nucleus and cell outlines."""
    from ..data.imageio import resize_longest
    from ..features.segmentation import overlay, segment

    opts = run.recipe.model.options
    image = run.read_image(path)
    if image is None:
        return None
    image = resize_longest(np.ascontiguousarray(image), opts.feature_size)
    return overlay(image, segment(image, opts.segmentation), thickness=max(1, max(image.shape[:2]) // 200))


def _write_contributions(run, expl, paths, names, out: Path) -> ExplainedBatch:
    described = descriptions(run)
    tops, files = [], []
    for i, (path, name) in enumerate(zip(paths, names)):
        if not np.isfinite(expl.proba[i]).all():
            tops.append("")
            continue
        cls = int(np.argmax(expl.proba[i]))
        tops.append(top_text(expl.top_for_image(i, cls)))
        if expl.contributions is not None:
            files.append(_contributions_csv(out / f"{name}.contributions.csv", expl, i, cls, run.classes[cls],
                                            described))
        if run.recipe.model.family == "classical":
            seg = segmentation_overlay(run, path)
            if seg is not None:
                files.append(_png(out / f"{name}.segmentation.png", seg))
    return ExplainedBatch(tops, files, expl.proba)


def _contributions_csv(path: Path, expl, row: int, cls: int, label: str, described: dict) -> Path:
    c = expl.contributions[row, cls]
    order = np.argsort(-np.abs(c[:-1]), kind="stable")
    with open_atomic(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["feature", "value", "unit", f"contribution_to_{label}", "description"])
        for j in order:
            unit, text = described.get(expl.names[j], ("", ""))
            writer.writerow([expl.names[j], repr(float(expl.values[row, j])), unit, repr(float(c[j])), text])
        writer.writerow(["(bias)", "", "", repr(float(c[-1])), "the margin of an average image"])
    return path
