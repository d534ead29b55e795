"""The data set table: validation, class order and the fingerprint."""

from __future__ import annotations

import shutil

import pandas as pd
import pytest

from bmbench.data.table import fingerprint, join_paths, make_table
from bmbench.core.errors import DatasetError

FILES = ["a/1.png", "a/2.png", "b/3.png", "b/sub/4.png"]


@pytest.fixture
def tree(tmp_path, make_tree):
    return make_tree(tmp_path / "data", FILES)


def rows_of(files, labels=None) -> pd.DataFrame:
    return pd.DataFrame({"relpath": list(files),
                         "label": labels or [f.split("/")[0] for f in files]})


def test_same_files_same_fingerprint(tree, load):
    a = load(kind="folder", root=tree)
    b = load(kind="folder", root=tree)
    assert a.fingerprint == b.fingerprint
    assert len(a.fingerprint) == 16 and int(a.fingerprint, 16) >= 0


def test_fingerprint_is_order_independent(tree):
    rows = rows_of(FILES)
    shuffled = rows.sample(frac=1.0, random_state=3).reset_index(drop=True)
    assert list(shuffled["relpath"]) != FILES
    assert fingerprint(rows, tree) == fingerprint(shuffled, tree)
    assert make_table("folder", tree, rows).fingerprint == make_table("folder", tree, shuffled).fingerprint


def test_fingerprint_is_the_published_formula(tree):
    """sha256 of sorted ``relpath<TAB>size<TAB>label`` lines: the value split fingerprints
    and stored runs rest on, whatever the implementation."""
    import hashlib

    lines = "".join(f"{rel}\t{(tree / rel).stat().st_size}\t{rel.split('/')[0]}\n" for rel in sorted(FILES))
    assert fingerprint(rows_of(FILES), tree) == hashlib.sha256(lines.encode()).hexdigest()[:16]


@pytest.mark.parametrize("root", ["/data/set", "/data/set/", "relative/set", ".", "/"])
def test_joined_paths_are_what_pathlib_gives(root):
    from pathlib import Path

    rels = ["a/1.png", "1.png", "a//b.png", "./a.png", "a/./b.png", "a/b/.", "a/", "/abs.png",
            "a/../b.png", ".hidden/x.png", "a.b/c..png"]
    assert join_paths(Path(root), rels) == [str(Path(root) / r) for r in rels]


def test_fingerprint_does_not_depend_on_where_the_tree_lives(tree, tmp_path, load):
    copy = shutil.copytree(tree, tmp_path / "elsewhere")
    assert load(kind="folder", root=tree).fingerprint == load(kind="folder", root=copy).fingerprint


def test_renamed_label_changes_fingerprint(tree):
    before = fingerprint(rows_of(FILES), tree)
    relabelled = rows_of(FILES, ["a", "a", "b", "c"])
    assert fingerprint(relabelled, tree) != before


def test_renamed_class_folder_changes_fingerprint(tree, load):
    before = load(kind="folder", root=tree).fingerprint
    (tree / "b").rename(tree / "B")
    after = load(kind="folder", root=tree)
    assert after.classes == ("B", "a")
    assert after.fingerprint != before


def test_changed_file_size_changes_fingerprint(tree, load):
    before = load(kind="folder", root=tree).fingerprint
    with open(tree / "a" / "1.png", "ab") as f:
        f.write(b"\0")
    assert load(kind="folder", root=tree).fingerprint != before


def test_added_or_removed_file_changes_fingerprint(tree, load, make_image):
    before = load(kind="folder", root=tree).fingerprint
    make_image(tree / "a" / "5.png", size=(8, 8))
    added = load(kind="folder", root=tree).fingerprint
    (tree / "a" / "5.png").unlink()
    (tree / "a" / "2.png").unlink()
    removed = load(kind="folder", root=tree).fingerprint
    assert len({before, added, removed}) == 3


def test_fingerprint_of_a_missing_file_names_it(tree):
    with pytest.raises(DatasetError, match=r"a/9\.png: listed image does not exist"):
        fingerprint(rows_of([*FILES, "a/9.png"]), tree)


def test_dataset_classes_subset_changes_fingerprint(tree, load, make_tree):
    make_tree(tree, ["c/5.png"])
    full = load(kind="folder", root=tree)
    subset = load(kind="folder", root=tree, classes=["a", "b"])
    assert subset.fingerprint != full.fingerprint
    assert len(subset) == 4 and len(full) == 5


def test_make_table_columns_sorting_and_counts(tree):
    rows = rows_of(list(reversed(FILES)))
    t = make_table("folder", tree, rows)
    assert list(t.frame.columns) == ["path", "relpath", "label", "group", "split"]
    assert list(t.frame["relpath"]) == sorted(FILES)
    assert list(t.frame["path"]) == [str(tree / f) for f in sorted(FILES)]
    assert t.class_counts() == {"a": 2, "b": 2}
    assert list(t.labels) == [0, 0, 1, 1]
    assert not t.has_groups and not t.has_predefined_split


def test_make_table_class_order_from_the_kind(tree):
    t = make_table("x", tree, rows_of(FILES), classes=("z", "b", "a"))
    assert t.classes == ("b", "a")
    assert list(t.labels) == [1, 1, 0, 0]


def test_make_table_rejects_unknown_split_values(tree):
    rows = rows_of(FILES).assign(split=["train", "test", "validation", None])
    with pytest.raises(DatasetError, match=r"unknown split value\(s\) \['validation'\]"):
        make_table("folder", tree, rows)


def test_make_table_groups_and_splits(tree):
    rows = rows_of(FILES).assign(group=["p1", "p1", "p2", None], split=["train", "val", "test", None])
    t = make_table("folder", tree, rows)
    assert t.has_groups and t.has_predefined_split


def test_make_table_empty_rows(tree):
    with pytest.raises(DatasetError, match=r"no images found"):
        make_table("folder", tree, rows_of([]))
