"""Ablations: expansion, up-front validation, tags, resuming, failures, tables and plots."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from bmbench.config.ablation import Axis, ablation_from_options, expand, load_ablation, parse_values
from bmbench.runs.sweep import read_manifest, run_ablation
from bmbench.views.ablation import build_report, write_report
from bmbench.cli import main
from bmbench.core.errors import RecipeError
from bmbench.runs.backends import LocalBackend
from bmbench.config.recipe import load_recipe
from bmbench.runs.store import list_runs

REPO = Path(__file__).resolve().parents[2]


def tagged_runs(results):
    return [r for r in list_runs(results) if r.info.get("tags")]


# --- expansion ----------------------------------------------------------------------------

def test_one_at_a_time_varies_each_axis_alone_around_the_base(recipe_path):
    ab = ablation_from_options(recipe_path, ["model.pixels=4,8,12", "model.C=0.1,1.0"], repeats=2)
    labels = [v.label for v in ab.variants]
    # 8 and C=1.0 are the base's own values: covered by the base variant, not run twice
    assert labels == ["base", "pixels=4", "pixels=12", "C=0.1"]
    assert [v.is_base for v in ab.variants] == [True, False, False, False]
    assert ab.variants[1].values == {"model.pixels": 4, "model.C": 1.0}
    assert ab.variants[1].changed == ("model.pixels",) and ab.variants[0].changed == ()
    assert ab.n_runs == 8 and [r.seed for r in ab.variants[2].recipes] == [0, 1]
    fps = {r.fingerprint() for v in ab.variants for r in v.recipes}
    assert len(fps) == 8
    assert ab.variants[2].recipes[1].model.options.pixels == 12


def test_grid_runs_every_combination_and_finds_the_base(recipe_path):
    ab = ablation_from_options(recipe_path, ["model.pixels=4,8", "train.fraction=0.5,1.0"], mode="grid")
    assert [v.values for v in ab.variants] == [
        {"model.pixels": 4, "train.fraction": 0.5}, {"model.pixels": 4, "train.fraction": 1.0},
        {"model.pixels": 8, "train.fraction": 0.5}, {"model.pixels": 8, "train.fraction": 1.0}]
    assert [v.is_base for v in ab.variants] == [False, False, False, True]
    assert ab.reference.label == "pixels=8, train_fraction=1.0"
    # a grid without the base's own combination measures against its first variant
    other = ablation_from_options(recipe_path, ["model.pixels=4,6"], mode="grid")
    assert [v.is_base for v in other.variants] == [True, False]


def test_parse_values_splits_outside_brackets_and_quotes():
    assert parse_values("[shape],[shape,color]", "x") == [["shape"], ["shape", "color"]]
    assert parse_values("otsu,none", "x") == ["otsu", "none"]
    assert parse_values("0.1, 0.5,1", "x") == [0.1, 0.5, 1]
    assert parse_values("'a,b',{k: [1,2]}", "x") == ["a,b", {"k": [1, 2]}]
    with pytest.raises(RecipeError, match="unbalanced"):
        parse_values("[shape,color", "x")
    with pytest.raises(RecipeError, match="empty value"):
        parse_values("a,,b", "x")


def test_a_bad_value_fails_the_whole_ablation_up_front_naming_the_variant(recipe_path, tmp_path):
    with pytest.raises(RecipeError, match=r"variant 'pixels=many'.*model.pixels"):
        ablation_from_options(recipe_path, ["model.pixels=4,many"])
    with pytest.raises(RecipeError, match=r"variant 'train_fraction=1.5'.*train.fraction"):
        ablation_from_options(recipe_path, ["train.fraction=0.5,1.5"])
    result = CliRunner().invoke(main, ["ablate", str(recipe_path), "--vary", "model.pixels=4,8",
                                       "--vary", "split.test=0.2,2", "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 2
    assert "variant 'test=2'" in result.output and "split.test" in result.output
    assert not (tmp_path / "r").exists()  # nothing ran, nothing stored


def test_ablation_file_keys_are_checked(recipe_path, tmp_path):
    def write(text):
        p = tmp_path / "ab.yaml"
        p.write_text(text)
        return p

    with pytest.raises(RecipeError, match="varyy: unknown key.*did you mean 'vary'"):
        load_ablation(write("base: tiny.yaml\nvaryy: {model.pixels: [4]}\n"))
    with pytest.raises(RecipeError, match="'seed' cannot be varied.*repeats"):
        load_ablation(write("base: tiny.yaml\nvary: {seed: [1, 2]}\n"))
    with pytest.raises(RecipeError, match="listed twice"):
        load_ablation(write("base: tiny.yaml\nvary: {model.pixels: [4, 4]}\n"))
    with pytest.raises(RecipeError, match="unknown metric 'f1'"):
        load_ablation(write("base: tiny.yaml\nvary: {model.pixels: [4]}\nmetrics: [f1]\n"))
    with pytest.raises(RecipeError, match="nothing to vary"):
        load_ablation(write("base: tiny.yaml\n"))
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_ablation(write("base: missing.yaml\nvary: {model.pixels: [4]}\n"))
    ab = load_ablation(write("name: mine\nbase: tiny.yaml\nset: {dataset.n_per_class: 10}\n"
                             "vary: {model.pixels: [4]}\ntrain_fraction: [0.5, 1.0]\nrepeats: 2\n"
                             "metrics: [accuracy]\n"))
    assert ab.id == "mine" and ab.metrics == ("accuracy",) and ab.repeats == 2
    assert [a.key for a in ab.axes] == ["model.pixels", "train.fraction"]
    assert ab.base.dataset.options.n_per_class == 10
    assert [v.label for v in ab.variants] == ["base", "pixels=4", "train_fraction=0.5"]


def test_named_settings_change_several_keys_together(recipe_path, tmp_path):
    p = tmp_path / "ab.yaml"
    p.write_text("base: tiny.yaml\nsettings:\n  as_is: {}\n  coarse: {model.pixels: 4, model.C: 0.5}\n"
                 "vary: {dataset.image_size: [16]}\n")
    ab = load_ablation(p)
    assert [v.label for v in ab.variants] == ["base", "coarse", "image_size=16"]
    assert [v.values["settings"] for v in ab.variants] == ["as_is", "coarse", "as_is"]
    coarse = ab.variants[1].recipes[0]
    assert (coarse.model.options.pixels, coarse.model.options.C) == (4, 0.5)
    assert ab.variants[1].changed == ("settings",)
    grid = load_ablation(p, mode="grid")
    assert [v.label for v in grid.variants] == ["as_is, image_size=16", "coarse, image_size=16"]
    p.write_text("base: tiny.yaml\nsettings: {a: {model.pixels: 4}}\nvary: {model.pixels: [2]}\n")
    with pytest.raises(RecipeError, match="also an axis"):
        load_ablation(p)
    p.write_text("base: tiny.yaml\nsettings: {a: {model.pixels: lots}}\n")
    with pytest.raises(RecipeError, match="variant 'a'.*model.pixels"):
        load_ablation(p)


def test_shipped_ablation_files_are_valid():
    from bmbench.models.registry import FAMILIES, list_families

    list_families()
    files = sorted((REPO / "recipes" / "ablations").glob("*.yaml"))
    assert {p.name for p in files} >= {"classical_features.yaml", "pretrained_vs_scratch.yaml",
                                       "learning_curve.yaml"}
    for p in files:
        if p.name == "pretrained_vs_scratch.yaml" and "transfer" not in FAMILIES:
            continue  # the transfer family is not registered in this checkout
        ab = load_ablation(p)
        assert len(ab.variants) >= 2 and ab.n_runs >= 2
    features = load_ablation(REPO / "recipes" / "ablations" / "classical_features.yaml")
    assert {"model.features", "model.segmentation"} <= {a.key for a in features.axes}
    curve = load_ablation(REPO / "recipes" / "ablations" / "learning_curve.yaml")
    assert "train.fraction" in {a.key for a in curve.axes}


def test_pretrained_vs_scratch_compares_one_backbone_three_ways():
    from bmbench.models.registry import FAMILIES, list_families

    list_families()
    if "transfer" not in FAMILIES:
        pytest.skip("the transfer family is not registered in this checkout")
    ab = load_ablation(REPO / "recipes" / "ablations" / "pretrained_vs_scratch.yaml")
    opts = [v.recipes[0].model.options for v in ab.variants]
    assert {o.backbone for o in opts} == {opts[0].backbone}
    kinds = {(o.weights, o.fine_tune_layers > 0) for o in opts}
    assert {("imagenet", False), ("imagenet", True), ("none", False)} <= kinds


# --- running, tags, resuming --------------------------------------------------------------

def test_variants_are_tagged_runs_that_show_in_the_leaderboard(recipe_path, tmp_path):
    from bmbench.views.leaderboard import build_boards

    results = tmp_path / "results"
    ab = ablation_from_options(recipe_path, ["model.pixels=4,8"], ablation_id="px")
    outcome = run_ablation(ab, results, LocalBackend(1))
    assert outcome.ok and len(outcome.completed) == 2 and outcome.skipped == 0
    runs = tagged_runs(results)
    tags = sorted((r.info["tags"]["variant"], r.info["tags"]["values"]["model.pixels"], r.info["tags"]["base"])
                  for r in runs)
    assert tags == [("base", 8, True), ("pixels=4", 4, False)]
    assert all(r.info["tags"]["ablation"] == "px" for r in runs)
    boards = build_boards(list_runs(results), n_resamples=100)
    assert len(boards) == 1 and set(boards[0].rows["run"]) == {r.id for r in runs}
    manifest = read_manifest(results / "ablations" / "px")
    assert manifest["status"] == "complete" and len(manifest["runs"]) == 2


def test_a_base_already_run_on_its_own_is_reused_not_trained_again(recipe_path, tmp_path):
    from bmbench.runs.runner import run_recipe

    results = tmp_path / "results"
    plain = run_recipe(recipe_path, results)
    ab = ablation_from_options(recipe_path, ["model.pixels=4,8"], ablation_id="reuse")
    outcome = run_ablation(ab, results, LocalBackend(1))
    assert outcome.ok and outcome.skipped == 1 and len(outcome.completed) == 1
    assert len(list_runs(results)) == 2
    report = build_report(results, "reuse", n_resamples=50)
    base = next(v for v in report.variants if v.is_base)
    assert [r.id for r in base.records] == [plain.name]


def test_an_interrupted_ablation_continues_where_it_stopped(recipe_path, tmp_path, monkeypatch):
    import bmbench.runs.runner as runner

    results = tmp_path / "results"
    ab = ablation_from_options(recipe_path, ["model.pixels=4,8,12,16"], repeats=2, ablation_id="resume")
    assert ab.n_runs == 8
    real = runner.run_recipe
    calls = []
    interrupt_at = [4]

    def interrupt_on_the_fourth(recipe, results=None, overrides=(), tags=None):
        calls.append((tags["variant"], tags["repeat"]))
        if len(calls) == interrupt_at[0]:
            interrupt_at[0] = None
            raise KeyboardInterrupt  # Ctrl-C in the middle of the fourth run
        return real(recipe, results, overrides, tags)

    monkeypatch.setattr(runner, "run_recipe", interrupt_on_the_fourth)
    with pytest.raises(KeyboardInterrupt):
        run_ablation(ab, results, LocalBackend(1))
    assert len(tagged_runs(results)) == 3
    assert read_manifest(results / "ablations" / "resume")["status"] == "interrupted"
    assert not [p for p in (results / "runs").iterdir() if p.name.startswith(".tmp")]

    calls.clear()
    outcome = run_ablation(ab, results, LocalBackend(1))
    assert outcome.skipped == 3 and len(outcome.completed) == 5 and outcome.ok
    assert len(calls) == 5 and ("base", 0) not in calls  # the first three are not run again
    assert len(tagged_runs(results)) == 8
    keys = {(r.info["recipe_fingerprint"], r.info["seed"]) for r in tagged_runs(results)}
    assert keys == {(rec.fingerprint(), rec.seed) for v in ab.variants for rec in v.recipes}

    calls.clear()
    again = run_ablation(ab, results, LocalBackend(1))
    assert again.skipped == 8 and calls == [] and len(tagged_runs(results)) == 8


def test_a_failed_variant_is_recorded_and_the_exit_code_says_so(recipe_path, tmp_path):
    results = tmp_path / "results"
    args = ["ablate", str(recipe_path), "--vary", "dataset.classes=[blast,lymphocyte],[blast,nosuch]",
            "--id", "fails", "--results-dir", str(results), "-q"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 1, result.output
    assert "FAILED" in result.output and "nosuch" in result.output
    assert len(tagged_runs(results)) == 2  # base and the good variant still ran
    manifest = read_manifest(results / "ablations" / "fails")
    assert manifest["status"] == "failed"
    (failure,) = manifest["failures"].values()
    assert failure["variant"] == "classes=[blast, nosuch]" and "nosuch" in failure["error"]
    table = build_report(results, "fails", ("macro_f1",), n_resamples=100).tables["macro_f1"]
    assert table["status"].tolist()[:2] == ["ok", "ok"] and table["status"].iloc[2].startswith("failed")
    # a rerun retries only the failed run, which fails again
    again = CliRunner().invoke(main, args)
    assert again.exit_code == 1 and "[1/1]" in again.output and len(tagged_runs(results)) == 2


# --- tables, plots, --report --------------------------------------------------------------

def test_report_tables_statistics_and_rebuild_from_the_store(recipe_path, tmp_path):
    from bmbench.metrics.paired import paired_bootstrap
    from bmbench.views.ablation import read_predictions

    results = tmp_path / "results"
    runner = CliRunner()
    first = runner.invoke(main, ["ablate", str(recipe_path), "--vary", "model.pixels=4,8,12",
                                 "--vary", "train.fraction=0.5,1.0", "--id", "study", "--metric",
                                 "macro_f1", "--metric", "log_loss", "--results-dir", str(results), "-q"])
    assert first.exit_code == 0, first.output
    assert "## macro_f1" in first.output and "## log_loss" in first.output
    folder = results / "ablations" / "study"
    for name in ("summary.md", "summary.csv", "summary.html", "best_per_axis.csv", "macro_f1.png",
                 "log_loss.png", "ablation.json"):
        assert (folder / name).is_file(), name
    assert (folder / "macro_f1.png").read_bytes()[:4] == b"\x89PNG"
    page = (folder / "summary.html").read_text()
    assert "`" not in page and "<code>tiny</code>" in page  # Markdown code becomes HTML, not backticks

    report = build_report(results, "study", ("macro_f1", "log_loss"))
    table = report.tables["macro_f1"]
    assert table["variant"].tolist() == ["base", "pixels=4", "pixels=12", "train_fraction=0.5"]
    assert table["n_train"].tolist()[:3] == [28, 28, 28] and table["n_train"].iloc[3] == 16
    runs = {r.info["tags"]["variant"]: r for r in tagged_runs(results)}
    for _, row in table.iterrows():
        assert row["mean"] == pytest.approx(runs[row["variant"]].metrics["macro_f1"])
        assert row["ci_low"] <= row["mean"] <= row["ci_high"]
    # the difference to the base is the shared statistics module's paired bootstrap
    paths, y, pa = read_predictions(runs["pixels=4"])
    pb = read_predictions(runs["base"])[2]
    boot = paired_bootstrap(y, pa, pb, pa.shape[1], "macro_f1")
    row = table.set_index("variant").loc["pixels=4"]
    assert row["diff"] == pytest.approx(boot["difference"])
    assert [row["diff_ci_low"], row["diff_ci_high"]] == pytest.approx(boot["ci"])
    assert row["p_value"] == pytest.approx(boot["p_value"])
    assert (table["p_holm"].dropna() >= table["p_value"].dropna()).all()
    best = table.loc[table["best"], "mean"].iloc[0]
    assert best == table["mean"].max()
    # log loss: lower is better
    loss = report.tables["log_loss"]
    assert loss.loc[loss["best"], "mean"].iloc[0] == loss["mean"].min()
    axes = report.best[report.best["metric"] == "macro_f1"].set_index("axis")
    px = table[table["variant"].isin(["base", "pixels=4", "pixels=12"])]
    assert axes.loc["model.pixels", "mean"] == pytest.approx(px["mean"].max())

    # --report rebuilds the same numbers from the store, in every format
    md = runner.invoke(main, ["ablate", "--report", "study", "--metric", "macro_f1",
                              "--results-dir", str(results)])
    assert md.exit_code == 0 and "| pixels=4 |" in md.output and "Best value per axis" in md.output
    csv = runner.invoke(main, ["ablate", "--report", "study", "--format", "csv", "--results-dir", str(results)])
    frame = pd.read_csv(io.StringIO(csv.stdout))
    assert set(frame["metric"]) == {"macro_f1", "log_loss"} and len(frame) == 8
    page = runner.invoke(main, ["ablate", "--report", "study", "--format", "html", "--out",
                                str(tmp_path / "a.html"), "--results-dir", str(results)])
    assert page.exit_code == 0 and "data:image/png;base64" in (tmp_path / "a.html").read_text()
    # without ablation.json the tags alone rebuild the table
    (folder / "ablation.json").unlink()
    rebuilt = build_report(results, "study", ("macro_f1",)).tables["macro_f1"]
    assert sorted(rebuilt["mean"]) == pytest.approx(sorted(table["mean"]))
    missing = runner.invoke(main, ["ablate", "--report", "nope", "--results-dir", str(results)])
    assert missing.exit_code == 2 and "no ablation 'nope'" in missing.output and "study" in missing.output


def test_repeats_give_mean_sd_and_a_learning_curve_plot(recipe_path, tmp_path, monkeypatch):
    import bmbench.views.ablation as rep

    results = tmp_path / "results"
    ab = ablation_from_options(recipe_path, ["train.fraction=0.25,0.5,1.0"], repeats=2,
                               metrics=("accuracy",), ablation_id="curve")
    assert run_ablation(ab, results, LocalBackend(1)).ok
    report = build_report(results, "curve", n_resamples=200)
    table = report.tables["accuracy"]
    assert table["runs"].tolist() == [2, 2, 2]
    values = {(r.info["tags"]["variant"], r.info["tags"]["repeat"]): r.metrics["accuracy"]
              for r in tagged_runs(results)}
    pair = [values[("train_fraction=0.25", 0)], values[("train_fraction=0.25", 1)]]
    row = table.set_index("variant").loc["train_fraction=0.25"]
    assert row["mean"] == pytest.approx(np.mean(pair)) and row["sd"] == pytest.approx(np.std(pair, ddof=1))
    drawn = []
    monkeypatch.setattr(rep, "_curve", lambda *a: drawn.append("curve") or rep._bars(*a))
    write_report(report, results)
    assert drawn == ["curve"]


def test_cli_dry_run_lists_variants_and_runs_nothing(recipe_path, tmp_path):
    result = CliRunner().invoke(main, ["ablate", str(recipe_path), "--vary", "model.pixels=4,8",
                                       "--vary", "model.C=0.5", "--mode", "grid", "--dry-run",
                                       "--results-dir", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "2 variant(s) x 1 repeat(s) = 2 run(s)" in result.output
    assert "pixels=4, C=0.5" in result.output and not (tmp_path / "r").exists()
    wrong = CliRunner().invoke(main, ["ablate", str(recipe_path), "--results-dir", str(tmp_path / "r")])
    assert wrong.exit_code == 2 and "--vary" in wrong.output


def test_expand_refuses_values_that_resolve_to_the_same_recipe(recipe_path):
    base = load_recipe(recipe_path)
    with pytest.raises(RecipeError, match="same recipe"):
        expand("x", base, [Axis("train.fraction", (1, 1.0))], mode="grid")


def test_vary_adapt_n_per_class_gives_the_few_shot_learning_curve(cross_recipe, tmp_path):
    recipe = cross_recipe()  # no adapt yet: the key is created by the override
    ab = ablation_from_options(recipe, ["evaluate.0.adapt.n_per_class=0,2,4"])
    assert [v.label for v in ab.variants] == ["base", "n_per_class=2", "n_per_class=4"], \
        "k=0 is the base recipe itself"
    assert [v.values["evaluate.0.adapt.n_per_class"] for v in ab.variants] == [0, 2, 4]
    results = tmp_path / "results"
    result = CliRunner().invoke(main, ["ablate", str(recipe), "--vary", "evaluate.0.adapt.n_per_class=0,2,4",
                                       "--id", "fewshot", "--results-dir", str(results), "-q"])
    assert result.exit_code == 0, result.output
    scores = {r.info["tags"]["variant"]: r.info["evaluations"][0] for r in tagged_runs(results)}
    assert {k: s["n_images"] for k, s in scores.items()} == {"base": 24, "n_per_class=2": 18, "n_per_class=4": 12}
    report = build_report(results, "fewshot", n_resamples=50)
    table = report.evaluations["tested on folder"].set_index("variant")
    assert table["macro_f1"].to_dict() == pytest.approx({k: s["macro_f1"] for k, s in scores.items()})
    assert table["n_test"].tolist() == [24, 18, 12] and table["n_train"].tolist() == [24, 30, 36]
    assert (table["n_common"] == 12).all() and table.loc["n_per_class=4", "common"] == \
        pytest.approx(scores["n_per_class=4"]["macro_f1"]), "scored on the images every variant tested"
    summary = (results / "ablations" / "fewshot" / "summary.md").read_text()
    assert "## tested on folder: macro_f1, balanced_accuracy, accuracy per variant" in summary
    row = next(line for line in summary.splitlines() if line.startswith("| n_per_class=2 | 2 | 30 | 18 |"))
    assert f"{scores['n_per_class=2']['macro_f1']:.4f}" in row
    assert "macro_f1 on the 12 common images" in summary
    csv = pd.read_csv(results / "ablations" / "fewshot" / "evaluations.csv")
    assert csv["evaluate.0.adapt.n_per_class"].tolist() == [0, 2, 4]
    assert "tested on folder" in (results / "ablations" / "fewshot" / "summary.html").read_text()


def test_ablations_without_evaluations_have_no_evaluation_tables(recipe_path, tmp_path):
    results = tmp_path / "results"
    assert run_ablation(ablation_from_options(recipe_path, ["model.pixels=4"], ablation_id="plain"),
                        results, LocalBackend(1)).ok
    report = build_report(results, "plain", n_resamples=20)
    assert report.evaluations == {}
    paths = write_report(report, results)
    assert "evaluations.csv" not in paths and "tested on" not in paths["summary.md"].read_text()


def test_best_value_per_axis_says_whether_it_beats_the_base_beyond_noise():
    import numpy as np
    import pandas as pd

    from bmbench.views.ablation import VariantData, _versus_base, best_per_axis

    variants = [VariantData(i, f"pixels={p}", {"model.pixels": p}, [] if i == 0 else ["model.pixels"], i == 0, 1)
                for i, p in enumerate((16, 8, 32))]
    table = pd.DataFrame({"mean": [0.70, 0.65, 0.72], "p_holm": [np.nan, 0.01, 0.31]})
    (row,) = best_per_axis({"macro_f1": table}, variants, ["model.pixels"], "one_at_a_time").to_dict("records")
    assert row["best_value"] == "32" and row["p_holm"] == 0.31
    assert _versus_base(row) == "n.s. (p=0.310)"
    table.loc[2, "p_holm"] = 0.004
    (row,) = best_per_axis({"macro_f1": table}, variants, ["model.pixels"], "one_at_a_time").to_dict("records")
    assert _versus_base(row) == "better (p=0.004)"
    table["mean"] = [0.80, 0.65, 0.72]
    (row,) = best_per_axis({"macro_f1": table}, variants, ["model.pixels"], "one_at_a_time").to_dict("records")
    assert _versus_base(row) == "base"
