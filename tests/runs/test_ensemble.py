"""Validation probabilities in every run, and ensembles of stored runs (``bmbench ensemble``)."""

import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import bmbench
from bmbench.cli import main
from bmbench.models.families import ensemble as fam
from bmbench.runs import ensemble as ens

BASE = ("dataset: {kind: synthetic, n_per_class: 16, render_size: 64, image_size: 32}\n"
        "split: {test: 0.25, val: 0.25}\n")
MEMBERS = {
    "base": "model: {family: baseline, pixels: 8}",
    # early stopping on validation: its own predictions of the validation images are held out
    "xgb_es": "model: {family: classical, features: [shape, color], n_estimators: 40}",
    # no early stopping: trains on the validation images, so they must be cross-fitted
    "xgb_all": "model: {family: classical, features: [shape, color], n_estimators: 40, early_stopping: 0}",
}


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def member(env, name, extra=""):
    p = env / f"{name}.yaml"
    p.write_text(f"name: {name}\n{BASE}{MEMBERS[name]}\n{extra}")
    return bmbench.run_recipe(p)


@pytest.fixture
def runs(env):
    return [member(env, "base"), member(env, "xgb_all")]


def cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def test_every_run_stores_held_out_validation_probabilities(env):
    held, crossed = member(env, "xgb_es"), member(env, "xgb_all")
    for run, kind in ((held, "holdout"), (crossed, "out_of_fold")):
        info = json.loads((run / "run.json").read_text())
        val = pd.read_csv(run / "validation.csv")
        assert info["validation"]["kind"] == kind and info["validation"]["n"] == info["n_val"] == len(val)
        assert info["validation"]["seconds"] >= 0
        assert np.allclose(val.filter(like="p_").sum(axis=1), 1.0)
        assert not set(val["path"]) & set(pd.read_csv(run / "predictions.csv")["path"])
    # the run trained on its validation images: its own model would be over-confident on them
    model = bmbench.load_run(crossed.name)
    root = json.loads((crossed / "run.json").read_text())["dataset"]["root"]
    val = pd.read_csv(crossed / "validation.csv")
    in_sample = model.predict_proba([f"{root}/{p}" for p in val["path"]])
    assert not np.allclose(in_sample, val.filter(like="p_").to_numpy())


def test_cross_fit_never_predicts_an_image_with_a_fit_that_saw_it(monkeypatch):
    from types import SimpleNamespace

    from bmbench.models import tabular
    from bmbench.models.families.classical import ClassicalOptions

    opts = ClassicalOptions(classifier={"name": "xgboost", "n_estimators": 5, "early_stopping": 0})
    rng = np.random.default_rng(0)
    x, x_val = rng.normal(size=(30, 3)), np.arange(40, dtype=float).repeat(3).reshape(-1, 3) + 1000
    train = SimpleNamespace(labels=np.arange(30) % 2, classes=("a", "b"))
    class Val:
        labels = np.arange(40) % 2

        def __len__(self):
            return 40

    seen = []

    def fake_fit(name, options, settings, xs, ys, *rest):
        seen.append({float(v) for v in xs[:, 0] if v >= 1000})
        return "fit"

    def fake_predict(fitted, xs, k):
        assert not {float(v) for v in xs[:, 0]} & seen[-1]
        return np.full((len(xs), k), 0.5)

    monkeypatch.setattr(tabular, "fit_classifier", fake_fit)
    monkeypatch.setattr(tabular, "predict_proba", fake_predict)
    ctx = SimpleNamespace(seed=0, train=SimpleNamespace(class_weight="balanced"), cache_dir=None)
    out = tabular.held_out_validation(opts, ctx, x, train, x_val, Val())
    assert out.shape == (40, 2) and np.isfinite(out).all() and len(seen) == tabular.CROSS_FIT_FOLDS


def test_ensemble_is_a_stored_run_ranked_predicted_and_reported(env, runs):
    for method in ("mean", "select", "stack"):
        res = cli("ensemble", *[r.name for r in runs], "--method", method, "-q")
        assert res.exit_code == 0, res.output
    folder = sorted((env / "results" / "runs").glob("*ensemble_stack*"))[0]
    info = json.loads((folder / "run.json").read_text())
    assert info["family"] == "ensemble" and info["ensemble"]["method"] == "stack"
    assert [m["id"] for m in info["ensemble"]["members"]] == [r.name for r in runs]
    assert abs(sum(m["weight"] for m in info["ensemble"]["members"]) - 1) < 1e-6
    assert "Ensemble members" in (folder / "MODEL_CARD.md").read_text()
    board = cli("leaderboard", "--format", "csv")
    assert board.exit_code == 0 and "ensemble_select" in board.output and "ensemble_stack" in board.output
    # predict runs the members and combines them: the stored test predictions come back
    preds = pd.read_csv(folder / "predictions.csv")
    root = info["dataset"]["root"]
    loaded = bmbench.load_run(folder.name)
    got = loaded.predict_proba([f"{root}/{p}" for p in preds["path"]])
    assert np.allclose(got, preds.filter(like="p_").to_numpy(), atol=1e-6)
    report = cli("report", folder.name, "--no-explain")
    assert report.exit_code == 0, report.output
    assert "Ensemble members and weights" in (folder / "report.html").read_text()
    rerun = cli("run", folder / "recipe.yaml")
    assert rerun.exit_code == 2 and "bmbench ensemble RUN RUN" in rerun.output
    # a deleted member: one clear line, exit 2, no prediction
    import shutil

    shutil.rmtree(runs[1])
    res = cli("predict", folder.name, root, "--out", env / "p.csv")
    assert res.exit_code == 2 and f"member run {runs[1].name} is missing" in res.output
    assert len(res.output.strip().splitlines()) == 1 and not (env / "p.csv").exists()


def test_weights_are_fitted_before_any_test_prediction_is_read(env, runs, monkeypatch):
    events = []
    fit, read = fam.fit_combiner, ens.read_member_predictions
    monkeypatch.setattr(ens, "fit_combiner", lambda *a, **k: events.append("fit") or fit(*a, **k))
    monkeypatch.setattr(ens, "read_member_predictions", lambda *a, **k: events.append("test") or read(*a, **k))
    real_read_table = ens.read_member_table

    def spy(member, name, classes):
        events.append(name)
        return real_read_table(member, name, classes)

    monkeypatch.setattr(ens, "read_member_table", spy)
    first = ens.build_ensemble([r.name for r in runs], "select", "e1")
    assert events.index("fit") < events.index("test") < events.index("predictions.csv")
    assert "predictions.csv" not in events[:events.index("fit")]
    # and the weights do not depend on the test predictions: scramble them, same weights
    rng = np.random.default_rng(1)
    for r in runs:
        p = pd.read_csv(r / "predictions.csv")
        cols = [c for c in p if c.startswith("p_")]
        p[cols] = rng.dirichlet(np.ones(len(cols)), len(p))
        p.to_csv(r / "predictions.csv", index=False)
    second = ens.build_ensemble([r.name for r in runs], "select", "e2")
    w = [json.loads((f / "run.json").read_text())["model"]["combiners"] for f in (first, second)]
    assert w[0] == w[1]


def test_members_without_validation_or_on_another_split_are_refused(env, runs):
    (runs[0] / "validation.csv").unlink()
    res = cli("ensemble", runs[0].name, runs[1].name)
    assert res.exit_code == 2
    line = res.output.strip()
    assert len(line.splitlines()) == 1 and runs[0].name in line and "bmbench run" in line and "recipe.yaml" in line
    p = env / "moved.yaml"
    p.write_text(f"name: moved\n{BASE.replace('val: 0.25', 'val: 0.2')}{MEMBERS['base']}\n")
    moved = bmbench.run_recipe(p)
    res = cli("ensemble", runs[1].name, moved.name)
    assert res.exit_code == 2 and "split fingerprint" in res.output


def test_greedy_selection_prefers_the_better_member_and_stack_learns_from_validation():
    rng = np.random.default_rng(0)
    y = np.arange(200) % 3
    good = np.full((200, 3), 0.1)
    good[np.arange(200), y] = 0.8
    noise = rng.dirichlet(np.ones(3), 200)
    w = fam.greedy_selection([noise, good], y, 20)
    assert w[1] > 0.8 and w.sum() == pytest.approx(1.0)
    c = fam.fit_combiner("stack", [noise, good], y)
    out = c.combine([noise, good])
    assert (out.argmax(axis=1) == y).mean() > 0.95
    back = fam.Combiner.from_dict(json.loads(json.dumps(c.to_dict())))
    assert np.allclose(back.combine([noise, good]), out)
    assert np.allclose(fam.fit_combiner("mean", [noise, good], y).combine([noise, good]), (noise + good) / 2)


def test_kfold_members_get_one_combination_per_fold(env):
    runs = []
    for pixels in (4, 8):
        p = env / f"k{pixels}.yaml"
        p.write_text(f"name: k{pixels}\n{BASE.replace('test: 0.25, val: 0.25', 'folds: 3, val: 0.2')}"
                     f"model: {{family: baseline, pixels: {pixels}}}\n")
        runs.append(bmbench.run_recipe(p))
    assert "fold" in pd.read_csv(runs[0] / "validation.csv")
    folder = ens.build_ensemble([r.name for r in runs], "stack")
    info = json.loads((folder / "run.json").read_text())
    assert info["n_folds"] == 3 and len(info["model"]["combiners"]) == 3
    preds = pd.read_csv(folder / "predictions.csv")
    assert sorted(preds["fold"].unique()) == [0, 1, 2] and len(preds) == 64


@pytest.mark.parametrize("damage, message", [
    (lambda d: d["combiners"][0].update(weights=[1.0]), "its weights is not (2,)"),
    (lambda d: d["combiners"][0].update(weights=[float("nan"), 0.5]), "finite"),
    (lambda d: d["combiners"][0].update(method="exec"), "unknown method 'exec'"),
    (lambda d: d.update(combiners=[]), "holds no combination"),
    (lambda d: d.update(combiners="x"), "'combiners' is a str"),
    (lambda d: d.update(combiners=[{"weights": 1}]), "cannot read the ensemble"),
])
def test_a_crafted_ensemble_file_is_one_line(env, runs, damage, message):
    assert cli("ensemble", *[r.name for r in runs], "--method", "mean", "-q").exit_code == 0
    folder = next((env / "results" / "runs").glob("*ensemble*"))
    path = folder / "model" / "ensemble.json"
    doc = json.loads(path.read_text())
    damage(doc)
    path.write_text(json.dumps(doc))
    (env / "p.csv").write_text("kept\n")
    res = cli("predict", folder.name, json.loads((folder / "run.json").read_text())["dataset"]["root"],
              "--out", env / "p.csv")
    assert res.exit_code == 2 and "ensemble.json" in res.output and message in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1 and (env / "p.csv").read_text() == "kept\n"


def test_ensemble_members_must_be_plain_runs_of_the_store(env, runs):
    assert cli("ensemble", *[r.name for r in runs], "--method", "mean", "-q").exit_code == 0
    folder = next((env / "results" / "runs").glob("*ensemble*"))
    recipe = folder / "recipe.yaml"
    recipe.write_text(recipe.read_text().replace(runs[0].name, "../../../etc"))
    res = cli("predict", folder.name, env, "--out", env / "p.csv")
    assert res.exit_code == 2 and "is not a run id" in res.output, res.output
    assert len(res.output.strip().splitlines()) == 1
