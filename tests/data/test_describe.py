"""The data set description table (`bmbench datasets`, README)."""

from __future__ import annotations

import dataclasses
import re

import pytest

from bmbench.data import list_kinds
from bmbench.data.describe import describe_kinds

KINDS = [k.name for k in list_kinds()]


def test_there_are_kinds():
    assert len(KINDS) >= 10 and len(set(KINDS)) == len(KINDS)


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_in_the_table(kind):
    text = describe_kinds()
    k = next(k for k in list_kinds() if k.name == kind)
    assert f"\n{kind}: {k.title}\n" in "\n" + text
    block = text.split(f"{kind}: {k.title}\n", 1)[1].split("\n\n", 1)[0]
    assert f"layout:  {k.layout}" in block
    assert "split:   " + ("predefined" if k.predefined_split else "none predefined") in block
    for f in dataclasses.fields(k.options):
        assert f.name in block.split("options:", 1)[1].splitlines()[0]
    for code, _ in k.classes:
        assert code in block


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_is_in_the_markdown(kind):
    rows = [r for r in describe_kinds("markdown").splitlines() if r.startswith(f"| `{kind}` |")]
    assert len(rows) == 1
    k = next(k for k in list_kinds() if k.name == kind)
    assert k.title in rows[0] and k.citation in rows[0]
    assert rows[0].count("|") >= 7
    if k.url:
        assert f"([source]({k.url}))" in rows[0]


def test_markdown_cells_are_not_split_by_pipes_in_the_text():
    for row in describe_kinds("markdown").splitlines()[2:]:
        assert len(re.findall(r"(?<!\\)\|", row)) == 8, row


def test_markdown_is_a_table():
    lines = describe_kinds("markdown").splitlines()
    assert lines[0].startswith("| kind |") and set(lines[1]) <= {"|", "-"}
    assert len(lines) == 2 + len(KINDS)


def test_groups_and_notes_are_shown():
    text = describe_kinds()
    assert "groups: patient id from the file name" in text  # cnmc
    assert "note:    " in text
