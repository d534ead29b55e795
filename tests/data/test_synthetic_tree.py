"""Big synthetic trees in the Matek 2021 layout (bmbench.data.synthetic_tree)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from bmbench.data.synthetic import SYNTHETIC_CLASSES, render_cell
from bmbench.data.synthetic_tree import MATEK_CODES, generate_matek_tree, matek_relpath


def _files(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_matek_relpaths_follow_the_published_range_folders():
    assert matek_relpath("BLA", 1) == "BLA/0001-1000/BLA_00001.jpg"
    assert matek_relpath("BLA", 1000) == "BLA/0001-1000/BLA_01000.jpg"
    assert matek_relpath("NGS", 1001) == "NGS/1001-2000/NGS_01001.jpg"
    assert matek_relpath("LYT", 24_500) == "LYT/24001-25000/LYT_24500.jpg"
    assert matek_relpath("MON", 5, per_folder=4) == "MON/0005-0008/MON_00005.jpg"


def test_tree_is_read_by_the_matek_kind_and_the_same_whatever_the_jobs(tmp_path, load):
    one = generate_matek_tree(tmp_path / "one", 18, size=48, per_folder=4)
    two = generate_matek_tree(tmp_path / "two", 18, size=48, jobs=2, per_folder=4)
    files = _files(one)
    assert files == _files(two) and len(files) == 18
    assert all((one / f).read_bytes() == (two / f).read_bytes() for f in files)
    assert "BLA/0001-0004/BLA_00004.jpg" in files and "BLA/0005-0008/BLA_00005.jpg" in files
    assert "LYT/0005-0008/LYT_00005.jpg" in files and "MON/0005-0008/MON_00005.jpg" not in files
    table = load(kind="matek_bm", root=one)
    assert table.class_counts() == {"BLA": 5, "LYT": 5, "MON": 4, "NGS": 4}
    assert table.fingerprint == load(kind="matek_bm", root=two).fingerprint


def test_image_i_of_a_class_is_the_synthetic_cell_drawn_from_its_own_seed(tmp_path):
    root = generate_matek_tree(tmp_path / "t", 8, size=48, seed=3, quality=95)
    ci = SYNTHETIC_CLASSES.index("monocyte")
    decoded = cv2.cvtColor(cv2.imread(str(root / matek_relpath(MATEK_CODES["monocyte"], 2))), cv2.COLOR_BGR2RGB)
    drawn = render_cell("monocyte", np.random.default_rng([3, ci, 1]), 48).image
    assert decoded.shape == (48, 48, 3)
    assert np.abs(decoded.astype(int) - drawn).mean() < 8  # JPEG loses some of the pixel noise
    other = render_cell("monocyte", np.random.default_rng([3, ci, 0]), 48).image
    assert np.abs(decoded.astype(int) - other).mean() > 20


def test_smaller_trees_are_the_first_files_of_larger_ones(tmp_path):
    small = generate_matek_tree(tmp_path / "small", 8, size=40)
    big = generate_matek_tree(tmp_path / "big", 20, size=40)
    assert all((small / f).read_bytes() == (big / f).read_bytes() for f in _files(small))


def test_bad_sizes_are_refused(tmp_path):
    with pytest.raises(ValueError, match="n >= 4"):
        generate_matek_tree(tmp_path, 3)
    with pytest.raises(ValueError, match="size >= 32"):
        generate_matek_tree(tmp_path, 8, size=16)
