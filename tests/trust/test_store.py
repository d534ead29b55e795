"""Issue #30, the run store: damaged runs never take the store down, and a results folder
shared by several hosts (or PID namespaces) never loses a run to another host's sweep."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.core.errors import StoreError
from bmbench.runs.index import StoreIndex
from bmbench.runs.store import STALE_AFTER, RunWriter, list_runs, sweep_stale, tmp_name

RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.1}
model: {family: baseline, pixels: 8}
"""
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def template(tmp_path_factory):
    """Two healthy runs of the same split, made once: ``(results, cache, recipe)``."""
    root = tmp_path_factory.mktemp("store")
    (root / "tiny.yaml").write_text(RECIPE)
    env = {"BMBENCH_CACHE": str(root / "cache"), "BMBENCH_RESULTS": str(root / "results")}
    for extra in ([], ["--set", "name=other", "--set", "model.pixels=4"]):
        res = CliRunner(env=env).invoke(main, ["run", str(root / "tiny.yaml"), "-q", *extra])
        assert res.exit_code == 0, res.output
    return root


@pytest.fixture
def results(template, tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(template / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    shutil.copytree(template / "results", tmp_path / "results")
    return tmp_path / "results"


def runs_of(results):
    healthy, victim = sorted(p for p in (results / "runs").iterdir() if not p.name.startswith("."))
    return healthy, victim


def digest(folder: Path) -> str:
    """Every stored file of the runs (names and bytes): what no command may change."""
    h = hashlib.sha256()
    for p in sorted((folder / "runs").rglob("*")):
        if p.is_file() and p.name not in ("report.html",) and "figures" not in p.parts:
            h.update(str(p.relative_to(folder)).encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


# each damage: (file it names, how to make it)
DAMAGE = {
    "run.json dataset is a string": ("run.json", lambda f: edit_json(f / "run.json", lambda d: d.update(dataset="x"))),
    "run.json missing": ("run.json", lambda f: (f / "run.json").unlink()),
    "run.json truncated": ("run.json", lambda f: (f / "run.json").write_text((f / "run.json").read_text()[:50])),
    "run.json split fingerprint a number": (
        "run.json", lambda f: edit_json(f / "run.json", lambda d: d.update(split_fingerprint=7))),
    "run.json timings a string": (
        "run.json", lambda f: edit_json(f / "run.json", lambda d: d["timings"].update(fit_seconds="fast"))),
    "run.json evaluation outside the run": (
        "run.json", lambda f: edit_json(f / "run.json", lambda d: d.update(evaluations=[
            {"folder": "../../../etc", "kind": "pbc", "n_images": 3}]))),
    "metrics.json number as a string": (
        "metrics.json", lambda f: edit_json(f / "metrics.json", lambda d: d.update(macro_f1="0.99"))),
    "metrics.json missing": ("metrics.json", lambda f: (f / "metrics.json").unlink()),
    "metrics.json a list": ("metrics.json", lambda f: (f / "metrics.json").write_text("[1, 2]")),
    "metrics.json random bytes": ("metrics.json", lambda f: (f / "metrics.json").write_bytes(os.urandom(300))),
    "metrics.json interval of strings": (
        "metrics.json", lambda f: edit_json(f / "metrics.json", lambda d: d["ci"].update(macro_f1=["a", "b"]))),
    "metrics.json confusion matrix of another size": (
        "metrics.json", lambda f: edit_json(f / "metrics.json", lambda d: d.update(confusion_matrix=[[1]]))),
    "predictions.csv random bytes": (
        "predictions.csv", lambda f: (f / "predictions.csv").write_bytes(b"path,true_label\n" + os.urandom(400))),
    "predictions.csv without label columns": (
        "predictions.csv", lambda f: (f / "predictions.csv").write_text(
            "\n".join(",".join(line.split(",")[3:]) for line in (f / "predictions.csv").read_text().splitlines()))),
}
RECORD_DAMAGE = [k for k, (name, _) in DAMAGE.items() if name != "predictions.csv"]


def lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.strip()]


@pytest.mark.parametrize("kind", list(DAMAGE))
def test_leaderboard_lists_the_healthy_runs_and_warns_once_about_the_damaged_one(results, kind):
    healthy, victim = runs_of(results)
    name, damage = DAMAGE[kind]
    damage(victim)
    before = digest(results)
    for extra in ([], ["--no-index"]):
        res = CliRunner().invoke(main, ["leaderboard", "--format", "json", *extra])
        assert res.exit_code == 0, res.output
        assert "Traceback" not in res.output
        listed = {row["run"] for board in json.loads(res.stdout) for row in board["rows"]}
        assert healthy.name in listed
        assert (victim.name in listed) == (name == "predictions.csv"), "a damaged record is skipped"
        warnings = [line for line in lines(res.stderr) if name in line]
        assert len(warnings) == 1 and victim.name in warnings[0], res.stderr
    assert digest(results) == before


#: Commands that read one damaged run (and a healthy one): ``(healthy, victim) -> arguments``.
READERS = {"report": lambda healthy, victim: ["report", victim, "--no-explain"],
           "compare": lambda healthy, victim: ["compare", healthy, victim]}


@pytest.mark.parametrize("command", list(READERS))
@pytest.mark.parametrize("kind", list(DAMAGE))
def test_report_or_compare_of_a_damaged_run_is_one_error_line(results, kind, command):
    healthy, victim = runs_of(results)
    name, damage = DAMAGE[kind]
    damage(victim)
    before = digest(results)
    res = CliRunner().invoke(main, READERS[command](healthy.name, victim.name))
    assert res.exit_code == 2, res.output
    out = lines(res.output)
    assert len(out) == 1 and out[0].startswith("Error: ") and name in out[0], res.output
    assert not (victim / "report.html").exists() and not (victim / "figures").exists()
    assert digest(results) == before


@pytest.mark.parametrize("kind", RECORD_DAMAGE)
def test_predict_with_a_damaged_run_is_one_error_line_and_writes_nothing(results, template, tmp_path, kind):
    _, victim = runs_of(results)
    name, damage = DAMAGE[kind]
    damage(victim)
    before = digest(results)
    image = next((template / "cache").rglob("*.png"))
    out_csv = tmp_path / "out.csv"
    res = CliRunner().invoke(main, ["predict", victim.name, str(image), "--out", str(out_csv)])
    assert res.exit_code == 2, res.output
    out = lines(res.output)
    assert len(out) == 1 and out[0].startswith("Error: ") and name in out[0], res.output
    assert not out_csv.exists()
    assert digest(results) == before


def test_a_damaged_record_never_enters_the_index_and_a_tampered_index_entry_is_not_trusted(results):
    healthy, victim = runs_of(results)
    edit_json(victim / "metrics.json", lambda d: d.update(accuracy="1.0"))
    with StoreIndex(results) as index:
        assert [r.path for r in list_runs(results, index)] == [healthy]
    import marshal
    import sqlite3

    db = sqlite3.connect(results / "index.sqlite")
    assert [row[0] for row in db.execute("SELECT folder FROM records")] == [healthy.name]
    blob = marshal.loads(db.execute("SELECT metrics FROM records").fetchone()[0])
    blob["macro_f1"] = "1.0"
    with db:
        db.execute("UPDATE records SET metrics = ?", (marshal.dumps(blob),))
    db.close()
    with StoreIndex(results) as index:
        (record,) = list_runs(results, index)
    assert isinstance(record.metrics["macro_f1"], float), "the folder is read again"


# --- a results folder shared by hosts --------------------------------------------------------------

def age(folder: Path, seconds: float) -> None:
    then = time.time() - seconds
    for p in (folder, *folder.iterdir()):
        os.utime(p, (then, then))


def test_sweep_leaves_other_hosts_alone_unless_untouched_past_the_age_limit(tmp_path):
    runs = tmp_path / "runs"
    runs.mkdir()
    dead = 4_000_000_000  # above any pid_max: no such process here
    here = tmp_name("20260101T000000Z-a-000001")
    folders = {
        "foreign, dead pid here": (f".tmp-20260101T000000Z-b-000002@otherhost.1234abcd@{dead}", True),
        "foreign, its pid alive here": (f".tmp-20260101T000000Z-c-000003@otherhost.1234abcd@{os.getpid()}", True),
        "own, dead pid": (here.rsplit("@", 1)[0] + f"@{dead}", False),
        "own, alive": (here, True),
        "older bmbench, dead pid": (f".tmp-20260101T000000Z-d-000004-{dead}", True),
        "atomic-write sibling": (".tmp-0a1b2c3d-123-20260101T000000Z-e-000005", True),
    }
    for name, _ in folders.values():
        (runs / name).mkdir()
        (runs / name / "run.log").write_text("working\n")
    sweep_stale(runs)
    assert {k: (runs / n).exists() for k, (n, _) in folders.items()} == {k: keep for k, (_, keep) in folders.items()}
    almost = runs / folders["foreign, dead pid here"][0]
    age(almost, STALE_AFTER - 600)
    sweep_stale(runs)
    assert almost.exists(), "younger than the age limit"
    for key in ("foreign, dead pid here", "older bmbench, dead pid", "foreign, its pid alive here"):
        age(runs / folders[key][0], STALE_AFTER + 60)
    sweep_stale(runs)
    assert not any((runs / folders[k][0]).exists()
                   for k in ("foreign, dead pid here", "older bmbench, dead pid", "foreign, its pid alive here"))
    assert (runs / folders["own, alive"][0]).exists()


def test_sweep_of_other_hosts_waits_for_the_lock(tmp_path):
    import fcntl

    runs = tmp_path / "runs"
    runs.mkdir()
    old = runs / ".tmp-20260101T000000Z-b-000002@otherhost.1234abcd@1"
    old.mkdir()
    age(old, STALE_AFTER + 60)
    with open(runs / ".sweep.lock", "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        sweep_stale(runs)
        assert old.exists(), "another process is sweeping"
    sweep_stale(runs)
    assert not old.exists()


def test_a_writer_whose_folder_was_removed_fails_loudly_and_stores_nothing(tmp_path):
    with pytest.raises(StoreError, match="removed while the run was being written"):
        with RunWriter(tmp_path, "victim") as w:
            (w.path / "run.log").write_text("start\n")
            shutil.rmtree(w.path)  # another host's sweep
            (w.path / "model").mkdir(parents=True)  # a later save re-creates the folder
            for name in ("run.json", "metrics.json", "run.log"):
                (w.path / name).write_text("{}")
            w.commit(required=("run.json", "metrics.json", "run.log", "model"))
    assert [p.name for p in (tmp_path / "runs").iterdir()] == []


def test_an_incomplete_folder_is_never_stored(tmp_path):
    with pytest.raises(StoreError, match="lacks predictions.csv"):
        with RunWriter(tmp_path, "partial") as w:
            (w.path / "run.json").write_text("{}")
            w.commit(required=("run.json", "predictions.csv"))
    assert list((tmp_path / "runs").iterdir()) == []


WRITER = textwrap.dedent("""
    import json, os, sys, time
    from bmbench.runs import store
    results, host, fake_pid, n, pause = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5])
    if host != "-":
        store.host_id = lambda: host
    if fake_pid:  # this process's PID means nothing on the other host: there it looks dead
        real_alive = store._alive
        os.getpid = lambda: fake_pid
        store._alive = lambda pid: pid == fake_pid or real_alive(pid)
    info = {"name": "w", "family": "baseline", "split_fingerprint": "s", "split": {"strategy": "stratified"},
            "dataset": {"kind": "pbc", "classes": ["a", "b"]}}
    for i in range(n):
        with store.RunWriter(results, f"w{i}") as w:
            (w.path / "run.json").write_text(json.dumps({**info, "id": w.id}))
            time.sleep(pause)
            (w.path / "metrics.json").write_text(json.dumps({"macro_f1": 0.5, "n": 10}))
            w.commit(required=("run.json", "metrics.json"))
    print(os.path.basename(store.tmp_name("x")).split("@")[1])
""")


def writers(results: Path, *specs, prefix=None) -> list[subprocess.CompletedProcess]:
    """Run :data:`WRITER` processes at once, one per ``(host, fake pid, runs, pause)``."""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([*(prefix or {}).get(i, ()), sys.executable, "-c", WRITER, str(results),
                               *map(str, spec)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
             for i, spec in enumerate(specs)]
    done = [(p, *p.communicate(timeout=300)) for p in procs]
    return [subprocess.CompletedProcess(p.args, p.returncode, out, err) for p, out, err in done]


def test_two_hosts_writing_one_results_folder_lose_nothing(tmp_path):
    # host alpha writes slowly; host beta starts (and sweeps) many runs meanwhile, and alpha's
    # PID is dead in beta's eyes: the old sweep removed alpha's folder and alpha stored a partial run
    done = writers(tmp_path, ("alpha", 4_000_000_000, 3, 1.5), ("beta", 0, 12, 0.2))
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    stored = list_runs(tmp_path)
    assert len(stored) == 15 and all(r.metrics == {"macro_f1": 0.5, "n": 10} for r in stored)
    assert not list((tmp_path / "runs").glob(".tmp-*"))


def test_two_pid_namespaces_writing_one_results_folder_lose_nothing(tmp_path):
    if not shutil.which("unshare") or subprocess.run(["unshare", "-p", "-f", "--mount-proc", "true"],
                                                     capture_output=True).returncode != 0:
        pytest.skip("unshare cannot make a PID namespace here")
    # the writer in its own PID namespace has small PIDs (1, 2...) that are other processes here
    done = writers(tmp_path, ("-", 0, 3, 1.0), ("-", 0, 12, 0.2),
                   prefix={0: ("unshare", "-p", "-f", "--mount-proc")})
    for proc in done:
        assert proc.returncode == 0, proc.stderr
    assert done[0].stdout.strip() != done[1].stdout.strip(), "each namespace has its own host id"
    assert len(list_runs(tmp_path)) == 15
