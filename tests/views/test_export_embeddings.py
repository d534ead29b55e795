import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import bmbench.models.embeddings as embeddings
from bmbench.cli import main

RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 6, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: baseline}
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    p = tmp_path / "r.yaml"
    p.write_text(RECIPE)
    return p


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_backbone_embeddings_export_from_a_recipe(recipe, tmp_path, monkeypatch):
    import bmbench.views.export_embeddings as export

    monkeypatch.setattr(export, "BLOCK_ROWS", 10)  # 24 images: three blocks appended
    out = tmp_path / "emb.csv"
    res = invoke("features", str(recipe), "--out", str(out), "--backbone", "VGG16",
                 "--weights", "none", "-q")
    assert res.exit_code == 0, res.output
    table = pd.read_csv(out)
    assert list(table.columns[:4]) == ["path", "label", "split", "patient"]
    dims = [c for c in table.columns if c.startswith("VGG16_")]
    assert len(dims) == 512 and len(table) == 24
    assert set(table["split"]) == {"train", "val", "test"}
    assert np.isfinite(table[dims].to_numpy()).all()
    doc = json.loads(out.with_suffix(".features.json").read_text())
    assert doc["backbone"] == "VGG16" and doc["image_size"] == 32 and doc["weights"] == "none"
    assert [f["name"] for f in doc["features"]] == dims

    monkeypatch.setattr(embeddings, "_compute", lambda *a: pytest.fail("not cached"))
    again = tmp_path / "again.parquet"
    assert invoke("features", str(recipe), "--out", str(again), "--backbone", "VGG16",
                  "--weights", "none", "-q").exit_code == 0
    assert np.allclose(pd.read_parquet(again)[dims].to_numpy(), table[dims].to_numpy())


def test_backbone_export_errors_are_one_line(recipe, tmp_path):
    res = CliRunner().invoke(main, ["features", str(recipe), "--out", str(tmp_path / "e.csv"),
                                    "--backbone", "DenseNet12"])
    assert res.exit_code == 2 and "did you mean 'DenseNet121'" in res.output
    res = CliRunner().invoke(main, ["features", str(recipe), "--out", str(tmp_path / "e.csv"),
                                    "--backbone", "InceptionV3", "--weights", "none"])
    assert res.exit_code == 2 and "minimum input size of InceptionV3 (75 px)" in res.output


def test_backbone_embeddings_export_from_a_folder(tmp_path, monkeypatch, make_tree):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    root = make_tree(tmp_path / "cells", [f"{c}/{i}.png" for c in ("a", "b") for i in range(3)])
    (root / "b" / "broken.png").write_bytes(b"not an image")
    out = tmp_path / "folder.parquet"
    res = invoke("features", str(root), "--out", str(out), "--backbone", "VGG19", "--weights", "none",
                 "--image-size", "32", "-q")
    assert res.exit_code == 0, res.output
    table = pd.read_parquet(out)
    assert len(table) == 7 and set(table["label"]) == {"a", "b"}
    broken = table["path"] == "b/broken.png"
    assert table.loc[broken, "VGG19_0000"].isna().all() and table.loc[~broken, "VGG19_0511"].notna().all()
    doc = json.loads(out.with_suffix(".features.json").read_text())
    assert doc["n_unreadable"] == 1 and doc["image_size"] == 32
