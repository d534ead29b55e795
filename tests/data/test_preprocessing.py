"""Preprocessing steps: one registry entry changes the pixels every family sees, every cache
key follows, the fitted reference comes from training images only and travels with the run."""

import json
from dataclasses import dataclass

import numpy as np
import pandas as pd
import pytest

from bmbench.config.recipe import load_recipe, recipe_from_dict
from bmbench.config.registries import PREPROCESSING
from bmbench.core.errors import RecipeError
from bmbench.data.images import ImageSource, load_images
from bmbench.data.preprocessing import fit_steps
from bmbench.runs.predict import load_run
from bmbench.runs.runner import run_recipe

FITTED_ON: list[int] = []


@dataclass(frozen=True)
class ShiftOptions:
    amount: int = 40


class Shift:
    """Test step: brightens by ``amount`` and subtracts the training images' mean red level."""

    Options = ShiftOptions
    description = "test step"

    def __init__(self, options, state=None):
        self.options, self.state = options, state

    def fit(self, images):
        FITTED_ON.append(len(images))
        return {"red": float(np.mean([im[..., 0].mean() for im in images]))}

    def apply(self, image):
        out = image.astype(np.int16) + self.options.amount - int(self.state["red"] // 8)
        return np.clip(out, 0, 255).astype(np.uint8)


@pytest.fixture
def shift_step():
    PREPROCESSING.register("test_shift", Shift)
    FITTED_ON.clear()
    yield
    del PREPROCESSING._entries["test_shift"]


RAW = {"name": "pp", "dataset": {"kind": "synthetic", "n_per_class": 10, "render_size": 48, "image_size": 32},
       "split": {"test": 0.25, "val": 0.1}, "model": {"family": "classical", "n_estimators": 20}}


def _with(steps):
    raw = json.loads(json.dumps(RAW))
    raw["dataset"]["preprocess"] = steps
    return raw


def test_steps_are_validated_with_the_key_path(shift_step):
    r = recipe_from_dict(_with(["test_shift", {"test_shift": {"amount": 5}}]))
    assert [(s.name, s.options.amount) for s in r.dataset.preprocess] == [("test_shift", 40), ("test_shift", 5)]
    assert r.to_dict()["dataset"]["preprocess"] == [{"test_shift": {"amount": 40}}, {"test_shift": {"amount": 5}}]
    with pytest.raises(RecipeError, match=r"dataset\.preprocess\[0\].*unknown preprocessing step 'test_shfit' "
                                          r"\(did you mean 'test_shift'\?\)"):
        recipe_from_dict(_with(["test_shfit"]))
    with pytest.raises(RecipeError, match=r"dataset\.preprocess\[0\]\.test_shift\.amout"):
        recipe_from_dict(_with([{"test_shift": {"amout": 1}}]))


def test_recipes_without_steps_keep_their_fingerprint():
    r = recipe_from_dict(json.loads(json.dumps(RAW)))
    assert "preprocess" not in r.to_dict()["dataset"]
    assert r.fingerprint() == recipe_from_dict(r.to_dict()).fingerprint()


def test_the_identity_and_pixels_follow_the_fitted_step(shift_step, make_image, tmp_path):
    path = make_image(tmp_path / "a.png", size=(20, 10), color=(100, 100, 100))
    spec = recipe_from_dict(_with(["test_shift"])).dataset.preprocess
    steps = fit_steps(spec, [np.full((4, 4, 3), 80, np.uint8)])
    plain, stepped = ImageSource(16), ImageSource(16).with_steps(steps)
    assert plain.identity != stepped.identity
    assert stepped.identity != ImageSource(16).with_steps(fit_steps(spec, [np.zeros((4, 4, 3), np.uint8)])).identity
    assert (stepped.read(path) == 100 + 40 - 10).all() and (plain.read(path) == 100).all()
    decoded = [load_images([path], source, tmp_path / "cache") for source in (plain, stepped)]
    assert decoded[0].key != decoded[1].key and decoded[0].identity != decoded[1].identity
    assert (decoded[1].images == 130).all()  # the deep families' decoded-image cache sees the step


def test_a_run_fits_on_training_images_and_predict_applies_the_same_steps(shift_step, tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    plain = run_recipe(recipe_from_dict(json.loads(json.dumps(RAW))), tmp_path / "r")
    cached = len(list((tmp_path / "cache" / "features").rglob("*.npy")))
    stepped = run_recipe(recipe_from_dict(_with(["test_shift"])), tmp_path / "r")
    # other pixels: every image's features are computed and cached under new keys
    assert len(list((tmp_path / "cache" / "features").rglob("*.npy"))) == 2 * cached == 80
    info = json.loads((stepped / "run.json").read_text())
    assert FITTED_ON == [info["n_train"]]  # training images only, once
    assert info["model"]["preprocessing"][0]["name"] == "test_shift"
    assert (stepped / "model" / "preprocessing.json").exists()
    assert not (plain / "model" / "preprocessing.json").exists()
    preds = pd.read_csv(stepped / "predictions.csv")
    run = load_run(stepped)
    root = load_recipe(stepped / "recipe.yaml").dataset
    from bmbench.data import load_dataset
    table = load_dataset(root)
    paths = table.frame.set_index("relpath").loc[preds["path"], "path"].tolist()
    again = run.predict_proba(paths)
    np.testing.assert_allclose(again, preds[[f"p_{c}" for c in run.classes]].to_numpy(), atol=1e-6)
