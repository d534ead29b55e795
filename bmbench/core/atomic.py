"""Atomic writes: the one way bmbench puts a file or folder in place.

Each helper writes into a temporary sibling (``.tmp-<random>-<name>``, same folder, so the
final :func:`os.replace` is atomic) and moves it into place only when writing succeeded; on
any error or interruption the temporary is removed and the target keeps its old content.

The temporary is created with a plain ``open()`` / ``mkdir()``, never ``mkstemp`` /
``mkdtemp``, so it gets the mode the process umask gives any normal file (0644 / 0755 under
umask 022) and a results folder shared by a lab stays readable by the lab.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Callable, Iterator

TMP_PREFIX = ".tmp-"


def temporary_sibling(path: str | os.PathLike) -> Path:
    """A fresh, unused name beside ``path`` that keeps its suffix (Keras, PIL and numpy
    infer the format from it)."""
    path = Path(path)
    return path.with_name(f"{TMP_PREFIX}{secrets.token_hex(4)}-{os.getpid()}-{path.name}")


@contextmanager
def replacing(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path to write by any means (a library's ``save(path)``); it
    replaces ``path`` when the block ends without error, and is deleted otherwise."""
    path = Path(path)
    tmp = temporary_sibling(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        _remove(tmp)
        raise


@contextmanager
def open_atomic(path: str | os.PathLike, mode: str = "w", **kwargs) -> Iterator[IO]:
    """``open(path, mode)`` whose content appears at ``path`` only once complete.

    ``mode`` is ``"w"`` (text, UTF-8 unless ``encoding`` is given) or ``"wb"``."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic: mode must be 'w' or 'wb', not {mode!r}")
    if mode == "w":
        kwargs.setdefault("encoding", "utf-8")
    with replacing(path) as tmp:
        with open(tmp, "x" + mode[1:], **kwargs) as fh:
            yield fh


def write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with open_atomic(path, "wb") as fh:
        fh.write(data)


def write_text(path: str | os.PathLike, text: str) -> None:
    with open_atomic(path, "w", newline="") as fh:
        fh.write(text)


def write_json(path: str | os.PathLike, data, default: Callable | None = None) -> None:
    """Indented JSON with a final newline; numpy scalars/arrays and paths are converted."""
    write_text(path, json.dumps(data, indent=2, default=default or jsonable) + "\n")


@contextmanager
def building_dir(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a new empty temporary folder that becomes ``path`` when the block succeeds.

    ``path`` must not exist yet, or be an empty folder (the rename is then atomic); on
    failure the temporary folder and everything in it is removed."""
    path = Path(path)
    tmp = temporary_sibling(path)
    tmp.mkdir()
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def jsonable(value):
    """``json.dumps`` ``default=``: numpy scalars and arrays, paths."""
    import numpy as np

    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def _remove(tmp: Path) -> None:
    if tmp.is_dir() and not tmp.is_symlink():
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        tmp.unlink(missing_ok=True)


def check_writable(target: str | os.PathLike, what: str, folder: bool = False) -> None:
    """Fail now, before any work, where writing ``target`` (a file; with ``folder``, a folder
    to fill) would fail at the end: create the folder it goes into and a temporary file there,
    as ``run`` opens its run folder first, then remove both (a command that fails later leaves
    no empty folder behind). Raises a one-line :class:`~bmbench.core.errors.BmbenchError`
    naming the path."""
    from .errors import BmbenchError

    target = Path(target)
    base = target if folder else target.parent
    if folder and target.exists() and not target.is_dir():
        raise BmbenchError(f"{target}: is a file; give a folder for {what}")
    created = [p for p in (base, *base.parents) if not p.exists()]  # deepest first
    try:
        base.mkdir(parents=True, exist_ok=True)
        probe = temporary_sibling(base / "write-check")
        probe.open("x").close()
        probe.unlink()
    except OSError as exc:
        raise BmbenchError(f"{exc.filename or target}: cannot write {what} ({exc.strerror or exc}); "
                           "choose another --out") from None
    finally:
        for made in created:
            try:
                made.rmdir()
            except OSError:
                break
