"""Start-up and many runs (issue 20): how long ``bmbench --help`` and ``bmbench leaderboard``
take on a small store (10 runs) and on 5,000 runs.

``python -m benchmarks startup [--runs 5000] [--repeats 7] [--baseline CHECKOUT] [--only PART]``

Parts: ``leaderboard`` (below) and ``reruns``: a first run of ``xgb_handcrafted`` on the
1,600 PBC images and of a frozen ``densenet_tl`` (head only, DenseNet121 weights from a
local file) on the 1,400 Matek images, each with an empty cache, then cached reruns of
each, alternating with the baseline's when given (its own cache, filled by its own first
run); the same settings as :mod:`benchmarks.caches`. Targets: a cached classical rerun
under 1.5 s and at least 20x faster than its first run; the embedding cache at least 10x
on the head-training run (fit).

Stores come from :mod:`benchmarks.make_runs` (run.json, metrics.json with bootstrap
intervals, predictions.csv of 300 test images; 5,000 runs over 5 splits: five tables of
1,000 rows, 999 paired tests each). Each command runs in a fresh process; the commands
alternate, ``--repeats`` rounds, medians reported with the CPU time (user + system) of the
process, which a shared machine inflates less than wall time. ``--baseline`` names a
checkout of an older bmbench whose CLI runs in the same rounds (``PYTHONPATH`` set to it),
for ratios measured side by side.

The leaderboard is timed with its index filled (``index.sqlite``: the runs' records and
the paired tests against each leader) and, on the small store, with ``--no-index`` (every
folder read, every paired test redone: what the first call costs). On 5,000 runs the
first call (which fills the index) runs once, and listing the runs with and without the
index is timed on its own, to show what scanning the folders alone would cost.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import RESULTS, machine, write_section
from .make_runs import generate

REPO = Path(__file__).resolve().parents[1]
SECTION = "Start-up and many runs (issue 20)"
LIST = ("import sys, time; t = time.perf_counter(); from bmbench.runs.index import StoreIndex; "
        "from bmbench.runs.store import list_runs\n"
        "with StoreIndex(sys.argv[1], enabled=sys.argv[2] == '1') as i: n = len(list_runs(sys.argv[1], i))\n"
        "print(n, time.perf_counter() - t)")


def timed(cmd: list[str], code: Path = REPO) -> tuple[float, float]:
    """(wall s, CPU s) of ``cmd`` run with bmbench imported from ``code``."""
    env = {**os.environ, "PYTHONPATH": str(code), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=code)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_utime + usage.ru_stime


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "bmbench.cli", *args]


def rounds(cases: dict[str, tuple[list[str], Path]], repeats: int) -> dict[str, tuple[float, float]]:
    """Median (wall, CPU) of each case, the cases alternating in every round."""
    got: dict[str, list[tuple[float, float]]] = {k: [] for k in cases}
    for _ in range(repeats):
        for name, (cmd, code) in cases.items():
            got[name].append(timed(cmd, code))
    return {k: (statistics.median(w for w, _ in v), statistics.median(c for _, c in v)) for k, v in got.items()}


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks startup")
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--baseline", type=Path, default=None, help="a checkout of an older bmbench")
    parser.add_argument("--only", choices=("leaderboard", "reruns"), default=None)
    parser.add_argument("--classical-only", action="store_true",
                        help="reruns: only xgb_handcrafted, in a subsection of its own (a second measurement)")
    args = parser.parse_args(argv or [])
    base = args.baseline.resolve() if args.baseline else None
    out = ""
    if args.only != "reruns":
        out = leaderboards(args, base)
    if args.only != "leaderboard":
        out = reruns(args, base)
    return out


def leaderboards(args, base: Path | None) -> str:
    rows, notes = [], []
    with tempfile.TemporaryDirectory(prefix="bmbench-startup-") as tmp:
        small = generate(Path(tmp) / "small", runs=10, splits=1, n_test=300, pool=10)
        timed(cli("leaderboard", "--results-dir", str(small)))  # fills the index
        cases = {"`bmbench --help`": (cli("--help"), REPO),
                 "`bmbench leaderboard`, 10 runs, index filled": (cli("leaderboard", "--results-dir", str(small)), REPO),
                 "`bmbench leaderboard --no-index`, 10 runs": (
                     cli("leaderboard", "--no-index", "--results-dir", str(small)), REPO),
                 "`python -c 'import pandas'` (for scale)": ([sys.executable, "-c", "import pandas"], REPO)}
        if base:
            cases["`bmbench --help`, baseline"] = (cli("--help"), base)
            cases["`bmbench leaderboard`, 10 runs, baseline"] = (cli("leaderboard", "--results-dir", str(small)), base)
        small_t = rounds(cases, args.repeats)
        rows += [(k, *v) for k, v in small_t.items()]
        if base:
            for what in ("`bmbench --help`", "`bmbench leaderboard`, 10 runs"):
                new = small_t[what if what.endswith("help`") else f"{what}, index filled"]
                notes.append(f"{what}: baseline / now = **{small_t[f'{what}, baseline'][0] / new[0]:.1f}x** wall, "
                             f"{small_t[f'{what}, baseline'][1] / new[1]:.1f}x CPU")
        many = generate(Path(tmp) / "many", runs=args.runs)
        board = cli("leaderboard", "--results-dir", str(many))
        first = timed(board)
        rows.append((f"`bmbench leaderboard`, {args.runs:,} runs, first call (fills the index)", *first))
        if base:
            old = timed(board, base)
            rows.append((f"`bmbench leaderboard`, {args.runs:,} runs, baseline", *old))
        listing = {"index": ([sys.executable, "-c", LIST, str(many), "1"], REPO),
                   "scan": ([sys.executable, "-c", LIST, str(many), "0"], REPO),
                   "board": (board, REPO)}
        many_t = rounds(listing, args.repeats)
        rows += [(f"`bmbench leaderboard`, {args.runs:,} runs, index filled", *many_t["board"]),
                 (f"list the {args.runs:,} runs' records from the index (Python start included)", *many_t["index"]),
                 (f"list the {args.runs:,} runs' records by reading every folder", *many_t["scan"])]
        if base:
            notes.append(f"`bmbench leaderboard` on {args.runs:,} runs: baseline / now (index filled) = "
                         f"**{old[0] / many_t['board'][0]:.0f}x** wall")
        size = (many / "index.sqlite").stat().st_size
    text = (f"Machine: {machine()}; {_load()}; on a shared machine wall times are inflated, so "
            "CPU times (user + system of the process) are given beside them.\n\nMedians of {args.repeats} alternating rounds, each command a fresh process. "
            "Targets: `bmbench --help` and `bmbench leaderboard` on a small store under 0.5 s; "
            f"the leaderboard on 5,000 runs under 2 s. Index file for {args.runs:,} runs: "
            f"{size / 2**20:.1f} MiB.\n\n| command | wall s | CPU s |\n|---|---|---|\n"
            + "\n".join(f"| {name} | {w:.2f} | {c:.2f} |" for name, w, c in rows)
            + ("\n\n" + "\n".join(f"- {n}" for n in notes) if notes else ""))
    return write_part("Start-up and the leaderboard", text)


def write_part(title: str, body: str) -> str:
    """Replace (or add) the subsection ``### title`` of this benchmark's RESULTS.md section;
    returns the section."""
    text = RESULTS.read_text() if RESULTS.exists() else ""
    found = re.search(rf"^## {re.escape(SECTION)}\n(.*?)(?=^## |\Z)", text, re.S | re.M)
    section = found.group(1).strip() if found else ""
    part = f"### {title}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^### {re.escape(title)}\n.*?(?=^### |\Z)", re.S | re.M)
    section = pattern.sub(lambda _: part + "\n", section) if pattern.search(section) else (
        section + "\n\n" + part).strip()
    write_section(SECTION, section)
    return f"## {SECTION}\n\n{section}"


def reruns(args, base: Path | None) -> str:
    from .caches import FROZEN, SHARED, _weights_file

    cases = (("`xgb_handcrafted`, pbc (1,600 images)", "xgb_handcrafted",
              ("dataset.kind=pbc", f"dataset.root={SHARED / 'pbc'}")),
             ("`densenet_tl` frozen, head only, matek_bm (1,400 images)", "densenet_tl",
              ("dataset.kind=matek_bm", f"dataset.root={SHARED / 'matek_bm'}", FROZEN)))
    if args.classical_only:
        cases = cases[:1]
    rows = []
    with tempfile.TemporaryDirectory(prefix="bmbench-reruns-") as tmp:
        weights = None
        for label, recipe, sets in cases:
            if recipe == "densenet_tl":
                weights = weights or _weights_file(Path(tmp))
                sets = sets + (f"model.weights={weights}",)
            sides = {"now": REPO, **({"baseline": base} if base else {})}
            cmds, first, stores = {}, {}, {}
            for side, code in sides.items():
                store = stores[side] = Path(tmp) / f"{recipe}-{side}"
                cmd = cli("run", str(REPO / "recipes" / f"{recipe}.yaml"), "-q", "--results-dir", str(store),
                          *[a for s_ in sets for a in ("--set", s_)])
                env_cmd = ["env", f"BMBENCH_CACHE={store / 'cache'}", *cmd]
                first[side] = (timed(env_cmd, code), _fit(store))
                cmds[side] = (env_cmd, code)
            again = {side: [] for side in sides}
            for _ in range(args.repeats if recipe == "xgb_handcrafted" else 3):
                for side, (cmd, code) in cmds.items():
                    wall, cpu = timed(cmd, code)
                    again[side].append((wall, cpu, _fit(stores[side])))
            for side in sides:
                (w1, c1), f1 = first[side]
                w2 = statistics.median(w for w, _, _ in again[side])
                c2 = statistics.median(c for _, c, _ in again[side])
                f2 = statistics.median(f for _, _, f in again[side])
                rows.append(f"| {label}{', baseline' if side == 'baseline' else ''} | {w1:.1f} / {w2:.2f} | "
                            f"{c1:.1f} / {c2:.2f} | **{w1 / w2:.1f}x** | {f1:.1f} / {f2:.2f} | **{f1 / f2:.0f}x** |")
    text = (f"Machine: {machine()}; {_load()}.\n\nFirst run (empty cache) / cached "
            f"rerun (median of {args.repeats} for the classical recipe, 3 for the deep one, alternating with "
            "the baseline when given). Wall and CPU: the whole `bmbench run` process; fit: training as "
            "run.json times it (for the classical family this now includes importing XGBoost when its fit "
            "is not cached).\n\n| recipe | wall s | CPU s | wall ratio | fit s | fit ratio |\n"
            "|---|---|---|---|---|---|\n" + "\n".join(rows))
    return write_part("Cached classical rerun, measured again" if args.classical_only else "Cached reruns", text)


def _fit(store: Path) -> float:
    import json

    runs = sorted((store / "runs").glob("*/run.json"))
    return json.loads(runs[-1].read_text())["timings"]["fit_seconds"]


def _load() -> str:
    """What else the machine was doing: the 1-minute load average as this benchmark started."""
    return f"load average {LOAD_AT_START:.1f} on {os.cpu_count()} cores as the benchmark started"


LOAD_AT_START = os.getloadavg()[0]
