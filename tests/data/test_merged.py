"""Kind ``merged``: several data sets in one table through their label maps."""

from __future__ import annotations

import pytest

from bmbench.config.recipe import load_recipe, recipe_from_dict
from bmbench.core.errors import DatasetError, RecipeError

PBC = ["basophil/BA_1.jpg", "basophil/BA_2.jpg", "eosinophil/EO_3.jpg", "neutrophil/SNE_4.jpg"]
RAABIN = ["Train/Basophil/a.jpg", "Train/Neutrophil/b.jpg", "TestA/Basophil/c.jpg",
          "TestA/Eosinophil/d.jpg"]
PBC_MAP = {"basophil": "BA", "eosinophil": "EO", "neutrophil": "NE"}
RAABIN_MAP = {"Basophil": "BA", "Eosinophil": "EO", "Neutrophil": None}


@pytest.fixture
def sets(tmp_path, make_tree):
    make_tree(tmp_path / "pbc" / "PBC_dataset_normal_DIB", PBC)
    make_tree(tmp_path / "raabin", RAABIN)
    return tmp_path


def parts(sets, **extra):
    return [{"kind": "pbc", "root": str(sets / "pbc"), "label_map": PBC_MAP},
            {"kind": "raabin", "root": str(sets / "raabin"), "label_map": RAABIN_MAP, **extra}]


def test_classes_named_alike_after_the_label_maps_are_one_class(sets, load):
    t = load(kind="merged", parts=parts(sets))
    assert t.kind == "merged" and t.root == sets
    assert t.classes == ("BA", "EO", "NE")
    assert t.class_counts() == {"BA": 2 + 2, "EO": 1 + 1, "NE": 1}  # Raabin's neutrophil dropped
    assert sorted(t.frame["relpath"])[:2] == ["pbc/PBC_dataset_normal_DIB/basophil/BA_1.jpg",
                                              "pbc/PBC_dataset_normal_DIB/basophil/BA_2.jpg"]
    assert all(p.startswith(str(sets)) for p in t.frame["path"])
    assert not t.has_predefined_split  # part_splits: drop (the default)


def test_part_splits_keep_needs_a_split_in_every_part(sets, load, make_tree):
    with pytest.raises(DatasetError, match=r"dataset\.parts\[0\] \(pbc\) has no predefined split.*part_splits: drop"):
        load(kind="merged", parts=parts(sets), part_splits="keep")
    make_tree(sets / "bc4" / "images", ["TRAIN/EOSINOPHIL/_0_1.jpeg", "TRAIN/NEUTROPHIL/_1_1.jpeg",
                                        "TEST/EOSINOPHIL/_2_1.jpeg", "TEST/NEUTROPHIL/_3_1.jpeg"])
    both = [parts(sets)[1], {"kind": "bloodcells4", "root": str(sets / "bc4"),
                             "label_map": {"EOSINOPHIL": "EO", "NEUTROPHIL": None}}]
    t = load(kind="merged", parts=both, part_splits="keep")
    assert t.frame.groupby("split").size().to_dict() == {"test": 3, "train": 2}
    with pytest.raises(DatasetError, match=r"dataset\.parts\[1\]: kind 'bloodcells4' holds augmented"):
        load(kind="merged", parts=both)


def test_groups_keep_their_part(tmp_path, make_tree, load):
    make_tree(tmp_path / "a", ["x/BloodImage_1_1.jpg", "y/BloodImage_1_2.jpg"])
    make_tree(tmp_path / "b", ["x/BloodImage_1_3.jpg", "y/BloodImage_2_1.jpg"])
    folder = {"kind": "folder", "group_pattern": r"BloodImage_(\d+)_"}
    t = load(kind="merged", parts=[{**folder, "root": str(tmp_path / "a")}, {**folder, "root": str(tmp_path / "b")}])
    assert dict(zip(t.frame["relpath"], t.frame["group"])) == {
        "a/x/BloodImage_1_1.jpg": "0:1", "a/y/BloodImage_1_2.jpg": "0:1",
        "b/x/BloodImage_1_3.jpg": "1:1", "b/y/BloodImage_2_1.jpg": "1:2"}


@pytest.mark.parametrize("raw, message", [
    ({"parts": "x"}, r"dataset\.parts: expected a list of at least 2 data sets"),
    ({"parts": [{"kind": "pbc"}]}, r"dataset\.parts: expected a list of at least 2"),
    ({"parts": [{"kind": "merged"}, {"kind": "pbc"}]}, r"dataset\.parts\[0\]\.kind: a part cannot itself be merged"),
    ({"parts": [{"kind": "pbc", "image_size": 32}, {"kind": "pbc"}]},
     r"dataset\.parts\[0\]\.image_size: give it once under dataset"),
    ({"parts": [{"kind": "pbc", "lables": "fine"}, {"kind": "pbc"}]},
     r"dataset\.parts\[0\]\.lables: unknown key \(did you mean 'labels'\?\)"),
    ({"parts": [{"kind": "pbc"}, {"root": "x"}]}, r"dataset\.parts\[1\]\.kind: required key is missing"),
    ({}, r"dataset\.parts: required key is missing"),
])
def test_bad_parts_name_the_key(raw, message):
    with pytest.raises(RecipeError, match=message):
        recipe_from_dict({"name": "m", "dataset": {"kind": "merged", **raw}, "model": {"family": "baseline"}}, "m.yaml")


def test_root_and_shared_images_are_refused(sets, load):
    with pytest.raises(DatasetError, match=r"dataset\.root: kind 'merged' reads its folders from dataset\.parts"):
        load(kind="merged", root=sets, parts=parts(sets))
    twice = [parts(sets)[0], {**parts(sets)[0], "label_map": None}]
    with pytest.raises(DatasetError, match=r"dataset\.parts\[1\]: .*BA_1\.jpg is also in dataset\.parts\[0\]"):
        load(kind="merged", parts=twice)
    missing = [parts(sets)[0], {"kind": "raabin", "root": str(sets / "nope")}]
    with pytest.raises(DatasetError, match=r"dataset\.parts\[1\] \(raabin\): .*nope: dataset\.root does not exist"):
        load(kind="merged", parts=missing)


def test_recipe_paths_overrides_and_fingerprint_round_trip(sets, tmp_path, monkeypatch):
    recipe = tmp_path / "r" / "m.yaml"
    recipe.parent.mkdir()
    recipe.write_text("name: m\nmodel: {family: baseline}\ndataset:\n  kind: merged\n  parts:\n"
                      "    - {kind: pbc, root: ../pbc, labels: fine}\n    - {kind: raabin, root: ../raabin}\n")
    r = load_recipe(recipe)
    assert [p.root for p in r.dataset.options.parts] == [str(sets / "pbc"), str(sets / "raabin")]
    assert r.dataset.options.parts.specs[0].options.labels == "fine"
    again = recipe_from_dict(r.to_dict(), "again")
    assert again.fingerprint() == r.fingerprint() and again.dataset == r.dataset
    monkeypatch.chdir(tmp_path)
    moved = load_recipe(recipe, ["dataset.parts.1.root=elsewhere", "dataset.parts.0.kind=folder"])
    assert moved.dataset.options.parts.specs[1].root == str(tmp_path / "elsewhere")
    assert moved.dataset.options.parts.specs[0].kind == "folder"  # pbc's own 'labels' dropped
    assert moved.fingerprint() != r.fingerprint()


# --- labs and leave_out ------------------------------------------------------------------

BC4 = ["TRAIN/EOSINOPHIL/_0_1.jpeg", "TRAIN/NEUTROPHIL/_1_1.jpeg", "TEST/EOSINOPHIL/_2_1.jpeg",
       "TEST/NEUTROPHIL/_3_1.jpeg", "TEST_SIMPLE/EOSINOPHIL/_4_1.jpeg"]
BC4_MAP = {"EOSINOPHIL": "EO", "NEUTROPHIL": "NE"}
CROPS = ["Eosinophil/BloodImage_00001_1.jpg", "Neutrophil/BloodImage_00002_1.jpg"]


@pytest.fixture
def labs(sets, make_tree):
    """Three labs: PBC, Raabin and BCCD (bloodcells4 with its own split, plus crops of it)."""
    make_tree(sets / "bc4" / "images", BC4)
    make_tree(sets / "crops", CROPS)
    return parts(sets, lab="Raabin") + [
        {"kind": "bloodcells4", "root": str(sets / "bc4"), "label_map": BC4_MAP, "lab": "BCCD"},
        {"kind": "folder", "root": str(sets / "crops"), "label_map": {"Eosinophil": "EO", "Neutrophil": "NE"},
         "lab": "BCCD"}]


def roles(table) -> dict:
    return dict(zip(table.frame["relpath"], zip(table.frame["lab"], table.frame["split"])))


def test_every_image_carries_its_lab(labs, load):
    t = load(kind="merged", parts=labs[:2] + labs[3:])  # bloodcells4 alone needs part_splits: keep
    assert dict(zip(t.frame["relpath"], t.frame["lab"])) == {
        **{f"pbc/PBC_dataset_normal_DIB/{p}": "pbc" for p in PBC},  # no lab given: the kind
        **{f"raabin/{p}": "Raabin" for p in RAABIN if "Neutrophil" not in p},
        **{f"crops/{p}": "BCCD" for p in CROPS}}
    assert not t.has_predefined_split


def test_leave_out_tests_the_lab_and_trains_on_the_others(labs, load):
    t = load(kind="merged", parts=labs, leave_out="BCCD")
    assert roles(t) == {
        **{f"pbc/PBC_dataset_normal_DIB/{p}": ("pbc", "train") for p in PBC},
        # a part's own test images never train (Raabin's TestA), its own training images never test
        "raabin/Train/Basophil/a.jpg": ("Raabin", "train"),
        # bloodcells4's own TRAIN is never tested; its TEST and the crops are the test set
        "bc4/images/TEST/EOSINOPHIL/_2_1.jpeg": ("BCCD", "test"), "bc4/images/TEST/NEUTROPHIL/_3_1.jpeg": ("BCCD", "test"),
        **{f"crops/{p}": ("BCCD", "test") for p in CROPS}}
    trained = load(kind="merged", parts=labs, leave_out="Raabin")
    bc4 = {r: role for r, role in roles(trained).items() if r.startswith("bc4/")}
    assert bc4 == {"bc4/images/TRAIN/EOSINOPHIL/_0_1.jpeg": ("BCCD", "train"),
                   "bc4/images/TRAIN/NEUTROPHIL/_1_1.jpeg": ("BCCD", "train")}  # its TEST never trains
    assert {r: role for r, role in roles(trained).items() if r.startswith("raabin/")} == {
        "raabin/TestA/Basophil/c.jpg": ("Raabin", "test"), "raabin/TestA/Eosinophil/d.jpg": ("Raabin", "test")}


def test_leave_out_enters_the_fingerprint(labs, load):
    two = [labs[0], labs[3]]  # no part with its own split: the same images either way, other roles
    a, b = (load(kind="merged", parts=two, leave_out=lab) for lab in ("pbc", "BCCD"))
    assert sorted(a.frame["relpath"]) == sorted(b.frame["relpath"])
    assert len({a.fingerprint, b.fingerprint, load(kind="merged", parts=two).fingerprint}) == 3
    assert load(kind="merged", parts=two, leave_out="pbc").fingerprint == a.fingerprint


@pytest.mark.parametrize("extra, message", [
    ({"leave_out": "Matek"}, r"dataset\.leave_out: 'Matek' is not a lab of dataset\.parts \(pbc, Raabin, BCCD\)"),
    ({"leave_out": "BCCD", "part_splits": "keep"}, r"dataset\.leave_out makes the split itself.*remove part_splits"),
])
def test_bad_leave_out_is_one_line(labs, load, extra, message):
    with pytest.raises(DatasetError, match=message):
        load(kind="merged", parts=labs, **extra)


def test_bad_lab_names_the_key():
    with pytest.raises(RecipeError, match=r"dataset\.parts\[1\]\.lab: expected a short name"):
        recipe_from_dict({"name": "m", "model": {"family": "baseline"}, "dataset": {
            "kind": "merged", "parts": [{"kind": "pbc"}, {"kind": "pbc", "lab": "a b"}]}}, "m.yaml")


def test_lab_round_trips_and_changes_the_recipe_fingerprint(sets):
    raw = {"name": "m", "model": {"family": "baseline"}, "dataset": {"kind": "merged", "parts": parts(sets)}}
    plain = recipe_from_dict(raw, "m.yaml")
    assert "lab" not in plain.to_dict()["dataset"]["parts"][1]  # unset: recipes without it keep their fingerprint
    named = recipe_from_dict({**raw, "dataset": {**raw["dataset"], "parts": parts(sets, lab="Raabin")}}, "m.yaml")
    assert named.to_dict()["dataset"]["parts"][1]["lab"] == "Raabin"
    assert recipe_from_dict(named.to_dict(), "again").fingerprint() == named.fingerprint() != plain.fingerprint()
