"""Caches prove themselves (issue 30): a tampered split file, synthetic data set, decoded-image
cache, array/JSON cache entry or run index is never used. A split file that does not match
its fingerprint refuses the run with one line naming the file and how to rebuild it; the
caches rebuild the damaged entry with a warning and give the scores of a clean run."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.core.cache import ArrayCache, JsonCache, key_for
from bmbench.core.errors import DatasetError
from bmbench.data.ids_file import parse_ids_text
from bmbench.data.images import ImageSource, load_images

RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.1}
model: {family: classical, classifier: logistic_regression}
"""


def cli(*args: str):
    return CliRunner().invoke(main, list(args))


def tree_digest(folder: Path) -> str:
    """One hash of every file's path and bytes under ``folder``."""
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(folder).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def scores(output: str) -> str:
    """The ``macro_f1=... (n_test=...)`` part of ``bmbench run -q`` output."""
    line = next(l for l in output.splitlines() if "macro_f1=" in l)
    return line[line.index("macro_f1="):]


@pytest.fixture(scope="module")
def clean(tmp_path_factory):
    """A results store and cache after one clean run: ``(folder, scores)``."""
    base = tmp_path_factory.mktemp("clean")
    (base / "tiny.yaml").write_text(RECIPE)
    old = {k: os.environ.get(k) for k in ("BMBENCH_CACHE", "BMBENCH_RESULTS")}
    os.environ.update(BMBENCH_CACHE=str(base / "cache"), BMBENCH_RESULTS=str(base / "results"))
    try:
        res = cli("run", str(base / "tiny.yaml"), "-q")
    finally:
        for k, v in old.items():
            os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)
    assert res.exit_code == 0, res.output
    return base, scores(res.output)


@pytest.fixture
def env(clean, tmp_path, monkeypatch):
    """A private copy of the clean store and cache."""
    shutil.copytree(clean[0], tmp_path / "w")
    w = tmp_path / "w"
    monkeypatch.setenv("BMBENCH_CACHE", str(w / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(w / "results"))
    return w


def split_file(w: Path) -> Path:
    (path,) = (w / "results" / "splits").glob("*.json")
    return path


# --- the split file ------------------------------------------------------------------------

def _edit(fn):
    def apply(path: Path):
        data = json.loads(path.read_text())
        fn(data, data["folds"][0])
        path.write_text(json.dumps(data))
    return apply


def _swap(data, fold):  # the hard test images trained on, as many easy ones tested: still a partition
    n = len(fold["test"])
    fold["test"], fold["train"] = fold["train"][:n], fold["test"] + fold["train"][n:]


SPLIT_ATTACKS = {
    "test images appended to train": _edit(lambda d, f: f["train"].extend(f["test"])),
    "test and train images swapped": _edit(_swap),
    "an image in val and test": _edit(lambda d, f: f["val"].append(f["test"][0])),
    "an image missing": _edit(lambda d, f: f["train"].pop()),
    "an image not in the data set": _edit(lambda d, f: f["test"].append("blast/blast_99999.png")),
    "test emptied into train": _edit(lambda d, f: (f["train"].extend(f["test"]), f["test"].clear())),
    "another data set fingerprint": _edit(lambda d, f: d.update(dataset_fingerprint="0" * 16)),
    "other settings": _edit(lambda d, f: d["settings"].update(test=0.5)),
    "paths as numbers": _edit(lambda d, f: f.update(train=list(range(len(f["train"]))))),
    "folds not a list": _edit(lambda d, f: d.update(folds="all")),
    "not JSON": lambda p: p.write_bytes(b"\x00\xffnot json{"),
    "empty file": lambda p: p.write_bytes(b""),
}


@pytest.mark.parametrize("attack", SPLIT_ATTACKS, ids=list(SPLIT_ATTACKS))
def test_a_tampered_split_file_refuses_the_run(env, attack):
    path = split_file(env)
    SPLIT_ATTACKS[attack](path)
    tampered, runs = path.read_bytes(), tree_digest(env / "results" / "runs")
    res = cli("run", str(env / "tiny.yaml"), "-q")
    assert res.exit_code == 2, res.output
    lines = res.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: ") and "Traceback" not in res.output
    assert path.name in lines[0] and f"rm '{path}'" in lines[0]
    assert path.read_bytes() == tampered and tree_digest(env / "results" / "runs") == runs


def test_the_split_is_rebuilt_once_deleted_with_the_clean_scores(env, clean):
    SPLIT_ATTACKS["test and train images swapped"](split_file(env))
    assert cli("run", str(env / "tiny.yaml"), "-q").exit_code == 2
    split_file(env).unlink()
    res = cli("run", str(env / "tiny.yaml"), "-q")
    assert res.exit_code == 0 and scores(res.output) == clean[1]


def test_a_proven_split_file_is_not_recomputed(env, monkeypatch):
    import bmbench.data.splits as splits

    monkeypatch.setattr(splits, "_compute", lambda *a: pytest.fail("recomputed a proven split"))
    assert cli("run", str(env / "tiny.yaml"), "-q").exit_code == 0


@pytest.mark.parametrize("text, problem", [
    ("For train_set and val_set:\nfolder BLA\nBLA_1.jpg - BLA_3.jpg\nFor test_set:\nfolder BLA\nBLA_3.jpg\n",
     "in both the train/val and the test section"),
    ("For train_set and val_set:\nfolder BLA\nBLA_1.jpg - BLA_3.jpg\nBLA_2.jpg\nFor test_set:\nfolder BLA\n"
     "BLA_4.jpg\n", "more than once"),
])
def test_an_ids_file_listing_an_image_twice_is_refused(text, problem):
    with pytest.raises(DatasetError, match=problem) as info:
        parse_ids_text(text, "images_IDs.txt")
    assert str(info.value).startswith("images_IDs.txt: 'BLA/BLA_") and "\n" not in str(info.value)


def test_a_manifest_listing_an_image_in_train_and_test_is_refused(tmp_path, make_image, monkeypatch):
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    rows = ["path,label,split"]
    for c in ("a", "b"):
        for i in range(4):
            make_image(tmp_path / c / f"{i}.png", seed=i)
            rows.append(f"{c}/{i}.png,{c},{'test' if i == 0 else 'train'}")
    rows.append("a/1.png,a,test")  # trained on, and tested on
    (tmp_path / "m.csv").write_text("\n".join(rows) + "\n")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: m\ndataset: {{kind: manifest, root: {tmp_path / 'm.csv'}}}\n"
                      "model: {family: baseline, pixels: 4}\n")
    res = cli("run", str(recipe), "-q")
    assert res.exit_code == 2 and res.output.count("\n") == 1 and "'a/1.png' is listed 2 times" in res.output
    assert not list((tmp_path / "results").rglob("run.json"))


# --- the synthetic data set --------------------------------------------------------------

def _synthetic(w: Path) -> Path:
    (root,) = (w / "cache" / "synthetic").iterdir()
    return root


def _empty_class(root: Path):
    for p in (root / "monocyte").iterdir():
        p.unlink()


def _replace_file(root: Path):
    shutil.copy(root / "blast" / "blast_00001.png", root / "neutrophil" / "neutrophil_00001.png")


SYNTHETIC_DAMAGE = {
    "a class folder emptied": _empty_class,
    "an image replaced by another class's": _replace_file,
    "an image added": lambda root: shutil.copy(root / "blast" / "blast_00001.png", root / "lymphocyte" / "x.png"),
    "the file list lost (older bmbench)": lambda root: (root / ".files.json").unlink(),
}


@pytest.mark.parametrize("damage", SYNTHETIC_DAMAGE, ids=list(SYNTHETIC_DAMAGE))
def test_a_damaged_synthetic_data_set_is_generated_again(env, clean, damage):
    root = _synthetic(env)
    before = tree_digest(root)
    SYNTHETIC_DAMAGE[damage](root)
    res = cli("run", str(env / "tiny.yaml"), "-q")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert scores(res.output) == clean[1]  # the same 4 classes, images and split fingerprint
    warnings = [l for l in res.output.splitlines() if "generating it again" in l]
    assert len(warnings) == 1 and str(root) in warnings[0]
    assert tree_digest(root) == before


# --- the decoded-image cache --------------------------------------------------------------

def _flip_byte(path: Path, at: int = -1):
    data = bytearray(path.read_bytes())
    data[at] ^= 0xFF
    path.write_bytes(bytes(data))


IMAGE_CACHE_DAMAGE = {
    "images.npy: one pixel changed": lambda e: _flip_byte(e["images"]),
    "images.npy truncated": lambda e: e["images"].write_bytes(e["images"].read_bytes()[:300]),
    "valid.npy: an image marked unreadable": lambda e: _flip_byte(e["valid"]),
    "valid.npy not an array": lambda e: e["valid"].write_bytes(b"garbage"),
    "digests missing": lambda e: e["sum"].unlink(),
    "digests of another entry": lambda e: e["sum"].write_text(json.dumps({"valid": "0", "images": "0"})),
}


@pytest.mark.parametrize("damage", IMAGE_CACHE_DAMAGE, ids=list(IMAGE_CACHE_DAMAGE))
def test_a_damaged_decoded_image_cache_is_rebuilt(tmp_path, make_image, caplog, damage):
    files = [str(make_image(tmp_path / "img" / f"{i}.png", size=(30 + i, 28), seed=i)) for i in range(6)]
    source = ImageSource(size=16)
    clean = load_images(files, source, tmp_path / "cache")
    good = (np.array(clean.images), np.array(clean.valid))
    (images,) = [p for p in (tmp_path / "cache" / "images").glob("*/*.npy") if p.name.count(".") == 1]
    entry = {"images": images, "valid": images.with_suffix(".valid.npy"),
             "sum": images.with_suffix(".sum.json")}
    IMAGE_CACHE_DAMAGE[damage](entry)
    with caplog.at_level(logging.WARNING, "bmbench"):
        again = load_images(files, ImageSource(size=16), tmp_path / "cache")
    assert np.array_equal(again.images, good[0]) and np.array_equal(again.valid, good[1])
    assert "damaged or stale; rebuilding it" in caplog.text
    caplog.clear()
    load_images(files, ImageSource(size=16), tmp_path / "cache")  # the rebuilt entry is trusted
    assert "damaged" not in caplog.text


# --- array and JSON caches: features, scores, fitted probabilities ------------------------

def _entries(w: Path, kind: str, suffix: str) -> list[Path]:
    return sorted((w / "cache" / kind).rglob(f"*{suffix}"))


def _truncate_features(w: Path):
    for p in _entries(w, "features", ".npy")[:3]:
        p.write_bytes(p.read_bytes()[:-4])


def _scores_forged(w: Path):
    (p,) = _entries(w, "scores", ".json")
    data = json.loads(p.read_text())
    data["metrics"].update(macro_f1=0.25, accuracy=0.25)  # the clean run scores 1.0: any other value
    p.write_text(json.dumps(data))


def _confusion_forged(w: Path):
    (p,) = _entries(w, "scores", ".json")
    data = json.loads(p.read_text())
    cm = data["metrics"]["confusion_matrix"]
    cm[0][0], cm[0][1] = cm[0][0] - 1, cm[0][1] + 1
    p.write_text(json.dumps(data))


def _proba_forged(w: Path):
    for p in _entries(w, "fits", ".npy"):
        if p.parent.parent.name == "proba":
            array = np.load(p)
            np.save(p, np.eye(array.shape[1], dtype=array.dtype)[np.zeros(len(array), int)][:, ::-1] * 2)


CACHE_DAMAGE = {
    "feature entries truncated": _truncate_features,
    "scores entry edited": _scores_forged,
    "scores entry with another confusion matrix": _confusion_forged,
    "scores entry not JSON": lambda w: _entries(w, "scores", ".json")[0].write_text('{"metrics": '),
    "fitted probabilities out of range": _proba_forged,
}


@pytest.mark.parametrize("damage", CACHE_DAMAGE, ids=list(CACHE_DAMAGE))
def test_a_damaged_cache_entry_is_recomputed_with_the_clean_scores(env, clean, damage):
    CACHE_DAMAGE[damage](env)
    res = cli("run", str(env / "tiny.yaml"), "-q")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert scores(res.output) == clean[1]
    assert "is damaged" in res.output and "computed again" in res.output


def test_array_cache_checks_shape_and_values(tmp_path, caplog):
    cache = ArrayCache(tmp_path)
    key = key_for("x")
    cache.put(key, np.ones((2, 3), np.float32))
    assert cache.get(key, shape=(2, 3)).shape == (2, 3)
    with caplog.at_level(logging.WARNING, "bmbench"):
        assert cache.get(key, shape=(3, 2)) is None
    assert "is damaged" in caplog.text and not cache.path(key).exists()
    JsonCache(tmp_path).path(key).parent.mkdir(parents=True, exist_ok=True)
    JsonCache(tmp_path).path(key).write_text("[1, 2")
    assert JsonCache(tmp_path).get(key) is None and not JsonCache(tmp_path).path(key).exists()


# --- the run index ------------------------------------------------------------------------

INDEX_DAMAGE = {
    "garbage bytes": lambda db: db.write_bytes(b"SQLite format 3\x00" + os.urandom(4000)),
    "not a database": lambda db: db.write_bytes(b"this is not a database" * 200),
}


@pytest.mark.parametrize("damage", INDEX_DAMAGE, ids=list(INDEX_DAMAGE))
def test_a_corrupt_index_is_rebuilt_with_a_warning(env, damage):
    assert cli("leaderboard").exit_code == 0  # writes the index
    clean_board = cli("leaderboard").output
    INDEX_DAMAGE[damage](env / "results" / "index.sqlite")
    res = cli("leaderboard")
    assert res.exit_code == 0 and "Traceback" not in res.output
    assert "run index" in res.output and "rebuilding it from the run folders" in res.output
    assert [l for l in res.output.splitlines() if "run index" not in l] == clean_board.splitlines()
    with sqlite3.connect(env / "results" / "index.sqlite") as db:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_an_index_never_hides_a_metrics_file_rewritten_in_place(env):
    """``cp -p``/rsync/``touch -d`` keep size and modification time: the index must still
    notice the change (the change time) and show what the folder holds."""
    def board():
        res = cli("leaderboard", "--format", "json")
        assert res.exit_code == 0, res.output
        return json.loads(res.output)[0]["rows"][0]["macro_f1"]

    before = board()  # the index now holds the run
    (metrics,) = (env / "results" / "runs").glob("*/metrics.json")
    st, text = metrics.stat(), metrics.read_text()
    old = f'"macro_f1": {json.dumps(json.loads(text)["macro_f1"])}'
    new = f'"macro_f1": 0.{"5" * (len(old) - len(chr(34) + "macro_f1" + chr(34) + ": 0."))}'
    assert len(new) == len(old) and old in text
    metrics.write_text(text.replace(old, new))
    os.utime(metrics, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert metrics.stat().st_size == st.st_size and metrics.stat().st_mtime_ns == st.st_mtime_ns
    after = board()
    assert after == float(new.split(": ")[1]) and after != before
