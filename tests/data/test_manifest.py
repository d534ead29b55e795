"""Kind ``manifest``: a CSV of path,label[,patient][,split] relative to the CSV's folder."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from bmbench.data.manifest import read_manifest
from bmbench.core.errors import DatasetError

FILES = ["imgs/a1.png", "imgs/a2.png", "imgs/b1.png", "imgs/sub/b2.png"]


@pytest.fixture
def folder(tmp_path, make_tree) -> Path:
    return make_tree(tmp_path / "set", FILES)


def write_csv(folder: Path, text: str, name: str = "manifest.csv") -> Path:
    path = folder / name
    path.write_text(text, encoding="utf-8")
    return path


def test_manifest_loads_paths_labels_groups_and_splits(folder, load):
    csv = write_csv(folder, "path,label,patient,split\n"
                            "imgs/a1.png,alpha,p1,train\n"
                            "imgs/a2.png, alpha ,p2,test\n"
                            "imgs/b1.png,beta,p1,\n"
                            "imgs/sub/b2.png,beta,,val\n")
    t = load(kind="manifest", root=csv)
    assert t.kind == "manifest"
    assert t.root == folder.resolve()
    assert t.classes == ("alpha", "beta")
    rows = {r.relpath: r for r in t.frame.itertuples()}
    assert set(rows) == set(FILES)
    assert rows["imgs/a2.png"].label == "alpha"  # labels are stripped
    assert rows["imgs/a1.png"].group == "p1" and pd.isna(rows["imgs/sub/b2.png"].group)
    assert rows["imgs/a2.png"].split == "test" and pd.isna(rows["imgs/b1.png"].split)
    assert all(Path(p).is_file() for p in t.frame["path"])
    assert t.has_groups and t.has_predefined_split


def test_manifest_without_optional_columns(folder, load):
    csv = write_csv(folder, "label,path\nx,imgs/a1.png\ny,imgs/b1.png\n")
    t = load(kind="manifest", root=csv)
    assert not t.has_groups and not t.has_predefined_split
    assert dict(zip(t.frame["relpath"], t.frame["label"])) == {"imgs/a1.png": "x", "imgs/b1.png": "y"}


def test_manifest_backslash_paths_and_inner_dotdot(folder, load):
    csv = write_csv(folder, "path,label\nimgs\\a1.png,x\nimgs/sub/../b1.png,y\n")
    t = load(kind="manifest", root=csv)
    assert len(t) == 2
    assert all(Path(p).is_file() for p in t.frame["path"])


def test_manifest_labels_are_text_not_numbers(folder, load):
    csv = write_csv(folder, "path,label\nimgs/a1.png,01\nimgs/b1.png,1\n")
    assert load(kind="manifest", root=csv).classes == ("01", "1")


@pytest.mark.parametrize("bad", ["../outside.png", "imgs/../../outside.png"])
def test_manifest_path_escaping_with_dotdot(folder, load, make_image, bad):
    make_image(folder.parent / "outside.png", size=(8, 8))
    csv = write_csv(folder, f"path,label\nimgs/a1.png,x\n{bad},y\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:3: path .*outside the manifest's folder"):
        load(kind="manifest", root=csv)


def test_manifest_absolute_path_is_refused_even_inside(folder, load):
    inside = (folder / "imgs" / "b1.png").resolve()
    csv = write_csv(folder, f"path,label\nimgs/a1.png,x\n{inside.as_posix()},y\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:3: path .*must be relative"):
        load(kind="manifest", root=csv)


def test_manifest_symlink_leading_outside_is_refused(folder, load, make_image):
    target = make_image(folder.parent / "secret.png", size=(8, 8))
    try:
        (folder / "imgs" / "link.png").symlink_to(target)
    except (OSError, NotImplementedError):
        pytest.skip("cannot create symbolic links here")
    csv = write_csv(folder, "path,label\nimgs/a1.png,x\nimgs/link.png,y\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:3: .*outside"):
        load(kind="manifest", root=csv)


def test_manifest_missing_image_names_line_and_path(folder, load):
    csv = write_csv(folder, "path,label\nimgs/a1.png,x\nimgs/b1.png,y\nimgs/nope.png,y\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:4: image 'imgs/nope\.png' does not exist"):
        load(kind="manifest", root=csv)


def test_manifest_file_missing(tmp_path, load):
    with pytest.raises(DatasetError, match=r"gone\.csv: manifest CSV not found"):
        load(kind="manifest", root=tmp_path / "gone.csv")


def test_manifest_root_that_is_a_folder(folder, load):
    with pytest.raises(DatasetError, match=r"set: manifest CSV not found \(dataset\.root must be the CSV"):
        load(kind="manifest", root=folder)


@pytest.mark.parametrize("header, missing", [("file,label", "path"), ("path,class", "label"),
                                             ("name,kind", "label, path")])
def test_manifest_missing_columns(folder, load, header, missing):
    csv = write_csv(folder, f"{header}\nimgs/a1.png,x\n")
    with pytest.raises(DatasetError, match=rf"manifest\.csv: manifest needs columns .*missing {missing}$"):
        load(kind="manifest", root=csv)


def test_manifest_empty_file(folder, load):
    csv = write_csv(folder, "")
    with pytest.raises(DatasetError, match=r"manifest\.csv: cannot read manifest CSV"):
        load(kind="manifest", root=csv)


def test_manifest_header_only_has_no_images(folder, load):
    csv = write_csv(folder, "path,label\n")
    with pytest.raises(DatasetError, match=r"no images found"):
        load(kind="manifest", root=csv)


@pytest.mark.parametrize("label", ["", "   "])
def test_manifest_empty_label_names_the_line(folder, load, label):
    csv = write_csv(folder, f"path,label\nimgs/a1.png,x\nimgs/a2.png,x\nimgs/b1.png,{label}\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:4: empty label"):
        load(kind="manifest", root=csv)


def test_manifest_empty_path_names_the_line(folder, load):
    csv = write_csv(folder, "path,label\nimgs/a1.png,x\n,y\n")
    with pytest.raises(DatasetError, match=r"manifest\.csv:3: empty path"):
        load(kind="manifest", root=csv)


def test_manifest_bad_split_value(folder, load):
    csv = write_csv(folder, "path,label,split\nimgs/a1.png,x,train\nimgs/b1.png,y,training\n")
    with pytest.raises(DatasetError, match=r"unknown split value\(s\) \['training'\]"):
        load(kind="manifest", root=csv)


def test_manifest_with_utf8_bom_and_non_ascii_paths(folder, load, make_image):
    make_image(folder / "imgs" / "zelle ä 1.png", size=(8, 8))
    csv = folder / "m.csv"
    csv.write_bytes("\ufeffpath,label\nimgs/zelle ä 1.png,ä\nimgs/b1.png,b\n".encode("utf-8"))
    t = load(kind="manifest", root=csv)
    assert set(t.frame["relpath"]) == {"imgs/zelle ä 1.png", "imgs/b1.png"}
    assert t.classes == ("b", "ä")


def test_read_manifest_none():
    with pytest.raises(DatasetError, match=r"dataset\.root is required for dataset kind 'manifest'"):
        read_manifest(None)
