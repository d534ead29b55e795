import json

import numpy as np
import pandas as pd
import pytest

import bmbench.features.extract as extract
from bmbench.core.errors import RecipeError
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe

RECIPE = """
name: classical_tiny
dataset: {kind: synthetic, n_per_class: 30, render_size: 96}
split: {test: 0.3, val: 0.15}
model: {family: classical, n_estimators: 200, early_stopping: 20}
"""


@pytest.fixture
def recipe(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "c.yaml"
    p.write_text(RECIPE)
    return p


def test_classical_run_beats_the_baseline_on_the_same_split(recipe, tmp_path):
    results = tmp_path / "results"
    classical = run_recipe(recipe, results)
    baseline = run_recipe(recipe, results, ("model.family=baseline", "name=floor"))
    mc, mb = (json.loads((r / "metrics.json").read_text()) for r in (classical, baseline))
    ic, ib = (json.loads((r / "run.json").read_text()) for r in (classical, baseline))
    assert ic["split_fingerprint"] == ib["split_fingerprint"]
    assert mc["macro_f1"] >= 0.9 and mc["macro_f1"] > mb["macro_f1"] + 0.05
    model = classical / "model"
    assert (model / "xgboost.json").is_file()
    imp = pd.read_csv(model / "feature_importances.csv")
    assert imp["gain"].is_monotonic_decreasing and imp["feature"].str.contains("_").all()
    assert "top features by gain" in (classical / "run.log").read_text()
    assert "segmentation_flags" in ic["notes"]


def _stored_run(recipe, tmp_path):
    """A run of ``recipe``, loaded back: ``(recipe, context, model, predictions, test paths)``."""
    from bmbench.runs.context import RunContext
    from bmbench.models.families.classical import Classical

    run = run_recipe(recipe, tmp_path / "results")
    r = load_recipe(run / "recipe.yaml")
    ctx = RunContext.for_recipe(r)
    preds = pd.read_csv(run / "predictions.csv")
    root = json.loads((run / "run.json").read_text())["dataset"]["root"]
    return r, ctx, Classical.load(run / "model", r, ctx), preds, [f"{root}/{p}" for p in preds["path"]]


def test_saved_model_reproduces_the_stored_predictions(recipe, tmp_path):
    _, ctx, model, preds, paths = _stored_run(recipe, tmp_path)
    assert np.array_equal(model.predict_proba(paths, ctx), preds.filter(like="p_").to_numpy())


def test_columns_are_matched_by_name():
    from bmbench.core.errors import BmbenchError
    from bmbench.models.families.classical import columns_for, saved_columns

    current = ["a", "b", "c", "d"]
    assert columns_for(current, current) is None
    np.testing.assert_array_equal(columns_for(["d", "a"], current), [3, 0])
    x = np.arange(8.0).reshape(2, 4)
    np.testing.assert_array_equal(saved_columns(x, ["b", "d"], current), [[1, 3], [5, 7]])
    with pytest.raises(BmbenchError, match=r"2 feature\(s\) .*\(first: e\); re-run its recipe"):
        columns_for(["a", "e", "f"], current)


def test_a_model_saved_before_features_were_added_predicts_on_its_own_columns(recipe, tmp_path):
    """FEATURE_VERSION 6 added the colour contrasts: a model saved with FEATURE_VERSION 5's
    names (the same values without them) keeps predicting on exactly its columns."""
    from xgboost import XGBClassifier

    from bmbench.models.families.classical import Classical, ClassicalModel

    r, ctx, model, preds, paths = _stored_run(recipe, tmp_path)
    full = model.matrix(paths, ctx, "test")
    assert full.shape[1] == len(model.names) and any("_minus_" in n for n in model.names)
    old = [n for n in model.names if "_minus_" not in n][::-1]
    keep = [model.names.index(n) for n in old]
    labels = preds.filter(like="p_").to_numpy().argmax(1)
    fitted = XGBClassifier(n_estimators=5, max_depth=2).fit(full[:, keep], labels)
    ClassicalModel(model.classes, model.options, fitted, old).save(tmp_path / "old")
    older = Classical.load(tmp_path / "old", r, ctx)
    np.testing.assert_allclose(older.predict_proba(paths, ctx), fitted.predict_proba(full[:, keep]), rtol=1e-6)


def test_second_run_hits_the_feature_cache(recipe, tmp_path, monkeypatch):
    run_recipe(recipe, tmp_path / "results")
    calls = []
    original = extract.extract_one
    monkeypatch.setattr(extract, "extract_one", lambda *a, **k: calls.append(1) or original(*a, **k))
    second = run_recipe(recipe, tmp_path / "results")
    assert calls == [], "every image should come from the cache"
    assert json.loads((second / "run.json").read_text())["n_test"] == 36
    run_recipe(recipe, tmp_path / "results", ("model.features=[shape]",))
    assert len(calls) == 120, "other settings are other cache keys"


def test_jobs_do_not_change_the_result(recipe, tmp_path):
    a = run_recipe(recipe, tmp_path / "r1", ("train.jobs=1",))
    b = run_recipe(recipe, tmp_path / "r2", ("train.jobs=2",))
    assert (a / "metrics.json").read_text() == (b / "metrics.json").read_text()


@pytest.mark.parametrize("override, message", [
    ("model.features=[shape,colour]", r"model.features\[1\]: unknown value 'colour' \(did you mean 'color'\?\)"),
    ("model.segmentation=otsuu", r"model.segmentation: unknown value 'otsuu' \(did you mean 'otsu'\?\)"),
    ("model.classifier=svn", r"model.classifier: unknown classifier 'svn' \(did you mean 'svm'\?\)"),
])
def test_bad_options_name_the_key(recipe, override, message):
    with pytest.raises(RecipeError, match=message):
        load_recipe(recipe, [override])


def test_unreadable_image_is_skipped_and_recorded(recipe, tmp_path, monkeypatch):
    run_recipe(recipe, tmp_path / "warm", ("model.family=baseline",))
    from bmbench.core.hashing import file_sha256

    gen = next((tmp_path / "cache" / "synthetic").iterdir())
    victim = sorted((gen / "monocyte").glob("*.png"))[3]
    victim.write_bytes(victim.read_bytes()[:100])
    listed = json.loads((gen / ".files.json").read_text())  # the generated set proves its files:
    listed[f"monocyte/{victim.name}"] = [victim.stat().st_size, file_sha256(victim)]  # list the bad one as made
    (gen / ".files.json").write_text(json.dumps(listed))
    run = run_recipe(recipe, tmp_path / "results", ("dataset.on_bad_image=skip",))
    info = json.loads((run / "run.json").read_text())
    assert str(victim) in info["skipped_images"]
