"""Third-party plug-ins: the example package, installed for real, adds a classifier and a
feature family that the CLI validates, runs and documents like bmbench's own."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "plugin"


@pytest.fixture(scope="module")
def plugin_path(tmp_path_factory):
    """The example plug-in pip-installed (wheel built, entry points in its .dist-info) into a
    folder that only the subprocesses below see."""
    target = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(EXAMPLE)], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert list(target.glob("bmbench_example_plugin-*.dist-info/entry_points.txt"))
    return target


def bmbench(args, plugin_path, tmp_path, check=True):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(plugin_path), str(ROOT)]),
           "BMBENCH_CACHE": str(tmp_path / "cache"), "BMBENCH_RESULTS": str(tmp_path / "results")}
    done = subprocess.run([sys.executable, "-m", "bmbench.cli", *args], capture_output=True, text=True,
                          env=env, timeout=600, cwd=tmp_path)
    if check:
        assert done.returncode == 0, done.stderr[-3000:]
    return done


def test_the_example_plugin_runs_from_the_cli(plugin_path, tmp_path):
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((EXAMPLE / "recipe.yaml").read_text().replace("n_per_class: 40", "n_per_class: 12"))
    listed = bmbench(["plugins"], plugin_path, tmp_path).stdout
    assert "naive_bayes" in listed and "[bmbench-example-plugin 0.1.0]" in listed and "intensity" in listed
    shown = bmbench(["validate", str(recipe)], plugin_path, tmp_path).stdout
    assert "name: naive_bayes" in shown and "var_smoothing: 1.0e-06" in shown and "- intensity" in shown
    bmbench(["run", str(recipe), "-q"], plugin_path, tmp_path)
    run = next((tmp_path / "results" / "runs").iterdir())
    info = json.loads((run / "run.json").read_text())
    assert info["model"]["classifier"] == "naive_bayes" and info["model"]["n_features"] == 25 + 6
    out = tmp_path / "f.csv"
    bmbench(["features", str(recipe), "--out", str(out), "-q"], plugin_path, tmp_path)
    names = [f["name"] for f in json.loads(out.with_suffix(".features.json").read_text())["features"]]
    assert "intensity_nucleus_mean" in names and "intensity_cytoplasm_dark_fraction" in names


def test_plugin_options_are_validated_like_bmbench_s_own(plugin_path, tmp_path):
    recipe = tmp_path / "bad.yaml"
    recipe.write_text((EXAMPLE / "recipe.yaml").read_text().replace("var_smoothing: 1.0e-6", "var_smoothin: 1.0e-6"))
    done = bmbench(["validate", str(recipe)], plugin_path, tmp_path, check=False)
    assert done.returncode == 2
    assert "model.classifier.var_smoothin: unknown key (did you mean 'var_smoothing'?)" in done.stderr


def test_without_the_plugin_its_names_are_unknown(tmp_path):
    done = subprocess.run([sys.executable, "-m", "bmbench.cli", "validate", str(EXAMPLE / "recipe.yaml")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2 and "unknown" in done.stderr
