import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.views.export_features import export_features, source_from_folder, write_overlays
from bmbench.features.extract import FeatureSettings, extract_one, feature_names


@pytest.fixture
def cells(tmp_path, monkeypatch):
    """A class-per-folder tree of synthetic cells."""
    from bmbench.data.synthetic import generate
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    return generate(tmp_path / "cells", n_per_class=3, seed=1, size=96)


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_table_round_trips(cells, tmp_path, suffix):
    src = source_from_folder(cells, "folder", families=["shape", "texture"])
    out = export_features(src, tmp_path / f"table{suffix}")
    frame = pd.read_csv(out) if suffix == ".csv" else pd.read_parquet(out)
    names = feature_names(FeatureSettings(("shape", "texture")))
    assert list(frame.columns) == ["path", "label", "split", "patient", "segmentation_flags", *names]
    assert len(frame) == 12 and sorted(frame["label"].unique()) == ["blast", "lymphocyte", "monocyte", "neutrophil"]
    from bmbench.data.imageio import read_rgb
    first, _ = extract_one(read_rgb(cells / frame["path"][0]), FeatureSettings(("shape", "texture")))
    np.testing.assert_allclose(frame.loc[0, names].to_numpy(float), first, rtol=1e-6, equal_nan=True)
    dictionary = json.loads(out.with_suffix(".features.json").read_text())
    assert [f["name"] for f in dictionary["features"]] == names


def test_overlays_per_class(cells, tmp_path):
    src = source_from_folder(cells, "folder")
    assert write_overlays(src, tmp_path / "ov", per_class=2) == 8
    assert len(list((tmp_path / "ov" / "neutrophil").glob("*.png"))) == 2


def test_cli_features_from_a_recipe_has_split_column(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndataset: {kind: synthetic, n_per_class: 10, render_size: 64}\n"
                      "model: {family: classical, features: [shape]}\n")
    out = tmp_path / "t.csv"
    res = CliRunner().invoke(main, ["features", str(recipe), "--out", str(out), "-q",
                                    "--results-dir", str(tmp_path / "res")])
    assert res.exit_code == 0, res.output
    frame = pd.read_csv(out)
    assert set(frame["split"]) == {"train", "val", "test"}
    assert all(c.startswith("shape_") for c in frame.columns[5:])


def test_cli_features_bad_output_name(cells, tmp_path):
    res = CliRunner().invoke(main, ["features", str(cells), "--out", str(tmp_path / "t.xlsx")])
    assert res.exit_code == 2 and "use a .csv or .parquet" in res.output
    res = CliRunner().invoke(main, ["features", str(cells), "--out", str(tmp_path / "t.csv"),
                                    "--families", "shape,colr"])
    assert res.exit_code == 2 and "colr" in res.output


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_streamed_blocks_give_the_same_table(cells, tmp_path, monkeypatch, suffix):
    import bmbench.views.export_features as export
    src = source_from_folder(cells, "folder", families=["shape"])
    whole = export_features(src, tmp_path / f"whole{suffix}")
    monkeypatch.setattr(export, "STREAM_ROWS", 5)
    blocks = export_features(src, tmp_path / f"blocks{suffix}")
    read = pd.read_csv if suffix == ".csv" else pd.read_parquet
    pd.testing.assert_frame_equal(read(whole), read(blocks))
    assert not list(tmp_path.glob(".tmp-*"))


def test_a_recipe_with_a_pixel_size_exports_microns(cells, tmp_path):
    """The export resamples like the run does and reports lengths in µm."""
    from bmbench.views.export_features import source_from_recipe

    p = tmp_path / "um.yaml"
    p.write_text(f"name: um\ndataset: {{kind: folder, root: {cells}, microns_per_pixel: 0.2, "
                 "target_microns_per_pixel: 0.4}\nsplit: {test: 0.5, val: 0.0}\n"
                 "model: {family: classical, features: [shape]}\n")
    src = source_from_recipe(p, results=tmp_path / "results")
    out = export_features(src, tmp_path / "um.csv")
    units = {f["name"]: f["unit"] for f in json.loads(out.with_suffix(".features.json").read_text())["features"]}
    assert units["shape_cell_area"] == "µm^2" and units["shape_cell_major_axis"] == "µm"
    frame = pd.read_csv(out)
    plain = pd.read_csv(export_features(source_from_folder(cells, "folder", families=["shape"]), tmp_path / "px.csv"))
    ratio = (frame["shape_cell_equivalent_diameter"] / plain["shape_cell_equivalent_diameter"]).median()
    assert ratio == pytest.approx(0.2, rel=0.1), "native px x 0.2 µm/px, whatever the resampling"
