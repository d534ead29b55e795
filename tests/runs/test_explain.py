"""bmbench predict --explain: per-image files and the top-features column."""

import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

import bmbench
from bmbench.cli import main

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

MODELS = {
    "classical": "model: {family: classical, features: [shape, texture], n_estimators: 40}",
    "cnn": "model: {family: cnn, depth: 2, width: 8}\ntrain: {epochs: 1, batch_size: 16}",
    "hybrid": "model: {family: hybrid, features: [shape], backbone: MobileNetV2, weights: none, n_estimators: 30}",
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def train(env, family):
    p = env / f"{family}.yaml"
    p.write_text(f"name: e_{family}\ndataset: {{kind: synthetic, n_per_class: 10, render_size: 64, "
                 f"image_size: 32}}\nsplit: {{test: 0.25, val: 0.15}}\n{MODELS[family]}\n")
    run = bmbench.run_recipe(p)
    root = pd.read_json(run / "run.json", typ="series")["dataset"]["root"]
    paths = [f"{root}/{x}" for x in pd.read_csv(run / "predictions.csv")["path"][:3]]
    return run, paths


def predict(env, paths, *extra):
    out = env / "p.csv"
    res = CliRunner().invoke(main, ["predict", "latest", *paths, "--out", str(out), "-q", *extra])
    assert res.exit_code == 0, res.output
    return pd.read_csv(out)


def test_classical_explain_writes_contributions_and_outlines(env):
    _, paths = train(env, "classical")
    frame = predict(env, paths, "--explain", str(env / "why"))
    assert frame["top_features"].str.count(r"\(\+|\(-").eq(3).all()
    files = sorted(p.name for p in (env / "why").iterdir())
    assert len([f for f in files if f.endswith(".contributions.csv")]) == 3
    assert len([f for f in files if f.endswith(".segmentation.png")]) == 3
    table = pd.read_csv(next((env / "why").glob("00000_*.contributions.csv")))
    assert list(table.columns[:3]) == ["feature", "value", "unit"] and table.columns[3].startswith("contribution_to_")
    assert table["feature"].iloc[-1] == "(bias)" and table["description"].iloc[0]
    c = table[table["feature"] != "(bias)"].iloc[:, 3].abs()
    assert c.is_monotonic_decreasing
    plain = predict(env, paths)
    assert "top_features" not in plain.columns
    assert (plain.filter(regex="^p_").to_numpy() == frame.filter(regex="^p_").to_numpy()).all()


@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_deep_explain_writes_one_heatmap_overlay_per_image(env, method):
    _, paths = train(env, "cnn")
    frame = predict(env, paths, "--explain", str(env / "why"), "--method", method)
    assert "top_features" not in frame.columns
    assert (predict(env, paths).filter(regex="^p_").to_numpy() == frame.filter(regex="^p_").to_numpy()).all()
    pngs = sorted((env / "why").glob(f"*.{method}.png"))
    assert len(pngs) == 3
    with Image.open(pngs[0]) as im:
        assert im.size[0] >= 256 and im.mode == "RGB"


def test_hybrid_explain_covers_handcrafted_features_and_embedding_dimensions(env):
    _, paths = train(env, "hybrid")
    frame = predict(env, paths, "--explain", str(env / "why"))
    assert frame["top_features"].str.len().gt(0).all()
    tables = sorted((env / "why").glob("*.contributions.csv"))
    assert len(tables) == 3 and not list((env / "why").glob("*.segmentation.png"))
    features = set(pd.read_csv(tables[0])["feature"])
    assert "shape_nucleus_area" in features and any(f.startswith("MobileNetV2_") for f in features)
