"""Validation at every boundary: recipes nested too deep or too large, endless ``extends``
targets, seeds NumPy refuses, split fractions that leave no training images, paths that
cannot be expanded, a full disk, and intervals on test sets too small to resample.

Every bad input is one ``Error:`` line naming the file or key, exit code 2, no traceback,
and the results folder exactly as it was."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from bmbench.cli import main

RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.1}
model: {family: baseline, pixels: 8}
"""
HEAD = "name: deep\ndataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}\nmodel: {family: baseline}\n"


@pytest.fixture(scope="module")
def stored(tmp_path_factory):
    """A results folder holding one run of the tiny recipe (made once for the module)."""
    base = tmp_path_factory.mktemp("store")
    (base / "tiny.yaml").write_text(RECIPE)
    env = {"BMBENCH_CACHE": str(base / "cache"), "BMBENCH_RESULTS": str(base / "results")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        res = CliRunner().invoke(main, ["run", str(base / "tiny.yaml"), "-q"])
        assert res.exit_code == 0, res.output
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    return base


@pytest.fixture
def env(stored, tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(stored / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(stored / "results"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "tiny.yaml").write_text(RECIPE)
    return tmp_path


def tree_hash(folder: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        h.update(str(p.relative_to(folder)).encode())
        if p.is_file():
            h.update(p.read_bytes())
    return h.hexdigest()


def one_error_line(res, *needles: str) -> str:
    assert res.exit_code == 2, res.output
    assert res.exception is None or isinstance(res.exception, SystemExit), repr(res.exception)
    assert "Traceback" not in res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]


def _deep_list(n):
    return "[" * n + "]" * n


def _deep_map(n):
    return "{a: " * n + "1" + "}" * n


def _files(tmp: Path) -> None:
    """The recipe files the cases refer to."""
    (tmp / "deep_list.yaml").write_text(HEAD + "description: " + _deep_list(400) + "\n")
    (tmp / "deep_map.yaml").write_text(HEAD.replace("image_size: 32}", "image_size: 32, label_map: "
                                                    + _deep_map(300) + "}"))
    (tmp / "huge.yaml").write_text(HEAD + "description: " + "a" * (2 << 20) + "\n")
    (tmp / "digits.yaml").write_text(HEAD + "seed: " + "7" * 5000 + "\n")
    for target in ("/dev/zero", "/dev/urandom", "huge.yaml", "fifo", "loop_b.yaml"):
        name = {"/dev/zero": "ext_zero", "/dev/urandom": "ext_random", "huge.yaml": "ext_huge",
                "fifo": "ext_fifo", "loop_b.yaml": "loop_a"}[target]
        (tmp / f"{name}.yaml").write_text(f"extends: {target}\nname: x\n")
    (tmp / "loop_b.yaml").write_text("extends: loop_a.yaml\n")
    if not (tmp / "fifo").exists():
        os.mkfifo(tmp / "fifo")
    for i in range(20):
        (tmp / f"chain{i}.yaml").write_text(f"extends: chain{i + 1}.yaml\n")
    (tmp / "chain20.yaml").write_text(RECIPE)
    (tmp / "a_file").write_text("not a folder\n")


CASES = [
    # recipe depth and size limits
    (["validate", "deep_list.yaml"], ("deep_list.yaml:4", "nested deeper than 32 levels")),
    (["validate", "deep_map.yaml"], ("deep_map.yaml:2", "nested deeper than 32 levels")),
    (["validate", "tiny.yaml", "--set", "description=" + _deep_list(500)], ("--set description", "deeper than 32")),
    (["run", "tiny.yaml", "--set", "model.pixels=" + _deep_map(500)], ("--set model.pixels", "deeper than 32")),
    (["ablate", "tiny.yaml", "--vary", "model.pixels=4," + _deep_list(300), "--dry-run"],
     ("--vary model.pixels", "deeper than 32")),
    (["validate", "huge.yaml"], ("huge.yaml", "larger than 1 MiB")),
    (["validate", "digits.yaml"], ("digits.yaml", "more than 4300 digits")),
    # extends: endless, huge, cyclic, too long
    (["validate", "ext_zero.yaml"], ("/dev/zero", "not a regular file")),
    (["validate", "ext_random.yaml"], ("/dev/urandom", "not a regular file")),
    (["run", "ext_fifo.yaml"], ("fifo", "not a regular file")),
    (["validate", "ext_huge.yaml"], ("huge.yaml", "larger than 1 MiB")),
    (["validate", "loop_a.yaml"], ("loop_a.yaml", "forms a cycle")),
    (["validate", "chain0.yaml"], ("chain0.yaml", "more than 16 recipes")),
    # split fractions must leave training images (no silent clamp)
    (["run", "tiny.yaml", "--set", "split.test=0.6", "--set", "split.val=0.5"],
     ("split.val", "leaves no training images")),
    (["validate", "tiny.yaml", "--set", "split.test=0.5", "--set", "split.val=0.3"],
     ("split.val", "more than half")),
    (["validate", "tiny.yaml", "--set", "split.folds=2", "--set", "split.val=0.5"], ("split.val", "1/split.folds")),
    (["validate", "tiny.yaml", "--set", "split.strategy=predefined", "--set", "split.val=0.7"], ("split.val",)),
    # seeds within what NumPy accepts
    (["run", "tiny.yaml", "--set", "seed=-1"], ("tiny.yaml", "seed: value -1", ">= 0")),
    (["run", "tiny.yaml", "--set", "seed=4294967296"], ("seed: value 4294967296", "2**32")),
    (["validate", "tiny.yaml", "--set", "seed=1.5"], ("seed: expected an integer",)),
    (["validate", "tiny.yaml", "--set", "seed=true"], ("seed: expected an integer",)),
    (["validate", "tiny.yaml", "--set", "seed=" + "9" * 40], ("seed: value", "too large")),
    (["validate", "tiny.yaml", "--set", "split.seed=4294967295"], ("split.seed", "2**32")),
    (["validate", "tiny.yaml", "--set", "dataset.generator_seed=-3"], ("dataset.generator_seed", ">= 0")),
    (["validate", "tiny.yaml", "--set", "seed=4294967295", "--set", "repeats=3"], ("seed: 4294967295 with repeats 3",)),
    (["run", "tiny.yaml", "--set", "seed=4294967290", "--repeats", "7"], ("tiny.yaml", "--repeats 7", "4294967289")),
    # numbers Python holds but no setting means
    (["validate", "tiny.yaml", "--set", "model.C=.inf"], ("model.C", "finite")),
    (["validate", "tiny.yaml", "--set", "model.C=.nan"], ("model.C", "finite")),
    # paths: $VAR and ~ expanded without a shell; roots that cannot be used
    (["run", "tiny.yaml", "--set", "dataset.kind=folder", "--set", "dataset.root=$BMBENCH_NO_SUCH_VAR/x"],
     ("dataset.root", "BMBENCH_NO_SUCH_VAR", "not set")),
    (["run", "tiny.yaml", "--set", "dataset.kind=folder", "--set", "dataset.root=~bmbench_no_such_user/x"],
     ("dataset.root", "~bmbench_no_such_user", "no such user")),
    (["run", "tiny.yaml", "--set", "dataset.kind=folder", "--set", "dataset.root=nowhere"],
     ("nowhere", "dataset.root does not exist")),
    (["run", "tiny.yaml", "--set", "dataset.kind=folder", "--set", "dataset.root=a_file"], ("a_file", "dataset.root")),
    (["run", "tiny.yaml", "--set", "dataset.root=a_file"], ("a_file", "synthetic is a file")),
]


@pytest.mark.parametrize("args, needles", CASES, ids=[" ".join(a)[:60] for a, _ in CASES])
def test_bad_recipe_input_is_one_line_and_changes_nothing(env, stored, args, needles):
    _files(env)
    before = tree_hash(stored / "results")
    res = CliRunner().invoke(main, args)
    one_error_line(res, *needles)
    assert tree_hash(stored / "results") == before


def test_a_deep_value_in_an_ablation_file_is_one_line(env, stored):
    (env / "abl.yaml").write_text("base: tiny.yaml\nvary: {model.pixels: [4, " + _deep_list(200) + "]}\n")
    before = tree_hash(stored / "results")
    one_error_line(CliRunner().invoke(main, ["ablate", "abl.yaml", "--dry-run"]), "abl.yaml", "deeper than 32")
    assert tree_hash(stored / "results") == before


def test_home_and_variables_expand_in_paths_without_a_shell(env, monkeypatch):
    monkeypatch.setenv("BMBENCH_TEST_ROOT", str(env / "imgs"))
    monkeypatch.setenv("HOME", str(env))
    res = CliRunner().invoke(main, ["validate", "tiny.yaml", "--set", "dataset.kind=folder",
                                    "--set", "dataset.root=$BMBENCH_TEST_ROOT/$(touch pwned)"])
    assert res.exit_code == 0, res.output
    assert yaml.safe_load(res.output)["dataset"]["root"] == f"{env / 'imgs'}/$(touch pwned)"
    assert not (env / "pwned").exists()
    res = CliRunner().invoke(main, ["validate", "tiny.yaml", "--set", "dataset.kind=folder",
                                    "--set", "dataset.root=~/cells"])
    assert res.exit_code == 0 and yaml.safe_load(res.output)["dataset"]["root"] == str(env / "cells")


def test_compare_seed_outside_numpy_range_is_a_usage_error(env):
    res = CliRunner().invoke(main, ["compare", "latest", "latest", "--seed", "-1"])
    assert res.exit_code == 2 and "Traceback" not in res.output and "--seed" in res.output


# --- a full disk ----------------------------------------------------------------------------

def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def _fail_writes_named(name):
    real = open

    def fake(file, mode="r", *args, **kwargs):
        if any(c in mode for c in "wxa") and Path(str(file)).name.endswith(name):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(file))
        return real(file, mode, *args, **kwargs)
    return fake


@pytest.mark.parametrize("where", ["os.replace", "metrics.json", "predictions.csv", "run.json", "split file"])
def test_a_full_disk_while_storing_a_run_commits_nothing(env, stored, monkeypatch, where):
    import builtins

    runs = stored / "results" / "runs"
    before = tree_hash(stored / "results")
    if where == "os.replace":
        monkeypatch.setattr(os, "replace", _enospc)
    elif where == "split file":
        monkeypatch.setattr(builtins, "open", _fail_writes_named(".json"))  # a new split's file first
    else:
        monkeypatch.setattr(builtins, "open", _fail_writes_named(where))
    extra = ["--set", "split.seed=7"] if where == "split file" else []
    res = CliRunner().invoke(main, ["run", "tiny.yaml", "-q", "--set", "name=full", *extra])
    monkeypatch.undo()
    line = one_error_line(res, "No space left on device")
    assert "free disk space" in line
    assert tree_hash(stored / "results") == before
    assert not [p for p in runs.iterdir() if p.name.startswith(".tmp-") or "full" in p.name]


def test_a_full_disk_while_generating_the_image_cache_leaves_no_entry(env, monkeypatch, tmp_path):
    from bmbench.data import synthetic

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "fresh-cache"))
    monkeypatch.setattr(synthetic.pathlib.Path, "write_bytes", _enospc)
    res = CliRunner().invoke(main, ["run", "tiny.yaml", "-q", "--results-dir", str(tmp_path / "r")])
    monkeypatch.undo()
    one_error_line(res, "fresh-cache", "No space left on device", "BMBENCH_CACHE")
    assert not list((tmp_path / "fresh-cache" / "synthetic").iterdir())
    assert not list((tmp_path / "r" / "runs").glob("*"))


@pytest.fixture
def tiny_disk(tmp_path):
    """A 16 kB tmpfs (needs root and mount); skipped where it cannot be made."""
    mnt = tmp_path / "disk"
    mnt.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16k", "tmpfs", str(mnt)],
                              capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("cannot mount a tmpfs here")
    if done.returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    yield mnt
    subprocess.run(["umount", str(mnt)], capture_output=True, timeout=20)


def test_a_really_full_disk_is_one_line(env, stored, tiny_disk):
    res = CliRunner().invoke(main, ["run", "tiny.yaml", "-q", "--results-dir", str(tiny_disk / "results")])
    one_error_line(res, "No space left on device")
    runs = tiny_disk / "results" / "runs"
    assert not runs.exists() or not list(runs.iterdir())


# --- intervals on test sets too small to resample -------------------------------------------

def test_report_on_one_test_image_per_class_says_n_too_small(env, tmp_path):
    results = tmp_path / "r"
    res = CliRunner().invoke(main, ["run", "tiny.yaml", "-q", "--set", "dataset.n_per_class=2",
                                    "--set", "split.test=0.5", "--set", "split.val=0",
                                    "--results-dir", str(results)])
    assert res.exit_code == 0, res.output
    run = next((results / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["n"] == 4 and all(v is None for v in metrics["ci"].values())
    res = CliRunner().invoke(main, ["report", "latest", "--no-explain", "--results-dir", str(results)])
    assert res.exit_code == 0, res.output
    assert "n too small" in (run / "report.html").read_text()


def test_report_draws_an_interval_that_misses_its_point_by_a_float_step(env, tmp_path):
    """Runs stored before: an interval [v + 1 ulp, v + 1 ulp] around the point v."""
    import numpy as np

    results = tmp_path / "r"
    assert CliRunner().invoke(main, ["run", "tiny.yaml", "-q", "--results-dir", str(results)]).exit_code == 0
    run = next((results / "runs").iterdir())
    metrics = json.loads((run / "metrics.json").read_text())
    for name, value in list(metrics["ci"].items()):
        point = metrics.get(name)
        if isinstance(point, float):
            metrics["ci"][name] = [float(np.nextafter(point, 2)), float(np.nextafter(point, 2))]
    (run / "metrics.json").write_text(json.dumps(metrics))
    res = CliRunner().invoke(main, ["report", "latest", "--no-explain", "--results-dir", str(results)])
    assert res.exit_code == 0 and res.exception is None, res.output
    board = CliRunner().invoke(main, ["leaderboard", "--format", "html", "--results-dir", str(results),
                                      "--out", str(tmp_path / "board.html")])
    assert board.exit_code == 0 and board.exception is None, board.output
