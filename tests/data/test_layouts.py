"""Layout loaders of every registered data set kind, on tiny generated trees."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import numpy as np
import pytest

from bmbench.data import get_kind, list_kinds
from bmbench.data.imageio import read_rgb
from bmbench.data.layouts import walk_images
from bmbench.core.errors import DatasetError, RecipeError

REPO = Path(__file__).resolve().parents[2]


def counts(table) -> dict:
    return dict(table.frame["label"].value_counts())


def test_every_builtin_kind_is_registered():
    names = {k.name for k in list_kinds()}
    assert {"matek_bm", "matek_bm4", "pbc", "raabin", "aml_matek", "cnmc", "bloodcells4",
            "folder", "manifest", "synthetic"} <= names


# --- matek_bm ---------------------------------------------------------------------------

MATEK_FILES = [f"{c}/0001-1000/{c}_{n:05d}.jpg" for c in ("BLA", "NGS", "EOS") for n in (1, 2, 3)]


@pytest.mark.parametrize("top", ["", "bone_marrow_cell_dataset"])
def test_matek_bm_labels_from_class_folders(tmp_path, make_tree, load, top):
    make_tree(tmp_path / top, MATEK_FILES)
    t = load(kind="matek_bm", root=tmp_path)
    assert t.kind == "matek_bm"
    assert t.root == tmp_path / top
    assert len(t) == 9
    assert t.classes == ("BLA", "EOS", "NGS")
    assert counts(t) == {"BLA": 3, "EOS": 3, "NGS": 3}
    assert "BLA/0001-1000/BLA_00002.jpg" in set(t.frame["relpath"])
    assert all(Path(p).is_file() and Path(p).is_absolute() for p in t.frame["path"])
    assert not t.has_groups and not t.has_predefined_split
    assert t.labels.dtype == np.int64
    assert list(t.labels) == [t.classes.index(lab) for lab in t.frame["label"]]


def test_matek_bm_unknown_folders_come_after_known_codes(tmp_path, make_tree, load):
    make_tree(tmp_path, [*MATEK_FILES, "AAA/x_1.jpg", "ZZZ/x_2.jpg"])
    t = load(kind="matek_bm", root=tmp_path)
    assert t.classes == ("BLA", "EOS", "NGS", "AAA", "ZZZ")


def test_matek_bm_ignores_non_images_hidden_files_and_loose_files(tmp_path, make_tree, load):
    make_tree(tmp_path, MATEK_FILES)
    (tmp_path / "BLA" / "0001-1000" / "notes.txt").write_text("x")
    (tmp_path / "BLA" / "0001-1000" / "Thumbs.db").write_bytes(b"x")
    make_tree(tmp_path, ["BLA/0001-1000/.hidden.jpg", "BLA/.cache/BLA_09999.jpg", "loose.jpg"])
    t = load(kind="matek_bm", root=tmp_path)
    assert len(t) == 9
    assert not any("hidden" in p or ".cache" in p or p == "loose.jpg" for p in t.frame["relpath"])


def test_matek_bm_upper_case_extensions_are_images(tmp_path, make_tree, load):
    make_tree(tmp_path, ["BLA/a.JPG", "BLA/b.Jpeg", "NGS/c.PNG", "NGS/d.TIF"])
    assert len(load(kind="matek_bm", root=tmp_path)) == 4


# --- matek_bm4 --------------------------------------------------------------------------

IDS_SMALL = """\
# a small subset
For train_set and val_set:
    folder BLA
    subfolder 0001-1000
    BLA_00001.jpg - BLA_00003.jpg
    folder NGS
    subfolder 0001-1000
    NGS_00001.jpg - NGS_00002.jpg
For test_set:
    folder BLA
    subfolder 2001-3000
    BLA_02001.jpg
    folder NGS
    subfolder 2001-3000
    NGS_02001.jpg - NGS_02002.jpg
"""
BM4_FILES = ["BLA/0001-1000/BLA_00001.jpg", "BLA/0001-1000/BLA_00002.jpg",
             "BLA/0001-1000/BLA_00003.jpg", "NGS/0001-1000/NGS_00001.jpg",
             "NGS/0001-1000/NGS_00002.jpg", "BLA/2001-3000/BLA_02001.jpg",
             "NGS/2001-3000/NGS_02001.jpg", "NGS/2001-3000/NGS_02002.jpg"]


@pytest.mark.parametrize("top", ["", "bone_marrow_cell_dataset"])
def test_matek_bm4_lists_images_and_split_from_ids_file(tmp_path, make_tree, load, top):
    root = make_tree(tmp_path / "data" / top, [*BM4_FILES, "BLA/0001-1000/BLA_00004.jpg",
                                               "EBO/0001-1000/EBO_00001.jpg"])
    ids = tmp_path / "ids.txt"
    ids.write_text(IDS_SMALL)
    t = load(kind="matek_bm4", root=tmp_path / "data", ids=ids)
    assert t.root == root
    assert sorted(t.frame["relpath"]) == sorted(BM4_FILES)  # unlisted files are not loaded
    assert t.classes == ("BLA", "NGS")
    assert t.has_predefined_split
    split = dict(zip(t.frame["relpath"], t.frame["split"]))
    assert split["BLA/0001-1000/BLA_00003.jpg"] == "train"
    assert split["BLA/2001-3000/BLA_02001.jpg"] == "test"
    assert t.frame.groupby("split").size().to_dict() == {"train": 5, "test": 3}


def test_matek_bm4_missing_listed_file_names_it(tmp_path, make_tree, load):
    make_tree(tmp_path / "data", [f for f in BM4_FILES if "NGS_02002" not in f])
    ids = tmp_path / "ids.txt"
    ids.write_text(IDS_SMALL)
    with pytest.raises(DatasetError, match=r"NGS/2001-3000/NGS_02002\.jpg.*ids\.txt"):
        load(kind="matek_bm4", root=tmp_path / "data", ids=ids)


def test_matek_bm4_missing_ids_file_names_it(tmp_path, make_tree, load):
    make_tree(tmp_path / "data", BM4_FILES)
    with pytest.raises(DatasetError, match=r"nope\.txt.*dataset\.ids"):
        load(kind="matek_bm4", root=tmp_path / "data", ids=tmp_path / "nope.txt")


def test_matek_bm4_default_ids_file_is_the_repos(tmp_path, load, monkeypatch):
    # the repository's images_IDs.txt (default dataset.ids) against a tree of empty files
    for c in ("BLA", "EBO", "MMZ", "NGS"):
        for sub, lo, hi in (("0001-1000", 1, 1000), ("2001-3000", 2001, 2025)):
            d = tmp_path / c / sub
            d.mkdir(parents=True)
            for n in range(lo, hi + 1):
                (d / f"{c}_{n:05d}.jpg").touch()
    monkeypatch.chdir(REPO)
    t = load(kind="matek_bm4", root=tmp_path)
    assert len(t) == 4100
    assert t.classes == ("BLA", "EBO", "MMZ", "NGS")
    assert t.frame.groupby(["label", "split"]).size().to_dict() == {
        (c, s): n for c in t.classes for s, n in (("test", 25), ("train", 1000))}


# --- pbc --------------------------------------------------------------------------------

PBC_FILES = ["basophil/BA_1.jpg", "basophil/BA_2.jpg", "eosinophil/EO_3.jpg",
             "neutrophil/SNE_4.jpg", "neutrophil/sne_5.jpg", "neutrophil/BNE_6.jpg",
             "neutrophil/NEUTROPHIL_7.jpg", "ig/MY_8.jpg", "ig/MMY_9.jpg", "ig/PMY_10.jpg",
             "ig/IG_11.jpg", "platelet/PLATELET_12.jpg", "erythroblast/ERB_13.jpg",
             "lymphocyte/LY_14.jpg", "monocyte/MO_15.jpg"]


@pytest.mark.parametrize("top", ["", "PBC_dataset_normal_DIB"])
def test_pbc_coarse_labels_are_the_folders(tmp_path, make_tree, load, top):
    make_tree(tmp_path / top, PBC_FILES)
    t = load(kind="pbc", root=tmp_path)
    assert t.root == tmp_path / top
    assert t.classes == ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte",
                         "monocyte", "neutrophil", "platelet")
    assert counts(t) == {"basophil": 2, "eosinophil": 1, "erythroblast": 1, "ig": 4,
                         "lymphocyte": 1, "monocyte": 1, "neutrophil": 4, "platelet": 1}
    assert load(kind="pbc", root=tmp_path, labels="coarse").fingerprint == t.fingerprint


def test_pbc_root_and_its_top_folder_give_the_same_table(tmp_path, make_tree, load):
    make_tree(tmp_path / "PBC_dataset_normal_DIB", PBC_FILES)
    a = load(kind="pbc", root=tmp_path)
    b = load(kind="pbc", root=tmp_path / "PBC_dataset_normal_DIB")
    assert a.fingerprint == b.fingerprint and a.root == b.root


def test_pbc_fine_labels_from_file_name_prefixes(tmp_path, make_tree, load, caplog):
    make_tree(tmp_path, PBC_FILES)
    with caplog.at_level("WARNING", logger="bmbench"):
        t = load(kind="pbc", root=tmp_path, labels="fine")
    assert "2 images have no sub-type prefix and are left out: IG_ (1), NEUTROPHIL_ (1)" in caplog.text
    label = dict(zip(t.frame["relpath"], t.frame["label"]))
    assert label["neutrophil/SNE_4.jpg"] == "segmented_neutrophil"
    assert label["neutrophil/sne_5.jpg"] == "segmented_neutrophil"  # prefix case-insensitive
    assert label["neutrophil/BNE_6.jpg"] == "band_neutrophil"
    assert label["ig/MY_8.jpg"] == "myelocyte"
    assert label["ig/MMY_9.jpg"] == "metamyelocyte"
    assert label["ig/PMY_10.jpg"] == "promyelocyte"
    assert label["platelet/PLATELET_12.jpg"] == "platelet"
    assert label["erythroblast/ERB_13.jpg"] == "erythroblast"
    # images without a sub-type prefix are dropped
    assert "neutrophil/NEUTROPHIL_7.jpg" not in label and "ig/IG_11.jpg" not in label
    assert len(t) == len(PBC_FILES) - 2
    assert len(t.classes) == 11
    assert set(t.classes) == {"basophil", "eosinophil", "erythroblast", "lymphocyte", "monocyte",
                              "platelet", "segmented_neutrophil", "band_neutrophil",
                              "myelocyte", "metamyelocyte", "promyelocyte"}


def test_pbc_does_not_descend_below_class_folders(tmp_path, make_tree, load):
    make_tree(tmp_path, [*PBC_FILES, "basophil/extra/BA_99.jpg"])
    t = load(kind="pbc", root=tmp_path)
    assert "basophil/extra/BA_99.jpg" not in set(t.frame["relpath"])


def test_pbc_bad_labels_option_is_a_recipe_error(tmp_path, make_tree, load):
    make_tree(tmp_path, PBC_FILES)
    with pytest.raises(RecipeError, match=r"dataset\.labels.*'medium'.*'coarse'"):
        load(kind="pbc", root=tmp_path, labels="medium")


def test_option_of_another_kind_is_a_recipe_error_naming_the_key(tmp_path, load):
    with pytest.raises(RecipeError, match=r"dataset\.test_set: unknown key.*for kind 'pbc'"):
        load(kind="pbc", root=tmp_path, test_set="TEST")
    with pytest.raises(RecipeError, match=r"dataset\.lables: unknown key \(did you mean 'labels'\?\)"):
        load(kind="pbc", root=tmp_path, lables="fine")


def test_unknown_kind_is_a_recipe_error_with_suggestion(tmp_path, load):
    with pytest.raises(RecipeError, match=r"dataset\.kind: unknown dataset kind 'matek'.*did you mean"):
        load(kind="matek", root=tmp_path)
    with pytest.raises(DatasetError, match=r"unknown dataset kind 'nope'.*known: .*pbc"):
        get_kind("nope")


# --- raabin -----------------------------------------------------------------------------

def test_raabin_train_and_testa_splits(tmp_path, make_tree, load):
    make_tree(tmp_path, ["Train/Basophil/a.jpg", "Train/Neutrophil/b.jpg", "Train/Neutrophil/c.jpg",
                         "TestA/Basophil/d.jpg", "TestA/Neutrophil/e.jpg", "TestB/Basophil/f.jpg"])
    t = load(kind="raabin", root=tmp_path)
    split = dict(zip(t.frame["relpath"], t.frame["split"]))
    assert split == {"Train/Basophil/a.jpg": "train", "Train/Neutrophil/b.jpg": "train",
                     "Train/Neutrophil/c.jpg": "train", "TestA/Basophil/d.jpg": "test",
                     "TestA/Neutrophil/e.jpg": "test"}
    assert t.classes == ("Basophil", "Neutrophil")
    assert counts(t) == {"Basophil": 2, "Neutrophil": 3}


def test_raabin_without_train_or_testa_names_the_folders(tmp_path, make_tree, load):
    make_tree(tmp_path, ["Basophil/a.jpg", "Neutrophil/b.jpg"])
    with pytest.raises(DatasetError, match=r"Train/ and TestA/.*raabin"):
        load(kind="raabin", root=tmp_path)


# --- aml_matek --------------------------------------------------------------------------

@pytest.mark.parametrize("top", ["", "AML-Cytomorphology_LMU", "AML_Cytomorphology_LMU"])
def test_aml_matek_tiff_class_folders(tmp_path, make_image, load, top):
    for i, rel in enumerate(["MYB/MYB_0001.tiff", "MYB/MYB_0002.tiff", "LYT/LYT_0001.tiff",
                             "NGS/NGS_0001.tif"]):
        make_image(tmp_path / top / rel, size=(16, 12), seed=i)
    t = load(kind="aml_matek", root=tmp_path)
    assert t.root == tmp_path / top
    assert t.classes == ("LYT", "MYB", "NGS")  # in the kind's code order
    assert counts(t) == {"MYB": 2, "LYT": 1, "NGS": 1}
    image = read_rgb(t.frame["path"][0])
    assert image.shape == (12, 16, 3) and image.dtype == np.uint8


# --- cnmc -------------------------------------------------------------------------------

CNMC_FILES = ["fold_0/all/UID_11_10_1_all.bmp", "fold_0/all/UID_11_11_2_all.bmp",
              "fold_0/hem/UID_H10_5_1_hem.bmp", "fold_1/all/UID_7_1_1_all.bmp",
              "fold_1/hem/UID_H10_6_1_hem.bmp", "fold_2/hem/UID_H22_1_1_hem.bmp"]


@pytest.mark.parametrize("top", ["", "C-NMC_training_data", "training_data"])
def test_cnmc_labels_and_patient_groups(tmp_path, make_tree, load, top):
    make_tree(tmp_path / top, [*CNMC_FILES, "validation/all/UID_99_1_1_all.bmp",
                               "fold_0/other/UID_98_1_1_all.bmp"])
    t = load(kind="cnmc", root=tmp_path)
    assert t.root == tmp_path / top
    assert sorted(t.frame["relpath"]) == sorted(CNMC_FILES)
    assert t.classes == ("all", "hem")
    assert t.has_groups
    group = dict(zip(t.frame["relpath"], t.frame["group"]))
    assert group == {"fold_0/all/UID_11_10_1_all.bmp": "11", "fold_0/all/UID_11_11_2_all.bmp": "11",
                     "fold_0/hem/UID_H10_5_1_hem.bmp": "H10", "fold_1/all/UID_7_1_1_all.bmp": "7",
                     "fold_1/hem/UID_H10_6_1_hem.bmp": "H10", "fold_2/hem/UID_H22_1_1_hem.bmp": "H22"}
    assert counts(t) == {"all": 3, "hem": 3}


# --- bloodcells4 ------------------------------------------------------------------------

BC4_FILES = ["TRAIN/EOSINOPHIL/_0_1.jpeg", "TRAIN/EOSINOPHIL/_0_2.jpeg", "TRAIN/NEUTROPHIL/_1_1.jpeg",
             "TEST/EOSINOPHIL/_2_1.jpeg", "TEST/NEUTROPHIL/_3_1.jpeg", "TEST/NEUTROPHIL/_3_2.jpeg",
             "TEST_SIMPLE/EOSINOPHIL/_4_1.jpeg", "TEST_SIMPLE/NEUTROPHIL/_5_1.jpeg"]


@pytest.mark.parametrize("top", ["", "images", "dataset2-master/images"])
def test_bloodcells4_train_and_test_folders(tmp_path, make_tree, load, top):
    make_tree(tmp_path / top, BC4_FILES)
    t = load(kind="bloodcells4", root=tmp_path)
    assert t.root == tmp_path / top
    split = dict(zip(t.frame["relpath"], t.frame["split"]))
    assert split == {"TRAIN/EOSINOPHIL/_0_1.jpeg": "train", "TRAIN/EOSINOPHIL/_0_2.jpeg": "train",
                     "TRAIN/NEUTROPHIL/_1_1.jpeg": "train", "TEST/EOSINOPHIL/_2_1.jpeg": "test",
                     "TEST/NEUTROPHIL/_3_1.jpeg": "test", "TEST/NEUTROPHIL/_3_2.jpeg": "test"}
    assert t.classes == ("EOSINOPHIL", "NEUTROPHIL")


def test_bloodcells4_test_simple_option(tmp_path, make_tree, load):
    make_tree(tmp_path / "images", BC4_FILES)
    t = load(kind="bloodcells4", root=tmp_path, test_set="TEST_SIMPLE")
    test = t.frame[t.frame["split"] == "test"]
    assert sorted(test["relpath"]) == ["TEST_SIMPLE/EOSINOPHIL/_4_1.jpeg",
                                       "TEST_SIMPLE/NEUTROPHIL/_5_1.jpeg"]
    assert (t.frame["split"] == "train").sum() == 3
    with pytest.raises(RecipeError, match=r"dataset\.test_set"):
        load(kind="bloodcells4", root=tmp_path, test_set="TEST_HARD")


def test_bloodcells4_missing_test_folder_names_it(tmp_path, make_tree, load):
    make_tree(tmp_path / "images", [f for f in BC4_FILES if not f.startswith("TEST/")])
    with pytest.raises(DatasetError, match=r"images[/\\]TEST: missing"):
        load(kind="bloodcells4", root=tmp_path)


# --- folder -----------------------------------------------------------------------------

def test_folder_is_recursive_and_discovers_classes(tmp_path, make_tree, load):
    make_tree(tmp_path, ["b/x.png", "b/deep/er/y.bmp", "a/z.tif", "a/w.jpeg", "c.jpg"])
    t = load(kind="folder", root=tmp_path)
    assert t.classes == ("a", "b")
    assert counts(t) == {"a": 2, "b": 2}
    assert "b/deep/er/y.bmp" in set(t.frame["relpath"])
    assert not t.has_groups


def test_folder_group_pattern(tmp_path, make_tree, load):
    make_tree(tmp_path, ["Eos/BloodImage_00001_1.jpg", "Eos/BloodImage_00002_1.jpg",
                         "Neu/BloodImage_00001_2.jpg", "Neu/sub/BloodImage_00003_1.jpg"])
    t = load(kind="folder", root=tmp_path, group_pattern=r"BloodImage_(\d+)_")
    assert t.has_groups
    assert dict(zip(t.frame["relpath"], t.frame["group"])) == {
        "Eos/BloodImage_00001_1.jpg": "00001", "Eos/BloodImage_00002_1.jpg": "00002",
        "Neu/BloodImage_00001_2.jpg": "00001", "Neu/sub/BloodImage_00003_1.jpg": "00003"}
    # without a capture group the whole match is the group
    t = load(kind="folder", root=tmp_path, group_pattern=r"BloodImage_\d+")
    assert set(t.frame["group"]) == {"BloodImage_00001", "BloodImage_00002", "BloodImage_00003"}


def test_folder_group_pattern_not_matching_names_the_file(tmp_path, make_tree, load):
    make_tree(tmp_path, ["Eos/BloodImage_00001_1.jpg", "Neu/other.jpg"])
    with pytest.raises(DatasetError, match=r"Neu/other\.jpg: .*dataset\.group_pattern"):
        load(kind="folder", root=tmp_path, group_pattern=r"BloodImage_(\d+)_")


def test_folder_invalid_group_pattern(tmp_path, make_tree, load):
    make_tree(tmp_path, ["Eos/a.jpg", "Neu/b.jpg"])
    with pytest.raises(DatasetError, match=r"dataset\.group_pattern: invalid regular expression"):
        load(kind="folder", root=tmp_path, group_pattern=r"(\d+")


def within(seconds, fn, *args, **kwargs):
    """Run ``fn`` in a daemon thread; fail (instead of hanging the suite) if it takes too long."""
    result, error = [], []

    def run():
        try:
            result.append(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 (re-raised below)
            error.append(exc)

    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        pytest.fail(f"{getattr(fn, '__name__', fn)} did not finish within {seconds} s")
    if error:
        raise error[0]
    return result[0]


def test_folder_symlink_loop_does_not_hang(tmp_path, make_tree, load):
    make_tree(tmp_path, ["a/x.jpg", "b/y.jpg"])
    try:
        os.symlink(tmp_path, tmp_path / "a" / "loop", target_is_directory=True)
        os.symlink("../b", tmp_path / "a" / "b_again", target_is_directory=True)
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symbolic links here")
    assert within(10, walk_images, tmp_path) == ["a/x.jpg", "b/y.jpg"]
    t = within(10, load, kind="folder", root=tmp_path)
    assert sorted(t.frame["relpath"]) == ["a/x.jpg", "b/y.jpg"]


# --- errors common to every layout ------------------------------------------------------

@pytest.mark.parametrize("kind", ["matek_bm", "pbc", "raabin", "aml_matek", "cnmc",
                                  "bloodcells4", "folder", "matek_bm4"])
def test_missing_root_names_it(tmp_path, load, kind):
    missing = tmp_path / "no_such_folder"
    with pytest.raises(DatasetError, match=r"no_such_folder: dataset\.root does not exist"):
        load(kind=kind, root=missing)


@pytest.mark.parametrize("kind", ["matek_bm", "pbc", "raabin", "aml_matek", "cnmc",
                                  "bloodcells4", "folder", "matek_bm4", "manifest"])
def test_root_none_says_dataset_root_is_required(load, kind):
    with pytest.raises(DatasetError, match=r"dataset\.root is required"):
        load(kind=kind)


def test_root_that_is_a_file(tmp_path, load):
    f = tmp_path / "file.jpg"
    f.write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"file\.jpg: dataset\.root does not exist or is not a folder"):
        load(kind="folder", root=f)


@pytest.mark.parametrize("kind", ["matek_bm", "pbc", "aml_matek", "cnmc", "folder"])
def test_empty_root(tmp_path, load, kind):
    (tmp_path / "empty_class").mkdir()
    with pytest.raises(DatasetError, match=r"no images found; check dataset\.root"):
        load(kind=kind, root=tmp_path)


def test_a_single_class_is_refused(tmp_path, make_tree, load):
    make_tree(tmp_path, ["only/a.jpg", "only/b.jpg"])
    with pytest.raises(DatasetError, match=r"found only 1 class \(only\).*at least 2"):
        load(kind="folder", root=tmp_path)


def test_dataset_classes_keeps_a_subset_in_the_given_order(tmp_path, make_tree, load):
    make_tree(tmp_path, MATEK_FILES)
    t = load(kind="matek_bm", root=tmp_path, classes=["NGS", "BLA"])
    assert t.classes == ("NGS", "BLA")
    assert set(t.frame["label"]) == {"NGS", "BLA"} and len(t) == 6
    assert list(t.labels[t.frame["label"] == "NGS"]) == [0, 0, 0]


def test_dataset_classes_naming_an_absent_class(tmp_path, make_tree, load):
    make_tree(tmp_path, MATEK_FILES)
    with pytest.raises(DatasetError, match=r"dataset\.classes names 'NSG'.*did you mean 'NGS'.*"
                                           r"classes found: BLA, EOS, NGS"):
        load(kind="matek_bm", root=tmp_path, classes=["BLA", "NSG"])


def test_dataset_classes_must_leave_two(tmp_path, make_tree, load):
    make_tree(tmp_path, MATEK_FILES)
    with pytest.raises(DatasetError, match=r"found only 1 class"):
        load(kind="matek_bm", root=tmp_path, classes=["BLA"])


def test_dataset_classes_listing_a_class_twice(tmp_path, make_tree, load):
    make_tree(tmp_path, MATEK_FILES)
    with pytest.raises(DatasetError, match=r"dataset\.classes lists BLA more than once"):
        load(kind="matek_bm", root=tmp_path, classes=["BLA", "BLA"])
    with pytest.raises(DatasetError, match=r"dataset\.classes lists BLA more than once"):
        load(kind="matek_bm", root=tmp_path, classes=["BLA", "NGS", "BLA"])


def test_file_symlink_loop_is_an_error_naming_it_not_a_hang(tmp_path, make_tree, load):
    make_tree(tmp_path, ["a/x.jpg", "b/y.jpg"])
    try:
        os.symlink("self.jpg", tmp_path / "a" / "self.jpg")
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symbolic links here")
    with pytest.raises(DatasetError, match=r"a/self\.jpg: listed image does not exist or cannot be read"):
        within(10, load, kind="folder", root=tmp_path)


def test_empty_class_folder_is_left_out_with_a_warning(tmp_path, make_image, load, caplog):
    for c in ("a", "b"):
        for i in range(2):
            make_image(tmp_path / c / f"{i}.png")
    (tmp_path / "c").mkdir()
    table = load(kind="folder", root=str(tmp_path))
    assert table.classes == ("a", "b")
    assert "class folder has no images; class 'c' is left out" in caplog.text


def test_a_folder_in_another_layout_says_which_layout_the_kind_expects(tmp_path, make_tree, load):
    make_tree(tmp_path / "pbc", PBC_FILES)
    with pytest.raises(DatasetError) as err:
        load(kind="matek_bm", root=tmp_path / "pbc")
    text = str(err.value)
    assert "is a class of kind 'matek_bm'" in text and "is this a 'matek_bm' data set? expected layout: ROOT/<CLASS>/" in text
    make_tree(tmp_path / "matek", ["BLA/0001-1000/BLA_00001.jpg", "EOS/0001-1000/EOS_00001.jpg"])
    with pytest.raises(DatasetError, match=r"no images found.*is this a 'pbc' data set\? expected layout: "
                                           r"ROOT/PBC_dataset_normal_DIB/"):
        load(kind="pbc", root=tmp_path / "matek")
