"""The run store: ``results/runs/<UTC time>-<recipe>-<hash>/``, written atomically.

A run is assembled in ``runs/.tmp-<id>@<host>@<pid>/`` and renamed into place only when
complete, so an interrupted run never appears half-written and concurrent runs never clash
(each id carries a random part). Listing skips temporary and damaged folders with a warning.

A results folder may be shared by several machines or containers (a network share, the Dask
backend): ``<host>`` (:func:`host_id`) names the machine *and* its PID namespace, and the
stale-folder sweep (:func:`sweep_stale`) removes a temporary folder only when it is this
host's and its process is gone, or when it shows no sign of life for :data:`STALE_AFTER`
seconds (a writer touches its folder every :data:`HEARTBEAT` seconds). A writer whose folder
vanished anyway fails loudly at :meth:`RunWriter.commit` instead of storing a partial run.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import re
import secrets
import shutil
import socket
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import StoreError
from ..core.registry import did_you_mean
from ..core.untrusted import DamagedFile, read_json
from .records import check_info, check_metrics

log = logging.getLogger(__name__)

#: A temporary run folder untouched for this long (seconds) is swept whoever wrote it: its
#: writer, on any machine, touches it every :data:`HEARTBEAT` seconds while it lives.
STALE_AFTER = 24 * 3600
HEARTBEAT = 600
#: The lock file (inside ``runs/``) held while folders of other hosts are swept.
SWEEP_LOCK = ".sweep.lock"
_TMP = ".tmp-"
_MARK = ".writer"  # in a temporary run folder: who is writing it


def new_run_id(name: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{name}-{secrets.token_hex(3)}"


@functools.lru_cache(maxsize=None)
def host_id() -> str:
    """This machine and PID namespace as one folder-name part: the host name (made safe,
    at most 32 characters) and 8 hex digits of a hash of host name, boot id and PID
    namespace, so two containers with the same host name (or two machines with the same
    container name) still differ. PIDs are only comparable between equal host ids."""
    name = re.sub(r"[^A-Za-z0-9_.]", "_", socket.gethostname())[:32] or "host"
    parts = [socket.gethostname()]
    for source in ("/proc/sys/kernel/random/boot_id", "/proc/self/ns/pid"):
        try:
            parts.append(os.readlink(source) if source.endswith("pid") else Path(source).read_text().strip())
        except OSError:
            parts.append("-")
    return f"{name}.{hashlib.sha256('|'.join(parts).encode()).hexdigest()[:8]}"


def tmp_name(run_id: str) -> str:
    """The temporary folder name of ``run_id`` written by this process."""
    return f"{_TMP}{run_id}@{host_id()}@{os.getpid()}"


def _owner(name: str) -> tuple[str, int] | None:
    """``(host id, pid)`` of a temporary folder name from :func:`tmp_name`; None for other
    names (temporary folders of older bmbench versions, atomic-write siblings)."""
    parts = name.rsplit("@", 2)
    if len(parts) != 3 or not parts[2].isdigit():
        return None
    return parts[1], int(parts[2])


class RunWriter:
    """Context manager for one run folder: files go into a temporary folder that becomes
    ``runs/<id>`` on :meth:`commit`; on error or interruption it is removed. While open, a
    daemon thread touches the folder every :data:`HEARTBEAT` seconds (its sign of life for
    sweeps on other hosts)."""

    def __init__(self, results: Path, name: str):
        self.results = Path(results)
        self.id = new_run_id(name)
        self.final = self.results / "runs" / self.id
        self.path = self.results / "runs" / tmp_name(self.id)
        self._token = f"{host_id()} {os.getpid()} {secrets.token_hex(8)}"
        self._stop = threading.Event()

    def __enter__(self) -> "RunWriter":
        try:
            self.path.mkdir(parents=True)
            (self.path / _MARK).write_text(self._token)
        except OSError as exc:
            raise StoreError(f"{self.results}: cannot write the results folder ({exc.strerror}); "
                             "choose another with --results-dir or BMBENCH_RESULTS") from None
        threading.Thread(target=self._heartbeat, name=f"bmbench-heartbeat-{self.id}", daemon=True).start()
        sweep_stale(self.results / "runs")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if exc_type is not None:  # the name is this writer's alone, whatever it holds now
            shutil.rmtree(self.path, ignore_errors=True)

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT):
            try:
                os.utime(self.path)
            except OSError:
                return

    def _mine(self) -> bool:
        """The temporary folder is still the one this writer created (not removed, and not
        re-created by a later ``mkdir(parents=True)`` after a removal): it holds the writer's
        mark (inode numbers cannot tell, a file system reuses them at once)."""
        try:
            return (self.path / _MARK).read_text() == self._token
        except (OSError, UnicodeDecodeError):
            return False

    def commit(self, required: tuple[str, ...] = ()) -> Path:
        """Move the complete run into place; ``required``: names (files or folders) that
        must be in it. A folder removed or replaced during the run (a sweep by another
        process, a user) is never stored: one :class:`StoreError` line instead."""
        self._stop.set()
        missing = [n for n in required if not os.path.exists(self.path / n)]
        if not self._mine() or missing:
            what = (f"lacks {', '.join(missing)}" if self._mine() else
                    "was removed while the run was being written (by another process sweeping the results folder?)")
            shutil.rmtree(self.path, ignore_errors=True)
            raise StoreError(f"{self.path}: the run's temporary folder {what}; nothing was stored, run it again")
        try:
            os.unlink(self.path / _MARK)
            os.rename(self.path, self.final)
        except OSError as exc:
            shutil.rmtree(self.path, ignore_errors=True)
            raise StoreError(f"{self.final}: cannot store the run ({exc.strerror})") from None
        return self.final


def sweep_stale(runs: Path, now: float | None = None) -> None:
    """Remove temporary run folders that no process will finish: this host's whose process
    is gone, and (under the lock file :data:`SWEEP_LOCK`, so two sweepers never race) any
    untouched for :data:`STALE_AFTER` seconds, whichever host wrote it. Folders of other
    hosts are otherwise left alone: their PIDs mean nothing here."""
    now = time.time() if now is None else now
    me = host_id()
    old = []
    for tmp in runs.glob(f"{_TMP}*"):
        owner = _owner(tmp.name)
        if owner is not None and owner[0] == me and not _alive(owner[1]):
            shutil.rmtree(tmp, ignore_errors=True)
        elif _idle(tmp, now) > STALE_AFTER:
            old.append(tmp)
    if old:
        with _sweep_lock(runs) as locked:
            for tmp in old:
                if locked and _idle(tmp, now) > STALE_AFTER:  # looked at again under the lock
                    log.warning("removing %s: a temporary run folder untouched for more than %d hours",
                                tmp, STALE_AFTER // 3600)
                    shutil.rmtree(tmp, ignore_errors=True)


def _idle(tmp: Path, now: float) -> float:
    """Seconds since ``tmp`` (or a file directly in it, such as ``run.log``) last changed."""
    try:
        newest = os.stat(tmp).st_mtime
        with os.scandir(tmp) as entries:
            for e in entries:
                newest = max(newest, e.stat(follow_symlinks=False).st_mtime)
    except OSError:
        return 0.0
    return now - newest


class _sweep_lock:
    """``with _sweep_lock(runs) as locked``: an exclusive, non-blocking ``fcntl`` lock on
    ``runs/.sweep.lock``; ``locked`` is False when another process holds it or the file
    system (or platform) has no locks: then nothing of other hosts is swept."""

    def __init__(self, runs: Path):
        self.path = Path(runs) / SWEEP_LOCK
        self.fd: int | None = None

    def __enter__(self) -> bool:
        try:
            import fcntl

            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
            fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except (ImportError, OSError):
            return False

    def __exit__(self, *exc) -> None:
        if self.fd is not None:
            os.close(self.fd)  # releases the lock


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, OverflowError):  # OverflowError: above any PID (a crafted name)
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class RunRecord:
    """A stored run: its folder, ``run.json`` facts and ``metrics.json`` scores."""

    id: str
    path: Path
    info: dict
    metrics: dict


#: The second half of the one-line error for a damaged ``run.json`` / ``metrics.json``.
DAMAGED_FIX = "a damaged run record: restore the file or delete that run folder"


def load_record(path: Path) -> RunRecord:
    """The record of the run folder ``path``, its ``run.json`` and ``metrics.json``
    checked against the shape bmbench writes (:mod:`bmbench.runs.records`): a
    :class:`StoreError` for a folder without ``run.json`` (not a run), a
    :class:`~bmbench.core.untrusted.DamagedFile` naming the file for any damage."""
    path = Path(path)
    if not os.path.isfile(path / "run.json"):
        raise StoreError(f"{path}: not a bmbench run (missing run.json)")
    info = read_json(path / "run.json", check_info, DAMAGED_FIX)
    metrics = read_json(path / "metrics.json", check_metrics, DAMAGED_FIX)
    return RunRecord(str(info.get("id", path.name)), path, info, metrics)


def list_runs(results: Path, index=None) -> list[RunRecord]:
    """Every complete run, oldest first, each followed by its cross-data-set evaluations
    (``runs/<id>/evaluations/*``); damaged or foreign folders are skipped with a warning.
    ``index``: a :class:`~bmbench.runs.index.StoreIndex` to read unchanged records from."""
    records = []
    for folder in run_folders(results):
        try:
            records.append(index.record(folder) if index is not None else load_record(folder))
        except (StoreError, DamagedFile) as exc:
            log.warning("skipping %s", exc)
    return records


def run_folders(results: Path) -> list[Path]:
    """The run folders of the store, oldest first, each followed by its evaluations."""
    runs = os.path.join(os.fspath(results), "runs")
    try:
        names = sorted(e.name for e in os.scandir(runs) if not e.name.startswith(".") and e.is_dir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    out = []
    for name in names:
        out.append(name)
        try:
            found = os.listdir(os.path.join(runs, name, "evaluations"))
        except (FileNotFoundError, NotADirectoryError):
            continue
        out += sorted(f"{name}/evaluations/{e}" for e in found if not e.startswith("."))
    base = Path(runs)
    return [base / rel for rel in out]


def resolve_run(results: Path, ref: str, dataset: str | None = None, dataset_option: str | None = None) -> Path:
    """A run folder from a path, an id (or unique id prefix, or its last 6 characters), a
    recipe name, or ``latest`` (with ``dataset``, among the runs on that data set kind only).
    A recipe name that several runs share means its newest run, with a note naming the
    others. ``dataset_option``: the caller's option that sets ``dataset`` (``--dataset``),
    named in a hint only where it would tell the matching runs apart."""
    if Path(ref).is_dir() and (Path(ref) / "run.json").exists():
        return Path(ref)
    runs = sorted((p for p in (Path(results) / "runs").glob("[!.]*") if p.is_dir()), key=_age)
    if dataset is not None:
        runs = [p for p in runs if _kind_of(p) == dataset]
    if not runs:
        where = f"{Path(results).resolve()}" + (f" on data set kind '{dataset}'" if dataset else "")
        raise StoreError(f"{where}: no runs stored yet; run `bmbench run RECIPE` first, "
                         "or point --results-dir (or BMBENCH_RESULTS) at your results folder")
    if ref == "latest":
        return runs[-1]
    hits = [p for p in runs if p.name.startswith(ref) or ref in p.name.split("-", 1)[-1]]
    exact = [p for p in hits if p.name == ref]
    if exact or len(hits) == 1:
        return (exact or hits)[0]
    if not hits:
        names = sorted({_recipe_of(p) for p in runs} | {"latest"})
        raise StoreError(f"no run matches '{ref}'{did_you_mean(ref, names)} in {Path(results).resolve()}/runs"
                         + (f" on data set kind '{dataset}'" if dataset else "")
                         + "; use a folder, an id, a recipe name, or latest")
    hits = [p for p in hits if _recipe_of(p) == ref] or hits
    if len(hits) == 1:
        return hits[0]
    how = _how_to_choose(hits, dataset, dataset_option)
    if all(_recipe_of(p) == ref for p in hits):
        log.warning("'%s' names %d runs; using the newest, %s (others: %s); to choose, %s",
                    ref, len(hits), hits[-1].name, ", ".join(p.name for p in hits[:-1]), how)
        return hits[-1]
    raise StoreError(f"'{ref}' matches {len(hits)} runs: {', '.join(p.name for p in hits)}; {how}")


def _how_to_choose(hits: list[Path], dataset: str | None, dataset_option: str | None) -> str:
    """What tells ``hits`` apart: always the id (its last 6 characters are unique enough),
    the data set option only where the runs are on different kinds."""
    how = f"give the run id or its end (e.g. {hits[-1].name.rsplit('-', 1)[-1]})"
    kinds = sorted({k for k in map(_kind_of, hits) if k})
    if dataset_option and dataset is None and len(kinds) > 1:
        how += f", or {dataset_option} " + "|".join(kinds)
    return how


def _age(folder: Path) -> tuple:
    """Sort key, oldest first: the id's timestamp, then (same second) the folder's mtime."""
    try:
        mtime = folder.stat().st_mtime_ns
    except OSError:
        mtime = 0
    return folder.name.split("-", 1)[0], mtime, folder.name


def _recipe_of(folder: Path) -> str:
    """The recipe name inside a run folder name ``<timestamp>-<recipe>-<hex>``."""
    return folder.name.split("-", 1)[-1].rsplit("-", 1)[0]


def _kind_of(folder: Path) -> str | None:
    try:
        return read_json(folder / "run.json", check_info)["dataset"]["kind"]
    except DamagedFile:
        return None
