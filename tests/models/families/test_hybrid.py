import json

import numpy as np
import pandas as pd
import pytest

import bmbench.models.embeddings as embeddings
import bmbench.features.extract as extract
from bmbench.core.errors import BmbenchError
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

RECIPE = """
name: hybrid_tiny
dataset: {kind: synthetic, n_per_class: 15, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: hybrid, features: [shape], backbone: VGG16, weights: none,
        n_estimators: 60, early_stopping: 10}
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "h.yaml"
    p.write_text(RECIPE)
    return p


def test_hybrid_concatenates_both_kinds_and_reuses_both_caches(recipe, tmp_path, monkeypatch):
    run = run_recipe(recipe, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    details = info["model"]
    assert details["n_handcrafted"] == 25 and details["n_embedding"] == 512
    assert details["n_features"] == 537 and details["classifier"] == "xgboost"
    assert set(details["importance_share"]) == {"handcrafted", "embedding"}
    assert sum(details["importance_share"].values()) == pytest.approx(1.0, abs=1e-3)
    assert info["settings"] == "32px, VGG16 none + shape, xgboost"
    assert info["notes"]["embedding_cache"]["computed"] == 60
    importances = pd.read_csv(run / "model" / "feature_importances.csv")
    assert len(importances) == 537 and importances["feature"].str.startswith("shape_").any()
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["macro_f1"] > 0.5

    monkeypatch.setattr(embeddings, "_compute", lambda *a: pytest.fail("embeddings recomputed"))
    monkeypatch.setattr(extract, "extract_one", lambda *a, **k: pytest.fail("features recomputed"))
    again = run_recipe(recipe, tmp_path / "results", ("model.max_depth=3",))
    rerun = json.loads((again / "run.json").read_text())
    # every image's embedding from the cache; the validation images are read again for the
    # validation probabilities the run stores
    assert rerun["notes"]["embedding_cache"] == {"hits": 60 + rerun["validation"]["n"], "computed": 0}


def test_saved_hybrid_reproduces_predictions(recipe, tmp_path):
    from bmbench.runs.context import RunContext
    from bmbench.models.families.hybrid import Hybrid

    run = run_recipe(recipe, tmp_path / "results")
    assert {p.name for p in (run / "model").iterdir()} == {"xgboost.json", "hybrid.json",
                                                          "feature_importances.csv", "feature_stats.npz"}
    r = load_recipe(run / "recipe.yaml")
    ctx = RunContext.for_recipe(r, cache_dir=tmp_path / "fresh-cache")  # backbone rebuilt from the seed
    model = Hybrid.load(run / "model", r, ctx)
    preds = pd.read_csv(run / "predictions.csv")
    root = json.loads((run / "run.json").read_text())["dataset"]["root"]
    proba = model.predict_proba([f"{root}/{p}" for p in preds["path"]], ctx)
    assert np.allclose(proba, preds.filter(like="p_").to_numpy(), atol=1e-5)

    meta = json.loads((run / "model" / "hybrid.json").read_text())
    meta["feature_names"][0] = "shape_nucleus_gone"  # a feature this bmbench does not compute
    (run / "model" / "hybrid.json").write_text(json.dumps(meta))
    with pytest.raises(BmbenchError, match=r"1 feature\(s\) this bmbench does not compute \(first: shape_nucleus_gone\)"):
        Hybrid.load(run / "model", r, ctx).predict_proba([f"{root}/{preds['path'][0]}"], ctx)


def test_embeddings_alone_and_a_changed_weights_file(recipe, tmp_path):
    from bmbench.runs.context import RunContext
    from bmbench.models.backbones import build_backbone
    from bmbench.models.families.hybrid import Hybrid

    weights = tmp_path / "d.weights.h5"
    build_backbone("VGG16", "none", 32, seed=1).save_weights(weights)
    run = run_recipe(recipe, tmp_path / "results", ("model.features=[]", f"model.weights={weights}",
                                                    "model.classifier=logistic_regression"))
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["n_handcrafted"] == 0 and info["model"]["n_embedding"] == 512
    assert info["settings"] == "32px, VGG16 file d.weights.h5 + no handcrafted, logistic_regression"
    build_backbone("VGG16", "none", 32, seed=2).save_weights(weights)
    r = load_recipe(run / "recipe.yaml")
    ctx = RunContext.for_recipe(r)
    model = Hybrid.load(run / "model", r, ctx)
    with pytest.raises(BmbenchError, match="not the weights file this hybrid model was trained with"):
        model.predict_proba(["x.png"], ctx)
