"""``bmbench features --backbone NAME``: one row of backbone embeddings per image.

The table has the same leading columns as the handcrafted export (``path`` relative to the
data set root, ``label``, ``split``, ``patient``), then ``<backbone>_<i>`` for every
dimension of the pooled embedding (:mod:`bmbench.models.embeddings`). The embeddings come
from, and go into, the same cache as the ``transfer`` and ``hybrid`` families, so exporting
after a run (or running after an export) recomputes nothing. ``<table>.features.json``
beside it records the backbone, weights, input size, pooling and precision. Rows of
unreadable images are empty (NaN). Nothing is trained.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from ..core.atomic import replacing, write_json
from ..core.errors import BmbenchError

log = logging.getLogger("bmbench.run")


@dataclass(frozen=True)
class EmbeddingJob:
    """table: the images; split: their split part per row (or None); recipe: a ``transfer``
    recipe carrying the reader settings, backbone, weights, pooling, seed and jobs."""

    table: object
    split: pd.Series | None
    recipe: object


def embedding_job(source, backbone: str, weights: str | None = None, image_size: int | None = None,
                  kind: str = "folder", options=None, overrides=(), results=None, jobs: int = 1) -> EmbeddingJob:
    """What ``bmbench features SOURCE --backbone NAME`` embeds: a recipe's images (``.yaml``)
    or a data folder of ``kind``."""
    from .export_features import is_recipe

    if is_recipe(source):
        return job_from_recipe(source, tuple(overrides), results, backbone, weights, image_size, jobs)
    return job_from_folder(source, kind, options or {}, backbone, weights, image_size, jobs)


def job_from_recipe(path, overrides, results, backbone: str, weights: str | None,
                    image_size: int | None, jobs: int) -> EmbeddingJob:
    """Images and split of the recipe at ``path``; its input size, and its weights and
    pooling when it is a ``transfer`` or ``hybrid`` recipe, unless given."""
    from .export_features import source_from_recipe
    from ..config.recipe import load_recipe, recipe_from_dict

    source = source_from_recipe(path, overrides, results)
    recipe = load_recipe(path, overrides)
    raw = recipe.to_dict()
    model = raw["model"] if raw["model"]["family"] in ("transfer", "hybrid") else {}
    raw["model"] = {"family": "transfer", "backbone": backbone,
                    "weights": weights or model.get("weights", "imagenet"),
                    "pooling": model.get("pooling", "avg")}
    if image_size:
        raw["dataset"]["image_size"] = image_size
    raw["train"]["jobs"] = jobs
    return EmbeddingJob(source.dataset, source.split, recipe_from_dict(raw, recipe.source))


def job_from_folder(root, kind: str, options: dict, backbone: str, weights: str | None,
                    image_size: int | None, jobs: int) -> EmbeddingJob:
    """Every image of the data folder ``root`` (layout ``kind``) at ``image_size`` (default:
    the backbone's ImageNet size); unreadable images are skipped."""
    from .export_features import source_from_folder
    from ..models.backbones import get_backbone
    from ..config.recipe import recipe_from_dict

    source = source_from_folder(root, kind, options)
    size = image_size or get_backbone(backbone).default_size
    raw = {"name": "features", "dataset": {"kind": kind, "root": str(root), "image_size": size,
                                           "on_bad_image": "skip", **dict(options)},
           "model": {"family": "transfer", "backbone": backbone, "weights": weights or "imagenet"},
           "train": {"jobs": jobs}}
    return EmbeddingJob(source.dataset, source.split, recipe_from_dict(raw, "bmbench features"))


#: Images embedded and written per block, so memory does not grow with the data set.
BLOCK_ROWS = 4096


def export_embeddings(job: EmbeddingJob, out: str | os.PathLike, cache_dir: Path | None = None) -> Path:
    """Compute (or read from the cache) every image's embedding, block by block; write the
    table atomically and its data dictionary."""
    from ..runs.context import RunContext
    from ..deep.devices import prepare_devices
    from .export_features import TABLE_FORMATS, TableWriter
    from ..models.backbones import check_size
    from ..models.embeddings import spec_for

    out = Path(out)
    if out.suffix.lower() not in TABLE_FORMATS:
        raise BmbenchError(f"--out {out}: use a .csv or .parquet file name")
    recipe = job.recipe
    opts = recipe.model.options
    check_size(opts.backbone.name, recipe.dataset.image_size)
    ctx = RunContext.for_recipe(recipe, cache_dir=cache_dir)
    devices = prepare_devices(ctx)
    spec = spec_for(opts.backbone.name, opts.weights, opts.pooling, ctx, devices)
    unreadable, dims = 0, 0
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        with replacing(out) as tmp, TableWriter(tmp) as table:
            for start in range(0, len(job.table), BLOCK_ROWS):
                block, bad = _block(job, slice(start, start + BLOCK_ROWS), spec, ctx, devices)
                table.write(block)
                unreadable += bad
                dims = block.shape[1] - 4
    except OSError as exc:
        raise BmbenchError(f"{out}: cannot write the embeddings table ({exc.strerror or exc})") from None
    _write_dictionary(out.with_suffix(".features.json"), recipe, spec, dims, unreadable)
    if unreadable:
        log.warning("%d unreadable images have empty rows", unreadable)
    return out


def _block(job: EmbeddingJob, rows: slice, spec, ctx, devices) -> tuple[pd.DataFrame, int]:
    from ..models.backbones import build_backbone
    from ..models.embeddings import embed

    recipe, opts = job.recipe, job.recipe.model.options
    part = job.table.frame.iloc[rows]
    images = ctx.load_images(part["path"].tolist(), "decoding images")
    with devices.scope():
        x = embed(images, spec, ctx,
                  lambda: build_backbone(opts.backbone.name, opts.weights, recipe.dataset.image_size, recipe.seed),
                  recipe.train.batch_size, "embeddings")
    split = job.split.iloc[rows].fillna("").to_numpy() if job.split is not None else ""
    meta = pd.DataFrame({"path": part["relpath"].to_numpy(), "label": part["label"].to_numpy(),
                         "split": split, "patient": part["group"].fillna("").to_numpy()})
    names = [f"{opts.backbone}_{i:04d}" for i in range(x.shape[1])]
    return pd.concat([meta, pd.DataFrame(x, columns=names)], axis=1), int((~images.valid).sum())


def _write_dictionary(path: Path, recipe, spec, dims: int, unreadable: int) -> None:
    from ..models.embeddings import EMBEDDING_VERSION
    from ..models.families.transfer import weights_label

    opts = recipe.model.options
    doc = {"embedding_version": EMBEDDING_VERSION, "backbone": opts.backbone.name,
           "weights": weights_label(opts.weights), "weights_identity": spec.identity,
           "image_size": recipe.dataset.image_size, "keep_aspect": recipe.dataset.keep_aspect,
           "pooling": opts.pooling, "precision": spec.precision, "n_unreadable": unreadable,
           "features": [{"name": f"{opts.backbone}_{i:04d}", "family": "embedding", "region": "image",
                         "unit": "", "description": f"dimension {i} of {opts.backbone}'s last feature "
                                                    f"map, {opts.pooling}-pooled over the image"}
                        for i in range(dims)]}
    write_json(path, doc)
