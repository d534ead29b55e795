"""``bmbench features``: one row of handcrafted features per image, for external analysis.

The table has ``path`` (relative to the data set root), ``label``, ``split``, ``patient``,
``segmentation_flags`` and every feature column; a data dictionary (name, family, region,
unit, description) is written beside it as ``<table>.features.json``. Nothing is trained.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.atomic import replacing
from ..core.errors import BmbenchError
from ..core.progress import progress

TABLE_FORMATS = (".csv", ".parquet")


@dataclass(frozen=True)
class ExportSource:
    """What to extract from: a data set spec, optional split assignment, feature settings."""

    dataset: object
    split: pd.Series | None
    settings: object
    images: object  # the image stage (bmbench.data.images.ImageSource)


def feature_source(source, kind: str = "folder", options=None, families=None, segmentation: str = "otsu",
                   feature_size: int | None = None, overrides=(), results=None) -> ExportSource:
    """What ``bmbench features SOURCE`` extracts: a recipe (``.yaml``: its data set, split and
    feature settings, with ``overrides``) or a data folder of ``kind``."""
    if is_recipe(source):
        return source_from_recipe(source, tuple(overrides), results)
    return source_from_folder(source, kind, options or {}, families, segmentation, feature_size)


def is_recipe(source) -> bool:
    return Path(source).suffix.lower() in (".yaml", ".yml")


def source_from_recipe(path, overrides=(), results=None) -> ExportSource:
    from ..data import load_dataset
    from types import SimpleNamespace

    from ..data.images import ImageSource
    from ..data.pixel_size import scaled
    from ..models.families.classical import ClassicalOptions, feature_settings
    from ..config.recipe import load_recipe
    from ..data.splits import recipe_split
    from ..config.locations import results_dir

    recipe = load_recipe(path, overrides)
    opts = recipe.model.options if isinstance(recipe.model.options, ClassicalOptions) else ClassicalOptions()
    table = load_dataset(recipe.dataset)
    split = recipe_split(table, recipe, results_dir(results) / "splits")
    part = np.full(len(table), "", dtype=object)
    for name in ("train", "val", "test"):
        part[getattr(split.folds[0], name)] = name
    if len(split.folds) > 1:
        part[:] = ""
        for i, fold in enumerate(split.folds):
            part[fold.test] = f"fold{i}"
    d = recipe.dataset
    images = scaled(ImageSource(None, False, d.on_bad_image, d.max_pixels), d, d)
    return ExportSource(table, pd.Series(part), feature_settings(opts, SimpleNamespace(recipe=recipe)), images)


def source_from_folder(root, kind: str, options=(), families=None, segmentation="otsu",
                       feature_size=None) -> ExportSource:
    from ..data import load_dataset
    from ..data.images import ImageSource
    from ..features.extract import FeatureSettings
    from ..features.registry import FEATURE_FAMILIES
    from ..config.recipe import dataset_spec

    raw = {"kind": kind, "root": str(root), "on_bad_image": "skip", **dict(options)}
    table = load_dataset(dataset_spec(raw, "bmbench features"))
    try:
        settings = FeatureSettings(tuple(families or FEATURE_FAMILIES.names()), segmentation, feature_size)
    except ValueError as exc:
        raise BmbenchError(f"bmbench features: {exc}") from None
    return ExportSource(table, table.frame["split"], settings,
                        ImageSource(on_bad_image=str(raw["on_bad_image"])))


STREAM_ROWS = 2048


def export_features(source: ExportSource, out: str | os.PathLike, jobs: int = 1,
                    cache_dir: Path | None = None, extract=None) -> Path:
    """Extract every image's features and write the table and its data dictionary.

    Images are processed and written in blocks of :data:`STREAM_ROWS`, so memory does not
    grow with the number of images. ``extract``: a replacement for
    :func:`~bmbench.features.extract.extract_many` (same arguments and result), e.g.
    :class:`bmbench.runs.backends.DaskFeatureExtractor` to extract on a dask cluster.
    """
    from ..core.cache import ArrayCache, default_root
    from ..features.extract import write_data_dictionary

    out = Path(out)
    if out.suffix.lower() not in TABLE_FORMATS:
        raise BmbenchError(f"--out {out}: use a .csv or .parquet file name")
    cache = ArrayCache((cache_dir or default_root()) / "features")
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as tmp, TableWriter(tmp) as writer, \
                progress(len(source.dataset), "features") as bar:
            for start in range(0, len(source.dataset), STREAM_ROWS):
                rows = slice(start, start + STREAM_ROWS)
                writer.write(_block(source, rows, jobs, cache, extract))
                bar.update(len(source.dataset.frame.iloc[rows]))
    except OSError as exc:
        raise BmbenchError(f"{out}: cannot write the features table ({exc.strerror or exc})") from None
    write_data_dictionary(out.with_suffix(".features.json"), source.settings)
    return out


def _block(source: ExportSource, rows: slice, jobs: int, cache, extract=None) -> pd.DataFrame:
    from ..features.extract import extract_many, feature_names

    part = source.dataset.frame.iloc[rows]
    x, flags = (extract or extract_many)(part["path"].tolist(), source.settings, source.images,
                                         jobs=jobs, cache=cache)
    split = source.split.iloc[rows].fillna("").to_numpy() if source.split is not None else ""
    meta = pd.DataFrame({"path": part["relpath"].to_numpy(), "label": part["label"].to_numpy(),
                         "split": split, "patient": part["group"].fillna("").to_numpy(),
                         "segmentation_flags": [";".join(f) for f in flags]})
    return pd.concat([meta, pd.DataFrame(x, columns=feature_names(source.settings))], axis=1)


class TableWriter:
    """Append blocks of rows to a CSV or Parquet file (one row group per block)."""

    def __init__(self, path: Path):
        self.path = path
        self.parquet = path.suffix.lower() == ".parquet"
        self.writer = None
        self.first = True

    def __enter__(self) -> "TableWriter":
        return self

    def write(self, frame: pd.DataFrame) -> None:
        if self.parquet:
            import pyarrow as pa
            import pyarrow.parquet as pq

            table = pa.Table.from_pandas(frame, preserve_index=False)
            if self.writer is None:
                self.writer = pq.ParquetWriter(self.path, table.schema)
            self.writer.write_table(table)
        else:
            frame.to_csv(self.path, mode="w" if self.first else "a", header=self.first, index=False)
        self.first = False

    def __exit__(self, *exc) -> None:
        if self.writer is not None:
            self.writer.close()


def overlay_folders(source: ExportSource, folder: str | os.PathLike) -> dict[str, str]:
    """``{label: sub-folder name}`` of the overlays in ``folder``: labels made safe as folder
    names (:func:`~bmbench.core.paths.folder_names`); one error line, before anything is
    written, when two labels would share a folder or a class folder there is a link that
    leads out of ``folder``."""
    from ..core.paths import folder_names
    from ..core.paths import inside

    names = folder_names(source.dataset.frame["label"].unique(), "label")
    for name in names.values():
        inside(folder, name, "--overlays class folder")
    return names


def write_overlays(source: ExportSource, folder: str | os.PathLike, per_class: int = 5) -> int:
    """PNG overlays (nucleus and cell contours) of the first ``per_class`` images per class,
    as ``folder/<label>/<image name>.png``; every file is written atomically and stays in
    ``folder`` (see :func:`overlay_folders`)."""
    import cv2

    from ..core.atomic import write_bytes
    from ..core.errors import DatasetError
    from ..core.paths import unique_file_name
    from ..core.paths import inside
    from ..data.imageio import resize_longest
    from ..features.segmentation import overlay, segment

    folder = Path(folder)
    names = overlay_folders(source, folder)
    picks = source.dataset.frame.groupby("label", sort=False).head(per_class)
    used: dict[str, set[str]] = {}
    written = 0
    for path, label in zip(picks["path"], picks["label"]):
        try:
            image = resize_longest(source.images.decode(path), source.settings.image_size)
        except DatasetError:
            continue
        drawn = overlay(image, segment(image, source.settings.segmentation))
        sub = names[str(label)]
        name = unique_file_name(Path(path).stem, ".png", used.setdefault(sub, set()))
        target = inside(folder, Path(sub) / name, "overlay")
        ok, png = cv2.imencode(".png", cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
        if not ok:
            raise BmbenchError(f"{target}: could not encode the overlay PNG")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, png.tobytes())
        except OSError as exc:
            raise BmbenchError(f"{target}: cannot write the overlay ({exc.strerror or exc})") from None
        written += 1
    return written
