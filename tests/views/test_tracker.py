"""Runs sent to MLflow: a local SQLite store and a real ``mlflow server`` on loopback."""

import json
import os
import shutil
import socket
import subprocess
import time
import urllib.request

import pytest
import yaml
from click.testing import CliRunner

from bmbench import __version__
from bmbench.cli import main
from bmbench.runs.runner import run_recipe

pytest.importorskip("mlflow", reason="MLflow is not installed (pip install 'bmbench[mlflow]')")
pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning:mlflow.*")  # MLflow's SQLAlchemy use
from mlflow import MlflowClient  # noqa: E402


def cli(*args, env=None):
    return CliRunner().invoke(main, [str(a) for a in args], env=env)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def empty_db(tmp_path_factory):
    """An MLflow SQLite database with its tables made (the migrations take seconds): each
    test copies it."""
    path = tmp_path_factory.mktemp("mlflow") / "empty.db"
    MlflowClient(f"sqlite:///{path}").search_experiments()
    return path


@pytest.fixture
def local_store(tmp_path, empty_db, monkeypatch):
    """A local MLflow store: SQLite, artifacts in ./mlruns of the test's folder."""
    shutil.copy(empty_db, tmp_path / "mlflow.db")
    monkeypatch.chdir(tmp_path)
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def flat(d, prefix=""):
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v if isinstance(v, str) else json.dumps(v, sort_keys=True)
    return out


def expected_metrics(folder) -> dict:
    """What metrics.json (and each evaluation's) says, in the names the docs give."""
    out = {}
    sources = [("", folder)] + [(f"eval.{e.name}.", e) for e in sorted((folder / "evaluations").glob("*"))]
    for prefix, f in sources:
        m = json.loads((f / "metrics.json").read_text())
        out.update({prefix + k: v for k, v in m.items() if isinstance(v, (int, float))})
        for k, (low, high) in m.get("ci", {}).items():
            out[f"{prefix}{k}_ci_low"], out[f"{prefix}{k}_ci_high"] = low, high
        for cls, row in m["per_class"].items():
            out.update({f"{prefix}per_class.{cls}.{k}": v for k, v in row.items()})
    return out


def the_run(client, run_id):
    (exp,) = [e for e in client.search_experiments() if e.name == "bmbench"]
    runs = client.search_runs([exp.experiment_id], f"tags.`bmbench.run_id` = '{run_id}'")
    assert len(runs) == 1
    return runs[0]


def artifacts(client, run_id, path=None) -> set[str]:
    found = set()
    for a in client.list_artifacts(run_id, path):
        found |= artifacts(client, run_id, a.path) if a.is_dir else {a.path}
    return found


def test_a_run_round_trips_through_a_local_store(cross_recipe, tmp_path, local_store):
    long_text = "cells " * 1200  # 7200 characters: above MLflow's 6000 for a parameter
    folder = run_recipe(cross_recipe(extra=f"description: {long_text}"), tmp_path / "results")
    res = cli("export", "mlflow", "--results-dir", tmp_path / "results", "--tracking-uri", local_store)
    assert res.exit_code == 0, res.output
    assert f"{folder.name}: sent to MLflow, run " in res.output
    client = MlflowClient(local_store)
    run = the_run(client, folder.name)

    sent = run.data.metrics
    eval_ci = {k: v for k, v in sent.items() if k.startswith("eval.") and "_ci_" in k}
    assert {k: v for k, v in sent.items() if k not in eval_ci} == expected_metrics(folder)
    assert sent["eval.0-folder.macro_f1"] == json.loads(
        (folder / "evaluations/0-folder/metrics.json").read_text())["macro_f1"]
    # an evaluation stores no interval: the one sent is the one the leaderboard shows
    board = json.loads(cli("leaderboard", "--results-dir", tmp_path / "results", "--format", "json").output)
    (row,) = [r for b in board for r in b["rows"] if r["run"] == f"{folder.name}/evaluations/0-folder"]
    assert len(eval_ci) == 24 and row["macro_f1_ci_low"] < row["macro_f1_ci_high"]
    for bound in ("low", "high"):
        assert sent[f"eval.0-folder.macro_f1_ci_{bound}"] == pytest.approx(row[f"macro_f1_ci_{bound}"], abs=1e-9)
    recipe = flat(yaml.safe_load((folder / "recipe.yaml").read_text()))
    params = run.data.params
    assert params.keys() == recipe.keys() and params["model.family"] == "baseline"
    assert len(params["description"]) == 6000 and params["description"].endswith("...(cut)")
    assert {k: v for k, v in params.items() if k != "description"} == {
        k: v for k, v in recipe.items() if k != "description"}
    info = json.loads((folder / "run.json").read_text())
    tags = run.data.tags
    assert tags["bmbench.split_fingerprint"] == info["split_fingerprint"]
    assert (tags["bmbench.dataset"], tags["bmbench.family"], tags["bmbench.version"]) == (
        "folder", "baseline", __version__)
    assert tags["bmbench.recipe"] == "cross" and tags["bmbench.complete"] == "true"

    found = artifacts(client, run.info.run_id)
    assert {"report.html", "MODEL_CARD.md", "predictions.csv", "metrics.json", "recipe.yaml",
            "figures/confusion_matrix.png", "evaluations/0-folder/metrics.json"} <= found
    local = client.download_artifacts(run.info.run_id, "figures/confusion_matrix.png", str(tmp_path))
    assert open(local, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert not (folder / "report.html").exists() and not (folder / "figures").exists()  # the folder is not written


def test_sending_again_finds_the_run_and_replaces_a_send_cut_short(recipe_path, tmp_path, local_store):
    folder = run_recipe(recipe_path, tmp_path / "results")
    (tmp_path / "secret.txt").write_text("not for the tracker")
    (folder / "MODEL_CARD.md").unlink()
    (folder / "MODEL_CARD.md").symlink_to(tmp_path / "secret.txt")  # a crafted run folder
    args = ("export", "mlflow", folder, "--tracking-uri", local_store, "--experiment", "bmbench")
    assert cli(*args).exit_code == 0
    client = MlflowClient(local_store)
    first = the_run(client, folder.name).info.run_id
    assert "MODEL_CARD.md" not in artifacts(client, first) and "predictions.csv" in artifacts(client, first)
    res = cli(*args)
    assert res.exit_code == 0 and f"{folder.name}: already in MLflow, run {first}" in res.output
    client.delete_tag(first, "bmbench.complete")  # as if the first send had stopped half-way
    assert "sent to MLflow" in cli(*args).output
    again = the_run(client, folder.name)
    assert again.info.run_id != first and again.data.metrics == expected_metrics(folder)


def test_a_tracker_that_is_down_is_one_warning_and_the_run_is_stored(recipe_path, tmp_path):
    env = {"MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    uri = f"http://127.0.0.1:{free_port()}"
    res = cli("run", recipe_path, "--results-dir", tmp_path / "results", "-q", "--track", "mlflow",
              "--tracking-uri", uri, env=env)
    assert res.exit_code == 0, res.output
    (folder,) = (tmp_path / "results" / "runs").iterdir()
    assert (folder / "metrics.json").is_file()
    lines = [line for line in res.stderr.splitlines() if "MLflow" in line]
    assert lines == [f"bmbench: MLflow at {uri} cannot be reached (ConnectionError); the run is stored in "
                     f"{folder}: send it later with `bmbench export mlflow {folder.name}`"]
    assert "Traceback" not in res.output
    down = cli("export", "mlflow", "--results-dir", tmp_path / "results", "--tracking-uri", uri, env=env)
    assert down.exit_code == 2 and down.stderr.strip() == f"Error: MLflow at {uri} cannot be reached (ConnectionError)"


def test_track_without_mlflow_installed_stops_before_the_run(recipe_path, tmp_path, monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    res = cli("run", recipe_path, "--results-dir", tmp_path / "results", "--track", "mlflow")
    assert res.exit_code == 2
    assert res.stderr == "Error: --track mlflow: MLflow is not installed; pip install 'bmbench[mlflow]'\n"
    assert not (tmp_path / "results").exists()


def test_export_with_nothing_stored_or_a_damaged_run_is_one_line(tmp_path, local_store, recipe_path):
    res = cli("export", "mlflow", "--results-dir", tmp_path / "results", "--tracking-uri", local_store)
    assert res.exit_code == 2 and res.stderr.startswith("Error: no runs stored yet")
    folder = run_recipe(recipe_path, tmp_path / "results")
    (folder / "metrics.json").write_text("{")
    res = cli("export", "mlflow", folder, "--tracking-uri", local_store)
    assert res.exit_code == 2 and res.stderr.count("\n") == 1 and "metrics.json: not valid JSON" in res.stderr


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory, empty_db):
    """``mlflow server`` on a free loopback port, SQLite backend and artifacts in a temporary
    folder; stopped at teardown."""
    if shutil.which("mlflow") is None:
        pytest.skip("the `mlflow` executable is not on PATH (pip install mlflow)")
    where = tmp_path_factory.mktemp("server")
    shutil.copy(empty_db, where / "mlflow.db")
    port = free_port()
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with open(where / "server.log", "wb") as log:
        proc = subprocess.Popen(
            ["mlflow", "server", "--host", "127.0.0.1", "--port", str(port), "--workers", "1",
             "--backend-store-uri", f"sqlite:///{where / 'mlflow.db'}",
             "--artifacts-destination", str(where / "artifacts")],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    uri = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 180  # a loaded CI machine; seconds when idle
        while True:
            try:
                if urllib.request.urlopen(f"{uri}/health", timeout=2).read().strip() == b"OK":
                    break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"mlflow server did not start: {(where / 'server.log').read_text()[-2000:]}")
            time.sleep(0.25)
        yield uri
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(timeout=30)


def test_run_track_sends_the_run_to_an_mlflow_server(mlflow_server, recipe_path, tmp_path):
    res = cli("run", recipe_path, "--results-dir", tmp_path / "results", "--track", "mlflow",
              "--tracking-uri", mlflow_server)
    assert res.exit_code == 0, res.output
    (folder,) = (tmp_path / "results" / "runs").iterdir()
    client = MlflowClient(mlflow_server)
    run = the_run(client, folder.name)
    url = f"{mlflow_server}/#/experiments/{run.info.experiment_id}/runs/{run.info.run_id}"
    assert f"{folder.name}: sent to MLflow, {url}" in res.output
    assert "View run" not in res.output  # MLflow's own link lines are not printed besides bmbench's
    assert run.data.metrics == expected_metrics(folder)
    info = json.loads((folder / "run.json").read_text())
    assert run.data.tags["bmbench.split_fingerprint"] == info["split_fingerprint"]
    assert {"report.html", "MODEL_CARD.md", "predictions.csv", "figures/confusion_matrix.png"} <= artifacts(
        client, run.info.run_id)
    again = cli("export", "mlflow", "latest", "--results-dir", tmp_path / "results", "--tracking-uri", mlflow_server)
    assert f"{folder.name}: already in MLflow, {url}" in again.output
