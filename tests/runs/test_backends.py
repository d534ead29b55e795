"""Execution backends: local worker processes and a dask.distributed cluster give the same
results as this process; run folders travel as data; threads are shared out."""

import json
import os
import subprocess
import sys

import pandas as pd
import pytest

from bmbench.config.ablation import ablation_from_options
from bmbench.runs.sweep import run_ablation
from bmbench.views.ablation import build_report
from bmbench.core.errors import BmbenchError, StoreError
from bmbench.runs.backends import (DaskBackend, LocalBackend, Task, execute, store_bundle,
                               thread_share)
from bmbench.runs.store import list_runs, load_record

distributed = pytest.importorskip("distributed")

CLASSICAL = """
name: tinyxgb
dataset:
  kind: synthetic
  n_per_class: 10
  render_size: 64
split: {test: 0.3, val: 0.2}
model:
  family: classical
  features: [shape, color]
  feature_size: 64
  n_estimators: 15
  early_stopping: 5
train:
  jobs: 2
"""


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One feature/image cache for the module, set before the cluster's workers start (they
    inherit the environment)."""
    path = tmp_path_factory.mktemp("cache")
    old = os.environ.get("BMBENCH_CACHE")
    os.environ["BMBENCH_CACHE"] = str(path)
    yield path
    if old is None:
        os.environ.pop("BMBENCH_CACHE", None)
    else:
        os.environ["BMBENCH_CACHE"] = old


@pytest.fixture(scope="module")
def cluster(cache_dir):
    """A real two-process dask cluster on the loopback interface, no dashboard (the
    scheduler's remaining HTTP routes on a free loopback port, not 8787)."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
                      ) as lc, Client(lc) as client:
        yield client


@pytest.fixture
def recipe_path(tmp_path, cache_dir):
    p = tmp_path / "tinyxgb.yaml"
    p.write_text(CLASSICAL)
    return p


def _by_variant(results):
    return {(r.info["tags"]["variant"], r.info["tags"]["repeat"]): r
            for r in list_runs(results) if r.info.get("tags")}


def test_dask_cluster_runs_an_ablation_with_the_local_backends_results(recipe_path, tmp_path, cluster):
    ab = ablation_from_options(recipe_path, ["model.features=[shape],[shape,color]",
                                             "dataset.classes=[blast,nosuch]"], ablation_id="same")
    assert [v.label for v in ab.variants] == ["base", "features=[shape]", "classes=[blast, nosuch]"]
    here, there = tmp_path / "local", tmp_path / "dask"
    local = run_ablation(ab, here, LocalBackend(1))
    backend = DaskBackend(client=cluster)
    assert "2 worker(s), 2 thread(s)" in backend.describe()
    remote = run_ablation(ab, there, backend)
    # the bad class fails on both, is recorded, and does not stop the others
    for outcome in (local, remote):
        assert len(outcome.completed) == 2 and len(outcome.failed) == 1
        assert "nosuch" in outcome.failed[0].error
    assert all(r.worker.split(":")[1] != str(os.getpid()) for r in remote.completed)
    a, b = _by_variant(here), _by_variant(there)
    assert set(a) == set(b) == {("base", 0), ("features=[shape]", 0)}
    for key in a:
        assert a[key].metrics == b[key].metrics  # identical scores, intervals included
        pa = pd.read_csv(a[key].path / "predictions.csv")
        pb = pd.read_csv(b[key].path / "predictions.csv")
        pd.testing.assert_frame_equal(pa, pb)
        assert a[key].info["recipe_fingerprint"] == b[key].info["recipe_fingerprint"]
        assert sorted(p.name for p in a[key].path.rglob("*")) == sorted(p.name for p in b[key].path.rglob("*"))
    # the client stored the runs and their split; the workers' temporary stores are gone
    assert list((there / "splits").glob("*.json"))
    ta = build_report(here, "same", ("macro_f1",), n_resamples=200).tables["macro_f1"]
    tb = build_report(there, "same", ("macro_f1",), n_resamples=200).tables["macro_f1"]
    pd.testing.assert_frame_equal(ta.drop(columns=["status"]), tb.drop(columns=["status"]))
    # a rerun on the cluster skips the stored runs and retries only the failed one
    again = run_ablation(ab, there, backend)
    assert again.skipped == 2 and len(again.failed) == 1 and not again.completed


def test_local_worker_processes_match_this_process(recipe_path, tmp_path):
    ab = ablation_from_options(recipe_path, ["model.features=[shape],[color]"], ablation_id="procs")
    one, two = tmp_path / "one", tmp_path / "two"
    assert run_ablation(ab, one, LocalBackend(1)).ok
    outcome = run_ablation(ab, two, LocalBackend(2))
    assert outcome.ok and len(outcome.completed) == 3
    assert {r.worker for r in outcome.completed} != {f"{os.uname().nodename}:{os.getpid()}"}
    a, b = _by_variant(one), _by_variant(two)
    assert set(a) == set(b) and all(a[k].metrics == b[k].metrics for k in a)


def test_dask_feature_extraction_matches_local(tmp_path, cluster, cache_dir):
    from click.testing import CliRunner

    from bmbench.cli import main
    from bmbench.data.synthetic import generate

    root = tmp_path / "cells"
    generate(root, n_per_class=6, size=64)
    runner = CliRunner()
    address = cluster.scheduler.address
    # the cluster first, while no feature is cached: its workers compute every row
    remote = runner.invoke(main, ["features", str(root), "--kind", "folder", "--families", "shape,color",
                                  "--out", str(tmp_path / "dask.csv"), "--backend", "dask",
                                  "--scheduler", address, "-q"])
    assert remote.exit_code == 0, remote.output
    assert f"dask backend at {address}: 2 worker(s)" in remote.output
    local = runner.invoke(main, ["features", str(root), "--kind", "folder", "--families", "shape,color",
                                 "--out", str(tmp_path / "local.csv"), "-q"])
    assert local.exit_code == 0, local.output
    wrong = runner.invoke(main, ["features", str(root), "--out", str(tmp_path / "x.csv"),
                                 "--scheduler", address])
    assert wrong.exit_code == 2 and "--scheduler is for --backend dask" in wrong.output
    a, b = pd.read_csv(tmp_path / "local.csv"), pd.read_csv(tmp_path / "dask.csv")
    assert len(a) == 24
    pd.testing.assert_frame_equal(a, b)


def test_unreachable_scheduler_and_missing_address_are_one_line_errors():
    with pytest.raises(BmbenchError, match="needs --scheduler"):
        DaskBackend(None)
    with pytest.raises(BmbenchError, match=r"cannot reach the dask scheduler at tcp://127.0.0.1:9.*dask scheduler"):
        DaskBackend("tcp://127.0.0.1:9", timeout=1)


def test_a_run_travels_as_data_and_is_stored_atomically(recipe_path, tmp_path):
    from bmbench.config.recipe import load_recipe

    recipe = load_recipe(recipe_path, ["model.features=[shape]"])
    task = Task("t", recipe.to_dict(), recipe.source, {"ablation": "x"}, recipe.fingerprint())
    result = execute(task, None)
    assert result.ok and result.run_id is None
    bundle = result.bundle
    assert {"run.json", "metrics.json", "predictions.csv", "recipe.yaml"} <= set(bundle["files"])
    assert any(name.startswith("model/") for name in bundle["files"]) and len(bundle["splits"]) == 1
    folder = store_bundle(tmp_path / "store", bundle)
    record = load_record(folder)
    assert record.info["tags"] == {"ablation": "x"} and record.id == bundle["run_id"]
    assert store_bundle(tmp_path / "store", bundle) == folder  # idempotent
    for bad in ("../escape.txt", "/abs.txt", "model/../../x"):
        evil = dict(bundle, run_id="evil", files={bad: b"x"})
        with pytest.raises(StoreError, match="refusing"):
            store_bundle(tmp_path / "store", evil)
    assert not (tmp_path / "escape.txt").exists()
    assert sorted(p.name for p in (tmp_path / "store" / "runs").iterdir()) == [folder.name]
    # a recipe that resolves differently on the worker is refused, not silently run
    wrong = execute(Task("w", recipe.to_dict(), recipe.source, {}, "0" * 16), None)
    assert not wrong.ok and "same bmbench version" in wrong.error


def test_each_parallel_run_gets_its_share_of_the_cores():
    assert thread_share(2, cores=2) == 1 and thread_share(1, cores=8) == 8
    assert thread_share(3, cores=8) == 2 and thread_share(16, cores=2) == 1
    code = """
import json, os
from bmbench.runs.backends import apply_thread_share
from bmbench.runs.context import RunContext
from bmbench.config.recipe import recipe_from_dict
apply_thread_share(1)
import numpy  # noqa
from threadpoolctl import threadpool_info
r = recipe_from_dict({"name": "x", "dataset": {"kind": "synthetic"}, "model": {"family": "baseline"},
                      "train": {"jobs": 2}})
print(json.dumps({"jobs": RunContext.for_recipe(r).jobs, "omp": os.environ["OMP_NUM_THREADS"],
                  "tf": os.environ["TF_NUM_INTRAOP_THREADS"],
                  "pools": sorted({p["num_threads"] for p in threadpool_info()})}))
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    facts = json.loads(out.stdout.strip().splitlines()[-1])
    assert facts["jobs"] == 1 and facts["omp"] == "1" and facts["tf"] == "1"
    assert facts["pools"] in ([], [1])


def test_dask_workers_get_a_share_of_their_hosts_cores(cluster):
    from bmbench.runs.backends import host_shares

    cores = os.cpu_count()
    assert host_shares(cluster) == {"127.0.0.1": max(1, cores // 2)}
