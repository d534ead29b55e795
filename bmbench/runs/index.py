"""An index of the run store, ``<results>/index.sqlite``: every run folder's records and
results derived from its files (the leaderboard's paired tests), so that listing thousands
of runs reads one file instead of thousands.

The folders stay the truth. Each entry carries a stamp (size, modification and change
times, inode) of the files it came from; every listing compares the stamps with the folders and reads again
what changed, adds what is new and drops what is gone, so deleting the index loses
nothing. Writers take SQLite's lock, so concurrent runs and listings are safe; where the
index cannot be opened or written (a read-only store, a lock held too long, a damaged
file) the store is read from the folders alone, as without an index.
"""

from __future__ import annotations

import json
import logging
import marshal
import os
import sqlite3
import sys
from pathlib import Path

from .records import check_info, check_metrics
from .store import RunRecord, load_record

log = logging.getLogger(__name__)

FILE = "index.sqlite"
#: Bumped when the tables change; an index of another version (or written by another
#: Python, whose marshal format may differ) is rebuilt.
SCHEMA = 1 * 10_000 + sys.version_info[0] * 100 + sys.version_info[1]
#: Seconds a writer waits for another's lock before going on without writing.
LOCK_TIMEOUT = 5.0
# info and metrics as marshal blobs: they load twice as fast as JSON (floats stay binary)
_TABLES = ("CREATE TABLE IF NOT EXISTS records (folder TEXT PRIMARY KEY, stamp TEXT, info BLOB, metrics BLOB)",
           "CREATE TABLE IF NOT EXISTS derived (key TEXT PRIMARY KEY, stamp TEXT, value TEXT)")


def stamp(*files: Path) -> str:
    """``size:mtime_ns:ctime_ns:inode`` of each file (``-`` when missing), comma-separated.
    The change time cannot be set back (``touch -d``, ``cp -p`` and rsync keep the
    modification time, not it), so a file rewritten in place, or an index copied from
    another store, never matches."""
    parts = []
    for f in files:
        try:
            st = os.stat(f)
        except OSError:
            parts.append("-")
            continue
        parts.append(f"{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}:{st.st_ino}")
    return ",".join(parts)


class StoreIndex:
    """The index of the store ``results``; use as a context manager (what was read from
    the folders, or remembered, is written on exit). ``enabled=False``: never touch it."""

    def __init__(self, results: Path, enabled: bool = True):
        self.path = Path(results) / FILE
        self._base = os.path.join(os.fspath(results), "runs")
        self._db: sqlite3.Connection | None = None
        self._enabled = enabled and os.path.isdir(self._base)
        self._known: dict[str, tuple] | None = None
        self._fresh: list[tuple] = []
        self._derived: list[tuple] = []

    def __enter__(self) -> "StoreIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def record(self, folder: Path) -> RunRecord:
        """The record of run folder ``folder``: from the index when its ``run.json`` and
        ``metrics.json`` are unchanged, else read (and indexed) as
        :func:`~bmbench.runs.store.load_record` reads it (same errors). Only records that
        passed its checks are indexed, and entries read back are checked again."""
        if self._known is None:
            self._known = {row[0]: row[1:] for row in self._query("SELECT folder, stamp, info, metrics FROM records")}
        text = os.fspath(folder)
        rel = os.path.relpath(text, self._base)
        now = stamp(os.path.join(text, "run.json"), os.path.join(text, "metrics.json"))
        hit = self._known.pop(rel, None)
        if hit is not None and hit[0] == now:
            try:
                info, metrics = marshal.loads(hit[1]), marshal.loads(hit[2])
                if check_info(info) is None and check_metrics(metrics) is None:  # the index is untrusted too
                    return RunRecord(str(info.get("id", folder.name)), folder, info, metrics)
            except (ValueError, EOFError, TypeError, AttributeError, KeyError):
                pass  # a damaged entry: read the folder
        record = load_record(folder)
        self._fresh.append((rel, now, marshal.dumps(record.info), marshal.dumps(record.metrics)))
        return record

    def derived(self, keys: list[str]) -> dict[str, tuple[str, object]]:
        """``{key: (stamp, value)}`` of those ``keys`` stored by :meth:`remember`."""
        out = {}
        for i in range(0, len(keys), 500):
            chunk = keys[i:i + 500]
            sql = f"SELECT key, stamp, value FROM derived WHERE key IN ({','.join('?' * len(chunk))})"
            out.update({k: (s, json.loads(v)) for k, s, v in self._query(sql, chunk)})
        return out

    def remember(self, key: str, now: str, value) -> None:
        """Store the JSON-ready ``value`` under ``key`` with the stamp ``now`` of the files
        it was derived from (written on exit)."""
        self._derived.append((key, now, _dumps(value)))

    def close(self) -> None:
        gone = [(k,) for k in (self._known or {}) if not os.path.isdir(os.path.join(self._base, k))]
        if self._fresh or gone or self._derived:
            self._write(self._fresh, gone, self._derived)
        self._fresh, self._derived, self._known = [], [], None
        if self._db is not None:
            self._db.close()
            self._db = None

    def _connect(self) -> sqlite3.Connection | None:
        if self._db is None and self._enabled:
            try:
                self._db = _open(self.path)
            except sqlite3.DatabaseError as exc:
                if _damaged(exc):
                    self._rebuild(exc)
                log.debug("index %s: %s", self.path, exc)
            self._enabled = self._db is not None
        return self._db

    def _rebuild(self, exc: Exception) -> None:
        """Replace a damaged index file by an empty one: it is only a cache of the folders."""
        log.warning("run index %s is damaged (%s); rebuilding it from the run folders", self.path, exc)
        if self._db is not None:
            self._db.close()
            self._db = None
        try:
            self.path.unlink()
            self._db = _open(self.path)
        except (OSError, sqlite3.Error):
            pass

    def _query(self, sql: str, params=()) -> list[tuple]:
        db = self._connect()
        if db is None:
            return []
        try:
            return db.execute(sql, params).fetchall()
        except sqlite3.Error as exc:
            if _damaged(exc):  # a page damaged after the header: read the folders, rebuild
                self._rebuild(exc)
            log.debug("index %s: %s", self.path, exc)
            return []

    def _write(self, fresh: list, gone: list, derived: list) -> None:
        db = self._connect()
        if db is None:
            return
        try:
            with db:
                db.executemany("INSERT OR REPLACE INTO records VALUES (?, ?, ?, ?)", fresh)
                db.executemany("DELETE FROM records WHERE folder = ?", gone)
                # derived keys name their runs' folders (see the leaderboard's paired tests)
                db.executemany("DELETE FROM derived WHERE instr(key, ?) > 0",
                               [(os.path.join(self._base, k),) for (k,) in gone])
                db.executemany("INSERT OR REPLACE INTO derived VALUES (?, ?, ?)", derived)
        except sqlite3.Error as exc:  # locked for too long, read-only, disk full: stay unindexed
            log.debug("index %s not updated: %s", self.path, exc)


def _damaged(exc: Exception) -> bool:
    return isinstance(exc, sqlite3.DatabaseError) and ("not a database" in str(exc) or "malformed" in str(exc))


def _open(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, timeout=LOCK_TIMEOUT, isolation_level="DEFERRED")
    try:
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version != SCHEMA:
            with db:
                db.execute("DROP TABLE IF EXISTS records")
                db.execute("DROP TABLE IF EXISTS derived")
                for sql in _TABLES:
                    db.execute(sql)
                db.execute(f"PRAGMA user_version = {SCHEMA}")
    except sqlite3.Error:
        db.close()
        raise
    return db


def _dumps(value) -> str:
    return json.dumps(value, separators=(",", ":"))
