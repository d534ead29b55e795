"""Shared fixtures: generated images and trees, and the location of the real data sets.

Tests never use third-party images from the repository; they generate their own. Tests
marked ``realdata`` read ``../shared/datasets`` (beside the repository) and are skipped
when that folder is absent. Tests marked ``slow`` run only with ``--run-slow`` (or ``-m slow``).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_DATASETS = REPO.parent / "shared" / "datasets"


def pytest_addoption(parser):
    parser.addoption("--run-slow", action="store_true", help="also run the tests marked slow")


def pytest_collection_modifyitems(config, items):
    if not config.getoption("--run-slow") and "slow" not in (config.getoption("-m") or ""):
        slow = pytest.mark.skip(reason="slow: run with --run-slow (or -m slow)")
        for item in items:
            if "slow" in item.keywords:
                item.add_marker(slow)
    if SHARED_DATASETS.is_dir():
        return
    skip = pytest.mark.skip(reason=f"real data sets not found at {SHARED_DATASETS}")
    for item in items:
        if "realdata" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def shared_datasets() -> Path:
    """The shared real data sets folder (skips the test when it is absent)."""
    if not SHARED_DATASETS.is_dir():
        pytest.skip(f"real data sets not found at {SHARED_DATASETS}")
    return SHARED_DATASETS


def write_image(path, size=(32, 32), mode="RGB", color=None, seed=0, **save_kwargs) -> Path:
    """Write a small generated image to ``path`` (format from the suffix).

    ``size`` is ``(width, height)`` as in PIL. Pixels are random (from ``seed``) unless
    ``color`` gives a solid fill in ``mode``'s own terms.
    """
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if color is not None:
        im = Image.new(mode, size, color)
    else:
        rng = np.random.default_rng(seed)
        rgb = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
        im = Image.fromarray(rgb, "RGB")
        if mode == "P":
            im = im.quantize(16)
        elif mode != "RGB":
            im = im.convert(mode)
    im.save(path, **save_kwargs)
    return path


@pytest.fixture
def make_image():
    """``make_image(path, size=(32, 32), mode="RGB", color=None, seed=0)`` -> Path."""
    return write_image


def write_tree(root, files, size=(8, 8)) -> Path:
    """Create ``root/<relpath>`` for every relpath in ``files`` as a tiny image; returns root.

    ``files`` is an iterable of relative POSIX paths; the seed varies per file so sizes
    (and so fingerprints) differ like real images do.
    """
    root = Path(root)
    for i, rel in enumerate(files):
        write_image(root / rel, size=size, seed=i)
    return root


@pytest.fixture
def make_tree():
    """``make_tree(root, [relpaths], size=(8, 8))`` writes tiny images; returns root."""
    return write_tree


@pytest.fixture
def load():
    """``load(kind=..., root=..., **flat_keys)`` -> DatasetTable, via the recipe validator."""
    from bmbench.data import load_dataset
    from bmbench.config.recipe import dataset_spec

    def _load(**raw):
        if raw.get("root") is not None:
            raw["root"] = str(raw["root"])
        if raw.get("ids") is not None:
            raw["ids"] = str(raw["ids"])
        return load_dataset(dataset_spec(raw))

    return _load


TINY_RECIPE = """
name: tiny
dataset:
  kind: synthetic
  n_per_class: 12
  render_size: 64
  image_size: 32
split: {test: 0.25, val: 0.15}
model: {family: baseline, pixels: 8}
"""


@pytest.fixture
def recipe_path(tmp_path, monkeypatch) -> Path:
    """A tiny baseline recipe on 48 synthetic 64 px cells (seconds to run), in ``tmp_path``
    with its own empty cache."""
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    p = tmp_path / "tiny.yaml"
    p.write_text(TINY_RECIPE)
    return p


CROSS_RECIPE = """name: cross
dataset: {{kind: folder, root: {a}, image_size: 32,
          label_map: {{lymphocyte: LYT, neutrophil: NGS, blast: BLA, monocyte: null}}}}
evaluate:
  - {{kind: folder, root: {b}{entry}}}
model: {{family: baseline, pixels: 8}}
{extra}"""


@pytest.fixture
def cross_recipe(tmp_path, monkeypatch):
    """``cross_recipe(entry="", extra="")`` -> a tiny cross-lab recipe file: train on synthetic
    lab A (12 cells per class, monocytes dropped), test on lab B (8 per class, another generator
    seed, classes named BLA/LYT/MON/NGS). ``entry`` adds flow keys to the evaluate entry
    (``", adapt: {n_per_class: 2}"``), ``extra`` top-level YAML lines. Own empty cache."""
    from bmbench.data.synthetic import generate

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    a = generate(tmp_path / "lab_a", 12, seed=1, size=64)
    b = generate(tmp_path / "lab_b", 8, seed=2, size=64)
    for cls, new in (("lymphocyte", "LYT"), ("neutrophil", "NGS"), ("blast", "BLA"), ("monocyte", "MON")):
        (b / cls).rename(b / new)
    written = []

    def _write(entry: str = "", extra: str = "") -> Path:
        p = tmp_path / f"cross_{len(written)}.yaml"
        p.write_text(CROSS_RECIPE.format(a=a, b=b, entry=entry, extra=extra))
        written.append(p)
        return p

    return _write
