"""Loaders and decoding on the real image subsets in ../shared/datasets (see its README).

Skipped when that folder is absent. The images are read in place, never copied.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bmbench.data import load_dataset
from bmbench.data.imageio import read_rgb
from bmbench.config.recipe import dataset_spec

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "datasets"

pytestmark = [
    pytest.mark.realdata,
    pytest.mark.skipif(not SHARED.is_dir(), reason=f"real data sets not found at {SHARED}"),
]


def load(**raw):
    raw["root"] = str(raw["root"])
    return load_dataset(dataset_spec(raw))


def decode_some(table, n=3, shape=None):
    """Decode the first image of ``n`` classes; check dtype and (optionally) shape."""
    firsts = table.frame.groupby("label", sort=True)["path"].first()
    for path in list(firsts)[:n]:
        image = read_rgb(path)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3, path
        if shape is not None:
            assert image.shape == shape, path
        assert 0 < image.mean() < 255, path


def test_matek_bm():
    t = load(kind="matek_bm", root=SHARED / "matek_bm")
    assert len(t) == 1400
    assert t.classes == ("BLA", "EOS", "LYT", "MON", "NGS", "NIF", "PMO")
    assert set(t.class_counts().values()) == {200}
    assert all(r.startswith(f"{lab}/0001-1000/{lab}_") for r, lab in zip(t.frame["relpath"], t.frame["label"]))
    assert not t.has_groups and not t.has_predefined_split
    decode_some(t, n=7, shape=(250, 250, 3))


def test_matek_bm_fingerprint_is_stable():
    a = load(kind="matek_bm", root=SHARED / "matek_bm")
    b = load(kind="matek_bm", root=SHARED / "matek_bm")
    assert a.fingerprint == b.fingerprint


@pytest.mark.parametrize("sub", ["", "PBC_dataset_normal_DIB"])
def test_pbc_coarse(sub):
    t = load(kind="pbc", root=SHARED / "pbc" / sub)
    assert len(t) == 1600
    assert t.classes == ("basophil", "eosinophil", "erythroblast", "ig", "lymphocyte",
                         "monocyte", "neutrophil", "platelet")
    assert set(t.class_counts().values()) == {200}
    assert t.root.name == "PBC_dataset_normal_DIB"
    decode_some(t, n=8)
    for path in t.frame["path"][:5]:
        assert read_rgb(path).shape in ((363, 360, 3), (369, 366, 3))


def test_pbc_fine():
    t = load(kind="pbc", root=SHARED / "pbc", labels="fine")
    assert len(t) == 1585          # 11 IG_ and 4 NEUTROPHIL_ files have no sub-type
    assert len(t.classes) == 11
    counts = t.class_counts()
    assert counts["segmented_neutrophil"] + counts["band_neutrophil"] == 200 - 4
    assert counts["myelocyte"] + counts["metamyelocyte"] + counts["promyelocyte"] == 200 - 11
    assert counts["basophil"] == counts["platelet"] == 200
    decode_some(t, n=11)


def test_bloodcells4():
    t = load(kind="bloodcells4", root=SHARED / "bloodcells4")
    assert t.classes == ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
    assert t.frame["split"].value_counts().to_dict() == {"train": 1200, "test": 400}
    by = t.frame.groupby(["split", "label"]).size()
    assert set(by["train"]) == {300} and set(by["test"]) == {100}
    assert t.frame.loc[t.frame["split"] == "test", "relpath"].str.startswith("TEST/").all()
    decode_some(t, n=4, shape=(240, 320, 3))


def test_bloodcells4_test_simple():
    t = load(kind="bloodcells4", root=SHARED / "bloodcells4" / "images", test_set="TEST_SIMPLE")
    assert t.frame["split"].value_counts().to_dict() == {"train": 1200, "test": 71}
    test = t.frame[t.frame["split"] == "test"]
    assert test["relpath"].str.startswith("TEST_SIMPLE/").all()
    for path in test["path"][:3]:
        assert read_rgb(path).dtype == np.uint8


def test_bccd_crops_as_folder_with_groups():
    t = load(kind="folder", root=SHARED / "bccd_crops", group_pattern=r"BloodImage_(\d+)_")
    assert len(t) == 351
    assert t.class_counts() == {"Basophil": 3, "Eosinophil": 88, "Lymphocyte": 33,
                                "Monocyte": 20, "Neutrophil": 207}
    assert t.has_groups and t.frame["group"].notna().all()
    assert t.frame["group"].str.fullmatch(r"\d+").all()
    names = t.frame["relpath"].str.rsplit("/", n=1).str[-1]
    assert (names.str.slice(11, 16) == t.frame["group"]).all()   # BloodImage_<00008>_1.jpg
    assert t.frame["group"].nunique() > 300    # mostly one crop per smear here
    for path in t.frame["path"][::70]:
        image = read_rgb(path)
        assert image.dtype == np.uint8 and image.shape[2] == 3
        assert 100 <= max(image.shape[:2]) <= 400


def test_matek_bm4_with_a_small_ids_file(tmp_path):
    root = SHARED / "matek_bm"
    bla = sorted(p.name for p in (root / "BLA" / "0001-1000").glob("BLA_*.jpg"))
    ngs = sorted(p.name for p in (root / "NGS" / "0001-1000").glob("NGS_*.jpg"))
    assert "BLA_00001.jpg" in bla and "NGS_00001.jpg" in ngs
    ids = tmp_path / "ids.txt"
    ids.write_text("For train_set and val_set:\n"
                   "    folder BLA\n    subfolder 0001-1000\n" + "".join(f"    {n}\n" for n in bla[:3]) +
                   "    folder NGS\n    subfolder 0001-1000\n" + "".join(f"    {n}\n" for n in ngs[:3]) +
                   "For test_set:\n"
                   f"    folder BLA\n    subfolder 0001-1000\n    {bla[3]}\n"
                   f"    folder NGS\n    subfolder 0001-1000\n    {ngs[3]}\n    {ngs[4]}\n")
    t = load(kind="matek_bm4", root=root, ids=str(ids))
    assert len(t) == 9
    assert t.classes == ("BLA", "NGS")
    assert t.frame.groupby(["label", "split"]).size().to_dict() == {
        ("BLA", "test"): 1, ("BLA", "train"): 3, ("NGS", "test"): 2, ("NGS", "train"): 3}
    decode_some(t, n=2, shape=(250, 250, 3))


def test_matek_bm4_range_over_the_sparse_subset_names_a_missing_file(tmp_path):
    # the shared subset keeps 200 of the 1000 files per class: a full range must fail clearly
    ids = tmp_path / "ids.txt"
    ids.write_text("For test_set:\n folder BLA\n subfolder 0001-1000\n BLA_00001.jpg - BLA_01000.jpg\n")
    from bmbench.core.errors import DatasetError

    with pytest.raises(DatasetError, match=r"BLA/0001-1000/BLA_0000[2-9]\.jpg: listed in .*ids\.txt but missing"):
        load(kind="matek_bm4", root=SHARED / "matek_bm", ids=str(ids))
