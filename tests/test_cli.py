import json
import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from bmbench import __version__
from bmbench.cli import main
from bmbench.data.registry import list_kinds

RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.1}
model: {family: baseline, pixels: 8}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    (tmp_path / "tiny.yaml").write_text(RECIPE)
    return tmp_path


def invoke(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version():
    assert invoke("--version").output.strip() == f"bmbench, version {__version__}"


def test_run_then_leaderboard(env):
    res = invoke("run", str(env / "tiny.yaml"), "--quiet")
    assert res.exit_code == 0, res.output
    assert "macro_f1=" in res.output
    res = invoke("run", str(env / "tiny.yaml"), "-q", "--set", "name=tiny8", "--set", "model.pixels=4")
    assert res.exit_code == 0
    board = invoke("leaderboard")
    assert board.exit_code == 0 and "tiny8" in board.output and "synthetic (4 classes" in board.output
    rows = json.loads(invoke("leaderboard", "--format", "json").output)[0]["rows"]
    assert {r["recipe"] for r in rows} == {"tiny", "tiny8"}
    assert rows[0]["macro_f1"] >= rows[1]["macro_f1"]
    out = env / "board.md"
    assert invoke("leaderboard", "--format", "markdown", "--out", str(out)).exit_code == 0
    assert out.read_text().startswith("### synthetic")


@pytest.mark.parametrize("args, message", [
    (["run", "missing.yaml"], "missing.yaml: recipe file not found"),
    (["run", "{recipe}", "--set", "model.pixles=3"], "did you mean 'pixels'"),
    (["validate", "{recipe}", "--set", "split.test=2"], "split.test: value 2.0 is out of range"),
    (["leaderboard", "--metric", "f1"], "unknown metric 'f1'"),
    (["datasets", "check", "{tmp}/nowhere", "--kind", "pbc"], "does not exist"),
    (["datasets", "check", "{tmp}", "--kind", "pcb"], "did you mean 'pbc'"),
])
def test_bad_input_gives_one_line_error_and_exit_2(env, args, message):
    args = [a.format(recipe=env / "tiny.yaml", tmp=env) for a in args]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: ") and message in lines[0], res.output
    assert "Traceback" not in res.output


def test_validate_prints_the_resolved_recipe(env):
    res = invoke("validate", str(env / "tiny.yaml"))
    assert res.exit_code == 0 and "valid" in res.output and "class_weight: balanced" in res.output


def test_datasets_lists_every_kind_and_checks_a_folder(env):
    out = invoke("datasets").output
    for kind in list_kinds():
        assert f"{kind.name}:" in out
    root = env / "imgs"
    for c in ("a", "b"):
        (root / c).mkdir(parents=True)
        for i in range(3):
            from PIL import Image
            Image.new("RGB", (8, 8), (i * 40, 0, 0)).save(root / c / f"{i}.png")
    (root / "b" / "broken.png").write_bytes(b"junk")
    res = invoke("datasets", "check", str(root), "--kind", "folder", "-q")
    assert res.exit_code == 1
    assert "7 images, 2 classes" in res.output and "1 unreadable" in res.output and "broken.png" in res.output


def test_datasets_check_estimates_the_scale_against_a_reference(env):
    import cv2

    from bmbench.data.synthetic import generate

    a = generate(env / "lab_a", 6, seed=1, size=96)
    b = env / "lab_b"
    for src in a.rglob("*.png"):
        out = b / src.relative_to(a)
        out.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(out), cv2.resize(cv2.imread(str(src)), None, fx=1.4, fy=1.4))
    res = invoke("datasets", "check", str(b), "--kind", "folder", "--no-decode", "-q",
                 "--scale-reference", f"folder:{a}", "--reference-microns-per-pixel", "0.1")
    assert res.exit_code == 0, res.output
    ratio = float(res.output.split("nuclei measure ")[1].split("x")[0])
    assert 1.3 <= ratio <= 1.5
    assert "suggested: dataset.microns_per_pixel: 0.07" in res.output
    bad = CliRunner().invoke(main, ["datasets", "check", str(b), "--kind", "folder", "--no-decode",
                                    "--scale-reference", str(a)])
    assert bad.exit_code != 0 and "expected KIND:ROOT" in bad.output


def test_predict_refuses_a_pixel_size_for_runs_that_never_resampled(env):
    invoke("run", str(env / "tiny.yaml"), "-q")
    image = next((env / "cache").rglob("*.png"))
    res = CliRunner().invoke(main, ["predict", "latest", str(image), "--out", str(env / "p.csv"),
                                    "--microns-per-pixel", "0.1"])
    assert res.exit_code != 0 and "without dataset.target_microns_per_pixel" in res.output
    assert not (env / "p.csv").exists()


def test_two_concurrent_runs_both_land(env):
    cmd = [sys.executable, "-m", "bmbench.cli", "run", str(env / "tiny.yaml"), "-q"]
    invoke("run", str(env / "tiny.yaml"), "-q")  # generate the images once
    procs = [subprocess.Popen(cmd, env=os.environ.copy(), stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE) for _ in range(2)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err.decode()
    runs = [p for p in (env / "results" / "runs").iterdir()]
    assert len(runs) == 3 and not [p for p in runs if p.name.startswith(".")]
    metrics = [json.loads((p / "metrics.json").read_text()) for p in runs]
    assert metrics[0] == metrics[1] == metrics[2]


@pytest.mark.parametrize("sig", ["SIGINT", "SIGKILL"])
def test_interrupted_process_leaves_no_run_and_the_next_run_works(env, sig):
    import signal
    import time

    slow = env / "slow.yaml"
    slow.write_text(RECIPE.replace("n_per_class: 10", "n_per_class: 400"))
    invoke("run", str(slow), "-q", "--set", "model.family=baseline")  # generate images first
    runs = env / "results" / "runs"
    before = set(runs.iterdir())
    # Feature extraction of 1,600 uncached images takes seconds, so the signal lands mid-run.
    # SIG_DFL in the child: under `cmd &` or nohup (CI in the background) SIGINT is inherited
    # as ignored, and the run would finish instead of being interrupted.
    p = subprocess.Popen([sys.executable, "-m", "bmbench.cli", "run", str(slow), "--set",
                          "model.family=classical"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.time() + 60

    def extracting() -> bool:  # the run has logged its split: feature extraction is under way
        return any("split" in log.read_text() for log in runs.glob(".tmp-*/run.log") if log.is_file())
    while not extracting() and time.time() < deadline and p.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)
    assert p.poll() is None, "the run ended before the signal: make it slower"
    p.send_signal(getattr(signal, sig))
    _, err = p.communicate(timeout=60)
    assert p.returncode != 0, err.decode()[-3000:]
    if sig == "SIGINT":
        assert p.returncode in (130, -2) and b"Interrupted" in err and b"Traceback" not in err, err.decode()[-3000:]
    assert {d for d in runs.iterdir() if not d.name.startswith(".")} == {d for d in before}
    assert invoke("run", str(env / "tiny.yaml"), "-q").exit_code == 0
    assert not list(runs.glob(".tmp-*")), "leftovers of dead processes are swept"
    assert len(json.loads(invoke("leaderboard", "--format", "json").output)[0]["rows"]) >= 1


def _bad_files(folder):
    """Unreadable images a user may really have, each written by the test itself."""
    import io
    from PIL import Image
    jpeg = io.BytesIO()
    Image.new("RGB", (64, 64), (200, 100, 100)).save(jpeg, "JPEG")
    (folder / "zero bytes.jpg").write_bytes(b"")
    (folder / "text_named.jpg").write_text("this is not an image")
    (folder / "truncated_é.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) // 2])
    return ["zero bytes.jpg", "text_named.jpg", "truncated_é.jpg"]


def test_bad_images_stop_the_run_with_one_line_or_are_skipped(env):
    from PIL import Image
    root = env / "cells"
    for c, colour in (("a", (220, 80, 80)), ("b", (80, 80, 220))):
        (root / c).mkdir(parents=True)
        for i in range(8):
            Image.new("RGB", (20, 20), tuple(v + 3 * i for v in colour)).save(root / c / f"{i}.png")
    bad = _bad_files(root / "a")
    recipe = env / "folder.yaml"
    recipe.write_text(f"name: f\ndataset: {{kind: folder, root: '{root}', image_size: 16}}\n"
                      "model: {family: baseline, pixels: 4}\nsplit: {test: 0.3, val: 0.0}\n")
    res = CliRunner().invoke(main, ["run", str(recipe), "-q"])
    lines = [l for l in res.output.splitlines() if l.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: ")
    assert any(name in lines[0] for name in bad) and "on_bad_image: skip" in lines[0]
    assert not (env / "results" / "runs").exists() or not [
        p for p in (env / "results" / "runs").iterdir() if not p.name.startswith(".")]
    res = CliRunner().invoke(main, ["run", str(recipe), "-q", "--set", "dataset.on_bad_image=skip"])
    assert res.exit_code == 0, res.output
    (run,) = (env / "results" / "runs").iterdir()
    info = json.loads((run / "run.json").read_text())
    assert sorted(p.rsplit("/", 1)[-1] for p in info["skipped_images"]) == sorted(bad)


def test_compare_prints_mcnemar_and_paired_bootstrap_and_refuses_other_splits(env):
    assert invoke("run", str(env / "tiny.yaml"), "-q").exit_code == 0
    assert invoke("run", str(env / "tiny.yaml"), "-q", "--set", "name=tiny4",
                  "--set", "model.pixels=4").exit_code == 0
    res = invoke("compare", "tiny4", "latest")  # the same run twice counts as paired too
    assert res.exit_code == 0, res.output
    assert "McNemar exact test" in res.output and "Paired bootstrap of macro_f1 (A - B)" in res.output
    assert "95% CI [" in res.output and "Verdict:" in res.output
    data = json.loads(invoke("compare", "tiny-", "tiny4", "--metric", "accuracy", "--format", "json").output)
    assert data["n_shared"] == 10 and data["metric"] == "accuracy"
    assert set(data["mcnemar"]) >= {"a_only", "b_only", "p_value"} and len(data["bootstrap"]["ci"]) == 2
    assert invoke("run", str(env / "tiny.yaml"), "-q", "--set", "name=other",
                  "--set", "split.seed=1").exit_code == 0
    res = CliRunner().invoke(main, ["compare", "tiny4", "other"])
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: cannot compare")
    assert "different images" in lines[0] and "Traceback" not in res.output
    res = CliRunner().invoke(main, ["compare", "tiny4", "tiny-", "--metric", "f1"])
    assert res.exit_code == 2 and "unknown metric 'f1'" in res.output


def test_report_and_html_leaderboard(env):
    import base64
    import re

    assert invoke("run", str(env / "tiny.yaml"), "-q").exit_code == 0
    res = invoke("report", "latest")
    assert res.exit_code == 0, res.output
    folder = next((env / "results" / "runs").iterdir())
    html = (folder / "report.html").read_text()
    assert 'id="confusion-matrix"' in html and 'id="reliability"' in html and 'id="mistakes"' in html
    assert (folder / "figures" / "confusion_matrix.png").is_file()
    out = env / "r" / "report.html"
    assert invoke("report", folder.name[:20], "--out", str(out), "--mistakes", "2").exit_code == 0
    assert out.is_file()
    res = invoke("leaderboard", "--format", "html", "--out", str(env / "board.html"))
    assert res.exit_code == 0
    page = (env / "board.html").read_text()
    png = re.search(r'src="data:image/png;base64,([^"]+)"', page).group(1)
    assert base64.b64decode(png).startswith(b"\x89PNG")
    res = CliRunner().invoke(main, ["report", "nothing-like-this"])
    assert res.exit_code == 2 and "no run matches" in res.output


def test_top_level_help_lists_every_command_with_a_whole_sentence():
    res = CliRunner().invoke(main, ["--help"])
    commands = res.output.split("Commands:", 1)[1]
    assert res.exit_code == 0 and "..." not in commands
    for name in main.list_commands(None):
        assert f"  {name} " in res.output
    assert "kept together)." in " ".join(commands.split())  # a sentence is not cut at "vs."
