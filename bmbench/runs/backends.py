"""Where runs and feature extraction execute: this process, local worker processes, or a
dask.distributed cluster.

- :func:`execute` runs one planned run (a :class:`Task`: a resolved recipe as plain data and
  its tags) and never raises for a failed run: the error comes back in the
  :class:`TaskResult`, so one failure does not stop the others.
- :class:`LocalBackend` (``--backend local --jobs N``): ``jobs == 1`` runs in this process;
  otherwise joblib (loky) worker processes, each run writing straight into the results
  store (runs are atomic and carry random ids, so concurrent writers never clash).
- :class:`DaskBackend` (``--backend dask --scheduler tcp://HOST:PORT``): each run executes on
  a cluster worker in a temporary store there; the finished run folder comes back as data
  (every file as bytes, plus the saved split) and *this* process writes it into the store.
  Workers need bmbench installed and the data set paths readable, not the results folder.
- Thread shares: a worker running one of ``k`` concurrent runs on a ``c``-core machine caps
  OpenMP/BLAS threads, TensorFlow's thread pools, XGBoost and bmbench's own worker
  processes (``$BMBENCH_MAX_JOBS``) at ``max(1, c // k)``, so parallel runs do not
  oversubscribe the cores.
- :class:`DaskFeatureExtractor` shards :func:`~bmbench.features.extract.extract_many` over
  the cluster for ``bmbench features --backend dask``.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Iterator

import numpy as np

from ..core.atomic import write_bytes
from ..core.errors import BmbenchError, StoreError

log = logging.getLogger("bmbench.execution")
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS",
                    "VECLIB_MAXIMUM_THREADS", "NUMEXPR_NUM_THREADS", "TF_NUM_INTRAOP_THREADS",
                    "TF_NUM_INTEROP_THREADS")


@dataclass(frozen=True)
class Task:
    """One run to execute: ``recipe`` is :meth:`Recipe.to_dict` output (plain data that any
    worker can validate again), ``tags`` go into its ``run.json``; ``key`` names it."""

    key: str
    recipe: dict
    source: str
    tags: dict
    fingerprint: str


@dataclass
class TaskResult:
    """The outcome of a :class:`Task`. ``run_id`` is set when the run was stored (or, for a
    ``bundle``, once the client stored it); ``error`` is one line when it failed."""

    key: str
    ok: bool
    run_id: str | None = None
    error: str | None = None
    details: str | None = None
    seconds: float = 0.0
    worker: str = ""
    bundle: dict | None = field(default=None, repr=False)


# --- one run ------------------------------------------------------------------------------

def execute(task: Task, results: str | os.PathLike | None, threads: int | None = None) -> TaskResult:
    """Run ``task``; store it under ``results``, or with ``results=None`` in a temporary store
    whose finished run comes back as :attr:`TaskResult.bundle` (see :func:`store_bundle`).

    ``threads``: this run's share of the cores in a worker process (None: this process, no
    limit); workers also draw no progress bars (their runs interleave). Errors are returned,
    not raised (Ctrl-C still interrupts).
    """
    from ..core.progress import set_quiet
    from ..config.recipe import recipe_from_dict
    from .runner import run_recipe

    if threads:
        apply_thread_share(threads)
        set_quiet(True)
    started = time.perf_counter()
    worker = f"{os.uname().nodename}:{os.getpid()}"
    try:
        recipe = recipe_from_dict(task.recipe, task.source)
        if recipe.fingerprint() != task.fingerprint:
            raise BmbenchError(f"the recipe resolves differently on {worker} (fingerprint "
                               f"{recipe.fingerprint()} instead of {task.fingerprint}); install the "
                               "same bmbench version on every worker")
        if results is not None:
            folder = run_recipe(recipe, results, tags=task.tags)
            return TaskResult(task.key, True, folder.name, seconds=time.perf_counter() - started,
                              worker=worker)
        with tempfile.TemporaryDirectory(prefix="bmbench-run-") as tmp:
            folder = run_recipe(recipe, tmp, tags=task.tags)
            bundle = pack_run(folder, Path(tmp))
        return TaskResult(task.key, True, None, seconds=time.perf_counter() - started,
                          worker=worker, bundle=bundle)
    except Exception as exc:  # noqa: BLE001 - a failed variant is recorded, never fatal
        return TaskResult(task.key, False, error=describe_error(exc),
                          details=traceback.format_exc(limit=20),
                          seconds=time.perf_counter() - started, worker=worker)


def describe_error(exc: BaseException) -> str:
    """One line: a bmbench error's own message, else ``Type: message``."""
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if isinstance(exc, BmbenchError):
        return text or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def cpu_count() -> int:
    """Usable cores (cgroup and affinity limits respected)."""
    from joblib import cpu_count as joblib_cpu_count

    return max(1, int(joblib_cpu_count()))


def thread_share(concurrent: int, cores: int | None = None) -> int:
    """Threads each of ``concurrent`` runs may use on a machine with ``cores`` cores."""
    return max(1, (cores or cpu_count()) // max(1, concurrent))


def apply_thread_share(threads: int) -> None:
    """Cap this (worker) process at ``threads`` threads: OpenMP/BLAS pools now and for
    libraries loaded later (environment), TensorFlow's pools (if it is not initialised yet),
    and ``train.jobs`` of every run (``$BMBENCH_MAX_JOBS``)."""
    import sys

    from .context import MAX_JOBS_ENV

    n = str(max(1, int(threads)))
    for name in THREAD_VARIABLES:
        os.environ[name] = n
    os.environ[MAX_JOBS_ENV] = n
    try:
        from threadpoolctl import threadpool_limits

        threadpool_limits(limits=int(n))
    except ImportError:  # pragma: no cover - scikit-learn depends on threadpoolctl
        pass
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        for setter in (tf.config.threading.set_intra_op_parallelism_threads,
                       tf.config.threading.set_inter_op_parallelism_threads):
            try:
                setter(int(n))
            except RuntimeError:  # already initialised in this process: keeps its pools
                pass


# --- run folders as data ------------------------------------------------------------------

def pack_run(folder: Path, store: Path) -> dict:
    """A finished run folder (and the split file it used) as plain data:
    ``{"run_id", "files": {relative POSIX path: bytes}, "splits": {file name: bytes}}``."""
    import json

    files = {p.relative_to(folder).as_posix(): p.read_bytes()
             for p in sorted(folder.rglob("*")) if p.is_file()}
    splits = {}
    info = json.loads(files["run.json"])
    split_file = store / "splits" / f"{info['split_fingerprint']}.json"
    if split_file.is_file():
        splits[split_file.name] = split_file.read_bytes()
    return {"run_id": folder.name, "files": files, "splits": splits}


def store_bundle(results: str | os.PathLike, bundle: dict) -> Path:
    """Write a :func:`pack_run` bundle into the store ``results`` atomically (a temporary
    folder renamed into ``runs/<run id>``); returns the run folder. Idempotent."""
    from .store import sweep_stale, tmp_name

    results = Path(results)
    run_id = _safe_name(bundle["run_id"])
    final = results / "runs" / run_id
    if final.is_dir():
        return final
    tmp = results / "runs" / tmp_name(run_id)
    try:
        tmp.mkdir(parents=True)
        sweep_stale(results / "runs")
        for rel, data in bundle["files"].items():
            target = tmp.joinpath(*_safe_parts(rel))
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        splits = results / "splits"
        for name, data in bundle.get("splits", {}).items():
            target = splits / _safe_name(name)
            if not target.exists():
                splits.mkdir(parents=True, exist_ok=True)
                write_bytes(target, data)
        os.rename(tmp, final)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise StoreError(f"{final}: cannot store the run ({exc.strerror or exc})") from None
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def _safe_name(name: str) -> str:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise StoreError(f"refusing a run file named {name!r} from a worker")
    return name


def _safe_parts(rel: str) -> tuple[str, ...]:
    parts = PurePosixPath(rel).parts
    if not parts or PurePosixPath(rel).is_absolute() or any(p in ("..", ".", "") for p in parts):
        raise StoreError(f"refusing a run file path {rel!r} from a worker")
    return parts


# --- backends -----------------------------------------------------------------------------

class LocalBackend:
    """Runs on this machine: in this process (``jobs == 1``) or in ``jobs`` worker processes."""

    name = "local"

    def __init__(self, jobs: int = 1):
        if jobs == -1:
            jobs = cpu_count()
        if jobs < 1:
            raise BmbenchError(f"--jobs {jobs}: give a positive number of parallel runs (or -1: one per core)")
        self.jobs = jobs

    def describe(self) -> str:
        if self.jobs == 1:
            return "local backend, 1 run at a time in this process"
        return (f"local backend, {self.jobs} runs at a time in worker processes, "
                f"{thread_share(self.jobs)} thread(s) each")

    def run(self, tasks: list[Task], results: Path) -> Iterator[TaskResult]:
        """Execute ``tasks``; yield each result as it finishes (any order)."""
        if not tasks:
            return
        if self.jobs == 1 or len(tasks) == 1:
            for task in tasks:
                yield execute(task, results, None)
            return
        from joblib import Parallel, delayed

        n = min(self.jobs, len(tasks))
        share = thread_share(n)
        yield from Parallel(n_jobs=n, backend="loky", return_as="generator_unordered")(
            delayed(execute)(task, str(results), share) for task in tasks)


class DaskBackend:
    """Runs on an existing dask.distributed cluster; this process stores the results."""

    name = "dask"

    def __init__(self, scheduler=None, client=None, timeout: float = 20.0):
        self._own_client = client is None
        self.client = client if client is not None else connect(scheduler, timeout)
        self.address = getattr(self.client.scheduler, "address", scheduler)

    def describe(self) -> str:
        workers = _workers(self.client)
        threads = sum(w.get("nthreads", 1) for w in workers.values())
        return f"dask backend at {self.address}: {len(workers)} worker(s), {threads} thread(s)"

    def run(self, tasks: list[Task], results: Path) -> Iterator[TaskResult]:
        if not tasks:
            return
        from distributed import as_completed

        shares = host_shares(self.client)
        if not shares:
            raise BmbenchError(f"the dask cluster at {self.address} has no workers; start some "
                               f"with `dask worker {self.address}`")
        token = os.urandom(4).hex()
        futures = {}
        for task in tasks:
            fut = self.client.submit(_execute_on_worker, task, shares, key=f"bmbench-{token}-{task.key}",
                                     pure=False)
            futures[fut.key] = (fut, task)
        try:
            for fut in as_completed([f for f, _ in futures.values()]):
                task = futures[fut.key][1]
                try:
                    res = fut.result()
                except Exception as exc:  # noqa: BLE001 - e.g. KilledWorker: record, go on
                    res = TaskResult(task.key, False, error=f"on the dask cluster: {describe_error(exc)}")
                finally:
                    fut.release()
                if res.ok and res.bundle is not None:
                    try:
                        res.run_id = store_bundle(results, res.bundle).name
                    except StoreError as exc:
                        res.ok, res.error = False, str(exc)
                    res.bundle = None
                yield res
        finally:
            for fut, _ in futures.values():
                if not fut.done():
                    fut.cancel()

    def close(self) -> None:
        """Close the connection this backend opened (a client passed in stays open)."""
        if self._own_client:
            self.client.close()


def connect(scheduler, timeout: float = 20.0):
    """A ``distributed.Client`` for ``scheduler`` (``tcp://HOST:PORT``), with clear errors."""
    try:
        from distributed import Client
    except ImportError:
        raise BmbenchError("--backend dask needs dask.distributed: pip install 'bmbench[dask]' "
                           "(or pip install 'dask[distributed]')") from None
    if not scheduler:
        raise BmbenchError("--backend dask needs --scheduler tcp://HOST:PORT (the address "
                           "`dask scheduler` prints)")
    try:
        return Client(scheduler, timeout=timeout)
    except (OSError, TimeoutError, ValueError) as exc:
        raise BmbenchError(f"cannot reach the dask scheduler at {scheduler} ({describe_error(exc)}); "
                           "start one with `dask scheduler` and workers with `dask worker "
                           f"{scheduler}`") from None


def make_backend(name: str, jobs: int = 1, scheduler: str | None = None):
    if name == "local":
        if scheduler:
            raise BmbenchError("--scheduler is for --backend dask")
        return LocalBackend(jobs)
    if name == "dask":
        return DaskBackend(scheduler)
    raise BmbenchError(f"unknown backend {name!r}; choose local or dask")


def _workers(client) -> dict:
    try:
        info = client.scheduler_info(n_workers=-1)
    except TypeError:  # older distributed: no n_workers argument (all workers listed)
        info = client.scheduler_info()
    return info.get("workers", {})


def _host(address: str) -> str:
    from urllib.parse import urlparse

    return urlparse(address).hostname or address


def host_shares(client) -> dict[str, int]:
    """``{worker host: threads per run}``: a host's cores divided by the threads of all the
    workers on it (each worker thread runs one task at a time)."""
    workers = _workers(client)
    threads: dict[str, int] = {}
    for address, w in workers.items():
        threads[_host(address)] = threads.get(_host(address), 0) + int(w.get("nthreads", 1))
    cores = {_host(a): n for a, n in client.run(cpu_count).items()}
    return {h: thread_share(t, cores.get(h, 1)) for h, t in threads.items()}


def _execute_on_worker(task: Task, shares: dict[str, int]) -> TaskResult:
    from distributed import get_worker

    threads = shares.get(_host(get_worker().address), 1)
    return execute(task, None, threads)


# --- feature extraction on a cluster ------------------------------------------------------

class DaskFeatureExtractor:
    """A drop-in for :func:`~bmbench.features.extract.extract_many` that extracts shards of
    the images on a dask cluster. Workers read the image paths themselves and use their own
    feature cache (``$BMBENCH_CACHE`` on the worker); the rows come back in input order."""

    def __init__(self, client, shard_size: int | None = None):
        self.client = client
        self.shard_size = shard_size

    def __call__(self, paths, settings, read_image=None, jobs: int = 1, cache=None, progress=None):
        from ..features.extract import feature_names

        paths = [str(p) for p in paths]
        n_features = len(feature_names(settings))
        if not paths:
            return np.empty((0, n_features), np.float32), []
        threads = max(1, sum(w.get("nthreads", 1) for w in _workers(self.client).values()))
        size = self.shard_size or max(8, -(-len(paths) // (2 * threads)))
        starts = list(range(0, len(paths), size))
        futures = [self.client.submit(_extract_shard, paths[s:s + size], settings, read_image, pure=False)
                   for s in starts]
        out = np.empty((len(paths), n_features), np.float32)
        flags: list = [()] * len(paths)
        done = 0
        try:
            for start, fut in zip(starts, futures):
                vectors, shard_flags = fut.result()
                out[start:start + len(vectors)] = vectors
                flags[start:start + len(vectors)] = shard_flags
                done += len(vectors)
                fut.release()
                if progress is not None:
                    progress(done)
        finally:
            for fut in futures:
                if not fut.done():
                    fut.cancel()
        return out, flags


def _extract_shard(paths, settings, read_image):
    from ..core.cache import ArrayCache, default_root
    from ..features.extract import extract_many

    return extract_many(paths, settings, read_image, jobs=1, cache=ArrayCache(default_root() / "features"))

