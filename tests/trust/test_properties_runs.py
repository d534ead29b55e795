"""Property-based check of everything bmbench reads back from a run folder: any mutation of
any file of a stored run (truncation, flipped bytes, random bytes, a deleted file, a JSON value
of another type) ends every command that reads it with success or one ``Error:`` line, never a
traceback, and never changes what is stored."""

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bmbench.cli import main

RECIPE = """
name: {name}
dataset: {{kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}}
split: {{test: 0.25, val: 0.1}}
model: {model}
"""
MODELS = {"base": "{family: baseline, pixels: 8}",
          "logit": "{family: classical, classifier: logistic_regression, features: [shape, color]}"}
JSON_VALUES = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
                           lambda inner: st.lists(inner, max_size=3)
                           | st.dictionaries(st.text(max_size=5), inner, max_size=3), max_leaves=6)


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    env = {"BMBENCH_CACHE": str(root / "cache"), "BMBENCH_RESULTS": str(root / "results")}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        for name, model in MODELS.items():
            (root / f"{name}.yaml").write_text(RECIPE.format(name=name, model=model))
            res = invoke("run", root / f"{name}.yaml", "-q")
            assert res.exit_code == 0, res.output
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    images = root / "cells"
    images.mkdir()
    data = next((root / "cache").rglob("*.png"))
    for i in range(3):
        shutil.copy(data, images / f"c{i}.png")
    return root


def snapshot(results: Path) -> dict:
    return {str(p.relative_to(results)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(results.rglob("*")) if p.is_file() and "index" not in p.name}


def mutate(path: Path, how: str, data) -> None:
    raw = path.read_bytes()
    if how == "truncate":
        path.write_bytes(raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))])
    elif how == "flip":
        buf = bytearray(raw)
        for i in data.draw(st.lists(st.integers(0, max(0, len(raw) - 1)), min_size=1, max_size=8)):
            if buf:
                buf[i] ^= data.draw(st.integers(1, 255))
        path.write_bytes(bytes(buf))
    elif how == "random":
        path.write_bytes(data.draw(st.binary(max_size=200)))
    elif how == "delete":
        path.unlink()
    elif how == "json":
        try:
            doc = json.loads(raw)
        except ValueError:
            doc = None
        if isinstance(doc, dict) and doc:
            key = data.draw(st.sampled_from(sorted(doc)))
            doc[key] = data.draw(JSON_VALUES)
        else:
            doc = data.draw(JSON_VALUES)
        path.write_text(json.dumps(doc))


def assert_clean(res, what):
    assert res.exception is None or isinstance(res.exception, SystemExit), (what, res.output, res.exc_info)
    assert res.exit_code in (0, 2), (what, res.exit_code, res.output)
    assert "Traceback" not in res.output, (what, res.output)
    if res.exit_code == 2:
        errors = [line for line in res.output.splitlines() if line.startswith("Error:")]
        assert len(errors) == 1, (what, res.output)


@settings(max_examples=20, deadline=None, derandomize=True, phases=[Phase.explicit, Phase.generate],
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(data=st.data())
def test_a_mutated_run_folder_gives_success_or_one_line_and_changes_nothing(pristine, tmp_path_factory, data,
                                                                           monkeypatch):
    work = tmp_path_factory.mktemp("case")
    shutil.copytree(pristine / "results", work / "results")
    monkeypatch.setenv("BMBENCH_RESULTS", str(work / "results"))
    monkeypatch.setenv("BMBENCH_CACHE", str(pristine / "cache"))
    runs = sorted((work / "results" / "runs").iterdir())
    victim = data.draw(st.sampled_from(runs))
    files = sorted(p for p in victim.rglob("*") if p.is_file())
    target = data.draw(st.sampled_from(files))
    how = data.draw(st.sampled_from(["truncate", "flip", "random", "delete", "json"]))
    mutate(target, how, data)
    before = snapshot(work / "results")
    other = next(r for r in runs if r != victim)
    for args in (["leaderboard"], ["compare", victim, other], ["report", victim, "--out", work / "r.html"],
                 ["predict", victim, pristine / "cells", "--out", work / "p.csv"]):
        assert_clean(invoke(*args), (target.name, how, args[0]))
    after = snapshot(work / "results")
    changed = {k for k in before if after.get(k) != before[k]}
    added = {k for k in after if k not in before and not _report_output(k)}
    assert not changed and not added, (target.name, how, changed, added)


def _report_output(rel: str) -> bool:
    """``report`` writes its figures into the run folder by design: derived files, never a stored one."""
    return "/figures/" in rel
