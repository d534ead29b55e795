"""Tests for the synthetic smear generator (bmbench.data.synthetic)."""

from __future__ import annotations

import csv
import dataclasses
import json

import cv2
import numpy as np
import pytest
from skimage.measure import label as cc_label
from skimage.morphology import disk, opening

from bmbench.data import synthetic
from bmbench.data.synthetic import SYNTHETIC_CLASSES, SyntheticCell, generate, render_cell

# Strand width of neutrophil lobes is max(1, round(size / 64)) px: 2 at 128, 1 at 64.
BRIDGE = {128: 2, 64: 1}


def _render(label: str, n: int, size: int = 128, seed: int = 0) -> list[SyntheticCell]:
    ci = SYNTHETIC_CLASSES.index(label)
    return [render_cell(label, np.random.default_rng([seed, ci, i]), size) for i in range(n)]


@pytest.fixture(scope="module")
def cells() -> dict[str, list[SyntheticCell]]:
    """40 cells per class at 128 px."""
    return {label: _render(label, 40) for label in SYNTHETIC_CLASSES}


def test_render_types_and_shapes():
    for size in (32, 64, 128):
        for label in SYNTHETIC_CLASSES:
            c = render_cell(label, np.random.default_rng(1), size)
            assert c.image.shape == (size, size, 3) and c.image.dtype == np.uint8
            assert c.nucleus_mask.shape == c.cell_mask.shape == (size, size)
            assert c.nucleus_mask.dtype == c.cell_mask.dtype == bool
            assert c.label == label and c.nucleus_mask.any()
    with pytest.raises(dataclasses.FrozenInstanceError):
        c.label = "x"


def test_render_is_deterministic():
    a = render_cell("monocyte", np.random.default_rng(5))
    b = render_cell("monocyte", np.random.default_rng(5))
    c = render_cell("monocyte", np.random.default_rng(6))
    assert np.array_equal(a.image, b.image) and np.array_equal(a.nucleus_mask, b.nucleus_mask)
    assert not np.array_equal(a.image, c.image)


def test_bad_label_and_size():
    with pytest.raises(ValueError, match="eosinophil.*blast, lymphocyte, monocyte, neutrophil"):
        render_cell("eosinophil", np.random.default_rng(0))
    with pytest.raises(ValueError, match="32"):
        render_cell("blast", np.random.default_rng(0), size=31)


def test_masks_scale_with_size():
    big = [c.nucleus_mask.sum() for c in _render("blast", 10, 128)]
    small = [c.nucleus_mask.sum() for c in _render("blast", 10, 64)]
    assert 0.2 < np.mean(small) / np.mean(big) < 0.3


@pytest.mark.parametrize("size", [128, 64])
def test_neutrophil_lobes_split_by_opening(size):
    w = BRIDGE[size]
    seen = set()
    for c in _render("neutrophil", 60, size, seed=3):
        assert 3 <= c.lobes <= 5
        seen.add(c.lobes)
        assert cc_label(c.nucleus_mask).max() == 1
        for r in (w, w + 1):
            assert cc_label(opening(c.nucleus_mask, disk(r))).max() == c.lobes
    assert seen == {3, 4, 5}


def test_other_nuclei_stay_whole_after_opening(cells):
    for label in ("blast", "lymphocyte", "monocyte"):
        for c in cells[label]:
            assert c.lobes == 1
            assert cc_label(opening(c.nucleus_mask, disk(BRIDGE[128]))).max() == 1


def test_areas_and_containment(cells):
    nuc = {k: np.array([c.nucleus_mask.sum() for c in v]) for k, v in cells.items()}
    nc = {k: np.array([c.nucleus_mask.sum() / c.cell_mask.sum() for c in v]) for k, v in cells.items()}
    assert nuc["lymphocyte"].mean() < nuc["blast"].mean()
    assert nc["blast"].mean() > nc["monocyte"].mean()
    assert 0.65 < nc["blast"].mean() < 0.9
    for v in cells.values():
        for c in v:
            assert not (c.nucleus_mask & ~c.cell_mask).any()
            assert c.cell_mask.sum() > c.nucleus_mask.sum()


def test_cell_near_centre_with_red_cells_around(cells):
    for v in cells.values():
        for c in v:
            ys, xs = np.nonzero(c.cell_mask)
            assert np.hypot(xs.mean() - 63.5, ys.mean() - 63.5) < 0.15 * 128
            rgb = c.image.astype(int)
            pink = (rgb[..., 0] - rgb[..., 1] > 30) & (rgb[..., 0] > rgb[..., 2]) & ~c.cell_mask
            assert pink.mean() > 0.05


def _features(c: SyntheticCell) -> list[float]:
    na, ca = c.nucleus_mask.sum(), c.cell_mask.sum()
    dark = 255 - c.image.mean(2)[c.nucleus_mask].mean()
    return [na, ca, na / ca, dark, cc_label(opening(c.nucleus_mask, disk(BRIDGE[128]))).max()]


def test_difficulty_pixels_vs_morphology(cells):
    sk = pytest.importorskip("sklearn")
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    assert sk
    x_pix, x_feat, y = [], [], []
    for ci, label in enumerate(SYNTHETIC_CLASSES):
        for c in cells[label]:
            im64 = cv2.resize(c.image, (64, 64), interpolation=cv2.INTER_AREA)
            x_pix.append(cv2.resize(im64, (16, 16), interpolation=cv2.INTER_AREA).ravel() / 255.0)
            x_feat.append(_features(c))
            y.append(ci)
    cv = StratifiedKFold(5, shuffle=True, random_state=0)

    def score(x):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
        return cross_val_score(model, np.array(x), np.array(y), cv=cv).mean()

    pix, feat = score(x_pix), score(x_feat)
    assert 0.35 < pix < 0.97, pix
    assert feat > 0.9, feat
    assert feat > pix + 0.1


def _tree(root) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_generate_writes_files_and_csv(tmp_path):
    root = generate(tmp_path / "syn", n_per_class=3, seed=1, size=48)
    assert root == tmp_path / "syn"
    files = _tree(root)
    pngs = sorted(k for k in files if k.endswith(".png"))
    assert pngs == [f"{c}/{c}_{i:05d}.png" for c in SYNTHETIC_CLASSES for i in (1, 2, 3)]
    with open(root / "ground_truth.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0]) == ["file", "label", "lobes", "nucleus_area_px", "cell_area_px"]
    assert [r["file"] for r in rows] == pngs
    for r in rows:
        img = cv2.imread(str(root / r["file"]), cv2.IMREAD_UNCHANGED)
        assert img.shape == (48, 48, 3)
        assert r["file"].startswith(r["label"] + "/")
        assert 0 < int(r["nucleus_area_px"]) < int(r["cell_area_px"])
        assert (3 <= int(r["lobes"]) <= 5) if r["label"] == "neutrophil" else r["lobes"] == "1"
    # the csv and PNG agree with render_cell for the documented per-image rng
    ci = SYNTHETIC_CLASSES.index("monocyte")
    ref = render_cell("monocyte", np.random.default_rng([1, ci, 1]), 48)
    png = cv2.cvtColor(cv2.imread(str(root / "monocyte/monocyte_00002.png")), cv2.COLOR_BGR2RGB)
    assert np.array_equal(png, ref.image)
    row = next(r for r in rows if r["file"] == "monocyte/monocyte_00002.png")
    assert int(row["nucleus_area_px"]) == ref.nucleus_mask.sum()
    assert json.loads((root / ".complete").read_text())["seed"] == 1
    assert not [p for p in tmp_path.iterdir() if p.name != "syn"]  # no temp folders left


def test_generate_is_deterministic_and_prefix_stable(tmp_path):
    a = _tree(generate(tmp_path / "a", 2, seed=4, size=40))
    b = _tree(generate(tmp_path / "b", 2, seed=4, size=40))
    c = _tree(generate(tmp_path / "c", 2, seed=5, size=40))
    d = _tree(generate(tmp_path / "d", 3, seed=4, size=40))
    e = _tree(generate(tmp_path / "e", 2, seed=4, size=40, classes=("neutrophil",)))
    assert a == b
    assert a["blast/blast_00001.png"] != c["blast/blast_00001.png"]
    pngs = [k for k in a if k.endswith(".png")]
    assert all(a[k] == d[k] for k in pngs)  # more images per class: the first ones unchanged
    assert all(a[k] == e[k] for k in e if k.endswith(".png"))  # a subset of classes too


def test_generate_skips_when_complete_and_redoes_otherwise(tmp_path, monkeypatch):
    root = generate(tmp_path / "syn", 1, size=32, classes=("lymphocyte", "blast"))
    before = _tree(root)

    def boom(*args, **kwargs):
        raise AssertionError("regenerated")

    with monkeypatch.context() as m:
        m.setattr(synthetic, "render_cell", boom)
        assert generate(tmp_path / "syn", 1, size=32, classes=("lymphocyte", "blast")) == root
    assert _tree(root) == before
    generate(root, 2, size=32, classes=("lymphocyte",))  # other parameters: replaced
    assert sorted(p.name for p in root.iterdir()) == [".complete", ".files.json", "ground_truth.csv", "lymphocyte"]
    assert len(list((root / "lymphocyte").iterdir())) == 2


def test_generate_refuses_foreign_folder_and_bad_args(tmp_path):
    foreign = tmp_path / "mine"
    foreign.mkdir()
    (foreign / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError):
        generate(foreign, 1, size=32)
    assert (foreign / "notes.txt").read_text() == "keep me"
    with pytest.raises(ValueError, match="basophil"):
        generate(tmp_path / "x", 1, classes=("blast", "basophil"))
    with pytest.raises(ValueError):
        generate(tmp_path / "x", 1, size=16)
    with pytest.raises(ValueError):
        generate(tmp_path / "x", 1, classes=("blast", "blast"))
    assert not (tmp_path / "x").exists()
