"""Several source labs: ``merged`` with ``leave_out`` trains on every lab but one and tests on it."""

import json
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.config.recipe import load_recipe

REPO = Path(__file__).resolve().parents[2]
LABS = ("Matek", "PBC", "BCCD")


def _part(root: Path, lab: str) -> dict:
    return {"kind": "folder", "root": str(root), "lab": lab,
            "label_map": {"lymphocyte": "LYT", "neutrophil": "NGS", "monocyte": "MON", "blast": None}}


@pytest.fixture
def three_labs(tmp_path, monkeypatch):
    """A leave-one-lab-out recipe over three synthetic labs (another generator seed each)."""
    from bmbench.data.synthetic import generate

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    parts = [_part(generate(tmp_path / lab.lower(), 6, seed=i, size=48), lab) for i, lab in enumerate(LABS)]
    recipe = tmp_path / "loo.yaml"
    recipe.write_text(json.dumps({"name": "loo", "dataset": {"kind": "merged", "parts": parts,
                                                             "leave_out": "PBC", "image_size": 32},
                                  "model": {"family": "baseline", "pixels": 8}}))
    return recipe


def _run(*args):
    res = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def test_a_run_tests_on_the_lab_it_left_out(three_labs, tmp_path):
    out = _run("run", str(three_labs), "--results-dir", str(tmp_path / "r"), "-q")
    folder = Path(next(line for line in out.splitlines() if "  macro_f1=" in line).split()[0])
    info = json.loads((folder / "run.json").read_text())
    assert info["split"]["strategy"] == "predefined" and info["n_test"] == 3 * 6
    tested = pd.read_csv(folder / "predictions.csv")["path"]
    assert tested.str.startswith("pbc/").all()  # relpaths keep the lab's folder
    split = json.loads((tmp_path / "r" / "splits" / f"{info['split_fingerprint']}.json").read_text())
    trained = split["folds"][0]["train"] + split["folds"][0]["val"]
    assert {p.split("/")[0] for p in trained} == {"matek", "bccd"}
    assert info["dataset"]["leave_out"] == "PBC"
    assert info["dataset"]["labs"]["PBC"] == {"train": 0, "val": 0, "test": 18}
    assert sum(n["train"] + n["val"] for n in info["dataset"]["labs"].values()) == 2 * 18
    board = _run("leaderboard", "--results-dir", str(tmp_path / "r"))
    assert "tested on the lab left out: PBC" in board


def test_the_ablation_leaves_each_lab_out_in_turn(three_labs, tmp_path):
    _run("ablate", str(three_labs), "--vary", "dataset.leave_out=Matek,PBC,BCCD", "--mode", "grid",
         "--results-dir", str(tmp_path / "r"))
    tested = set()
    for run in (tmp_path / "r" / "runs").glob("*/run.json"):
        frame = pd.read_csv(run.parent / "predictions.csv")
        tested.add(frozenset(p.split("/")[0] for p in frame["path"]))
    assert tested == {frozenset({"matek"}), frozenset({"pbc"}), frozenset({"bccd"})}


def test_the_shipped_recipe_and_ablation_name_the_three_labs():
    recipe = load_recipe(REPO / "recipes" / "cross_leave_one_lab_out.yaml")
    parts = recipe.dataset.options.parts
    assert parts.labs == ("Matek", "PBC", "BCCD", "BCCD")  # bloodcells4 and its crops: one lab
    assert [p.kind for p in parts] == ["matek_bm", "pbc", "bloodcells4", "folder"]
    assert recipe.dataset.options.leave_out == "Matek"
    from bmbench.config.ablation import load_ablation

    study = load_ablation(REPO / "recipes" / "ablations" / "leave_one_lab_out.yaml")
    assert [v.recipes[0].dataset.options.leave_out for v in study.variants] == list(LABS)


@pytest.mark.realdata
def test_the_shipped_recipe_on_the_shared_sets_keeps_bloodcells4_roles(shared_datasets):
    from bmbench.data import load_dataset

    recipe = REPO / "recipes" / "cross_leave_one_lab_out.yaml"
    counts = {}
    for lab in LABS:
        frame = load_dataset(load_recipe(recipe, [f"dataset.leave_out={lab}"]).dataset).frame
        counts[lab] = frame.groupby(["lab", "split"]).size().to_dict()
        trained = frame[frame["split"] == "train"]["relpath"]
        assert not trained.str.contains("/TEST/").any()  # bloodcells4's own test images never train
    assert counts["BCCD"][("BCCD", "test")] == 400 + 348  # its official TEST and the crops (no basophils)
    assert counts["Matek"] == {("BCCD", "train"): 1200 + 348, ("Matek", "test"): 800, ("PBC", "train"): 800}
