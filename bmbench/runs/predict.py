"""Using a stored run: rebuild its preprocessing from the resolved recipe and predict.

``load_run(ref)`` returns a :class:`LoadedRun` whose ``predict_proba`` gives, for an image
the run scored, exactly the probabilities in its ``predictions.csv``. Models are read only
from safe formats through :mod:`bmbench.core.loaders` (JSON, npz without pickle, skops with
the exact types the classifier declares,
``.keras`` in safe mode); bmbench never writes or loads pickle.
"""

from __future__ import annotations

import csv
import dataclasses
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
import pandas as pd

from ..core.atomic import open_atomic
from ..core.progress import silenced
from ..data.pixel_size import scaled
from .context import RunContext
from ..core.errors import BmbenchError
from ..models.registry import get_family
from ..config.recipe import Recipe, load_recipe
from .staged import StagedModel, load_steps
from ..config.locations import results_dir
from .store import load_record, resolve_run


@dataclass
class LoadedRun:
    """A trained run: ``classes``, ``recipe``, ``metrics``, ``info`` and its model(s).

    k-fold runs hold one model per fold; new images get the mean of their probabilities.
    """

    path: Path
    recipe: Recipe
    info: dict
    metrics: dict
    models: list
    skipped: dict = field(default_factory=dict)
    microns_per_pixel: float | None = None  # of the images to predict; None: the training images'
    #: after :meth:`adapt`: the mode, folder and number of unlabelled images the models adapted to
    adaptation: dict | None = None

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info["dataset"]["classes"])

    def predict_proba(self, images: Sequence) -> np.ndarray:
        """``(n, n_classes)`` probabilities for image paths or ``(H, W, 3)`` uint8 RGB arrays.

        Rows of unreadable files are NaN; the reasons are in :attr:`skipped`.
        """
        with _as_paths(images) as paths:
            ctx = self._context()
            probas = [np.asarray(m.predict_proba(np.array(paths), ctx), dtype=np.float64)
                      for m in self.models]
            self.skipped.update(ctx.images.skipped)
        return probas[0] if len(probas) == 1 else np.mean(probas, axis=0)

    def predict(self, images: Sequence) -> np.ndarray:
        """Predicted class names ``(n,)``; empty string for unreadable images."""
        proba = self.predict_proba(images)
        ok = np.isfinite(proba).all(axis=1)
        names = np.array(self.classes, dtype=object)
        return np.where(ok, names[np.nan_to_num(proba, nan=-1).argmax(axis=1)], "")

    def explain(self, images: Sequence, method: str = "gradcam", labels=None):
        """Why the model predicts what it does for ``images`` (paths or arrays): a
        :class:`~bmbench.models.gradcam.HeatmapExplanation` (``cnn``, ``transfer``; ``method``
        gradcam or gradcam++) or a :class:`~bmbench.models.contributions.FeatureExplanation`
        (``classical``, ``hybrid``; ``labels``, class indices, enable permutation importance
        for classifiers without TreeSHAP). k-fold runs are explained by their first fold's model."""
        with _as_paths(images) as paths:
            ctx = self._context()
            out = self.models[0].explain(np.array(paths), ctx, method, labels)
            self.skipped.update(ctx.images.skipped)
        return out

    def adapt(self, folder: str | os.PathLike, mode: str | None = None) -> dict:
        """Adapt every model (transductive ``mode``, default the family's first: adabn for cnn
        and transfer, standardize for classical and hybrid) to the unlabelled images found in
        ``folder``; later predictions use the adapted copies. Returns :attr:`adaptation`."""
        family = get_family(self.recipe.model.family)
        modes = getattr(family, "transductive", ())
        mode = mode or (modes[0] if modes else "adabn")
        if mode not in modes:
            raise BmbenchError(f"--adapt-mode {mode}: family {family.name} adapts with "
                               f"{', '.join(modes) or 'no transductive mode'}")
        paths = np.array(expand_inputs([str(folder)]))
        ctx = self._context()
        self.models = [m.adapted(paths, ctx, mode) for m in self.models]
        self.adaptation = {"mode": mode, "folder": str(folder), "n_images": len(paths)}
        return self.adaptation

    def read_image(self, path: str) -> np.ndarray | None:
        """``uint8[H, W, 3]``: ``path`` through the run's image stage and its first model's
        fitted steps, at native size (what the handcrafted features see); None if unreadable."""
        return self._context().images.with_steps(self.models[0].steps).at(None).read(path)

    def set_pixel_size(self, microns_per_pixel: float) -> None:
        """Declare the pixel size, µm/px, of the images to predict: they are resampled to the
        run's ``dataset.target_microns_per_pixel`` (runs without one refuse)."""
        if self.recipe.dataset.target_microns_per_pixel is None:
            raise BmbenchError(f"{self.path}: the run was trained without dataset.target_microns_per_pixel, "
                               "so its images were not resampled; predict without --microns-per-pixel")
        self.microns_per_pixel = microns_per_pixel

    def _context(self) -> RunContext:
        ctx = RunContext.for_recipe(self.recipe)
        ctx.images.on_bad_image = "skip"
        ctx.images.warn_skipped = False  # listed once, with the reason, by the caller
        if self.microns_per_pixel is not None:
            d = self.recipe.dataset
            ctx.images = scaled(ctx.images, dataclasses.replace(d, microns_per_pixel=self.microns_per_pixel), d)
        return ctx


def load_run(ref: str | os.PathLike, results: str | os.PathLike | None = None) -> LoadedRun:
    """A stored run from a folder, an id (prefix) or ``latest``."""
    folder = resolve_run(results_dir(results), str(ref))
    record = load_record(folder)
    recipe = load_recipe(folder / "recipe.yaml")
    family = get_family(recipe.model.family)
    if getattr(family, "stored_members", False):  # an ensemble: its members are stored runs
        from ..models.families.ensemble import EnsembleModel
        from .ensemble import load_members

        ids = list(recipe.model.options.members)
        model = EnsembleModel.load(folder / "model", load_members(folder, ids, load_run))
        return LoadedRun(folder, recipe, record.info, record.metrics, [StagedModel(model)])
    ctx = RunContext.for_recipe(recipe)
    n_folds = int(record.info.get("n_folds", 1))
    model_dirs = [folder / "model"] if n_folds == 1 else [folder / "model" / f"fold-{i}" for i in range(n_folds)]
    models = []
    for d in model_dirs:
        if not d.is_dir():
            raise BmbenchError(f"{d}: the run's model is missing; the run folder is incomplete")
        models.append(StagedModel(family.load(d, recipe, ctx), load_steps(d)))
    return LoadedRun(folder, recipe, record.info, record.metrics, models)


class _as_paths:
    """Context manager: image arrays are written to lossless temporary PNGs, paths pass through."""

    def __init__(self, images: Sequence):
        self.images = images
        self.tmp: tempfile.TemporaryDirectory | None = None

    def __enter__(self) -> list[str]:
        out = []
        for i, item in enumerate(self.images):
            if isinstance(item, np.ndarray):
                out.append(self._write(i, item))
            else:
                out.append(str(item))
        return out

    def _write(self, i: int, image: np.ndarray) -> str:
        from PIL import Image

        if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
            raise BmbenchError(f"image {i}: expected an (H, W, 3) uint8 RGB array, got "
                               f"{image.dtype} {image.shape}")
        if self.tmp is None:
            self.tmp = tempfile.TemporaryDirectory(prefix="bmbench-predict-")
        path = Path(self.tmp.name) / f"{i:06d}.png"
        Image.fromarray(image).save(path)
        return str(path)

    def __exit__(self, *exc) -> None:
        if self.tmp is not None:
            self.tmp.cleanup()


# --- command line: expand inputs, stream in batches, write a CSV ---------------------------

def expand_inputs(items: Iterable[str]) -> list[str]:
    """Files as given, folders searched recursively for images, ``.csv`` manifests' ``path``
    column (relative to the CSV). Missing inputs are an error naming them."""
    out: list[str] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            from ..data.layouts import walk_images
            out += [str(p / rel) for rel in walk_images(p)]
        elif p.suffix.lower() == ".csv" and p.is_file():
            out += _manifest_paths(p)
        elif p.exists() or p.is_symlink():
            out.append(str(p))
        else:
            raise BmbenchError(f"{item}: no such file or folder")
    if not out:
        raise BmbenchError("no images found in the given files and folders")
    return out


def _manifest_paths(csv_path: Path) -> list[str]:
    try:
        frame = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise BmbenchError(f"{csv_path}: cannot read CSV ({str(exc).splitlines()[0]})") from None
    if "path" not in frame:
        raise BmbenchError(f"{csv_path}: a manifest needs a 'path' column")
    return [str(csv_path.parent / p) for p in frame["path"]]


class NothingPredicted(BmbenchError):
    """No input image could be predicted; ``skipped``: path -> reason. The ``--out`` file
    was not written (an earlier file of that name is left as it was)."""

    def __init__(self, skipped: dict[str, str]):
        super().__init__("no image could be predicted; the --out file was not written")
        self.skipped = skipped


def predict_to_csv(run: LoadedRun, paths: list[str], out: str | os.PathLike, top_k: int = 3,
                   batch_size: int = 256, progress=None, explain_dir: str | os.PathLike | None = None,
                   method: str = "gradcam", digits: int = 6) -> tuple[int, dict[str, str]]:
    """Predict ``paths`` in batches and write ``out``; return (n predicted, skipped path -> reason).

    Columns: ``path, predicted_label, probability`` (the top class), ``top2_label,
    top2_probability, ...`` up to ``top_k`` and ``p_<class>`` for every class, probabilities
    with ``digits`` significant digits (0: every digit, the exact float64);
    with ``explain_dir`` (see :mod:`bmbench.runs.explain`)
    the tabular families add ``top_features`` (the 3 largest TreeSHAP contributions to the
    predicted class). The file is written atomically, and only when at least one image
    was predicted (else :class:`NothingPredicted`, and an earlier ``out`` is kept as it was).
    """
    top_k = max(1, min(top_k, len(run.classes)))
    out = Path(out)
    tabular = explain_dir is not None and run.recipe.model.family in ("classical", "hybrid")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        n_done, skipped = _write_csv(run, paths, out, top_k, batch_size, progress, explain_dir, method, digits,
                                     tabular)
    except OSError as exc:
        raise BmbenchError(f"{exc.filename or out}: cannot write ({exc.strerror or exc}); "
                           "an earlier file of that name is kept as it was") from None
    return n_done, skipped


def _write_csv(run, paths, out: Path, top_k, batch_size, progress, explain_dir, method, digits, tabular):
    from .explain import write_explanations

    n_done = 0
    with open_atomic(out, "w", newline="") as fh:
        writer = csv.writer(fh)
        adapted = _adaptation_text(run.adaptation)
        writer.writerow(_header(run.classes, top_k) + (["top_features"] if tabular else [])
                        + (["transductive"] if adapted else []))
        for start in range(0, len(paths), batch_size):
            batch = paths[start:start + batch_size]
            with silenced():
                extra = None
                if explain_dir is None:
                    proba = run.predict_proba(batch)
                else:
                    explained = write_explanations(run, batch, Path(explain_dir), start, method)
                    extra = explained.top_features if tabular else None
                    # The explained model predicted them already; k-fold runs average their folds.
                    proba = explained.proba if len(run.models) == 1 else run.predict_proba(batch)
            n_done += _write_rows(writer, batch, proba, run.classes, top_k, extra, digits, adapted)
            if progress:
                progress(len(batch))
        wanted = set(paths)
        skipped = {p: r for p, r in run.skipped.items() if p in wanted}
        if n_done == 0:
            raise NothingPredicted(skipped)  # inside the block: the temporary is discarded
    return n_done, skipped


def _header(classes, k: int) -> list[str]:
    tops = [c for i in range(2, k + 1) for c in (f"top{i}_label", f"top{i}_probability")]
    return ["path", "predicted_label", "probability", *tops, *(f"p_{c}" for c in classes)]


def _adaptation_text(adaptation: dict | None) -> str:
    """The ``transductive`` column of a prediction CSV (empty: no adaptation)."""
    if not adaptation:
        return ""
    return f"{adaptation['mode']} on {adaptation['n_images']} unlabelled images of {adaptation['folder']}"


def _write_rows(writer, paths, proba, classes, k: int, extra: list[str] | None = None, digits: int = 6,
                adapted: str = "") -> int:
    names = np.array(classes)
    text = (lambda v: repr(float(v))) if digits == 0 else (lambda v: f"{float(v):.{digits}g}")
    written = 0
    for i, (path, p) in enumerate(zip(paths, proba)):
        if not np.isfinite(p).all():
            continue
        order = np.argsort(-p, kind="stable")[:k]
        tops = [v for j in order[1:] for v in (names[j], text(p[j]))]
        writer.writerow([path, names[order[0]], text(p[order[0]]), *tops, *(text(v) for v in p),
                         *([extra[i]] if extra is not None else []), *([adapted] if adapted else [])])
        written += 1
    return written
