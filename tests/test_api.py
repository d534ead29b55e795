"""The notebook API (bmbench/api.py): the same calls and figures as the CLI, objects that
render in Jupyter, one-line errors, and an `import bmbench` that stays light."""

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

import bmbench
from bmbench.cli import main
from bmbench.core.errors import BmbenchError

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("tensorflow", "keras", "pandas", "sklearn", "mlflow", "matplotlib", "xgboost", "scipy")


def _imported_after(code: str) -> list[str]:
    out = subprocess.run([sys.executable, "-c", code + "\nimport sys, json\n"
                          f"print(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"],
                         capture_output=True, text=True, cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""},
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_bmbench_imports_no_heavy_library():
    assert _imported_after("import bmbench") == []


def test_reaching_the_api_functions_imports_no_heavy_library():
    # bmbench.features is also the features subpackage (OpenCV, scikit-image): left out
    code = "import bmbench\nfor f in (*bmbench._API, \"BmbenchError\"): f == 'features' or getattr(bmbench, f)"
    assert _imported_after(code) == []


@pytest.mark.parametrize("first", ["import bmbench", "import bmbench.features.extract",
                                   "from bmbench.features import extract"])
def test_bmbench_features_is_the_call_and_the_package_however_it_was_imported(first):
    code = (f"{first}\nimport bmbench\nfrom bmbench.api import features\n"
            "assert callable(bmbench.features) and bmbench.features.extract.FeatureSettings\n"
            "import unittest.mock as m\n"
            "with m.patch('bmbench.api.features', return_value=7): assert bmbench.features('x') == 7\n"
            "with m.patch('bmbench.features.extract.FEATURE_VERSION', -1):\n"
            "    assert bmbench.features.extract.FEATURE_VERSION == -1")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, env={"PYTHONPATH": str(ROOT), "PATH": ""}, check=True)


def _cli(*args) -> str:
    result = CliRunner().invoke(main, list(args), catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.fixture
def two_runs(recipe_path, tmp_path):
    store = tmp_path / "results"
    a = bmbench.run(recipe_path, results_dir=store, quiet=True)
    b = bmbench.run(recipe_path, results_dir=store, quiet=True, set={"model.pixels": 4})
    return store, a, b


def test_run_returns_the_stored_run_the_cli_describes(two_runs, recipe_path):
    store, a, b = two_runs
    new, printed = _cli_run(store, recipe_path)
    assert repr(a) == printed.replace(new.name, a.id)
    html = a._repr_html_()
    assert "macro_f1" in html and html.count('src="data:image/png;base64,') == 1  # the confusion matrix
    assert f"{a.metrics['macro_f1']:.4f}" in html
    per_class = a.to_pandas()
    assert list(per_class.index) == a.metrics["classes"] and {"precision", "recall", "f1"} <= set(per_class.columns)


def _cli_run(store: Path, recipe, *args) -> tuple[Path, str]:
    """The run folder ``bmbench run`` stores and what it prints (the folder found as the one
    it adds: ids made within one second sort by their random hex, not by time)."""
    before = set((store / "runs").iterdir())
    printed = _cli("run", str(recipe), "-q", "--results-dir", str(store), *args).strip()
    (new,) = set((store / "runs").iterdir()) - before
    return new, printed


def test_overrides_as_keywords_or_a_mapping_are_the_clis_set(two_runs, recipe_path):
    store, _, b = two_runs
    keyword = bmbench.run(recipe_path, results_dir=store, quiet=True, **{"model.pixels": 4})
    new, _ = _cli_run(store, recipe_path, "--set", "model.pixels=4")
    cli_run = json.loads((new / "run.json").read_text())
    cli_scores = json.loads((new / "metrics.json").read_text())
    assert b.info["recipe_fingerprint"] == keyword.info["recipe_fingerprint"] == cli_run["recipe_fingerprint"]
    assert b.metrics["macro_f1"] == keyword.metrics["macro_f1"] == cli_scores["macro_f1"]


def test_leaderboard_is_the_clis_table_and_renders_leader_and_intervals(two_runs):
    store, a, b = two_runs
    board = bmbench.leaderboard(store)
    assert repr(board) == _cli("leaderboard", "--results-dir", str(store))
    html = board._repr_html_()
    assert 'class="leader"' in html and "[" in html and a.id.rsplit("-", 1)[-1] in html
    frame = board.to_pandas()
    csv = pd.read_csv(pd.io.common.StringIO(_cli("leaderboard", "--results-dir", str(store), "--format", "csv")))
    assert list(frame["run"]) == list(csv["run"]) and {"vs_leader", "macro_f1_ci_low"} <= set(frame.columns)


def test_an_empty_store_says_so(tmp_path):
    board = bmbench.leaderboard(tmp_path / "none")
    assert "No runs stored yet" in repr(board) and "No runs stored yet" in board._repr_html_()
    assert board.to_pandas().empty


def test_compare_and_load_run_take_the_clis_references(two_runs):
    store, a, b = two_runs
    result = bmbench.compare(a.id, b.id, results_dir=store)
    assert repr(result) == _cli("compare", a.id, b.id, "--results-dir", str(store))
    assert "McNemar" in result._repr_html_() and list(result.to_pandas()["run"]) == [a.id, b.id]
    loaded = bmbench.load_run(b.id[-6:], store)
    assert loaded.id == b.id and repr(loaded) == repr(b)
    assert loaded.classes == tuple(b.metrics["classes"])  # the model, loaded on first use


def test_features_is_the_clis_table(recipe_path, tmp_path):
    table = bmbench.features(recipe_path, results_dir=tmp_path / "results", quiet=True)
    out = tmp_path / "f.csv"
    _cli("features", str(recipe_path), "--out", str(out), "--results-dir", str(tmp_path / "results"), "-q")
    expected = pd.read_csv(out)
    frame = table.to_pandas()
    assert table.path is None and frame.shape == expected.shape and list(frame.columns) == list(expected.columns)
    pd.testing.assert_frame_equal(frame.drop(columns=["patient", "segmentation_flags"]),
                                  expected.drop(columns=["patient", "segmentation_flags"]), check_dtype=False)
    assert [f["name"] for f in table.dictionary["features"]] == list(frame.columns[5:])
    assert f"{len(frame)} images x {frame.shape[1] - 5} features" in repr(table)
    assert "<table" in table._repr_html_()


def test_ablate_runs_every_variant_and_renders_its_tables(recipe_path, tmp_path):
    store = tmp_path / "results"
    result = bmbench.ablate(recipe_path, {"model.pixels": [4, 8]}, results_dir=store, quiet=True)
    table = result.to_pandas()
    assert len(table) == 2 and result.failed == []
    html = result._repr_html_()
    assert html.count('src="data:image/png;base64,') == len(result.report.metrics)
    again = bmbench.ablate(report=result.report.id, results_dir=store)
    assert repr(again) == repr(result)


@pytest.mark.parametrize("call, words", [
    (lambda: bmbench.run("no-such-recipe.yaml"), "no-such-recipe.yaml"),
    (lambda: bmbench.run("recipes/quickstart.yaml", set=3), "set=3"),
    (lambda: bmbench.leaderboard(metric="f2"), "unknown metric 'f2'"),
    (lambda: bmbench.ablate(None), "give an ablation file"),
])
def test_mistakes_are_the_one_line_error(call, words, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(BmbenchError, match=words.replace("(", r"\(")) as caught:
        call()
    assert caught.value._render_traceback_() == [f"{type(caught.value).__name__}: {caught.value}"]


def test_ipython_shows_a_bmbench_error_as_one_line(tmp_path):
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "shell.run_cell('import bmbench\\nbmbench.run(\"missing.yaml\")')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT,
                         env={"PYTHONPATH": str(ROOT), "PATH": "", "HOME": str(tmp_path),
                              "IPYTHONDIR": str(tmp_path / "ipython")})
    shown = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()]
    assert shown == ["RecipeError: missing.yaml: recipe file not found"], out.stdout + out.stderr


def test_a_recipe_name_means_the_file_in_recipes(tmp_path, monkeypatch, recipe_path):
    from bmbench.api import _recipe_path

    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    (tmp_path / "recipes" / "tiny.yaml").write_text(recipe_path.read_text())
    assert _recipe_path("tiny") == str(Path("recipes") / "tiny.yaml")
    assert _recipe_path("other") == "other"


def test_a_runs_card_draws_its_training_curves_when_it_has_a_history(two_runs):
    _, a, _ = two_runs
    (a.path / "history.csv").write_text("fold,stage,epoch,loss,accuracy,val_loss,val_accuracy,learning_rate,seconds\n"
                                        "0,train,1,1.2,0.5,1.3,0.4,0.001,2.0\n0,train,2,0.8,0.7,1.0,0.6,0.001,2.0\n")
    html = a._repr_html_()
    assert html.count('src="data:image/png;base64,') == 2 and "training and validation curves" in html
