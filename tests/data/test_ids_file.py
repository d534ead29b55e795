"""The images_IDs.txt parser (dataset kind matek_bm4)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings, strategies as st

from bmbench.data.ids_file import parse_ids_file, parse_ids_text
from bmbench.core.errors import DatasetError

REPO_IDS = Path(__file__).resolve().parents[2] / "images_IDs.txt"


def relpaths(text: str) -> list[str]:
    return [e.relpath for e in parse_ids_text(text)]


# --- the repository's file --------------------------------------------------------------

def test_repo_images_ids_file():
    entries = parse_ids_file(REPO_IDS)
    assert len(entries) == 4 * 1000 + 4 * 25
    assert Counter((e.label, e.split) for e in entries) == {
        (c, s): n for c in ("BLA", "EBO", "MMZ", "NGS") for s, n in (("train", 1000), ("test", 25))}
    paths = [e.relpath for e in entries]
    assert len(set(paths)) == len(paths)
    assert paths[0] == "BLA/0001-1000/BLA_00001.jpg"
    assert paths[999] == "BLA/0001-1000/BLA_01000.jpg"
    assert "BLA/2001-3000/BLA_02025.jpg" in paths
    assert "NGS/0001-1000/NGS_00500.jpg" in paths
    assert "MMZ/2001-3000/MMZ_02001.jpg" in paths
    assert "BLA/2001-3000/BLA_02026.jpg" not in paths
    by_path = {e.relpath: e for e in entries}
    assert by_path["EBO/2001-3000/EBO_02013.jpg"].split == "test"
    assert by_path["EBO/0001-1000/EBO_00013.jpg"].split == "train"
    assert all(e.relpath.startswith(e.label + "/") for e in entries)


# --- the format -------------------------------------------------------------------------

def test_ranges_keep_zero_padding_and_file_order():
    text = "For test_set:\n folder X\n subfolder s\n X_0098.png - X_0101.png\n X_7.png\n"
    assert relpaths(text) == ["X/s/X_0098.png", "X/s/X_0099.png", "X/s/X_0100.png",
                              "X/s/X_0101.png", "X/s/X_7.png"]


def test_range_without_spaces_and_single_element_range():
    text = "For test_set:\n folder X\n X_01.jpg-X_03.jpg\n X_9.jpg - X_9.jpg\n"
    assert relpaths(text) == ["X/X_01.jpg", "X/X_02.jpg", "X/X_03.jpg", "X/X_9.jpg"]


def test_comments_blank_lines_and_free_indentation():
    text = ("# header comment\n\n"
            "   FOR TRAIN_SET AND VAL_SET:   # section, any case\n"
            "folder BLA   # the class\n"
            "\t\tsubfolder 0001-1000\n"
            "  BLA_00001.jpg - BLA_00002.jpg  # two files\n"
            "  # BLA_00003.jpg (commented out)\n"
            "for test_set:\n"
            "  folder BLA\n"
            "  BLA_09999.jpg\n")
    entries = parse_ids_text(text)
    assert [(e.split, e.label, e.relpath) for e in entries] == [
        ("train", "BLA", "BLA/0001-1000/BLA_00001.jpg"),
        ("train", "BLA", "BLA/0001-1000/BLA_00002.jpg"),
        ("test", "BLA", "BLA/BLA_09999.jpg")]  # a new section forgets the subfolder


def test_a_new_folder_forgets_the_subfolder():
    text = "For test_set:\n folder A\n subfolder s\n A_1.jpg\n folder B\n B_1.jpg\n"
    assert relpaths(text) == ["A/s/A_1.jpg", "B/B_1.jpg"]


def test_tab_between_keyword_and_value():
    text = "For test_set:\n\tfolder\tBLA\n\tsubfolder\t0001-1000\n\tBLA_1.jpg\n"
    assert relpaths(text) == ["BLA/0001-1000/BLA_1.jpg"]


def test_single_file_names_may_contain_hyphens():
    text = "For test_set:\n folder X\n cell-a.jpg\n 2020-01-05_x.png\n X-1_01.jpg - X-1_02.jpg\n"
    assert relpaths(text) == ["X/cell-a.jpg", "X/2020-01-05_x.png", "X/X-1_01.jpg", "X/X-1_02.jpg"]


# --- errors name file:line --------------------------------------------------------------

@pytest.mark.parametrize("text, line, message", [
    ("For test_set:\n BLA_1.jpg\n", 2, r"file line 'BLA_1\.jpg' comes before any 'folder NAME' line"),
    ("# c\ngarbage\nFor test_set:\n folder A\n A_1.jpg\n", 2, r"expected a section line"),
    ("folder A\nFor test_set:\n A_1.jpg\n", 1, r"expected a section line"),
    ("For test_set:\n folder A\n A_1.jpg - B_3.jpg\n", 3, r"same prefix and extension"),
    ("For test_set:\n folder A\n A_1.jpg - A_3.png\n", 3, r"same prefix and extension"),
    ("For test_set:\n folder A\n A_x.jpg - A_y.jpg\n", 3, r"same prefix and extension"),
    ("For test_set:\n folder A\n\n A_10.jpg - A_02.jpg\n", 4, r"ends before it starts"),
    ("For test_set:\n folder A\n A_1.jpg A_2.jpg\n", 3, r"cannot read"),
    ("For test_set:\n folder A\n A_1.jpg\tA_2.jpg\n", 3, r"cannot read"),
])
def test_errors_name_file_and_line(tmp_path, text, line, message):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=rf"ids\.txt:{line}: .*{message}"):
        parse_ids_file(path)


@pytest.mark.parametrize("text", ["", "# only comments\n\n", "For test_set:\n folder A\n"])
def test_lists_no_images(tmp_path, text):
    path = tmp_path / "ids.txt"
    path.write_text(text)
    with pytest.raises(DatasetError, match=r"ids\.txt: lists no images"):
        parse_ids_file(path)


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(DatasetError, match=r"nope\.txt: images ID file not found; set dataset\.ids"):
        parse_ids_file(tmp_path / "nope.txt")
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes("For test_set:\n folder \xe4\n".encode("latin-1"))
    with pytest.raises(DatasetError, match=r"latin1\.txt: cannot read images ID file"):
        parse_ids_file(latin1)
    with pytest.raises(DatasetError, match=rf"{tmp_path.name}: cannot read images ID file"):
        parse_ids_file(tmp_path)


# --- property: writing the format and parsing it returns the expanded names ---------------

_PREFIX = st.text(alphabet="ABCXYZabcxyz019_-.", min_size=1, max_size=6)
_BLOCK = st.tuples(
    st.sampled_from(["BLA", "EBO", "MMZ", "NGS", "cls_1"]),   # folder
    st.one_of(st.none(), st.sampled_from(["0001-1000", "2001-3000", "s"])),  # subfolder
    _PREFIX,
    st.integers(0, 5000),          # first number
    st.integers(0, 40),            # count - 1
    st.integers(1, 6),             # zero-padded width
    st.sampled_from([".jpg", ".png", ".TIF"]),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["train", "test"]), _BLOCK), min_size=1, max_size=5),
       st.booleans())
def test_written_ranges_parse_to_exactly_the_expanded_names(blocks, spaced):
    lines, expected = ["# generated"], []
    header = {"train": "For train_set and val_set:", "test": "For test_set:"}
    for split, (folder, sub, prefix, lo, count, width, ext) in blocks:
        hi = lo + count
        lines += [header[split], f"    folder {folder}"]
        if sub:
            lines.append(f"    subfolder {sub}")
        base = f"{folder}/{sub}" if sub else folder
        names = [f"{prefix}{n:0{width}d}{ext}" for n in range(lo, hi + 1)]
        if len(set(map(len, names))) > 1:   # the format needs one padding width per range
            lines += [f"    {n}" for n in names]
        else:
            dash = " - " if spaced else "-"
            lines.append(f"    {names[0]}{dash}{names[-1]}" if count else f"    {names[0]}")
        expected += [(split, folder, f"{base}/{n}") for n in names]
    if len({rel for _, _, rel in expected}) < len(expected):  # an image listed twice: refused
        with pytest.raises(DatasetError, match="gen.txt: .* listed (in both|more than once)"):
            parse_ids_text("\n".join(lines) + "\n", "gen.txt")
        return
    entries = parse_ids_text("\n".join(lines) + "\n", "gen.txt")
    assert [(e.split, e.label, e.relpath) for e in entries] == expected
