"""The documented cluster route, end to end: a `dask scheduler` and `dask worker` processes
started as a user starts them (on loopback), `bmbench features` and `bmbench ablate` pointed
at the scheduler's address, on a tree in the Matek 2021 layout; the tables and the scores
equal the local backend's."""

import json

import pandas as pd
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.data.synthetic_tree import generate_matek_tree
from bmbench.runs.store import list_runs

pytest.importorskip("distributed")
pytestmark = pytest.mark.slow  # starts 3 processes and trains 6 small models: about 40 s

RECIPE = """name: matekxgb
dataset: {{kind: matek_bm, root: {root}}}
split: {{test: 0.3, val: 0.2}}
model: {{family: classical, features: [shape, color], feature_size: 64, n_estimators: 15, early_stopping: 5}}
"""


@pytest.fixture(scope="module")
def tree(tmp_path_factory):
    return generate_matek_tree(tmp_path_factory.mktemp("matek") / "tree", 40, size=64)


@pytest.fixture(scope="module")
def address(tmp_path_factory):
    """A scheduler and 2 one-thread workers (own feature cache) on 127.0.0.1."""
    from benchmarks.bigdata import loopback_cluster

    folder = tmp_path_factory.mktemp("cluster")
    with loopback_cluster(folder, 2, {"BMBENCH_CACHE": str(folder / "worker-cache")}) as addr:
        yield addr


def _invoke(*args, cache):
    result = CliRunner().invoke(main, list(args), env={"BMBENCH_CACHE": str(cache)})
    assert result.exit_code == 0, result.output
    return result


def test_features_on_the_cluster_equal_the_local_table(tree, address, tmp_path):
    common = ["features", str(tree), "--kind", "matek_bm", "--families", "shape,color", "-q"]
    remote = _invoke(*common, "--out", str(tmp_path / "dask.parquet"), "--backend", "dask",
                     "--scheduler", address, cache=tmp_path / "client-cache")
    assert f"dask backend at {address}: 2 worker(s), 2 thread(s)" in remote.output
    _invoke(*common, "--out", str(tmp_path / "local.parquet"), cache=tmp_path / "local-cache")
    a, b = pd.read_parquet(tmp_path / "local.parquet"), pd.read_parquet(tmp_path / "dask.parquet")
    assert len(a) == 40 and a["path"].str.match(r"(BLA|LYT|MON|NGS)/0001-1000/\1_000\d\d\.jpg").all()
    pd.testing.assert_frame_equal(a, b)
    assert not (tmp_path / "client-cache" / "features").exists()  # the workers extracted


def test_an_ablation_on_the_cluster_scores_as_the_local_backend(tree, address, tmp_path):
    recipe = tmp_path / "matekxgb.yaml"
    recipe.write_text(RECIPE.format(root=tree))
    common = ["ablate", str(recipe), "--vary", "model.features=[shape],[color]", "--id", "same", "-q"]
    _invoke(*common, "--results-dir", str(tmp_path / "local"), cache=tmp_path / "cache")
    remote = _invoke(*common, "--results-dir", str(tmp_path / "dask"), "--backend", "dask",
                     "--scheduler", address, cache=tmp_path / "cache")
    assert "3 run(s) done now" in remote.output
    runs = {side: {r.info["tags"]["variant"]: r for r in list_runs(tmp_path / side)} for side in ("local", "dask")}
    assert set(runs["local"]) == set(runs["dask"]) == {"base", "features=[shape]", "features=[color]"}
    for variant, here in runs["local"].items():
        there = runs["dask"][variant]
        assert here.metrics == there.metrics
        assert here.info["split_fingerprint"] == there.info["split_fingerprint"]
        pd.testing.assert_frame_equal(pd.read_csv(here.path / "predictions.csv"),
                                      pd.read_csv(there.path / "predictions.csv"))
        assert json.loads((there.path / "run.json").read_text())["recipe_fingerprint"] == here.info["recipe_fingerprint"]


def test_a_study_on_the_cluster_shares_one_database(tree, address, tmp_path):
    """`bmbench tune --backend dask`: one trial loop per worker thread, every worker writing
    to the same study database (a SQLite file the loopback workers can reach); the best
    trial comes back as an ordinary run in this process's store."""
    import optuna

    recipe = tmp_path / "matekxgb.yaml"
    recipe.write_text(RECIPE.format(root=tree) + "tune: {trials: 6, space: {model.max_depth: {int: [2, 4]}}}\n")
    out = _invoke("tune", str(recipe), "--backend", "dask", "--scheduler", address, "--study", "cluster",
                  "--results-dir", str(tmp_path / "res"), "-q", cache=tmp_path / "cache")
    assert "tuned 6 trials" in out.output
    study = optuna.load_study(study_name="cluster", storage=f"sqlite:///{tmp_path / 'res/studies/cluster/study.db'}")
    done = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert 6 <= len(done) <= 7 and len({t.user_attrs["worker"] for t in done}) == 2  # both workers took trials
    (run,) = list_runs(tmp_path / "res")
    assert run.info["tuning"]["trials"] == 6
