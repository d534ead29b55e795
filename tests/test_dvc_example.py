"""docs/examples/dvc.yaml: every stage is a bmbench command that parses, its recipe validates,
and its metrics file is where ``bmbench run --metrics-out`` writes the run's metrics.json."""

import json
import shlex
import shutil
from pathlib import Path

import click
import pytest
import yaml
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.config.recipe import load_recipe

ROOT = Path(__file__).resolve().parents[1]
STAGES = yaml.safe_load((ROOT / "docs" / "examples" / "dvc.yaml").read_text())["stages"]


def parsed(cmd: str) -> tuple[str, dict]:
    """(command name, its parameters) as click parses ``cmd``; a usage error fails the test."""
    words = shlex.split(cmd)
    assert words[0] == "bmbench", cmd
    with main.make_context("bmbench", words[1:]) as ctx:
        name, command, rest = main.resolve_command(ctx, words[1:])  # main takes no option here
        with command.make_context(name, rest, parent=ctx) as sub:
            return name, sub.params


def one_path(entry) -> str:
    return next(iter(entry)) if isinstance(entry, dict) else entry


@pytest.mark.parametrize("stage", sorted(STAGES))
def test_every_stage_is_a_bmbench_run_whose_metrics_dvc_reads(stage):
    spec = STAGES[stage]
    name, params = parsed(spec["cmd"])
    assert name == "run"
    assert [one_path(m) for m in spec["metrics"]] == [params["metrics_out"]]
    assert spec["outs"] == [params["results_dir"]]
    assert params["recipe"] in spec["deps"]
    for entry in spec.get("params", []):
        (path, keys), = entry.items()
        assert path == params["recipe"]
        raw = yaml.safe_load((ROOT / path).read_text())
        for key in keys:
            node = raw
            for part in key.split("."):
                node = node[part]  # DVC reads these keys from the recipe: they must exist
    load_recipe(ROOT / params["recipe"], params["overrides"])  # the recipe and its --set validate


def test_a_misspelt_option_fails_the_parse():
    with pytest.raises(click.UsageError):
        parsed("bmbench run recipes/quickstart.yaml --metric-out m.json")


def test_the_quickstart_stage_writes_its_metrics_where_dvc_reads_them(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    shutil.copy(ROOT / "recipes" / "quickstart.yaml", tmp_path / "recipes")
    spec = STAGES["quickstart"]
    res = CliRunner().invoke(main, shlex.split(spec["cmd"])[1:] + ["--set", "dataset.n_per_class=12"])
    assert res.exit_code == 0, res.output
    (run,) = (tmp_path / spec["outs"][0] / "runs").iterdir()
    metrics = tmp_path / one_path(spec["metrics"][0])
    assert metrics.read_bytes() == (run / "metrics.json").read_bytes()
    assert json.loads(metrics.read_text())["macro_f1"] >= 0


def test_metrics_out_takes_one_run_and_says_so_before_running(recipe_path, tmp_path):
    res = CliRunner().invoke(main, ["run", str(recipe_path), "--repeats", "2", "--results-dir",
                                    str(tmp_path / "results"), "--metrics-out", str(tmp_path / "m.json")])
    assert res.exit_code == 2 and "--metrics-out" in res.stderr and "takes one run" in res.stderr
    assert not (tmp_path / "results").exists() and not (tmp_path / "m.json").exists()
