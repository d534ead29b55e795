"""Small content-addressed disk caches of numpy arrays (:class:`ArrayCache`) and of JSON
values (:class:`JsonCache`).

Entries are ``<root>/<key[:2]>/<key>.npy`` files (sharding keeps directories small for
hundreds of thousands of per-image vectors), written with ``allow_pickle=False`` to a
temporary file in the same directory and moved into place with :func:`os.replace`, so a
reader sees either no entry or a complete one, and two processes writing the same key at
once both succeed (the last rename wins; both wrote the same content). Reads load with
``allow_pickle=False``; a truncated or corrupt file (or, where the reader gives one, an
entry of another shape) is deleted with a warning and reported as a miss. Keys hash an
entry's inputs, not its value: the checks catch damage (a crash, a full disk, a stray
copy), while the cache folder itself must be as trusted as the bmbench installation.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import math
import os
import re
from pathlib import Path
from typing import Callable, Iterable, Mapping

import numpy as np

from .atomic import jsonable, open_atomic, write_text

ENV_VAR = "BMBENCH_CACHE"
log = logging.getLogger(__name__)


def default_root() -> Path:
    """``$BMBENCH_CACHE`` if set, else ``~/.cache/bmbench``."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "bmbench"


def key_for(*parts: object) -> str:
    """sha256 hex digest identifying ``parts``: ``bytes`` are hashed raw, anything else as
    canonical JSON (sorted keys), each part length-prefixed so boundaries cannot shift."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, (bytes, bytearray, memoryview)):
            data, tag = bytes(part), b"b"
        else:
            data = json.dumps(part, sort_keys=True, separators=(",", ":"), default=_json_default).encode()
            tag = b"j"
        h.update(tag + len(data).to_bytes(8, "little") + data)
    return h.hexdigest()


def _json_default(obj: object) -> object:
    if isinstance(obj, (tuple, set, frozenset)):
        return sorted(obj) if isinstance(obj, (set, frozenset)) else list(obj)
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"cannot hash a {type(obj).__name__} as a cache key part")


_HEADER = re.compile(rb"\{'descr': '([<>|][a-zA-Z]\d+)', 'fortran_order': False, 'shape': \(([\d, ]*)\), \}\s*\n")


def _parse_npy(data: bytes) -> np.ndarray:
    """The array of a whole ``.npy`` file's bytes, as ``np.load(allow_pickle=False)``
    reads it; ValueError for anything else (truncated, trailing bytes). The headers
    :meth:`ArrayCache.put` writes are read by one regex: ``np.load`` parses them with
    ``ast``, which cost a cached rerun of 1,600 images more than reading the files."""
    if data[:8] == b"\x93NUMPY\x01\x00":
        start = 10 + int.from_bytes(data[8:10], "little")
        found = _HEADER.fullmatch(data, 10, start)
        if found:
            dtype = np.dtype(found.group(1).decode())
            shape = tuple(int(n) for n in found.group(2).split(b",") if n.strip())
            if len(data) - start != dtype.itemsize * math.prod(shape):
                raise ValueError("truncated or trailing data")
            return np.frombuffer(data, dtype, offset=start).reshape(shape).copy()
    with io.BytesIO(data) as f:  # any other header np.save may write
        array = np.load(f, allow_pickle=False)
        if f.read(1):  # trailing bytes: not what put() wrote
            raise ValueError("trailing data")
    return array


def _discard(path: Path, problem: object) -> None:
    """Delete a damaged entry (it is computed again) and say so: a damaged cache is never
    trusted, and never silent."""
    text = str(problem).splitlines()[0] if str(problem) else type(problem).__name__
    log.warning("cache entry %s is damaged (%s); discarded, it is computed again", path, text)
    try:
        path.unlink()
    except OSError:
        pass


def _check_key(key: str) -> str:
    if len(key) < 3 or not all(c in "0123456789abcdef" for c in key):
        raise ValueError(f"cache key must be a lowercase hex digest (use key_for), got {key!r}")
    return key


class ArrayCache:
    """Disk cache mapping hex keys (see :func:`key_for`) to numpy arrays.

    ``root`` defaults to :func:`default_root`. Safe for concurrent readers and writers in
    several processes; corrupt entries are discarded on read.
    """

    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    def __repr__(self) -> str:
        return f"ArrayCache({str(self.root)!r})"

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        key = _check_key(key)
        return self.root / key[:2] / f"{key}.npy"

    def get(self, key: str, shape: tuple[int, ...] | None = None,
            check: Callable[[np.ndarray], str | None] | None = None) -> np.ndarray | None:
        """The stored array, or None on a miss. A corrupt entry, one not of ``shape`` or one
        for which ``check`` returns a problem (when given) is deleted with a warning and is
        a miss."""
        path = self.path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
            array = _parse_npy(data)
            if shape is not None and array.shape != tuple(shape):
                raise ValueError(f"shape {array.shape}, expected {tuple(shape)}")
            problem = check(array) if check is not None else None
            if problem:
                raise ValueError(problem)
        except FileNotFoundError:
            return None
        except (OSError, ValueError, EOFError) as exc:
            _discard(path, exc)
            return None
        return array

    def put(self, key: str, array: np.ndarray) -> None:
        """Store ``array`` (any non-object dtype) under ``key``, atomically."""
        array = np.asarray(array)
        if array.dtype.hasobject:
            raise ValueError("ArrayCache stores numeric/string arrays only, not object arrays")
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open_atomic(path, "wb") as f:
            np.save(f, array, allow_pickle=False)

    def get_many(self, keys: Iterable[str]) -> dict[str, np.ndarray]:
        """``{key: array}`` for the keys present (misses are left out)."""
        found = {}
        for key in keys:
            array = self.get(key)
            if array is not None:
                found[key] = array
        return found

    def put_many(self, items: Mapping[str, np.ndarray]) -> None:
        """Store every ``key: array`` of ``items``."""
        for key, array in items.items():
            self.put(key, array)

    def __contains__(self, key: str) -> bool:
        return self.get(key) is not None


class JsonCache:
    """Disk cache mapping hex keys (see :func:`key_for`) to JSON values, as
    ``<root>/<key[:2]>/<key>.json`` written atomically: the guarantees of :class:`ArrayCache`."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root).expanduser()

    def path(self, key: str) -> Path:
        """Where the entry for ``key`` lives."""
        key = _check_key(key)
        return self.root / key[:2] / f"{key}.json"

    def get(self, key: str):
        """The stored value, or None on a miss (a corrupt entry is deleted and is a miss)."""
        path = self.path(key)
        try:
            return json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            _discard(path, exc)
            return None

    def discard(self, key: str, problem: str) -> None:
        """Delete the entry of ``key`` (read back, but not of the shape its reader expects)."""
        _discard(self.path(key), problem)

    def put(self, key: str, value) -> None:
        """Store the JSON-ready ``value`` (numpy values and paths converted) under ``key``."""
        path = self.path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        write_text(path, json.dumps(value, default=jsonable))
