"""The baseline family end to end on every real layout in ../shared/datasets."""

import json

import pytest

from bmbench.runs.runner import run_recipe

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.realdata

LAYOUTS = {
    "matek_bm": ("matek_bm", []),
    "pbc": ("pbc", []),
    "bloodcells4": ("bloodcells4", []),
    "bccd_crops": ("folder", ["dataset.group_pattern=BloodImage_(\\d+)_"]),
}


@pytest.mark.parametrize("folder", sorted(LAYOUTS))
def test_baseline_runs_on_real_layout(folder, shared_datasets, tmp_path):
    kind, extra = LAYOUTS[folder]
    overrides = [f"dataset.kind={kind}", f"dataset.root={shared_datasets / folder}",
                 "dataset.image_size=24", "model.pixels=8", *extra]
    run = run_recipe(REPO / "recipes" / "quickstart.yaml", tmp_path, tuple(overrides))
    info = json.loads((run / "run.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    n_classes = len(info["dataset"]["classes"])
    assert info["dataset"]["kind"] == kind and info["n_test"] == metrics["n"] > 0
    assert metrics["accuracy"] > 1.0 / n_classes, "the floor must still beat chance"
    if kind == "bloodcells4":
        assert info["split"]["strategy"] == "predefined" and info["n_test"] == 400


@pytest.mark.parametrize("folder", ["pbc", "bloodcells4", "matek_bm"])
def test_classical_clearly_beats_the_baseline_on_real_cells(folder, shared_datasets, tmp_path):
    common = [f"dataset.kind={folder}", f"dataset.root={shared_datasets / folder}", "train.jobs=2"]
    classical = run_recipe(REPO / "recipes" / "xgb_handcrafted.yaml", tmp_path, tuple(common))
    floor = run_recipe(REPO / "recipes" / "xgb_handcrafted.yaml", tmp_path,
                       (*common, "model.family=baseline"))
    mc, mb = (json.loads((r / "metrics.json").read_text()) for r in (classical, floor))
    assert mc["macro_f1"] > mb["macro_f1"] + 0.15
    assert mc["macro_f1"] > {"pbc": 0.9, "bloodcells4": 0.8, "matek_bm": 0.7}[folder]
