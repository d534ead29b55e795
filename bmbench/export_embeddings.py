"""``bmbench features --backbone NAME``: one row of backbone embeddings per image.

The table has the same leading columns as the handcrafted export (``path`` relative to the
data set root, ``label``, ``split``, ``patient``), then ``<backbone>_<i>`` for every
dimension of the pooled embedding (:mod:`bmbench.families.embeddings`). The embeddings come
from, and go into, the same cache as the ``transfer`` and ``hybrid`` families, so exporting
after a run (or running after an export) recomputes nothing. ``<table>.features.json``
beside it records the backbone, weights, input size, pooling and precision. Rows of
unreadable images are empty (NaN). Nothing is trained.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .errors import BmbenchError

log = logging.getLogger("bmbench.run")


@dataclass(frozen=True)
class EmbeddingJob:
    """table: the images; split: their split part per row (or None); recipe: a ``transfer``
    recipe carrying the reader settings, backbone, weights, pooling, seed and jobs."""

    table: object
    split: pd.Series | None
    recipe: object


def job_from_recipe(path, overrides, results, backbone: str, weights: str | None,
                    image_size: int | None, jobs: int) -> EmbeddingJob:
    """Images and split of the recipe at ``path``; its input size, and its weights and
    pooling when it is a ``transfer`` or ``hybrid`` recipe, unless given."""
    from .export import source_from_recipe
    from .recipe import load_recipe, recipe_from_dict

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
    from .export import source_from_folder
    from .families.backbones import get_backbone
    from .recipe import recipe_from_dict

    source = source_from_folder(root, kind, options)
    size = image_size or get_backbone(backbone).default_size
    raw = {"name": "features", "dataset": {"kind": kind, "root": str(root), "image_size": size,
                                           "on_bad_image": "skip", **dict(options)},
           "model": {"family": "transfer", "backbone": backbone, "weights": weights or "imagenet"},
           "train": {"jobs": jobs}}
    return EmbeddingJob(source.dataset, source.split, recipe_from_dict(raw, "bmbench features"))


def export_embeddings(job: EmbeddingJob, out: str | os.PathLike, cache_dir: Path | None = None) -> Path:
    """Compute (or read from the cache) every image's embedding; write the table and its
    data dictionary."""
    from .context import RunContext
    from .deep.devices import prepare_devices
    from .deep.pipeline import load_images
    from .export import TABLE_FORMATS, _write_table
    from .families.backbones import build_backbone, check_size
    from .families.embeddings import EMBEDDING_VERSION, embed, spec_for
    from .families.transfer import weights_label

    out = Path(out)
    if out.suffix.lower() not in TABLE_FORMATS:
        raise BmbenchError(f"--out {out}: use a .csv or .parquet file name")
    recipe, table = job.recipe, job.table
    opts, size = recipe.model.options, recipe.dataset.image_size
    check_size(opts.backbone, size)
    ctx = RunContext.for_recipe(recipe, cache_dir=cache_dir)
    devices = prepare_devices(ctx)
    images = load_images(table.frame["path"].tolist(), ctx, "decoding images")
    spec = spec_for(opts.backbone, opts.weights, opts.pooling, ctx, devices)
    with devices.scope():
        x = embed(images, spec, ctx, lambda: build_backbone(opts.backbone, opts.weights, size, recipe.seed),
                  recipe.train.batch_size, "embeddings")
    names = [f"{opts.backbone}_{i:04d}" for i in range(x.shape[1])]
    frame = pd.DataFrame({"path": table.frame["relpath"], "label": table.frame["label"],
                          "split": job.split.fillna("").to_numpy() if job.split is not None else "",
                          "patient": table.frame["group"].fillna("").to_numpy()})
    frame = pd.concat([frame, pd.DataFrame(x, columns=names)], axis=1)
    _write_table(frame, out)
    doc = {"embedding_version": EMBEDDING_VERSION, "backbone": opts.backbone,
           "weights": weights_label(opts.weights), "weights_identity": spec.identity,
           "image_size": size, "keep_aspect": recipe.dataset.keep_aspect, "pooling": opts.pooling,
           "precision": spec.precision, "n_unreadable": int((~images.valid).sum()),
           "features": [{"name": n, "family": "embedding", "region": "image", "unit": "",
                         "description": f"dimension {i} of {opts.backbone}'s last feature map, "
                                        f"{opts.pooling}-pooled over the image"}
                        for i, n in enumerate(names)]}
    out.with_suffix(".features.json").write_text(json.dumps(doc, indent=2) + "\n")
    if not np.all(images.valid):
        log.warning("%d unreadable images have empty rows", int((~images.valid).sum()))
    return out
