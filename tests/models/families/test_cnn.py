import json
import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from bmbench.core.errors import RecipeError
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

RECIPE = """
name: cnn_tiny
dataset: {kind: synthetic, n_per_class: 40, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: cnn, depth: 3, width: 16, dropout: 0.2}
train: {epochs: 15, batch_size: 16, patience: 15, learning_rate: 0.003}
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "cnn.yaml"
    p.write_text(RECIPE)
    return p


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One CNN run shared by the tests that only read it: ``(recipe, run folder)``."""
    root = tmp_path_factory.mktemp("cnn")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(root / "cache"))
        recipe = root / "cnn.yaml"
        recipe.write_text(RECIPE)
        yield recipe, run_recipe(recipe, root / "results")


def test_cnn_learns_and_records_its_training(trained, tmp_path, monkeypatch):
    recipe, cnn_run = trained
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    metrics = json.loads((cnn_run / "metrics.json").read_text())
    info = json.loads((cnn_run / "run.json").read_text())
    floor = run_recipe(recipe, tmp_path / "results", ("model.family=baseline", "model.pixels=8"))
    floor_f1 = json.loads((floor / "metrics.json").read_text())["macro_f1"]
    assert metrics["macro_f1"] >= 0.75 and metrics["macro_f1"] > floor_f1, (metrics["macro_f1"], floor_f1)
    stage = info["model"]["stages"]["train"]
    assert 1 <= stage["best_epoch"] <= stage["epochs"] <= 15
    assert info["model"]["n_parameters"] > 10_000
    assert info["settings"] == "32px, 6 conv, width 16, dropout 0.2"
    assert info["notes"]["devices"]["device"] in ("CPU", "GPU")
    assert info["notes"]["input_pipeline_images_per_s"][0] > 0
    assert info["timings"]["inference_images_per_s"] > 0
    history = pd.read_csv(cnn_run / "history.csv")
    assert list(history.columns) == ["fold", "stage", "epoch", "loss", "accuracy", "val_loss",
                                     "val_accuracy", "learning_rate", "seconds"]
    assert len(history) == stage["epochs"] and history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert history["val_loss"].min() == pytest.approx(stage["best_loss"], abs=1e-5)  # stored to 5 decimals
    assert history["loss"].iloc[-1] < history["loss"].iloc[0]
    assert {p.name for p in (cnn_run / "model").iterdir()} == {"model.keras", "model.json"}


def test_saved_model_loads_in_safe_mode_and_reproduces_predictions(trained, tmp_path):
    from bmbench.runs.context import RunContext
    from bmbench.models.families.cnn import CNN

    cnn_run = trained[1]
    r = load_recipe(cnn_run / "recipe.yaml", ["dataset.on_bad_image=skip"])
    ctx = RunContext.for_recipe(r, cache_dir=tmp_path / "other-cache")
    model = CNN.load(cnn_run / "model", r, ctx)
    preds = pd.read_csv(cnn_run / "predictions.csv")
    root = json.loads((cnn_run / "run.json").read_text())["dataset"]["root"]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG broken")
    proba = model.predict_proba([*(f"{root}/{p}" for p in preds["path"]), str(bad)], ctx)
    assert np.allclose(proba[:-1], preds.filter(like="p_").to_numpy(), atol=1e-6)
    assert np.isnan(proba[-1]).all() and str(bad) in ctx.images.skipped


def test_depth_must_fit_the_image(recipe, tmp_path):
    with pytest.raises(RecipeError, match=r"model.depth: 6 blocks .* dataset.image_size 32 must be at least 64"):
        run_recipe(recipe, tmp_path / "results", ("model.depth=6",))


DETERMINISTIC = """
import sys
from bmbench.runs.runner import run_recipe
for out in sys.argv[2:]:
    print("RUN=" + str(run_recipe(sys.argv[1], out, ("train.deterministic=true", "train.epochs=3",
                                                      "train.augment=[flip, rotate90, hue]"))))
"""


def test_deterministic_runs_repeat_exactly(recipe, tmp_path):
    """Op determinism is process-wide, so the two runs happen in a child process."""
    env = {**os.environ, "BMBENCH_CACHE": str(tmp_path / "cache")}
    out = subprocess.run([sys.executable, "-c", DETERMINISTIC, str(recipe), str(tmp_path / "a"),
                          str(tmp_path / "b")], capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    a, b = (line[4:] for line in out.stdout.splitlines() if line.startswith("RUN="))
    pa, pb = (pd.read_csv(f"{r}/predictions.csv") for r in (a, b))
    assert pa.equals(pb)
    ha, hb = (pd.read_csv(f"{r}/history.csv") for r in (a, b))
    assert ha[["loss", "val_loss"]].equals(hb[["loss", "val_loss"]])
    assert json.loads(open(f"{a}/run.json").read())["notes"]["devices"]["deterministic"] is True


def test_training_without_a_validation_split_monitors_the_training_loss(recipe, tmp_path):
    run = run_recipe(recipe, tmp_path / "results", ("split.val=0", "train.epochs=2", "model.depth=2"))
    info = json.loads((run / "run.json").read_text())
    assert info["n_val"] == 0
    history = pd.read_csv(run / "history.csv")
    assert len(history) == 2 and history["val_loss"].isna().all()
    assert info["model"]["stages"]["train"]["best_loss"] == pytest.approx(history["loss"].min(), abs=1e-5)


@pytest.mark.slow
def test_xla_compiled_training(recipe, tmp_path):
    run = run_recipe(recipe, tmp_path / "results", ("train.jit_compile=true", "train.epochs=2",
                                                    "model.depth=2"))
    info = json.loads((run / "run.json").read_text())
    assert info["notes"]["devices"]["jit_compile"] is True
    assert info["model"]["stages"]["train"]["epochs"] == 2
    assert json.loads((run / "metrics.json").read_text())["n"] == 40


def test_dense_head_adds_relu_layers_with_dropout_and_leaves_the_default_network_alone():
    from bmbench.models.families.cnn import build_cnn

    plain = build_cnn(32, 3, depth=2, width=8, dropout=0.25)
    dense = build_cnn(32, 3, depth=2, width=8, dropout=0.25, dense=(16, 8))
    tail = [(layer.name, type(layer).__name__) for layer in dense.layers][-6:]
    assert tail == [("pool", "GlobalAveragePooling2D"), ("dense1", "Dense"), ("dense1_dropout", "Dropout"),
                    ("dense2", "Dense"), ("dense2_dropout", "Dropout"), ("probabilities", "Dense")]
    assert [layer.units for layer in dense.layers if type(layer).__name__ == "Dense"] == [16, 8, 3]
    assert all(layer.rate == 0.25 for layer in dense.layers if type(layer).__name__ == "Dropout")
    assert [layer.name for layer in plain.layers][-3:] == ["pool", "dropout", "probabilities"]


def test_dense_is_a_typed_option_absent_from_the_fingerprint_when_unset(recipe):
    plain = load_recipe(recipe)
    assert plain.model.options.dense is None and "dense" not in plain.to_dict()["model"]
    dense = load_recipe(recipe, ["model.dense=[64, 32]"])
    assert dense.model.options.dense == (64, 32) and dense.fingerprint() != plain.fingerprint()
    with pytest.raises(RecipeError, match=r"model\.dense\[1\]: value 0 is out of range"):
        load_recipe(recipe, ["model.dense=[64, 0]"])


def test_the_log_gives_the_runs_eta_and_the_epoch_it_kept(trained):
    _, cnn_run = trained
    log = (cnn_run / "run.log").read_text()
    stage = json.loads((cnn_run / "run.json").read_text())["model"]["stages"]["train"]
    assert "train epoch 1/15: " in log and "left in the run)" in log
    how = "ran all 15 epochs" if stage["epochs"] == 15 else f"stopped early at epoch {stage['epochs']}/15"
    assert f"train: {how}; kept epoch {stage['best_epoch']} (best val loss)" in log
