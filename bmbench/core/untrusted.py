"""Reading files that bmbench did not just write: run folders, caches, split files, model
files a colleague shared. Everything read back from disk is untrusted input.

The helpers here turn any damage into a :class:`DamagedFile`, a one-line
:class:`~bmbench.core.errors.BmbenchError` that names the file and what to do, and keep
paths built from data (labels, manifest rows, predictions rows) inside the folder they
belong to. Loaders of each kind of file (JSON with a shape, npz without pickle, skops with
an exact allow-list, ...) build on them so there is one place to audit.
"""

from __future__ import annotations

import json
import os
import re
import unicodedata
from pathlib import Path
from typing import Callable

from .errors import BmbenchError

#: Larger JSON files than this are refused before parsing: no file bmbench writes comes near.
MAX_JSON_BYTES = 256 * 1024 * 1024


class DamagedFile(BmbenchError):
    """A file read back from disk is missing, truncated, malformed or not what it claims."""


def damaged(path: str | os.PathLike, problem: str, fix: str | None = None) -> DamagedFile:
    """The one-line error for ``path``: ``<path>: <problem>; <fix>``."""
    text = f"{path}: {' '.join(str(problem).split())}"
    return DamagedFile(f"{text}; {fix}" if fix else text)


def read_json(path: str | os.PathLike, check: Callable[[object], str | None] | None = None,
              fix: str | None = None):
    """The JSON value in ``path``; ``check(value)`` returns a problem (or None when the value
    has the expected shape). Any damage raises :class:`DamagedFile` naming ``path``."""
    return read_json_bytes(path, check, fix)[1]


def read_json_bytes(path: str | os.PathLike, check: Callable[[object], str | None] | None = None,
                    fix: str | None = None) -> tuple[bytes, object]:
    """:func:`read_json` that also returns the bytes it parsed, for a library that loads them
    again (what was checked is then exactly what is loaded)."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_JSON_BYTES:
            raise damaged(path, f"larger than {MAX_JSON_BYTES >> 20} MiB, not a file bmbench wrote", fix)
        raw = path.read_bytes()
        value = json.loads(raw)
    except FileNotFoundError:
        raise damaged(path, "missing", fix) from None
    except (OSError, UnicodeDecodeError, RecursionError) as exc:
        raise damaged(path, f"unreadable ({getattr(exc, 'strerror', None) or type(exc).__name__})", fix) from None
    except ValueError as exc:
        raise damaged(path, f"not valid JSON ({str(exc).splitlines()[0]})", fix) from None
    problem = check(value) if check is not None else None
    if problem:
        raise damaged(path, problem, fix)
    return raw, value


def fields(value, required: dict[str, type | tuple[type, ...]]) -> str | None:
    """A :func:`read_json` check: ``value`` is an object whose ``required`` keys hold values
    of the given types (``bool`` is not accepted where a number is asked)."""
    if not isinstance(value, dict):
        return f"expected a JSON object, found {type(value).__name__}"
    for key, kind in required.items():
        if key not in value:
            return f"lacks the field '{key}'"
        got = value[key]
        kinds = kind if isinstance(kind, tuple) else (kind,)
        if isinstance(got, bool) and bool not in kinds or not isinstance(got, kinds):
            return f"field '{key}' is a {type(got).__name__}, expected {' or '.join(k.__name__ for k in kinds)}"
    return None


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
