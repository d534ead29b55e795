"""`bmbench tune`: search spaces beside the options, trial 0 = the recipe, validation-only
objective (no test image decoded or predicted during a study), SQLite storage that survives
kill -9 and is shared by two processes, the best trial stored as an ordinary run."""

import dataclasses
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.config.recipe import load_recipe, recipe_from_dict
from bmbench.config.space import Space, default_space
from bmbench.core.errors import RecipeError
from bmbench.runs import tune as tune_module
from bmbench.runs.store import list_runs

pytest.importorskip("optuna")
REPO = Path(__file__).resolve().parents[2]

TINY = """
name: tinyxgb
dataset: {kind: synthetic, n_per_class: 10, render_size: 64}
split: {test: 0.3, val: 0.25}
model: {family: classical, features: [shape, color], feature_size: 64, n_estimators: 15, early_stopping: 5}
train: {jobs: 1}
tune:
  trials: 5
  space: {model.max_depth: {int: [2, 4]}, model.classifier.learning_rate: {log_float: [0.05, 0.5]}}
"""


@pytest.fixture
def recipe_path(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY)
    return p


def _raw(text=TINY, **tune):
    import yaml

    raw = yaml.safe_load(text)
    raw["tune"] = {**raw["tune"], **tune}
    return raw


# --- spaces -------------------------------------------------------------------------------

def test_every_declared_space_lies_inside_its_options_bounds():
    """Contract: a default space can never propose a value its option would refuse."""
    from bmbench.config.schema import Context, _check_bounds, convert
    from bmbench.models.classifiers import CLASSIFIERS
    from bmbench.models.registry import list_families
    from bmbench.config.recipe import TrainSpec
    import typing

    classes = [f.Options for f in list_families()] + [c.Options for _, c in CLASSIFIERS.items()] + [TrainSpec]
    checked = 0
    for cls in classes:
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            space = f.metadata.get("space")
            if space is None:
                continue
            for v in space.values:
                ctx = Context(cls.__name__, f.name)
                _check_bounds(convert(hints[f.name], list(v) if isinstance(v, tuple) else v, ctx), f.metadata, ctx)
            checked += 1
    assert checked >= 12


def test_default_spaces_per_family_and_classifier():
    xgb = default_space(load_recipe(REPO / "recipes/xgb_handcrafted.yaml"))
    assert xgb.keys() == ["model.classifier.n_estimators", "model.classifier.max_depth",
                          "model.classifier.learning_rate", "model.classifier.subsample",
                          "model.classifier.colsample_bytree", "model.classifier.min_child_weight"]
    cnn = default_space(load_recipe(REPO / "recipes/small_cnn.yaml"))
    assert set(cnn.keys()) == {"model.depth", "model.width", "model.dropout", "train.learning_rate",
                               "train.batch_size", "train.augment"}
    assert cnn.get("train.learning_rate") == Space("log_float", (1e-4, 1e-2))


def test_a_recipe_space_is_validated_key_by_key():
    recipe = recipe_from_dict(_raw(), "t.yaml")
    # the flat shorthand names the classifier's option; the range widens to hold the recipe's own value (6)
    assert recipe.tune.space.to_plain() == {"model.classifier.max_depth": {"int": [2, 6]},
                                            "model.classifier.learning_rate": {"log_float": [0.05, 0.5]}}
    assert recipe.fingerprint() == recipe_from_dict({**_raw(), "tune": None}, "t.yaml").fingerprint()
    bad = {"model.maxdepth": "unknown", "model.classifier.subsample": "<= 1.0", "train.learning_rate": "> 0.0"}
    spaces = {"model.maxdepth": {"int": [2, 4]}, "model.classifier.subsample": {"float": [0.5, 1.5]},
              "train.learning_rate": {"log_float": [0, 1]}}
    for key, needle in bad.items():
        with pytest.raises(RecipeError) as err:
            recipe_from_dict(_raw(space={key: spaces[key]}), "t.yaml")
        line = str(err.value)
        assert line.startswith(f"t.yaml: tune.space.{key}") and "\n" not in line
        assert needle in line or "did you mean 'model.classifier.max_depth'" in line
    with pytest.raises(RecipeError, match=r"tune.space.model.features.choice\[0\]\[0\]: unknown value 'shap'"):
        recipe_from_dict(_raw(space={"model.features": {"choice": [["shap"]]}}), "t.yaml")
    with pytest.raises(RecipeError, match="low 4 must be below high 2"):
        recipe_from_dict(_raw(space={"model.max_depth": {"int": [4, 2]}}), "t.yaml")


def test_cli_rejects_a_bad_space_with_one_line(recipe_path):
    recipe_path.write_text(TINY.replace("model.max_depth: {int: [2, 4]}", "model.max_depht: {int: [2, 4]}"))
    result = CliRunner().invoke(main, ["tune", str(recipe_path), "--results-dir", str(recipe_path.parent / "r")])
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "tune.space.model.max_depht" in result.output


# --- a study ------------------------------------------------------------------------------

def test_a_study_never_touches_the_test_images_and_trial_0_is_the_recipe(recipe_path, monkeypatch):
    import bmbench.features.extract as extract
    import bmbench.models.tabular as tabular
    from bmbench.data.images import ImageSource

    seen: set[str] = set()
    real_extract, real_decode, real_predict = extract.extract_many, ImageSource.decode, tabular.predict_proba

    def spy_extract(paths, *a, **k):
        seen.update(map(str, paths))
        return real_extract(paths, *a, **k)

    def spy_decode(self, path, data=None):
        seen.add(str(path))
        return real_decode(self, path, data)

    predicted = []

    def spy_predict(fitted, x, n):
        predicted.append(len(x))
        return real_predict(fitted, x, n)

    monkeypatch.setattr(extract, "extract_many", spy_extract)
    monkeypatch.setattr(ImageSource, "decode", spy_decode)
    monkeypatch.setattr(tabular, "predict_proba", spy_predict)
    results = recipe_path.parent / "results"
    plan = tune_module.plan_study(load_recipe(recipe_path), results)
    study = tune_module.run_study(plan, results)
    evaluator = tune_module.TrialEvaluator(plan.recipe, results)
    test = set(map(str, evaluator.paths[evaluator.test_rows]))
    val = set(map(str, evaluator.paths[evaluator.parts[0][1]]))
    assert test and seen and not seen & test
    assert val <= seen and set(predicted) == {len(val)}  # only validation images were predicted
    trials = tune_module.finished(study)
    assert len(trials) == 5 and trials[0].params == {"model.classifier.max_depth": 6,
                                                     "model.classifier.learning_rate": 0.1}
    assert trials[0].user_attrs["default"]
    record = tune_module.tuning_record(plan, study)
    assert record["best_value"] >= record["default_value"] and record["trials"] == 5
    assert (plan.folder / "study.db").is_file()


def test_tune_cli_stores_the_best_trial_as_a_run_and_the_leaderboard_shows_the_budget(recipe_path):
    results = recipe_path.parent / "results"
    runner = CliRunner()
    out = runner.invoke(main, ["run", str(recipe_path), "--results-dir", str(results), "-q"])
    assert out.exit_code == 0, out.output
    out = runner.invoke(main, ["tune", str(recipe_path), "--trials", "4", "--results-dir", str(results), "-q"])
    assert out.exit_code == 0, out.output
    assert "tuned 4 trials" in out.output
    runs = {("tuning" in r.info): r for r in list_runs(results)}
    tuned, default = runs[True], runs[False]
    t = tuned.info["tuning"]
    assert t["trials"] == 4 and t["study"].startswith("tinyxgb-") and set(t["best_params"]) == {
        "model.classifier.max_depth", "model.classifier.learning_rate"} and t["minutes"] >= 0
    assert "tuned: study" in (tuned.path / "MODEL_CARD.md").read_text()
    assert tuned.info["split_fingerprint"] == default.info["split_fingerprint"]
    board = runner.invoke(main, ["leaderboard", "--results-dir", str(results), "--format", "csv"])
    assert "tuned 4 trials" in board.output and ", default" in board.output
    fair = runner.invoke(main, ["leaderboard", "--results-dir", str(results), "--fair", "--format", "markdown"])
    assert fair.output.count("budget: ") == 2
    again = runner.invoke(main, ["tune", str(recipe_path), "--trials", "4", "--results-dir", str(results)])
    assert again.exit_code == 2 and "add --resume" in again.output
    report = runner.invoke(main, ["tune", "--report", t["study"], "--results-dir", str(results)])
    assert report.exit_code == 0, report.output
    folder = results / "studies" / t["study"] / "report"
    for name in ("history.png", "importances.png", "params.png"):
        assert (folder / name).read_bytes()[:4] == b"\x89PNG"
    assert "Best trial" in report.output and "| model.classifier.max_depth |" in report.output


def test_cross_validation_objective_scores_k_folds_inside_the_training_images(recipe_path):
    results = recipe_path.parent / "results"
    recipe = recipe_from_dict(_raw(cv=3, trials=2), str(recipe_path))
    plan = tune_module.plan_study(recipe, results)
    study = tune_module.run_study(plan, results)
    evaluator = tune_module.TrialEvaluator(plan.recipe, results)
    assert len(evaluator.parts) == 3
    used = np.concatenate([np.concatenate(p) for p in evaluator.parts])
    assert not set(used) & set(evaluator.test_rows)
    assert all(len(t.user_attrs["parts"]) == 3 for t in tune_module.finished(study))


def _count_finished(url: str, name: str) -> dict:
    import optuna
    from optuna.trial import TrialState

    study = optuna.load_study(study_name=name, storage=url)
    return {t.number: t.value for t in study.get_trials(states=(TrialState.COMPLETE, TrialState.PRUNED))}


def _env(tmp_path):
    return {**os.environ, "PYTHONPATH": str(REPO), "BMBENCH_CACHE": str(tmp_path / "cache")}


def test_resume_after_kill_9_keeps_every_finished_trial(recipe_path, tmp_path, monkeypatch):
    results = tmp_path / "results"
    recipe_path.write_text(TINY.replace("space: {", "space: {model.n_estimators: {int: [200, 400]}, "))
    args = [sys.executable, "-m", "bmbench.cli", "tune", str(recipe_path), "--trials", "30", "--study", "killed",
            "--no-refit", "--results-dir", str(results)]
    db = results / "studies" / "killed" / "study.db"
    proc = subprocess.Popen(args, env=_env(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    url = f"sqlite:///{db}"
    before = {}
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.3)
        if db.is_file():
            try:
                before = _count_finished(url, "killed")
            except Exception:  # noqa: BLE001 - the database is being created
                continue
            if len(before) >= 3:
                break
    assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _count_finished(url, "killed")
    assert 3 <= len(before) < 30
    monkeypatch.setattr(tune_module, "HEARTBEAT", (1, 1))
    time.sleep(1.5)
    out = CliRunner().invoke(main, ["tune", str(recipe_path), "--trials", "30", "--study", "killed", "--resume",
                                    "--no-refit", "--results-dir", str(results), "-q"])
    assert out.exit_code == 0, out.output
    after = _count_finished(url, "killed")
    assert all(after[n] == v for n, v in before.items())  # every finished trial is still there
    assert len(after) == 30


def test_two_processes_share_one_study(recipe_path, tmp_path):
    results = tmp_path / "results"
    args = [sys.executable, "-m", "bmbench.cli", "tune", str(recipe_path), "--trials", "8", "--study", "shared",
            "--resume", "--no-refit", "--results-dir", str(results), "-q"]
    procs = [subprocess.Popen(args, env=_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
             for _ in range(2)]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    import optuna

    study = optuna.load_study(study_name="shared", storage=f"sqlite:///{results / 'studies/shared/study.db'}")
    done = tune_module.finished(study)
    assert 8 <= len(done) <= 9  # both count the other's running trials; at most one more than the budget
    assert len({t.user_attrs["worker"] for t in done}) == 2
    assert sum(bool(t.user_attrs.get("default")) for t in done) >= 1


CNN = """
name: tinycnn
dataset: {kind: synthetic, n_per_class: 8, render_size: 32, image_size: 16}
split: {test: 0.25, val: 0.25}
model: {family: cnn, depth: 1, width: 4}
train: {epochs: 4, batch_size: 8, patience: 4, augment: [none], jobs: 1}
tune: {trials: 2, space: {model.width: {int: [4, 8]}}}
"""


def test_deep_trials_report_every_epoch_and_are_pruned(tmp_path, monkeypatch):
    import optuna

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    recipe = recipe_from_dict(__import__("yaml").safe_load(CNN), str(tmp_path / "cnn.yaml"))
    results = tmp_path / "results"
    plan = tune_module.plan_study(recipe, results)
    study = tune_module.run_study(plan, results)
    done = tune_module.finished(study)
    assert len(done) == 2 and all(len(t.intermediate_values) == 4 for t in done)  # one report per epoch
    # a pruner that stops every trial after its second epoch: trials end PRUNED, not trained on
    monkeypatch.setattr(tune_module, "_pruner", lambda plan: optuna.pruners.ThresholdPruner(lower=2.0, n_warmup_steps=1))
    plan = tune_module.plan_study(recipe, results, trials=2, study_id="pruned")
    study = tune_module.run_study(plan, results)
    assert [t.state.name for t in study.trials] == ["PRUNED", "PRUNED"]
    assert all(1 <= len(t.intermediate_values) < 4 for t in study.trials)  # stopped before the last epoch


def test_jobs_run_trials_in_worker_processes_sharing_the_study(recipe_path):
    results = recipe_path.parent / "results"
    plan = tune_module.plan_study(load_recipe(recipe_path), results, trials=4)
    study = tune_module.run_study(plan, results, jobs=2)
    done = tune_module.finished(study)
    workers = {t.user_attrs["worker"] for t in done}
    # which worker takes which trial is the scheduler's business (one may finish all four
    # before the other starts on a loaded machine); what holds is: no trial ran in this process
    assert 4 <= len(done) <= 5 and 1 <= len(workers) <= 2
    assert all(int(w.rpartition(":")[2]) != os.getpid() for w in workers)
    assert len(tune_module.counted(study, plan.trials)) == 4
