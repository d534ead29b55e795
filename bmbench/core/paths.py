"""Paths built from data: labels as folder names, rows of a table as files under a root.

* :func:`safe_name` makes one folder or file name of any text, and :func:`inside` resolves a
  path (links followed) and refuses it when it leaves its root;
* :func:`folder_names` turns every label into one folder name and refuses, with one line,
  two labels that would share a folder (``a/b`` and ``a_b``; ``Blast`` and ``blast`` on a
  case-insensitive disk), so classes never merge silently;
* :func:`rows_inside` checks the relative paths of a table (``predictions.csv`` rows) against
  their root, symbolic links resolved: rows that point elsewhere are reported, never read;
* :func:`plain_relpath` is the cheap, lexical check for path text that cannot contain links
  (an ID file's folder and file names): relative, no ``..``, no backslash.
"""

from __future__ import annotations

import os
import re
import unicodedata
from pathlib import Path, PurePosixPath
from typing import Iterable

from .errors import BmbenchError

_UNSAFE = re.compile(r"[\x00-\x1f\x7f/\\:*?\"<>|]")


def safe_name(text: str, what: str = "label") -> str:
    """``text`` as one folder or file name: no separators, control characters, ``.``/``..``
    or leading dots; refused with one line when nothing usable is left."""
    name = _UNSAFE.sub("_", unicodedata.normalize("NFC", str(text))).strip().lstrip(".")
    if not name or len(name.encode()) > 200:
        raise BmbenchError(f"{what} {text!r} cannot be a folder name; rename it (1-200 bytes, "
                           "not only dots)")
    return name


def inside(root: str | os.PathLike, path: str | os.PathLike, what: str = "path") -> Path:
    """``path`` (relative paths are taken from ``root``) resolved, when it lies inside
    ``root``; otherwise one line saying where it points. Symbolic links are followed."""
    base = Path(root).resolve()
    full = (base / path).resolve()
    if full != base and base not in full.parents:
        raise BmbenchError(f"{what} {os.fspath(path)!r} points outside {base}; "
                           "files from data or run folders must stay inside their folder")
    return full


def folder_names(labels: Iterable, what: str = "label") -> dict[str, str]:
    """``{label: folder name}`` for each distinct label (see :func:`safe_name`); one
    :class:`BmbenchError` line when two labels would get the same folder (compared without
    case, as macOS and Windows disks do)."""
    out: dict[str, str] = {}
    taken: dict[str, str] = {}
    for label in dict.fromkeys(str(v) for v in labels):
        try:
            name = safe_name(label, what)
        except BmbenchError:
            raise BmbenchError(f"{what} {label!r} cannot be a folder name (1-200 bytes, not only dots); "
                               "rename it (dataset.label_map)") from None
        other = taken.setdefault(name.casefold(), label)
        if other != label:
            raise BmbenchError(f"{what}s {other!r} and {label!r} would share the folder {name!r}; "
                               "rename one (dataset.label_map) so every class keeps its own folder")
        out[label] = name
    return out


def unique_file_name(stem: str, suffix: str, used: set[str]) -> str:
    """``<stem><suffix>`` as a safe file name not in ``used`` (``-2``, ``-3``... added on a
    clash, without case); the name is added to ``used``."""
    try:
        base = safe_name(stem, "file name")
    except BmbenchError:
        base = "image"
    name, i = base + suffix, 1
    while name.casefold() in used:
        i += 1
        name = f"{base}-{i}{suffix}"
    used.add(name.casefold())
    return name


def rows_inside(root: str | os.PathLike, relpaths: Iterable[str]) -> tuple[list[Path | None], list[int]]:
    """``(paths, outside)``: each row's file under ``root`` (resolved), or None for a row
    that is absolute, climbs out with ``..``, leaves through a symbolic link, or is not a
    path at all (``outside`` lists those rows' positions). Nothing is read."""
    paths: list[Path | None] = []
    outside: list[int] = []
    for i, rel in enumerate(relpaths):
        try:
            text = str(rel)
            if not text or PurePosixPath(text.replace("\\", "/")).is_absolute() or Path(text).is_absolute():
                raise BmbenchError(text)
            paths.append(inside(root, text))
        except (BmbenchError, ValueError, OSError, RuntimeError):
            paths.append(None)
            outside.append(i)
    return paths, outside


def plain_relpath(text: str) -> bool:
    """True for a relative POSIX path without ``..``, ``.`` or empty parts, backslashes or
    control characters: text that stays inside any folder it is joined to."""
    if not text or "\\" in text or any(ord(c) < 32 or c == "\x7f" for c in text):
        return False
    parts = text.split("/")
    return not text.startswith("/") and all(p not in ("", ".", "..") for p in parts)
