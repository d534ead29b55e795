"""Test-time augmentation (``predict.tta``): views, the run and predict applying it."""

import json

import numpy as np
import pandas as pd
import pytest

import bmbench
from bmbench.config.recipe import load_recipe
from bmbench.core.errors import RecipeError
from bmbench.data.images import ImageSet
from bmbench.deep.tta import averaged, view_of, views

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

RECIPE = ("name: {name}\ndataset: {{kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}}\n"
          "split: {{test: 0.3, val: 0.2}}\n{model}\n")
CNN = "model: {family: cnn, depth: 2, width: 8}\ntrain: {epochs: 1, batch_size: 16}"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def test_generators_give_the_dihedral_views():
    assert len(views(["flip", "rotate90"])) == 8 and views([])[0] == (0, False)
    assert views(["flip"]) == [(0, False), (0, True)] and len(views(["rotate180", "flip"])) == 4
    x = np.arange(2 * 3 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3, 3)
    s = ImageSet(x, np.ones(2, bool), ("a", "b"), "k", "id")
    seen = {view_of(s, *v).images.tobytes() for v in views(["flip", "rotate90"])}
    assert len(seen) == 8 and len({view_of(s, *v).identity for v in views(["flip", "rotate90"])}) == 8
    assert view_of(s, 1, False).images[0, 0, 0].tolist() == x[0, 0, 2].tolist()  # turned 90 degrees
    mean = averaged(lambda v: v.images.reshape(2, -1)[:, :1].astype(float), s, ["rotate180"])
    assert mean[:, 0].tolist() == [(x[0, 0, 0, 0] + x[0, 2, 2, 0]) / 2, (x[1, 0, 0, 0] + x[1, 2, 2, 0]) / 2]


def test_recipes_without_tta_keep_their_fingerprint(tmp_path):
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE.format(name="r", model=CNN))
    plain = load_recipe(p)
    assert "predict" not in plain.to_dict()
    assert load_recipe(p, ["predict.tta=[flip]"]).fingerprint() != plain.fingerprint()
    with pytest.raises(RecipeError, match="predict.tta"):
        load_recipe(p, ["predict.tta=[spin]"])


def test_a_tta_run_averages_views_and_predict_applies_it(env):
    p = env / "cnn.yaml"
    p.write_text(RECIPE.format(name="tta", model=CNN) + "predict: {tta: [flip, rotate90]}\n")
    run = bmbench.run_recipe(p)
    info = json.loads((run / "run.json").read_text())
    assert "TTA x8" in info["settings"]
    preds = pd.read_csv(run / "predictions.csv")
    paths = [f"{info['dataset']['root']}/{x}" for x in preds["path"]]
    loaded = bmbench.load_run(run.name).model  # the loaded models (bmbench.runs.predict.LoadedRun)
    expected = preds.filter(like="p_").to_numpy()
    assert np.allclose(loaded.predict_proba(paths), expected, atol=1e-6)
    import dataclasses

    one_view = dataclasses.replace(loaded.recipe, predict=dataclasses.replace(loaded.recipe.predict, tta=()))
    single = dataclasses.replace(loaded, recipe=one_view).predict_proba(paths)
    assert not np.allclose(single, expected)


def test_tta_on_a_family_without_views_is_refused(env):
    p = env / "c.yaml"
    p.write_text(RECIPE.format(name="c", model="model: {family: baseline, pixels: 8}") + "predict: {tta: [flip]}\n")
    with pytest.raises(RecipeError, match="predict.tta: the baseline family"):
        bmbench.run_recipe(p)


def test_hybrid_averages_its_embeddings_over_the_views(env):
    p = env / "hybrid.yaml"
    p.write_text(RECIPE.format(name="hy", model="model: {family: hybrid, features: [shape], backbone: MobileNetV2, "
                                                "weights: none, n_estimators: 20}") + "predict: {tta: [rotate180]}\n")
    run = bmbench.run_recipe(p)
    info = json.loads((run / "run.json").read_text())
    assert "TTA x2" in info["settings"]
    preds = pd.read_csv(run / "predictions.csv")
    paths = [f"{info['dataset']['root']}/{x}" for x in preds["path"]]
    assert np.allclose(bmbench.load_run(run.name).predict_proba(paths), preds.filter(like="p_").to_numpy(), atol=1e-6)


def test_stacked_views_give_the_mean_of_the_views_in_one_call():
    from bmbench.deep import tta

    x = np.random.default_rng(0).integers(0, 255, (5, 4, 4, 3), dtype=np.uint8)
    s = ImageSet(x, np.array([True, True, False, True, True]), tuple("abcde"), "k", "id")
    calls = []

    def predict(v):
        calls.append(len(v))
        out = v.images.reshape(len(v), -1)[:, :3].astype(float)
        out[~v.valid] = np.nan
        return out

    one_by_one = averaged(predict, s, ["flip", "rotate90"])
    calls.clear()
    together = tta.stacked(predict, s, ["flip", "rotate90"])
    assert calls == [40] and np.allclose(together, one_by_one, equal_nan=True) and np.isnan(together[2]).all()
