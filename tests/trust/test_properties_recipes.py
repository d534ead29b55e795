"""Property-based test: a mutated recipe is either valid or one clean error line.

Hypothesis deletes keys, swaps types, puts huge/negative/NaN/inf numbers, deep nesting,
unicode, unknown keys and lists where scalars belong into the tiny synthetic recipe, then
runs ``bmbench validate`` (every example) and ``bmbench run`` (a bounded few) through
click's CliRunner: exit 0, or exit 2 with exactly one ``Error:`` line; never a traceback.
"""

from __future__ import annotations

import copy
import math

import pytest
import yaml
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bmbench.cli import main

BASE = {
    "name": "tiny",
    "dataset": {"kind": "synthetic", "n_per_class": 10, "render_size": 64, "image_size": 32},
    "split": {"test": 0.25, "val": 0.1},
    "model": {"family": "baseline", "pixels": 8},
}
KEYS = [("name",), ("seed",), ("repeats",), ("description",), ("dataset", "kind"),
        ("dataset", "n_per_class"), ("dataset", "image_size"), ("dataset", "render_size"),
        ("dataset", "root"), ("dataset", "classes"), ("dataset", "label_map"), ("dataset", "max_pixels"),
        ("dataset", "generator_seed"), ("split", "test"), ("split", "val"), ("split", "seed"),
        ("split", "folds"), ("split", "strategy"), ("model", "family"), ("model", "pixels"),
        ("model", "C"), ("train", "epochs"), ("train", "patience"), ("train", "fraction"),
        ("train", "augment"), ("train", "jobs"), ("evaluate",), ("dataset", "preprocess"),
        ("dataset", "microns_per_pixel"), ("extends",), ("dataset", "ids")]


def _deep(n: int, leaf, as_map: bool):
    for _ in range(n):
        leaf = {"a": leaf} if as_map else [leaf]
    return leaf


scalars = st.one_of(
    st.none(), st.booleans(),
    st.integers(min_value=-2 ** 70, max_value=2 ** 70),
    st.sampled_from([0, -1, 1, 2 ** 32 - 1, 2 ** 32, 2 ** 63, 10 ** 30]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0, 0.5, 0.999999]),
    st.text(max_size=20), st.sampled_from(["~", "~nobody_here/x", "$HOME", "${NOPE_VAR}", "/dev/zero",
                                           "..", "/", "ümlaut✓", "\u202e", "a\x00b", "none", "imagenet"]),
)
values = st.one_of(
    scalars,
    st.lists(scalars, max_size=4),
    st.dictionaries(st.text(max_size=8), scalars, max_size=3),
    st.builds(_deep, st.integers(1, 300), scalars, st.booleans()),
)
mutation = st.one_of(
    st.tuples(st.just("set"), st.sampled_from(KEYS), values),
    st.tuples(st.just("delete"), st.sampled_from(KEYS), st.none()),
    st.tuples(st.just("unknown"), st.sampled_from([(), ("dataset",), ("model",), ("split",), ("train",)]),
              st.text(min_size=1, max_size=10)),
    st.tuples(st.just("section"), st.sampled_from(["dataset", "model", "split", "train"]), values),
)


def apply(recipe: dict, m) -> None:
    op, key, value = m
    if op == "set" or op == "delete":
        node = recipe
        for part in key[:-1]:
            if not isinstance(node.get(part), dict):
                node[part] = {}
            node = node[part]
        if op == "set":
            node[key[-1]] = value
        else:
            node.pop(key[-1], None)
    elif op == "unknown":
        node = recipe
        for part in key:
            node = node.setdefault(part, {}) if isinstance(node.get(part, {}), dict) else {}
        node[f"x_{value}"] = 1
    else:
        recipe[key] = value


def dump(recipe: dict) -> str:
    """YAML text (nesting deeper than the emitter's own recursion is written as JSON-like flow)."""
    try:
        return yaml.safe_dump(recipe, allow_unicode=True, default_flow_style=None)
    except RecursionError:
        return repr(recipe)


def assert_clean(res) -> None:
    assert res.exception is None or isinstance(res.exception, SystemExit), (
        f"{type(res.exception).__name__}: {res.exception}\n{res.output}")
    assert "Traceback" not in res.output, res.output
    assert res.exit_code in (0, 2), res.output
    if res.exit_code == 2:
        lines = [line for line in res.output.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("Error: "), res.output


@pytest.fixture(scope="module")
def place(tmp_path_factory):
    return tmp_path_factory.mktemp("props")


@settings(max_examples=100, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(mutations=st.lists(mutation, min_size=1, max_size=4))
def test_validate_a_mutated_recipe_is_clean(place, monkeypatch, mutations):
    monkeypatch.setenv("BMBENCH_CACHE", str(place / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(place / "results"))
    recipe = copy.deepcopy(BASE)
    for m in mutations:
        apply(recipe, m)
    path = place / "mutated.yaml"
    path.write_text(dump(recipe), encoding="utf-8", errors="surrogatepass")
    assert_clean(CliRunner().invoke(main, ["validate", str(path)]))


@settings(max_examples=12, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                                 HealthCheck.data_too_large])
@given(mutations=st.lists(st.tuples(st.just("set"), st.sampled_from(
    [("seed",), ("split", "seed"), ("split", "test"), ("split", "val"), ("model", "pixels"), ("model", "C"),
     ("dataset", "image_size"), ("train", "fraction"), ("dataset", "n_per_class")]), scalars), min_size=1, max_size=2))
def test_run_a_mutated_recipe_is_clean(place, monkeypatch, mutations):
    monkeypatch.setenv("BMBENCH_CACHE", str(place / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(place / "results"))
    recipe = copy.deepcopy(BASE)
    for m in mutations:
        apply(recipe, m)
    recipe["dataset"]["n_per_class"] = min(recipe["dataset"].get("n_per_class") or 10, 10) \
        if isinstance(recipe["dataset"].get("n_per_class"), int) else recipe["dataset"].get("n_per_class")
    path = place / "mutated_run.yaml"
    path.write_text(dump(recipe), encoding="utf-8", errors="surrogatepass")
    assert_clean(CliRunner().invoke(main, ["run", str(path), "-q"]))
