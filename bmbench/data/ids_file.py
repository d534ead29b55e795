"""Parse ``images_IDs.txt``: the human-readable list of images (and their predefined split)
for the 4-class Matek bone-marrow subset.

Format (indentation is free; ``#`` starts a comment)::

    For train_set and val_set:
        folder BLA
        subfolder 0001-1000
        BLA_00001.jpg - BLA_01000.jpg
    For test_set:
        folder BLA
        subfolder 2001-3000
        BLA_02001.jpg - BLA_02025.jpg

A range ``PREFIX_<n>.ext - PREFIX_<m>.ext`` expands to every number from n to m with the
same zero padding; a line may also name a single file.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from ..core.errors import DatasetError
from ..core.paths import plain_relpath

SECTIONS = {"for train_set and val_set:": "train", "for test_set:": "test"}
_RANGE = re.compile(r"^(?P<a>\S+)\s*-\s*(?P<b>\S+)$")
_NUMBERED = re.compile(r"^(?P<prefix>.*?)(?P<num>\d+)(?P<ext>\.[A-Za-z0-9]+)$")


@dataclass(frozen=True)
class IdsEntry:
    """One listed image: its split section (``train`` or ``test``) and relative path."""

    split: str
    label: str
    relpath: str


def parse_ids_file(path: str | Path) -> list[IdsEntry]:
    """Read ``path`` and return every listed image, in file order."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DatasetError(f"{path}: images ID file not found; set dataset.ids to its path") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: cannot read images ID file ({exc})") from None
    return parse_ids_text(text, str(path))


def parse_ids_text(text: str, source: str = "<ids>") -> list[IdsEntry]:
    entries: list[IdsEntry] = []
    split = folder = subfolder = None
    for lineno, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        where = f"{source}:{lineno}"
        if line.lower() in SECTIONS:
            split, folder, subfolder = SECTIONS[line.lower()], None, None
            continue
        if split is None:
            raise DatasetError(f"{where}: expected a section line 'For train_set and val_set:' "
                               f"or 'For test_set:' before {line!r}")
        key, value = (line.split(None, 1) + [""])[:2]
        if key.lower() == "folder" and value.strip():
            folder, subfolder = value.strip(), None
        elif key.lower() == "subfolder" and value.strip():
            subfolder = value.strip()
        else:
            if folder is None:
                raise DatasetError(f"{where}: file line {line!r} comes before any 'folder NAME' line")
            base = f"{folder}/{subfolder}" if subfolder else folder
            names = _expand(line, where)
            if not plain_relpath(f"{base}/{names[0]}"):  # a range's names share prefix and extension
                raise DatasetError(f"{where}: {base}/{names[0]!s} is not a plain relative path; folder, "
                                   "subfolder and file names must stay inside the data set root (no '..', "
                                   "'/' at the start or backslashes)")
            entries += [IdsEntry(split, folder, f"{base}/{name}") for name in names]
    if not entries:
        raise DatasetError(f"{source}: lists no images; see images_IDs.txt in the bmbench repository "
                           "for the format")
    _listed_once(entries, source)
    return entries


def _listed_once(entries: list[IdsEntry], source: str) -> None:
    """Refuse an image listed twice: in both sections it would be tested on what it learned from."""
    seen: dict[str, str] = {}
    for entry in entries:
        if seen.setdefault(entry.relpath, entry.split) != entry.split:
            raise DatasetError(f"{source}: {entry.relpath!r} is listed in both the train/val and the test "
                               "section; list every image once, in one section")
    if len(seen) != len(entries):
        twice = next(r for r, n in Counter(e.relpath for e in entries).items() if n > 1)
        raise DatasetError(f"{source}: {twice!r} is listed more than once; list every image once")


def _range_ends(line: str) -> tuple[str, str] | None:
    """The two ends of a range line, or None for a single file name (which may contain '-')."""
    if re.search(r"\s", line):
        m = _RANGE.match(line)
        return (m["a"], m["b"]) if m else None
    for i, ch in enumerate(line):
        if ch == "-":
            a, b = _NUMBERED.match(line[:i]), _NUMBERED.match(line[i + 1:])
            if a and b and a["prefix"] == b["prefix"] and a["ext"] == b["ext"]:
                return line[:i], line[i + 1:]
    return None


def _expand(line: str, where: str) -> list[str]:
    ends = _range_ends(line)
    if not ends:
        if re.search(r"\s", line):
            raise DatasetError(f"{where}: cannot read {line!r}; expected 'NAME_00001.jpg - NAME_01000.jpg' "
                               "or a single file name")
        return [line]
    a, b = _NUMBERED.match(ends[0]), _NUMBERED.match(ends[1])
    if not a or not b or a["prefix"] != b["prefix"] or a["ext"] != b["ext"]:
        raise DatasetError(f"{where}: range {line!r} must have the same prefix and extension at both ends")
    lo, hi, width = int(a["num"]), int(b["num"]), len(a["num"])
    if hi < lo:
        raise DatasetError(f"{where}: range {line!r} ends before it starts")
    return [f"{a['prefix']}{n:0{width}d}{a['ext']}" for n in range(lo, hi + 1)]
