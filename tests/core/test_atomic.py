"""bmbench.core.atomic, and the modes of everything the CLI writes under a shared results folder."""

import os
import stat
from pathlib import Path

import pytest
from click.testing import CliRunner

from bmbench.core.atomic import building_dir, open_atomic, replacing, write_bytes, write_json, write_text
from bmbench.cli import main


@pytest.fixture(params=[0o022, 0o077, 0o002])
def umask(request):
    old = os.umask(request.param)
    yield request.param
    os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_files_get_the_mode_a_plain_open_gives(tmp_path, umask):
    write_text(tmp_path / "a.txt", "x")
    write_bytes(tmp_path / "b.bin", b"x")
    write_json(tmp_path / "c.json", {"a": 1})
    with open(tmp_path / "plain", "w"):
        pass
    for name in ("a.txt", "b.bin", "c.json"):
        assert mode(tmp_path / name) == mode(tmp_path / "plain") == 0o666 & ~umask


def test_folders_get_the_mode_a_plain_mkdir_gives(tmp_path, umask):
    with building_dir(tmp_path / "d") as tmp:
        (tmp / "f").write_text("x")
    assert mode(tmp_path / "d") == 0o777 & ~umask
    assert (tmp_path / "d" / "f").read_text() == "x"


def test_a_failed_write_keeps_the_old_content_and_leaves_nothing_behind(tmp_path):
    target = tmp_path / "run.json"
    write_text(target, "old")
    with pytest.raises(RuntimeError):
        with open_atomic(target) as fh:
            fh.write("half")
            raise RuntimeError("disk full")
    assert target.read_text() == "old"
    with pytest.raises(RuntimeError):
        with replacing(tmp_path / "model.keras") as tmp:
            tmp.write_bytes(b"x")
            raise RuntimeError
    with pytest.raises(RuntimeError):
        with building_dir(tmp_path / "fit") as tmp:
            (tmp / "part").write_text("x")
            raise RuntimeError
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_replacing_keeps_the_suffix_libraries_read_the_format_from(tmp_path):
    with replacing(tmp_path / "model.keras") as tmp:
        assert tmp.suffix == ".keras" and tmp.parent == tmp_path and not tmp.exists()
        tmp.write_bytes(b"x")
    assert (tmp_path / "model.keras").read_bytes() == b"x"


def test_open_atomic_refuses_append():
    with pytest.raises(ValueError, match="mode must be"):
        with open_atomic("x", "a"):
            pass


RECIPE = """
name: tiny
dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.1}
model: {family: baseline, pixels: 8}
"""


@pytest.mark.parametrize("mask", [0o022, 0o077])
def test_everything_the_cli_writes_gets_the_umask_mode(tmp_path, monkeypatch, mask):
    """A lab shares one results folder: run, report, leaderboard, audit, ablation, predict
    and features exports all come out as a plain open()/mkdir() would make them."""
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"
    monkeypatch.setenv("BMBENCH_RESULTS", str(results))
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(RECIPE)
    old = os.umask(mask)
    try:
        def ok(*args):
            res = CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)
            assert res.exit_code == 0, res.output
        ok("run", recipe, "-q")
        ok("report", "latest")
        ok("leaderboard", "--format", "html", "--out", results / "board.html")
        ok("audit", recipe, "-q")
        ok("ablate", recipe, "--vary", "model.pixels=4,8", "--id", "px")
        images = next(p for p in (tmp_path / "cache").rglob("*.png"))
        ok("predict", "latest", images.parent, "--out", results / "pred" / "predictions.csv", "-q")
        ok("features", recipe, "--out", results / "features.csv", "-q")
    finally:
        os.umask(old)
    written = [*results.rglob("*"), *(tmp_path / "cache").rglob("*")]  # caches are shared too
    assert any(p.name == "MODEL_CARD.md" for p in written) and any(p.name == "audit.json" for p in written)
    wrong = [(str(p.relative_to(tmp_path)), oct(mode(p))) for p in written
             if mode(p) != (0o777 if p.is_dir() else 0o666) & ~mask]
    assert not wrong, wrong
    assert not [p for p in written if p.name.startswith(".tmp-")]
