"""Fitting the image stage's preprocessing steps: on the training images or a reference folder."""

import json

import numpy as np
import pytest
from PIL import Image

from bmbench.config.recipe import recipe_from_dict
from bmbench.core.errors import BmbenchError, RecipeError
from bmbench.runs.context import RunContext
from bmbench.runs.staged import fit_preprocessing


def _folder(root, colour, n=3):
    root.mkdir(parents=True)
    for i in range(n):
        Image.new("RGB", (16, 16), colour).save(root / f"{i}.png")
    return root


def _ctx(tmp_path, **dataset):
    raw = {"name": "r", "dataset": {"kind": "folder", "root": str(tmp_path), "preprocess": ["white_balance"],
                                    **dataset}, "model": {"family": "baseline"}}
    return RunContext.for_recipe(recipe_from_dict(raw, "r.yaml"), cache_dir=tmp_path / "cache")


def test_steps_fit_on_the_training_images_or_on_a_reference_folder(tmp_path):
    train = _folder(tmp_path / "train", (200, 180, 160))
    ref = _folder(tmp_path / "ref" / "sub", (120, 140, 230)).parent
    paths = sorted(str(p) for p in train.glob("*.png"))
    own = fit_preprocessing(_ctx(tmp_path).recipe.dataset.preprocess, paths, _ctx(tmp_path))
    assert own[0].state["background"] == [200.0, 180.0, 160.0]
    ctx = _ctx(tmp_path, preprocess_reference=str(ref))
    (step,) = fit_preprocessing(ctx.recipe.dataset.preprocess, paths, ctx)
    assert step.state["background"] == [120.0, 140.0, 230.0], "the reference folder's, recursively"
    assert json.dumps(step.record())  # stored in the run like any fitted step


def test_a_bad_reference_folder_is_a_clear_error(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    for folder, words in ((tmp_path / "missing", "is not a folder"), (empty, "no image files")):
        ctx = _ctx(tmp_path, preprocess_reference=str(folder))
        with pytest.raises(BmbenchError, match=f"dataset.preprocess_reference: .*{words}"):
            fit_preprocessing(ctx.recipe.dataset.preprocess, np.array(["x.png"]), ctx)
    with pytest.raises(RecipeError, match="dataset.preprocess_reference: a reference folder is only used"):
        _ctx(tmp_path, preprocess=[], preprocess_reference=str(empty))
    raw = {"name": "r", "dataset": {"kind": "folder", "root": ".", "preprocess": ["white_balance"]},
           "model": {"family": "baseline"},
           "evaluate": [{"kind": "folder", "root": ".", "preprocess_reference": "."}]}
    with pytest.raises(RecipeError, match=r"evaluate\[0\].preprocess_reference"):
        recipe_from_dict(raw)
