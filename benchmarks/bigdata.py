"""Big data sets (issue 20): a generated 100,000-image tree in the Matek 2021 layout.

The tree (:func:`bmbench.data.synthetic_tree.generate_matek_tree`: 64 px synthetic cells,
JPEG, about 2.5 KB each, 4 classes) is written to a scratch folder and deleted after; the
10,000-image tree is the first 2,500 files of each class, hard-linked (byte-identical to a
generated 10,000-image tree). Every step runs in a fresh process, as a user runs it:

1. scan + fingerprint + split (``dataset.kind: matek_bm``, stratified split): 10,000 and
   100,000 alternate over 3 rounds, medians. Target: under 30 s at 100,000 on 2 cores.
2. ``bmbench features --jobs 2`` to Parquet with an empty feature cache at 10,000 and
   100,000: peak RSS of the largest process (target: growth < 20%) and whether the table
   streams (one Parquet row group per 2,048 rows, the export's block).
3. the audit's pair search (:func:`bmbench.audit.neighbours.find_duplicates`) on the
   descriptors of both trees: resident memory it adds above the loaded descriptors
   (sampled every 5 ms) against its documented bound
   (:func:`bmbench.audit.neighbours.search_memory_bound`).
4. ``bmbench features --backend dask`` of the 100,000 images on a loopback ``dask
   scheduler`` + 2 ``dask worker`` processes (1 thread each): the same table as the local
   backend (compared cell by cell) and its wall time beside the local ``--jobs 2`` run.

``python -m benchmarks bigdata --n 100000 --small 10000 --size 64 --scratch DIR --skip dask,audit``
(``--skip`` takes any of scan, features, audit, dask). The child steps are
``python -m benchmarks.bigdata scan ROOT`` and ``python -m benchmarks.bigdata pairs ROOT CACHE``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

from .common import bmbench, machine, measure, write_section

ROUNDS = 3
SECTION = "Big data sets and Dask (issue 20)"
STEPS = ("scan", "features", "audit", "dask")


# --- the child steps (fresh processes) -------------------------------------------------------

def scan_and_split(root: str | os.PathLike) -> dict:
    """Load ``root`` as ``matek_bm`` (scan, table, fingerprint) and make the default
    stratified split; ``{"n", "fingerprint", "split", "seconds"}`` (seconds after imports)."""
    from bmbench.config.recipe import SplitSpec, dataset_spec
    from bmbench.data import load_dataset
    from bmbench.data.splits import make_split

    start = time.perf_counter()
    table = load_dataset(dataset_spec({"kind": "matek_bm", "root": str(root)}))
    split = make_split(table, SplitSpec())
    return {"n": len(table), "fingerprint": table.fingerprint, "split": split.fingerprint,
            "seconds": time.perf_counter() - start}


class PeakRss:
    """Highest resident set size of this process (MiB) while the block runs, sampled
    from ``/proc/self/statm`` every ``interval`` seconds."""

    def __init__(self, interval: float = 0.005):
        self.interval = interval
        self.peak = self.start = rss_mib()
        self._stop = threading.Event()

    def __enter__(self) -> "PeakRss":
        self.start = self.peak = rss_mib()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, rss_mib())

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mib())

    @property
    def growth(self) -> float:
        return self.peak - self.start


def rss_mib() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def pair_search(root: str | os.PathLike, cache_dir: str | os.PathLike, jobs: int = 2) -> dict:
    """Describe ``root``'s images (cached in ``cache_dir``), then time the pair search and
    sample the memory it adds. Sizes in MiB."""
    from bmbench.audit.descriptors import describe_files
    from bmbench.audit.neighbours import NearDuplicateSettings, find_duplicates, search_memory_bound
    from bmbench.core.cache import ArrayCache
    from bmbench.data.layouts import walk_images

    paths = [str(Path(root) / p) for p in walk_images(Path(root))]
    start = time.perf_counter()
    desc = describe_files(paths, jobs, ArrayCache(Path(cache_dir)))
    described = time.perf_counter() - start
    held = sum(a.nbytes for a in (desc.hist, desc.phash, desc.kp_points, desc.kp_descriptors,
                                  desc.kp_offsets, desc.shapes, desc.ok)) / 2**20
    settings = NearDuplicateSettings()
    import cv2  # noqa: F401 - the libraries the search loads are not its working memory
    import sklearn.neighbors  # noqa: F401
    from joblib import Parallel  # noqa: F401

    start = time.perf_counter()
    with PeakRss() as rss:
        finding = find_duplicates(desc, (), settings, jobs)
    return {"n": len(desc), "describe_seconds": described, "descriptors_mib": held,
            "search_seconds": time.perf_counter() - start, "search_mib": rss.growth,
            "bound_mib": search_memory_bound(len(desc), settings) / 2**20,
            "verified": finding.verified, "pairs": len(finding.pairs),
            "all_pairs": len(desc) <= settings.hash_all_pairs}


def child(args: list[str]) -> dict:
    """Run the child step ``args[0]`` in a fresh process; its JSON result."""
    out = subprocess.run([sys.executable, "-m", "benchmarks.bigdata", *args], check=True,
                         capture_output=True, text=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(out.stdout.strip().splitlines()[-1])


# --- trees and clusters ----------------------------------------------------------------------

def make_trees(scratch: Path, n: int, small: int, size: int) -> tuple[Path, Path]:
    """The ``n``-image tree and a hard-linked ``small``-image tree (its first files per class)."""
    from bmbench.data.synthetic import SYNTHETIC_CLASSES
    from bmbench.data.synthetic_tree import MATEK_CODES, generate_matek_tree, matek_relpath

    big = generate_matek_tree(scratch / f"tree{n}", n, size=size, jobs=2)
    little = scratch / f"tree{small}"
    for ci, label in enumerate(SYNTHETIC_CLASSES):
        for i in range(small // 4 + (ci < small % 4)):
            rel = matek_relpath(MATEK_CODES[label], i + 1)
            (little / rel).parent.mkdir(parents=True, exist_ok=True)
            os.link(big / rel, little / rel)
    return big, little


@contextmanager
def loopback_cluster(folder: Path, workers: int = 2, env: dict | None = None, timeout: float = 60.0):
    """A ``dask scheduler`` and ``workers`` one-thread ``dask worker`` processes on
    127.0.0.1 (no dashboards), started as a user starts them; yields the scheduler address."""
    from distributed import Client

    dask = str(Path(sys.executable).with_name("dask"))
    file = folder / "scheduler.json"
    environ = {**os.environ, **(env or {})}
    common = {"env": environ, "stdout": subprocess.DEVNULL, "stderr": subprocess.DEVNULL}
    procs = [subprocess.Popen([dask, "scheduler", "--host", "127.0.0.1", "--port", "0",
                               "--no-dashboard", "--scheduler-file", str(file)], **common)]
    try:
        deadline = time.monotonic() + timeout
        while not file.is_file():
            if time.monotonic() > deadline or procs[0].poll() is not None:
                raise RuntimeError("the dask scheduler did not start")
            time.sleep(0.1)
        address = json.loads(file.read_text())["address"]
        procs.append(subprocess.Popen([dask, "worker", address, "--nworkers", str(workers),
                                       "--nthreads", "1", "--no-dashboard", "--host", "127.0.0.1"],
                                      **common))
        with Client(address, timeout=timeout) as client:
            client.wait_for_workers(workers, timeout=timeout)
        yield address
    finally:
        for proc in reversed(procs):
            proc.terminate()
        for proc in reversed(procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()


def row_groups(path: Path) -> int:
    import pyarrow.parquet as pq

    return pq.ParquetFile(path).num_row_groups


def same_table(a: Path, b: Path) -> bool:
    import pandas as pd

    try:
        pd.testing.assert_frame_equal(pd.read_parquet(a), pd.read_parquet(b))
    except AssertionError:
        return False
    return True


# --- the benchmark ---------------------------------------------------------------------------

def _scan(big: Path, little: Path) -> dict:
    times = {little: [], big: []}
    results = {}
    for _ in range(ROUNDS):
        for root in (little, big):
            start = time.perf_counter()
            res = child(["scan", str(root)])
            times[root].append((time.perf_counter() - start, res["seconds"]))
            results[root] = res
    return {root: {**results[root], "wall": statistics.median(t for t, _ in times[root]),
                   "inner": statistics.median(s for _, s in times[root])} for root in times}


def _features(tree: Path, scratch: Path, tag: str, extra=(), env=None) -> dict:
    out = scratch / f"{tag}.parquet"
    cache = {"BMBENCH_CACHE": str(scratch / f"cache-{tag}")}
    wall, rss = measure(bmbench("features", str(tree), "--kind", "matek_bm", "--out", str(out), "-q",
                                *extra, "--results-dir", str(scratch / "results")), {**cache, **(env or {})})
    return {"out": out, "wall": wall, "rss": rss, "groups": row_groups(out)}


def run(argv: list[str] | None = None) -> str:
    p = argparse.ArgumentParser(prog="python -m benchmarks bigdata")
    p.add_argument("--n", type=int, default=100_000)
    p.add_argument("--small", type=int, default=10_000)
    p.add_argument("--size", type=int, default=64)
    p.add_argument("--scratch", default=None, help="folder for the trees (default: the temp folder)")
    p.add_argument("--skip", default="", help=f"comma-separated steps to leave out: {', '.join(STEPS)}")
    a = p.parse_args(argv or [])
    skip = {s for s in a.skip.split(",") if s}
    if skip - set(STEPS):
        p.error(f"--skip: unknown step(s) {sorted(skip - set(STEPS))}; choose from {', '.join(STEPS)}")
    with tempfile.TemporaryDirectory(prefix="bmbench-bigdata-", dir=a.scratch) as tmp:
        scratch = Path(tmp)
        start = time.perf_counter()
        big, little = make_trees(scratch, a.n, a.small, a.size)
        made = time.perf_counter() - start
        disk = sum(f.stat().st_size for f in big.rglob("*.jpg")) / 2**20
        parts = [f"Machine: {machine()}; shared with other agents' builds and tests while it ran, "
                 "so wall times are upper bounds.\n",
                 f"Tree: {a.n:,} synthetic {a.size} px JPEGs in the Matek 2021 layout "
                 f"(`<CLASS>/0001-1000/<CLASS>_<5 digits>.jpg`, 4 classes), {disk:.0f} MiB of files, "
                 f"written in {made:.0f} s by 2 processes; the {a.small:,}-image tree is its first "
                 "files per class (hard links). Every step runs in a fresh process.\n"]
        if "scan" not in skip:
            parts.append(_scan_text(_scan(big, little), little, big))
            write_section(SECTION, "\n".join(parts))  # each step's figures land as soon as they exist
        local = None
        if "features" not in skip or "dask" not in skip:
            small_run = _features(little, scratch, "local-small", ("--jobs", "2")) if "features" not in skip else None
            local = _features(big, scratch, "local", ("--jobs", "2"))
            if small_run:
                parts.append(_features_text(small_run, local, a.small, a.n))
                write_section(SECTION, "\n".join(parts))
        if "audit" not in skip:
            cache = scratch / "audit-cache"
            parts.append(_audit_text([child(["pairs", str(t), str(cache)]) for t in (little, big)]))
            write_section(SECTION, "\n".join(parts))
        if "dask" not in skip:
            worker_env = {"BMBENCH_CACHE": str(scratch / "cache-dask-workers")}
            with loopback_cluster(scratch, 2, worker_env) as address:
                remote = _features(big, scratch, "dask", ("--backend", "dask", "--scheduler", address))
            parts.append(_dask_text(local, remote, same_table(local["out"], remote["out"]), a.n))
    body = "\n".join(parts)
    write_section(SECTION, body)
    return body


def _scan_text(res: dict, little: Path, big: Path) -> str:
    s, b = res[little], res[big]
    return ("**Scan + fingerprint + split** (`dataset.kind: matek_bm`, default stratified split; "
            f"median of {ROUNDS} alternating rounds; the tree's metadata is in the page cache, as "
            "after any first pass):\n\n| images | process wall s | scan + fingerprint + split s |\n"
            "|---|---|---|\n"
            f"| {s['n']:,} | {s['wall']:.1f} | {s['inner']:.2f} |\n| {b['n']:,} | {b['wall']:.1f} | {b['inner']:.2f} |\n\n"
            f"{b['n']:,} images: **{b['wall']:.1f} s** for the whole process (target < 30 s), "
            f"{b['inner'] / s['inner']:.1f}x the {s['n']:,}-image time for {b['n'] / s['n']:.0f}x the images.\n")


def _features_text(small: dict, big: dict, n_small: int, n: int) -> str:
    growth = (big["rss"] / small["rss"] - 1) * 100
    rows = "\n".join(f"| {k:,} | {r['wall']:.0f} | {k / r['wall']:.0f} | {r['rss']:.0f} | {r['groups']} |"
                     for k, r in ((n_small, small), (n, big)))
    return ("**`bmbench features --jobs 2`** (all families, Parquet, empty feature cache; peak RSS of "
            "the largest process, main or worker):\n\n| images | wall s | images/s | peak RSS MiB | "
            f"Parquet row groups |\n|---|---|---|---|---|\n{rows}\n\n"
            f"Peak RSS growth from {n_small:,} to {n:,} images: **{growth:+.1f}%** (target < 20%). "
            "The table is written as it goes, one row group per 2,048 images.\n")


def _audit_text(results: list[dict]) -> str:
    rows = "\n".join(
        f"| {r['n']:,} | {'all pairs' if r['all_pairs'] else 'colour neighbours'} | {r['descriptors_mib']:.0f} "
        f"({r['descriptors_mib'] * 2**20 / r['n'] / 1024:.1f} KB/image) | {r['search_mib']:.0f} | {r['bound_mib']:.0f} | "
        f"{r['search_seconds']:.0f} | {r['verified']:,} |" for r in results)
    ok = all(r["search_mib"] <= r["bound_mib"] for r in results)
    return ("**Audit pair search** (`find_duplicates`, `--jobs 2`; memory it adds above the loaded "
            "descriptors, sampled every 5 ms, against `search_memory_bound`):\n\n| images | hash "
            "comparison | descriptors MiB | search adds MiB | documented bound MiB | search s | "
            f"pairs verified by keypoints |\n|---|---|---|---|---|---|---|\n{rows}\n\n"
            f"Within the documented bound at every size: **{'yes' if ok else 'no'}**.\n")


def _dask_text(local: dict, remote: dict, same: bool, n: int) -> str:
    return ("**Dask** (`bmbench features --backend dask` on a loopback `dask scheduler` + 2 `dask "
            "worker` processes with 1 thread each, their own empty feature cache; against the "
            f"local `--jobs 2` run above, one run each):\n\n| {n:,} images | wall s | images/s | "
            f"peak RSS MiB (client) |\n|---|---|---|---|\n"
            f"| local, `--jobs 2` | {local['wall']:.0f} | {n / local['wall']:.0f} | {local['rss']:.0f} |\n"
            f"| dask, 2 workers | {remote['wall']:.0f} | {n / remote['wall']:.0f} | {remote['rss']:.0f} |\n\n"
            f"Tables identical, cell by cell: **{'yes' if same else 'NO'}**; dask / local wall "
            f"**{remote['wall'] / local['wall']:.2f}x** (both use the same 2 cores).\n")


def main(argv: list[str]) -> None:
    if argv[0] == "scan":
        print(json.dumps(scan_and_split(argv[1])))
    elif argv[0] == "pairs":
        print(json.dumps(pair_search(argv[1], argv[2])))
    else:
        raise SystemExit(f"unknown step {argv[0]!r}: scan ROOT or pairs ROOT CACHE")


if __name__ == "__main__":
    main(sys.argv[1:])
