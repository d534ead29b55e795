"""What `bmbench validate` prints: the resolved recipe as its model family reads it.

The run record keeps every key (``Recipe.to_dict``: defaults included, fingerprinted);
this view leaves out what the chosen family does not read, so that the printout never
contradicts itself: a tabular classifier is shown once, with the options it is fitted with
(the flat ``model.n_estimators``-style shorthands folded in), ``train`` holds only the keys
the family reads, and ``dataset.image_size`` is left out where inputs keep their native size.
"""

from __future__ import annotations

import dataclasses

import yaml


def shown_recipe(recipe) -> dict:
    from ..models.registry import get_family
    from ..models.tabular import TabularOptions

    out = recipe.to_dict()
    family = get_family(recipe.model.family)
    opts = recipe.model.options
    if isinstance(opts, TabularOptions):
        for f in dataclasses.fields(TabularOptions)[1:]:
            out["model"].pop(f.name, None)
        out["model"]["classifier"] = {"name": opts.classifier.name,
                                      **dataclasses.asdict(opts.classifier_options())}
    if hasattr(opts, "norm"):  # left out of to_dict at its default (fingerprints), read all the same
        out["model"]["norm"] = opts.norm
        if opts.norm == "group":
            out["model"]["norm_groups"] = opts.norm_groups
    if family.train_keys is not None:
        out["train"] = {k: v for k, v in out["train"].items() if k in family.train_keys}
    if not family.uses_image_size:
        out["dataset"].pop("image_size", None)
        out["dataset"].pop("keep_aspect", None)
    return out


def shown_recipe_text(recipe) -> str:
    return yaml.safe_dump(shown_recipe(recipe), sort_keys=False, allow_unicode=True)
