"""The run store: ``results/runs/<UTC time>-<recipe>-<hash>/``, written atomically.

A run is assembled in ``runs/.tmp-<id>-<pid>/`` and renamed into place only when complete,
so an interrupted run never appears half-written and concurrent runs never clash (each id
carries a random part). Listing skips temporary and damaged folders with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import re
import secrets
import shutil
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..core.errors import StoreError

log = logging.getLogger(__name__)


def new_run_id(name: str) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{stamp}-{name}-{secrets.token_hex(3)}"


class RunWriter:
    """Context manager for one run folder: files go into a temporary folder that becomes
    ``runs/<id>`` on :meth:`commit`; on error or interruption it is removed."""

    def __init__(self, results: Path, name: str):
        self.results = Path(results)
        self.id = new_run_id(name)
        self.final = self.results / "runs" / self.id
        self.path = self.results / "runs" / f".tmp-{self.id}-{os.getpid()}"

    def __enter__(self) -> "RunWriter":
        try:
            self.path.mkdir(parents=True)
        except OSError as exc:
            raise StoreError(f"{self.results}: cannot write the results folder ({exc.strerror}); "
                             "choose another with --results-dir or BMBENCH_RESULTS") from None
        sweep_stale(self.results / "runs")
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None:
            shutil.rmtree(self.path, ignore_errors=True)

    def commit(self) -> Path:
        try:
            os.rename(self.path, self.final)
        except OSError as exc:
            shutil.rmtree(self.path, ignore_errors=True)
            raise StoreError(f"{self.final}: cannot store the run ({exc.strerror})") from None
        return self.final


def sweep_stale(runs: Path) -> None:
    """Remove temporary run folders left by processes that no longer exist."""
    for tmp in runs.glob(".tmp-*"):
        m = re.search(r"-(\d+)$", tmp.name)
        if m and not _alive(int(m.group(1))):
            shutil.rmtree(tmp, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
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


def load_record(path: Path) -> RunRecord:
    path = Path(path)
    try:
        info = json.loads((path / "run.json").read_text())
        metrics = json.loads((path / "metrics.json").read_text())
    except FileNotFoundError as exc:
        raise StoreError(f"{path}: not a bmbench run (missing {Path(exc.filename).name})") from None
    except (OSError, ValueError) as exc:
        raise StoreError(f"{path}: damaged run record ({str(exc).splitlines()[0]})") from None
    if not isinstance(info, dict) or not isinstance(metrics, dict) or "split_fingerprint" not in info:
        raise StoreError(f"{path}: damaged run record (run.json or metrics.json lacks its fields)")
    return RunRecord(str(info.get("id", path.name)), path, info, metrics)


def list_runs(results: Path, index=None) -> list[RunRecord]:
    """Every complete run, oldest first, each followed by its cross-data-set evaluations
    (``runs/<id>/evaluations/*``); damaged or foreign folders are skipped with a warning.
    ``index``: a :class:`~bmbench.runs.index.StoreIndex` to read unchanged records from."""
    records = []
    for folder in run_folders(results):
        try:
            records.append(index.record(folder) if index is not None else load_record(folder))
        except StoreError as exc:
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


def resolve_run(results: Path, ref: str, dataset: str | None = None) -> Path:
    """A run folder from a path, an id (or unique id prefix), a recipe name, or ``latest``
    (with ``dataset``, among the runs on that data set kind only). A recipe name that
    several runs share means its newest run, with a note naming the others."""
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
        raise StoreError(f"no run matches '{ref}' in {Path(results).resolve()}/runs"
                         + (f" on data set kind '{dataset}'" if dataset else "")
                         + "; use a folder, an id, a recipe name, or latest")
    hits = [p for p in hits if _recipe_of(p) == ref] or hits
    if len(hits) == 1:
        return hits[0]
    if all(_recipe_of(p) == ref for p in hits):
        log.warning("'%s' names %d runs; using the newest, %s (others: %s); give --dataset or the run id "
                    "to choose", ref, len(hits), hits[-1].name, ", ".join(p.name for p in hits[:-1]))
        return hits[-1]
    raise StoreError(f"'{ref}' matches {len(hits)} runs: {', '.join(p.name for p in hits)}; "
                     "give more of the id, or --dataset")


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
        return json.loads((folder / "run.json").read_text())["dataset"]["kind"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
