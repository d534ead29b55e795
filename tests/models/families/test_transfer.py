import json

import numpy as np
import pandas as pd
import pytest

import bmbench.models.embeddings as embeddings
from bmbench.core.errors import BmbenchError, RecipeError
from bmbench.models.backbones import build_backbone
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

RECIPE = """
name: transfer_tiny
dataset: {kind: synthetic, n_per_class: 12, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: transfer, backbone: MobileNetV2, weights: WEIGHTS}
train: {epochs: 2, batch_size: 8}
"""


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory):
    """A MobileNetV2 weights file written by the test itself (stands in for ImageNet)."""
    path = tmp_path_factory.mktemp("weights") / "MobileNetV2.weights.h5"
    build_backbone("MobileNetV2", "none", 32, seed=7).save_weights(path)
    return path


@pytest.fixture
def recipe(tmp_path, monkeypatch, weights_file):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "t.yaml"
    p.write_text(RECIPE.replace("WEIGHTS", str(weights_file)))
    return p


def saved_backbone(run):
    """The backbone of the stored model: in model.keras, or (head-only runs) rebuilt from
    head.keras and the reference to its weights."""
    from bmbench.models.keras_model import KerasClassifier

    return KerasClassifier.load(run / "model").model.get_layer("mobilenetv2_1.00_32")


def reference(weights_file):
    model = build_backbone("MobileNetV2", "none", 32, seed=99)
    model.load_weights(weights_file)
    return {w.path: w.numpy() for w in model.weights}


def assert_saved_model_reproduces_predictions(run):
    from bmbench.runs.context import RunContext
    from bmbench.models.families.transfer import Transfer

    r = load_recipe(run / "recipe.yaml")
    ctx = RunContext.for_recipe(r)
    model = Transfer.load(run / "model", r, ctx)
    preds = pd.read_csv(run / "predictions.csv")
    root = json.loads((run / "run.json").read_text())["dataset"]["root"]
    proba = model.predict_proba([f"{root}/{p}" for p in preds["path"]], ctx)
    assert np.allclose(proba, preds.filter(like="p_").to_numpy(), atol=1e-6)


def test_weights_file_loads_through_the_recipe_and_stays_frozen(recipe, tmp_path, weights_file, monkeypatch):
    run = run_recipe(recipe, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["weights"] == "file MobileNetV2.weights.h5"
    assert set(info["model"]["stages"]) == {"head"}
    assert info["settings"] == "32px, MobileNetV2 file MobileNetV2.weights.h5, head only"
    # train and validation embeddings train the head; the test images go through the
    # cached-embedding path too (the backbone is frozen), checked against the full model below
    # (the validation images are read again, from the cache, for the stored validation probabilities)
    assert info["notes"]["embedding_cache"] == {"hits": info["validation"]["n"], "computed": 48}
    ref = reference(weights_file)
    for w in saved_backbone(run).weights:
        assert np.array_equal(w.numpy(), ref[w.path]), f"{w.path} differs from the file"
    history = pd.read_csv(run / "history.csv")
    assert list(history["stage"].unique()) == ["head"] and len(history) == 2
    assert_saved_model_reproduces_predictions(run)

    # a rerun and a head ablation reuse every cached embedding: the backbone never runs
    monkeypatch.setattr(embeddings, "_compute", lambda *a: pytest.fail("embeddings recomputed"))
    again = run_recipe(recipe, tmp_path / "results")
    assert json.loads((again / "run.json").read_text())["notes"]["embedding_cache"] == {
        "hits": 48 + info["validation"]["n"], "computed": 0}
    assert (again / "predictions.csv").read_text() == (run / "predictions.csv").read_text()
    ablation = run_recipe(recipe, tmp_path / "results", ("model.dropout=0.6", "train.learning_rate=0.01"))
    assert json.loads((ablation / "run.json").read_text())["notes"]["embedding_cache"]["computed"] == 0


def test_fine_tuning_trains_only_the_top_layers_and_keeps_batchnorm(recipe, tmp_path, weights_file):
    run = run_recipe(recipe, tmp_path / "results", ("model.fine_tune_layers=12", "model.fine_tune_epochs=2",
                                                    "model.fine_tune_learning_rate=0.01"))
    info = json.loads((run / "run.json").read_text())
    assert list(info["model"]["stages"]) == ["head", "fine_tune"]
    assert info["settings"].endswith("fine-tune top 12")
    backbone = saved_backbone(run)
    top = {w.path for layer in backbone.layers[-12:] for w in layer.weights}
    ref = reference(weights_file)
    changed = {w.path for w in backbone.weights if not np.array_equal(w.numpy(), ref[w.path])}
    assert changed and changed <= top, "only the top layers may change"
    assert not any("_bn/" in p or "BN/" in p for p in changed), "BatchNorm stays frozen"
    history = pd.read_csv(run / "history.csv")
    assert list(history["stage"].unique()) == ["head", "fine_tune"]
    assert history.loc[history.stage == "fine_tune", "learning_rate"].iloc[0] == pytest.approx(0.01)


def test_scratch_trains_everything_in_one_stage(recipe, tmp_path):
    run = run_recipe(recipe, tmp_path / "results", ("model.weights=none",))
    info = json.loads((run / "run.json").read_text())
    assert list(info["model"]["stages"]) == ["scratch"] and info["model"]["weights"] == "none"
    assert info["settings"] == "32px, MobileNetV2 from scratch"
    assert "embedding_cache" not in info["notes"]
    backbone = saved_backbone(run)
    init = build_backbone("MobileNetV2", "none", 32, seed=0)
    bn = [layer for layer in backbone.layers if layer.__class__.__name__ == "BatchNormalization"]
    assert bn and all(layer.momentum == 0.9 for layer in bn)
    start = {w.path: w.numpy() for w in init.weights}
    assert not np.array_equal(bn[0].gamma.numpy(), start[bn[0].gamma.path]), "BatchNorm trains too"


def test_mismatched_weights_file_is_refused(recipe, tmp_path):
    other = tmp_path / "wrong.weights.h5"
    build_backbone("MobileNetV3Small", "none", 32).save_weights(other)
    with pytest.raises(BmbenchError, match=r"wrong.weights.h5 does not match backbone MobileNetV2"):
        run_recipe(recipe, tmp_path / "results", (f"model.weights={other}",))


@pytest.mark.parametrize("override, message", [
    ("model.backbone=Densenet121", r"model.backbone: unknown keras.applications backbone 'Densenet121' \(did you mean 'DenseNet121'\?\)"),
    ("model.pooling=mean", r"model.pooling: invalid value 'mean'"),
    ("model.fine_tune_layers=-1", r"model.fine_tune_layers: value -1 is out of range"),
])
def test_bad_options_name_the_key(recipe, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, [override])


def test_weights_keywords_stay_and_relative_paths_resolve(tmp_path, monkeypatch):
    (tmp_path / "sub").mkdir()
    p = tmp_path / "sub" / "r.yaml"
    p.write_text(RECIPE.replace("WEIGHTS", "w/my.weights.h5"))
    assert load_recipe(p).model.options.weights == str(tmp_path / "sub" / "w" / "my.weights.h5")
    assert load_recipe(p, ["model.weights=imagenet"]).model.options.weights == "imagenet"
    assert load_recipe(p, ["model.weights=none"]).model.options.weights == "none"
    monkeypatch.chdir(tmp_path)
    assert load_recipe(p, ["model.weights=x.h5"]).model.options.weights == str(tmp_path / "x.h5")


def test_a_head_only_rerun_never_builds_the_backbone_and_stores_the_head_with_a_reference(tmp_path, monkeypatch):
    import shutil

    from bmbench.models import backbones
    from bmbench.models.keras_model import KerasClassifier

    weights = tmp_path / "own.weights.h5"
    build_backbone("MobileNetV2", "none", 32, seed=3).save_weights(weights)
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "t.yaml"
    p.write_text(RECIPE.replace("WEIGHTS", str(weights)))
    first = run_recipe(p, tmp_path / "results")
    assert sorted(f.name for f in (first / "model").iterdir()) == ["head.keras", "model.json"]
    real = backbones.build_backbone
    monkeypatch.setattr(backbones, "build_backbone", lambda *a, **k: pytest.fail("the backbone was built"))
    again = run_recipe(p, tmp_path / "results")
    for name in ("predictions.csv", "metrics.json"):
        assert (again / name).read_text() == (first / name).read_text()
    info = [json.loads((r / "run.json").read_text())["model"] for r in (first, again)]
    assert info[0]["n_parameters"] == info[1]["n_parameters"] > 2_000_000
    monkeypatch.setattr(backbones, "build_backbone", real)
    assert_saved_model_reproduces_predictions(again)
    assert KerasClassifier.load(again / "model").model.count_params() == info[0]["n_parameters"]
    shutil.copy(weights, tmp_path / "kept.h5")
    build_backbone("MobileNetV2", "none", 32, seed=4).save_weights(weights)  # other weights, same path
    with pytest.raises(BmbenchError, match="needs its weights .*own.weights.h5"):
        KerasClassifier.load(again / "model")
