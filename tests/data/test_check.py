"""`bmbench datasets check`: per-class counts and unreadable files."""

from __future__ import annotations

import pytest

from bmbench.data.check import check_dataset
from bmbench.core.errors import BmbenchError, DatasetError, RecipeError


@pytest.fixture
def folder(tmp_path, make_tree):
    root = make_tree(tmp_path / "set", ["alpha/a1.png", "alpha/a2.png", "alpha/a3.png",
                                        "beta/b1.png", "beta/b2.png"])
    (root / "beta" / "broken.jpg").write_text("not an image")
    return root


def test_counts_per_class_and_unreadable_file(folder):
    report = check_dataset(folder, "folder")
    assert report.table.class_counts() == {"alpha": 3, "beta": 3}
    broken = str(folder / "beta" / "broken.jpg")
    assert list(report.unreadable) == [broken]
    assert broken in report.unreadable[broken]
    text = report.text()
    lines = text.splitlines()
    assert lines[0].startswith(f"folder at {folder}: 6 images, 2 classes, fingerprint ")
    assert report.table.fingerprint in lines[0]
    assert any(line.split() == ["alpha", "3"] for line in lines)
    assert any(line.split() == ["beta", "3"] for line in lines)
    assert "1 unreadable image(s):" in text
    assert broken in text


def test_all_images_decode(tmp_path, make_tree):
    root = make_tree(tmp_path, ["a/1.png", "b/2.png"])
    report = check_dataset(root, "folder")
    assert report.unreadable == {}
    assert report.text().splitlines()[-1] == "all images decode"


def test_no_decode_skips_reading(folder):
    report = check_dataset(folder, "folder", decode=False)
    assert report.unreadable == {}
    assert "images not decoded (--no-decode)" in report.text()


def test_splits_and_groups_are_reported(tmp_path, make_tree):
    root = make_tree(tmp_path, ["images/TRAIN/EOSINOPHIL/BloodImage_1_a.jpeg",
                                "images/TRAIN/EOSINOPHIL/BloodImage_2_a.jpeg",
                                "images/TRAIN/NEUTROPHIL/BloodImage_3_a.jpeg",
                                "images/TEST/EOSINOPHIL/BloodImage_4_a.jpeg",
                                "images/TEST/NEUTROPHIL/BloodImage_5_a.jpeg",
                                "images/TEST_SIMPLE/NEUTROPHIL/BloodImage_6_a.jpeg",
                                "images/TEST_SIMPLE/NEUTROPHIL/BloodImage_7_a.jpeg"])
    report = check_dataset(root, "bloodcells4")
    text = report.text()
    assert "EOSINOPHIL        3   (test 1, train 2)" in text
    assert "NEUTROPHIL        2   (test 1, train 1)" in text
    report = check_dataset(root, "bloodcells4", options=["test_set=TEST_SIMPLE"])
    assert "NEUTROPHIL        3   (test 2, train 1)" in report.text()
    grouped = check_dataset(root / "images" / "TRAIN", "folder",
                            options=[r"group_pattern=BloodImage_(\d+)_"], decode=False)
    assert "patient/group ids: 3 groups" in grouped.text()


def test_ids_option(tmp_path, make_tree):
    root = make_tree(tmp_path / "bm", ["BLA/s/BLA_1.jpg", "NGS/s/NGS_1.jpg"])
    ids = tmp_path / "ids.txt"
    ids.write_text("For test_set:\n folder BLA\n subfolder s\n BLA_1.jpg\n"
                   " folder NGS\n subfolder s\n NGS_1.jpg\n")
    report = check_dataset(root, "matek_bm4", ids=str(ids))
    assert report.table.class_counts() == {"BLA": 1, "NGS": 1}
    assert report.unreadable == {}


def test_bad_options(folder):
    with pytest.raises(BmbenchError, match=r"--option 'labels': expected KEY=VALUE"):
        check_dataset(folder, "pbc", options=["labels"])
    with pytest.raises(RecipeError, match=r"--option: dataset\.labels"):
        check_dataset(folder, "pbc", options=["labels=medium"])
    with pytest.raises(RecipeError, match=r"dataset\.kind: unknown dataset kind 'foldr'"):
        check_dataset(folder, "foldr")


def test_missing_root(tmp_path):
    with pytest.raises(DatasetError, match=r"nowhere: dataset\.root does not exist"):
        check_dataset(tmp_path / "nowhere", "folder")
