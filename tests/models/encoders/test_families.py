"""Encoders behind ``model.backbone`` of transfer and hybrid, end to end on generated images."""

from __future__ import annotations

import json

import numpy as np
import pytest

import bmbench.models.embeddings as embeddings
from bmbench.config.recipe import load_recipe
from bmbench.core.errors import BmbenchError, RecipeError
from bmbench.runs.runner import run_recipe

from .conftest import tiny_keras, tiny_onnx

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

DATA = "dataset: {kind: synthetic, n_per_class: 12, render_size: 48, image_size: 32}\nsplit: {test: 0.25, val: 0.2}\n"


@pytest.fixture(autouse=True)
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))


def recipe(tmp_path, name, model, extra=""):
    p = tmp_path / f"{name}.yaml"
    p.write_text(f"name: {name}\n{DATA}model: {model}\ntrain: {{epochs: 2, batch_size: 8, patience: 2}}\n{extra}")
    return p


def test_onnx_probe_runs_caches_and_predicts_the_same_after_loading(tmp_path, monkeypatch, make_image):
    from bmbench.models.families.hybrid import Hybrid
    from bmbench.runs.context import RunContext

    tiny_onnx(tmp_path / "models" / "enc.onnx", size=32, dims=6)
    r = recipe(tmp_path, "probe", "{family: hybrid, features: [], backbone: {kind: onnx, path: models/enc.onnx, "
                                  "input_size: 32, range: [0, 1]}, classifier: {name: logistic, C: validation}}")
    loaded = load_recipe(r)
    assert loaded.model.options.backbone.options.path == str(tmp_path / "models" / "enc.onnx")  # beside the recipe
    run = run_recipe(r, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["n_embedding"] == 6 and info["model"]["n_handcrafted"] == 0
    assert info["settings"].startswith("32px, enc pretrained + no handcrafted, logistic")
    assert info["notes"]["embedding_cache"]["computed"] == 48
    monkeypatch.setattr(embeddings, "_compute", lambda *a: pytest.fail("embeddings recomputed"))
    again = run_recipe(r, tmp_path / "results", ("model.classifier={name: knn, k: 3}",))
    assert json.loads((again / "run.json").read_text())["notes"]["embedding_cache"]["computed"] == 0
    monkeypatch.undo()
    stored = load_recipe(run / "recipe.yaml")
    ctx = RunContext.for_recipe(stored, cache_dir=tmp_path / "fresh")
    model = Hybrid.load(run / "model", stored, ctx)
    paths = [str(make_image(tmp_path / "new" / f"{i}.png", seed=i)) for i in range(3)]
    first = model.predict_proba(paths, ctx)
    assert first.shape == (3, 4) and np.isfinite(first).all()
    assert np.allclose(Hybrid.load(run / "model", stored, ctx).predict_proba(paths, ctx), first)
    tiny_onnx(tmp_path / "models" / "enc.onnx", size=32, dims=6, seed=3)  # the file changes
    with pytest.raises(BmbenchError, match="not the encoder this hybrid model was trained with"):
        Hybrid.load(run / "model", stored, ctx).predict_proba(paths, ctx)


def test_transfer_refuses_onnx_encoders_before_decoding(tmp_path):
    tiny_onnx(tmp_path / "enc.onnx", size=32)
    r = recipe(tmp_path, "tr", "{family: transfer, backbone: {kind: onnx, path: enc.onnx, input_size: 32}}")
    with pytest.raises(RecipeError, match="frozen and not a Keras network; use family hybrid"):
        run_recipe(r, tmp_path / "results")
    assert not (tmp_path / "cache" / "images").exists()


@pytest.mark.parametrize("weights", ["imagenet", "none"])
def test_transfer_fine_tunes_a_keras_file_or_trains_it_from_scratch(tmp_path, weights):
    from bmbench.models.keras_model import KerasClassifier

    tiny_keras(tmp_path / "enc.keras")
    r = recipe(tmp_path, "tf", f"{{family: transfer, backbone: {{kind: keras_file, path: enc.keras}}, "
                               f"weights: {weights}, fine_tune_layers: 100, fine_tune_epochs: 1}}")
    run = run_recipe(r, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    stages = set(info["model"]["stages"])
    assert stages == ({"scratch"} if weights == "none" else {"head", "fine_tune"})
    assert info["model"]["encoder"]["kind"] == "keras_file"
    model = KerasClassifier.load(run / "model")  # safe mode, no custom objects
    assert model.backbone is None and model.full_model().output_shape[-1] == 4


def test_in_domain_pretraining_from_a_stored_run(tmp_path):
    pre = run_recipe(recipe(tmp_path, "pre", "{family: cnn, depth: 2, width: 4}"), tmp_path / "results")
    r = recipe(tmp_path, "ft", "{family: transfer, backbone: {kind: run, run: pre}, "  # found in the run's store
                               "fine_tune_layers: 4, fine_tune_epochs: 1}")
    run = run_recipe(r, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    assert set(info["model"]["stages"]) == {"head", "fine_tune"}
    assert info["model"]["encoder"]["identity"].startswith("run:")
    probe = run_recipe(recipe(tmp_path, "pr", f"{{family: hybrid, features: [], backbone: {{kind: run, run: {pre}}}, "
                                              "classifier: {name: knn, k: 3}}"), tmp_path / "results")
    assert json.loads((probe / "run.json").read_text())["model"]["n_embedding"] == 8
    with pytest.raises(BmbenchError, match="set dataset.image_size to 32"):
        run_recipe(r, tmp_path / "results", ("dataset.image_size=48",))


def test_onnx_input_size_and_dataset_image_size_must_agree(tmp_path):
    tiny_onnx(tmp_path / "enc.onnx", size=24)
    r = recipe(tmp_path, "p", "{family: hybrid, features: [], backbone: {kind: onnx, path: enc.onnx, input_size: 24}}")
    with pytest.raises(BmbenchError, match="set dataset.image_size to 24"):
        run_recipe(r, tmp_path / "results")
    assert not (tmp_path / "cache" / "images").exists()  # refused before any image was decoded
