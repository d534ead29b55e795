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


def _small_classes(tmp_path, make_tree):
    files = [f"a/{i}.png" for i in range(10)] + ["b/1.png", "b/2.png", "c/1.png", "c/2.png"]
    return make_tree(tmp_path / "small", files)


def test_check_names_every_class_too_small_for_the_split_the_run_then_refuses(tmp_path, make_tree):
    from click.testing import CliRunner

    from bmbench.cli import main

    root = _small_classes(tmp_path, make_tree)
    out = CliRunner().invoke(main, ["datasets", "check", str(root), "--kind", "folder", "-q"])
    assert out.exit_code == 0, out.output  # the default split informs; a recipe's split decides
    assert "split (stratified, val=0.1, seed=0, test=0.2) fails" in out.output
    assert "every class needs at least 3 images; too few in b (2), c (2)" in out.output
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"dataset: {{kind: folder, root: {root}}}\nmodel: {{family: baseline}}\n")
    given = CliRunner().invoke(main, ["datasets", "check", str(root), "--kind", "folder", "-q", "--recipe", str(recipe)])
    assert given.exit_code == 1 and "too few in b (2), c (2)" in given.output
    run = CliRunner().invoke(main, ["run", str(recipe), "-q", "--results-dir", str(tmp_path / "res")])
    assert run.exit_code != 0
    # the run counts what the user sees: all of the class's images, then what the test split left
    assert "class 'b' has 2 image(s) (1 left once the test images are held out)" in run.output


def test_check_reads_the_split_of_a_recipe_and_split_options(tmp_path, make_tree):
    from click.testing import CliRunner

    from bmbench.cli import main

    root = _small_classes(tmp_path, make_tree)
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"dataset: {{kind: folder, root: {root}}}\nmodel: {{family: baseline}}\n"
                      "split: {test: 0.5, val: 0.0}\n")
    args = ["datasets", "check", str(root), "--kind", "folder", "-q", "--no-decode"]
    ok = CliRunner().invoke(main, [*args, "--recipe", str(recipe)])
    assert ok.exit_code == 0, ok.output
    assert "split (stratified, val=0.0, seed=0, test=0.5): works (every class needs at least 2 images)" in ok.output
    folds = CliRunner().invoke(main, [*args, "--recipe", str(recipe), "--split", "folds=5"])
    assert folds.exit_code == 1 and "needs at least 5 images; too few in b (2), c (2)" in folds.output
    bad = CliRunner().invoke(main, [*args, "--split", "tset=0.5"])
    assert bad.exit_code == 2 and "split.tset: unknown key (did you mean 'test'?)" in bad.output


def test_a_class_that_splits_only_by_rounding_luck_is_named_with_its_parts(tmp_path, make_tree):
    from bmbench.config.recipe import SplitSpec
    from bmbench.data.check import check_split

    root = make_tree(tmp_path / "luck", [f"a/{i}.png" for i in range(10)] + ["b/1.png", "b/2.png"])
    report = check_dataset(root, "folder", decode=False)
    check_split(report, SplitSpec())
    assert not report.split_fails
    assert "works by rounding luck for b (2: 2 train, 0 val, 0 test)" in report.text()
