import json

import numpy as np
import pandas as pd
import pytest

from bmbench.models.families import baseline
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe
from bmbench.runs.store import list_runs



def test_run_writes_a_complete_record(recipe_path, tmp_path):
    folder = run_recipe(recipe_path, tmp_path / "results")
    names = {p.name for p in folder.iterdir()}
    assert {"recipe.yaml", "metrics.json", "predictions.csv", "environment.json", "run.json",
            "run.log", "model"} <= names
    info = json.loads((folder / "run.json").read_text())
    metrics = json.loads((folder / "metrics.json").read_text())
    preds = pd.read_csv(folder / "predictions.csv")
    assert info["n_test"] == len(preds) == metrics["n"] == 12
    assert list(preds.columns[:3]) == ["path", "true_label", "predicted_label"]
    probs = preds.filter(like="p_").to_numpy()
    assert probs.shape == (12, 4) and np.allclose(probs.sum(axis=1), 1)
    assert (preds["predicted_label"] == np.array(metrics["classes"])[probs.argmax(1)]).all()
    assert metrics["accuracy"] == pytest.approx((preds.true_label == preds.predicted_label).mean())
    assert info["timings"]["fit_seconds"] > 0 and info["timings"]["inference_images_per_s"] > 0
    env = json.loads((folder / "environment.json").read_text())
    assert env["packages"]["numpy"] and env["seed"] == 0
    assert load_recipe(folder / "recipe.yaml").to_dict()["model"] == {"family": "baseline", "pixels": 8, "C": 1.0, "max_iter": 2000}


def test_same_recipe_twice_gives_identical_metrics_and_split(recipe_path, tmp_path):
    a = run_recipe(recipe_path, tmp_path / "results")
    b = run_recipe(recipe_path, tmp_path / "results")
    ma, mb = (json.loads((x / "metrics.json").read_text()) for x in (a, b))
    assert ma == mb
    ia, ib = (json.loads((x / "run.json").read_text()) for x in (a, b))
    assert ia["split_fingerprint"] == ib["split_fingerprint"]
    assert list((tmp_path / "results" / "splits").glob("*.json"))


def test_kfold_run_pools_every_image(recipe_path, tmp_path):
    folder = run_recipe(recipe_path, tmp_path / "results", ("split.folds=3",))
    preds = pd.read_csv(folder / "predictions.csv")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert len(preds) == 48 and sorted(preds["fold"].unique()) == [0, 1, 2]
    assert len(metrics["folds"]) == 3 and sum(f["n"] for f in metrics["folds"]) == 48
    assert (folder / "model" / "fold-2").is_dir()


def test_interrupted_run_leaves_no_partial_run(recipe_path, tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise KeyboardInterrupt
    monkeypatch.setattr(baseline.BaselineModel, "predict_proba", boom)
    with pytest.raises(KeyboardInterrupt):
        run_recipe(recipe_path, tmp_path / "results")
    assert list((tmp_path / "results" / "runs").iterdir()) == []
    assert list_runs(tmp_path / "results") == []


def test_skipped_bad_image_is_recorded(recipe_path, tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache2"))
    run_recipe(recipe_path, tmp_path / "warmup")
    gen = next((tmp_path / "cache2" / "synthetic").iterdir())
    victim = sorted((gen / "blast").glob("*.png"))[0]
    from bmbench.core.hashing import file_sha256

    victim.write_bytes(b"not an image")
    listed = json.loads((gen / ".files.json").read_text())  # the generated set proves its files:
    listed[f"blast/{victim.name}"] = [victim.stat().st_size, file_sha256(victim)]  # list the bad one as made
    (gen / ".files.json").write_text(json.dumps(listed))
    from bmbench.core.errors import DatasetError
    with pytest.raises(DatasetError, match=victim.name):
        run_recipe(recipe_path, tmp_path / "results")
    folder = run_recipe(recipe_path, tmp_path / "results", ("dataset.on_bad_image=skip",))
    info = json.loads((folder / "run.json").read_text())
    assert list(info["skipped_images"]) == [str(victim)]


def test_disk_full_while_writing_is_a_clear_error_and_leaves_nothing(recipe_path, tmp_path, monkeypatch):
    import errno
    from bmbench.runs import runner
    from bmbench.core.errors import StoreError

    def full(path, data):
        raise OSError(errno.ENOSPC, "No space left on device", str(path))
    monkeypatch.setattr(runner, "write_json", full)
    with pytest.raises(StoreError, match="No space left on device.*free disk space"):
        run_recipe(recipe_path, tmp_path / "results")
    assert list((tmp_path / "results" / "runs").iterdir()) == []


def test_run_stores_confidence_intervals_calibration_and_fold_spread(recipe_path, tmp_path):
    from bmbench.metrics.scores import HEADLINE

    folder = run_recipe(recipe_path, tmp_path / "results")
    metrics = json.loads((folder / "metrics.json").read_text())
    assert set(metrics["ci"]) == set(HEADLINE) and metrics["ci_method"]["n_resamples"] == 1000
    low, high = metrics["ci"]["macro_f1"]
    assert low <= metrics["macro_f1"] <= high
    assert 0 <= metrics["ece"] <= 1 and 0 <= metrics["brier"] <= 2
    rel = json.loads((folder / "reliability.json").read_text())
    assert sum(rel["count"]) == metrics["n"] and rel["ece"] == pytest.approx(metrics["ece"])
    folder = run_recipe(recipe_path, tmp_path / "results", ("split.folds=3",))
    metrics = json.loads((folder / "metrics.json").read_text())
    spread = metrics["fold_summary"]["accuracy"]
    folds = [f["accuracy"] for f in metrics["folds"]]
    assert spread == pytest.approx({"mean": np.mean(folds), "std": np.std(folds, ddof=1), "n_folds": 3})
