"""Reading files that bmbench did not just write: run folders, caches, split files, model
files a colleague shared. Everything read back from disk is untrusted input.

The helpers here turn any damage into a :class:`DamagedFile`, a one-line
:class:`~bmbench.core.errors.BmbenchError` that names the file and what to do. JSON is
checked against a shape declared in :mod:`bmbench.core.shapes`; the loaders of model files
(:mod:`bmbench.core.loaders`) build on these, and paths built from data stay inside their
folder through :mod:`bmbench.core.paths`, so there is one place to audit each.
"""

from __future__ import annotations

import json
import os
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
