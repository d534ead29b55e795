"""Paths built from data stay inside their folders (issue #30, part 2) and outputs are
written whole or not at all (part 5).

Labels from a ``label_map`` or a manifest become overlay folders; ``predictions.csv`` rows
become images read by ``bmbench report``; manifest and ID-file rows become data paths;
ablation ids become folders. Each case is an attack or a mistake: it checks the exit code,
the one line that explains it, and that no file appeared or changed outside the intended
folder (a snapshot of the whole test folder before and after).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from bmbench.cli import main

SYNTHETIC = "dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32"
CLASSICAL = "model: {family: classical, features: [shape], n_estimators: 20}"

# --- every file the process opens, while a test listens (to prove a file was never read) ---
_OPENED: list[str] | None = None


def _audit(event, args):
    if event == "open" and _OPENED is not None and isinstance(args[0], (str, bytes, os.PathLike)):
        _OPENED.append(os.fsdecode(args[0]))


sys.addaudithook(_audit)


def opened_during(fn):
    """``(fn(), real paths of every file opened while it ran)``."""
    global _OPENED
    _OPENED = []
    try:
        result = fn()
        return result, {os.path.realpath(p) for p in _OPENED}
    finally:
        _OPENED = None


def snapshot(folder: Path, skip=()) -> dict[str, str]:
    """relative path -> sha256 (or link target) of everything under ``folder``, links not
    followed, leaving out the relative paths in ``skip`` and everything under them."""
    out = {}
    for top, dirs, files in os.walk(folder, followlinks=False):
        rel_top = Path(top).relative_to(folder).as_posix()
        dirs[:] = [d for d in dirs if _rel(rel_top, d) not in skip]
        for name in dirs + files:
            rel, p = _rel(rel_top, name), Path(top) / name
            if rel in skip:
                continue
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_file():
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
            else:
                out[rel] = "dir"
    return out


def _rel(top: str, name: str) -> str:
    return name if top == "." else f"{top}/{name}"


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_error_line(res, *needles):
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), res.output
    for needle in needles:
        assert needle in lines[0], res.output


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One cache for the module: the synthetic images are rendered once."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture
def env(tmp_path, monkeypatch, cache):
    monkeypatch.setenv("BMBENCH_CACHE", str(cache))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def labelled_recipe(folder: Path, label_map: dict, model: str = "model: {family: baseline, pixels: 8}") -> Path:
    path = folder / "labels.yaml"
    path.write_text(f"name: labels\n{SYNTHETIC}, label_map: {json.dumps(label_map)}}}\n"
                    f"split: {{test: 0.25, val: 0.1}}\n{model}\n")
    return path


# --- bmbench features --overlays: labels become folder names --------------------------------

@pytest.mark.parametrize("label", ["../../escape", "{tmp}/absolute", "a/../../b", "..\\..\\windows",
                                   "./.hidden"])
def test_overlay_labels_stay_inside_the_overlay_folder(env, label):
    label = label.format(tmp=env)
    recipe = labelled_recipe(env, {"blast": label})
    overlays = env / "deep" / "er" / "overlays"
    overlays.parent.mkdir(parents=True)
    skip = {"cache", "results", "deep/er/overlays", "table.csv", "table.features.json"}
    before = snapshot(env, skip)
    res = invoke("features", recipe, "--out", env / "table.csv", "--overlays", overlays, "--per-class", 2, "-q")
    assert res.exit_code == 0, res.output
    assert snapshot(env, skip) == before  # nothing appeared or changed outside the overlay folder
    folders = sorted(p.name for p in overlays.iterdir())
    assert len(folders) == 4 and all(len(list((overlays / f).glob("*.png"))) == 2 for f in folders)
    assert not any(f.startswith(".") or "/" in f or "\\" in f for f in folders)
    assert set(pd.read_csv(env / "table.csv")["label"]) >= {label}  # the table keeps the label as it is


@pytest.mark.parametrize("label_map, message", [
    ({"blast": ".."}, "cannot be a folder name"),
    ({"blast": "a/b", "lymphocyte": "a_b"}, "would share the folder 'a_b'"),
    ({"blast": "Blast", "lymphocyte": "blast"}, "would share the folder"),  # one folder on macOS/Windows
])
def test_labels_that_cannot_have_their_own_overlay_folder_stop_before_writing(env, label_map, message):
    recipe = labelled_recipe(env, label_map)
    skip = {"cache", "results"}
    before = snapshot(env, skip)
    res = invoke("features", recipe, "--out", env / "table.csv", "--overlays", env / "ov", "-q")
    one_error_line(res, message, "dataset.label_map")
    assert snapshot(env, skip) == before  # neither the table nor the overlay folder


def test_an_overlay_class_folder_that_links_outside_is_refused(env):
    recipe = labelled_recipe(env, {"blast": "blast"})
    elsewhere = env / "elsewhere"
    elsewhere.mkdir()
    (env / "ov").mkdir()
    (env / "ov" / "blast").symlink_to(elsewhere, target_is_directory=True)
    res = invoke("features", recipe, "--out", env / "table.csv", "--overlays", env / "ov", "-q")
    one_error_line(res, "'blast' points outside", str((env / "ov").resolve()))
    assert list(elsewhere.iterdir()) == [] and not (env / "table.csv").exists()


def test_manifest_labels_become_safe_overlay_folders(env, make_image):
    write_image = make_image
    data = env / "data"
    rows = []
    for label, tag in (("../../up", "a"), ("/abs/x", "b")):
        for i in range(4):
            write_image(data / tag / f"{i}.png", seed=i + 10 * len(rows))
            rows.append({"path": f"{tag}/{i}.png", "label": label})
    pd.DataFrame(rows).to_csv(data / "m.csv", index=False)
    skip = {"cache", "results", "ov", "t.csv", "t.features.json"}
    before = snapshot(env, skip)
    res = invoke("features", data / "m.csv", "--kind", "manifest", "--out", env / "t.csv", "--overlays",
                 env / "ov", "--families", "shape", "-q")
    assert res.exit_code == 0, res.output
    assert snapshot(env, skip) == before
    assert sorted(p.name for p in (env / "ov").iterdir()) == ["_.._up", "_abs_x"]


# --- manifest rows stay inside the manifest's folder ----------------------------------------

@pytest.mark.parametrize("row", ["../outside.png", "{outside}", "link.png", "sub/../../outside.png"])
def test_manifest_rows_outside_its_folder_are_refused(env, row, make_image):
    write_image = make_image
    data = env / "data"
    outside = write_image(env / "outside.png")
    (data / "sub").mkdir(parents=True)
    (data / "link.png").symlink_to(outside)
    rows = [{"path": row.format(outside=outside), "label": "a"}]
    for i in range(3):
        rows += [{"path": write_image(data / f"a{i}.png", seed=i).name, "label": "a"},
                 {"path": write_image(data / f"b{i}.png", seed=9 + i).name, "label": "b"}]
    pd.DataFrame(rows).to_csv(data / "m.csv", index=False)
    res = invoke("features", data / "m.csv", "--kind", "manifest", "--out", env / "t.csv", "-q")
    one_error_line(res, "m.csv:2", "outside the manifest's folder")
    assert not (env / "t.csv").exists()


# --- bmbench report: predictions rows are read only inside the data set root ---------------

@pytest.fixture(scope="module")
def classical_run(tmp_path_factory, cache):
    """A classical run whose labels are a relative climb and an absolute path."""
    import bmbench

    home = tmp_path_factory.mktemp("classical")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(cache))
        recipe = labelled_recipe(home, {"blast": "../../evil", "monocyte": str(home / "absolute-evil")},
                                 CLASSICAL)
        run = bmbench.run_recipe(recipe, results=home / "results")
    return home, run


@pytest.fixture
def stored(classical_run, tmp_path, monkeypatch, cache):
    """A fresh copy of the classical run in this test's own store: ``(env, run folder)``."""
    home, run = classical_run
    monkeypatch.setenv("BMBENCH_CACHE", str(cache))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    copy = tmp_path / "results" / "runs" / run.name
    shutil.copytree(run, copy, symlinks=True)
    return tmp_path, copy


def data_root(run: Path) -> Path:
    return Path(json.loads((run / "run.json").read_text())["dataset"]["root"])


@pytest.mark.parametrize("row, explain", [("/etc/passwd", False), ("{relative}", True), ("{absolute}", False),
                                          ("link-out.png", True)])
def test_report_never_reads_a_predictions_row_outside_the_data_set_root(stored, row, explain, make_image):
    env, run = stored
    write_image = make_image
    root = data_root(run)
    secret = write_image(env / "secret.png", color=(255, 0, 255))
    link = root / "link-out.png"
    if not link.is_symlink():
        link.symlink_to(secret)
    row = row.format(relative=os.path.relpath(secret, root), absolute=secret)
    frame = pd.read_csv(run / "predictions.csv", dtype=str, keep_default_na=False)
    tampered = (frame["predicted_label"] != frame["true_label"]) | (frame.index % 2 == 0)
    frame.loc[tampered, "path"] = row
    frame.to_csv(run / "predictions.csv", index=False)
    skip = {f"results/runs/{run.name}/report.html", f"results/runs/{run.name}/figures"}
    before = snapshot(env, skip)
    res, opened = opened_during(lambda: invoke("report", run, "--explain" if explain else "--no-explain"))
    assert res.exit_code == 0, res.output
    assert "Traceback" not in res.output
    warnings = [line for line in res.stderr.splitlines() if "outside the data set root" in line]
    assert len(warnings) == 1 and "predictions.csv" in warnings[0] and row in warnings[0], res.output
    assert os.path.realpath(secret) not in opened and "/etc/passwd" not in opened
    assert "explanations left out" not in res.output  # the explanations used the rows inside the root
    if explain:
        assert 'id="explanations"' in (run / "report.html").read_text()
    assert snapshot(env, skip) == before and (run / "report.html").is_file()


def test_a_figures_folder_linking_out_of_the_run_is_refused(stored):
    env, run = stored
    elsewhere = env / "elsewhere"
    elsewhere.mkdir()
    (run / "figures").symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(env)
    res = invoke("report", run, "--no-explain")
    one_error_line(res, "figures", "points outside")
    assert snapshot(env) == before and list(elsewhere.iterdir()) == []


@pytest.mark.parametrize("command", ["predict", "report"])
def test_absolute_and_climbing_labels_never_become_output_paths(stored, classical_run, command):
    env, run = stored
    images = sorted(data_root(run).glob("*/*.png"))[:4]
    out = env / "a" / "b" / "out"
    out.parent.mkdir(parents=True)
    if command == "predict":
        args, inside = ["predict", run, *images, "--out", out / "p.csv", "--explain", out / "why"], "a/b/out"
    else:
        args, inside = ["report", run, "--out", out / "r.html"], f"results/runs/{run.name}"
    skip = {inside, "a/b/out"}
    before = snapshot(env, skip)
    res = invoke(*args)
    assert res.exit_code == 0, res.output
    assert snapshot(env, skip) == before
    home = classical_run[0]
    assert not (home / "absolute-evil").exists() and not (home.parent / "evil").exists()

    if command == "predict":
        assert "p_../../evil" in pd.read_csv(out / "p.csv").columns  # the label is text, not a path
        assert len(list((out / "why").iterdir())) >= 4 and all(p.is_file() for p in (out / "why").iterdir())


# --- bmbench predict: a failure keeps the previous --out ------------------------------------

@pytest.mark.parametrize("failure", ["unreadable images", "missing model"])
def test_a_failed_predict_keeps_the_previous_out_file(stored, failure):
    env, run = stored
    out = env / "predictions.csv"
    out.write_bytes(b"path,predicted_label\nyesterday.png,blast\n")
    broken = env / "broken.png"
    broken.write_bytes(b"\x89PNG truncated")
    if failure == "missing model":
        shutil.rmtree(run / "model")
        images = sorted(data_root(run).glob("*/*.png"))[:2]
    else:
        images = [broken]
    before = snapshot(env)
    res = invoke("predict", run, *images, "--out", out, "-q")
    assert res.exit_code == 2 and "Traceback" not in res.output, res.output
    errors = [line for line in res.output.splitlines() if line.startswith("Error: ")]
    assert len(errors) == 1, res.output
    assert snapshot(env) == before  # byte-identical, and no temporary left beside it
    assert out.read_bytes() == b"path,predicted_label\nyesterday.png,blast\n"


# --- ids files and ablation ids -------------------------------------------------------------

@pytest.mark.parametrize("text", [
    "For test_set:\n folder ../../etc\n BLA_001.jpg - BLA_003.jpg",
    "For test_set:\n folder BLA\n subfolder ..\n BLA_001.jpg",
    "For test_set:\n folder BLA\n /etc/passwd.jpg",
])
def test_an_ids_file_cannot_name_files_outside_the_data_set_root(text):
    from bmbench.core.errors import DatasetError
    from bmbench.data.ids_file import parse_ids_text

    with pytest.raises(DatasetError, match="not a plain relative path") as err:
        parse_ids_text(text, "ids.txt")
    assert "\n" not in str(err.value) and str(err.value).startswith("ids.txt:")


@pytest.mark.parametrize("ablation_id", ["../../escape", "/tmp/escape"])
def test_an_ablation_id_cannot_name_a_folder_outside_the_store(env, ablation_id):
    before = snapshot(env)
    res = invoke("ablate", "--report", ablation_id)
    one_error_line(res, repr(ablation_id), "letters, digits")
    assert snapshot(env) == before


def test_a_cached_fit_naming_files_outside_its_entry_is_discarded(tmp_path):
    from bmbench.models.tabular import _load

    outside = tmp_path / "private.txt"
    outside.write_text("not yours")
    entry = tmp_path / "cache" / "entry"
    entry.mkdir(parents=True)
    digest = hashlib.sha256(outside.read_bytes()).hexdigest()
    (entry / "manifest.json").write_text(json.dumps({"../../private.txt": digest}))
    assert _load(object(), entry) is None  # refitted, never copied into a run folder
    assert not entry.exists() and outside.read_text() == "not yours"
