"""Reference leaderboards: the shipped recipes on every real set in ../shared/datasets.

Each recipe runs with 3 seeds (``--repeats 3``, same split) into a scratch store
``results/reference/runs/`` (git-ignored: it holds models and per-image predictions); then
``bmbench leaderboard`` writes ``results/reference/<set>.md`` and ``.csv`` for each set; the
cross-data-set recipes run into ``cross_runs/`` and give ``cross_leaderboard.md``/``.csv`` (``cross.md``
is the hand-run comparison of cross-lab setups, not overwritten); and ``COMMANDS.md`` lists every
command with its wall time. A command already logged in ``runs/commands.json`` is skipped,
so an interrupted build resumes; ``--force`` reruns.

    python -m benchmarks reference [--only RECIPE ...] [--sets SET ...] [--force] [--tables]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import time
from pathlib import Path

from .common import HERE, bmbench, machine, measure, require_checkout_with_data, write_section

REPO = HERE.parent
SHARED = REPO.parent / "shared" / "datasets"
OUT = REPO / "results" / "reference"
RUNS = OUT / "runs"
CROSS_RUNS = OUT / "cross_runs"
LOG = RUNS / "commands.json"
SEEDS = 3

#: set name -> (dataset.kind, folder under ../shared/datasets)
SETS = {
    "matek_bm": ("matek_bm", "matek_bm"),
    "pbc": ("pbc", "pbc"),
    "bloodcells4": ("bloodcells4", "bloodcells4"),
    "bccd_crops": ("folder", "bccd_crops"),
}
#: recipes run on every set, cheapest first
RECIPES = ("quickstart", "xgb_handcrafted", "mobilenet_scratch", "small_cnn")
#: recipes that name their own data (train on one set, evaluate on another)
CROSS = ("cross_pbc_to_matek", "cross_matek_to_pbc")


def _recipe(name: str) -> str:
    return f"recipes/{name}.yaml"


def commands(only: tuple[str, ...] = (), sets: tuple[str, ...] = ()) -> list[tuple[str, list[str]]]:
    """``(key, argv after 'bmbench')`` for every run of the reference build."""
    out = []
    for recipe in RECIPES:
        for name, (kind, folder) in SETS.items():
            if sets and name not in sets:
                continue
            args = ["run", _recipe(recipe), "--set", f"dataset.kind={kind}", "--set",
                    f"dataset.root={os.path.relpath(SHARED / folder, REPO)}"]
            out.append((f"{recipe}@{name}", args))
    out = [(key, args + ["--results-dir", _rel(RUNS)]) for key, args in out]
    out += [(name, ["run", _recipe(name), "--results-dir", _rel(CROSS_RUNS)]) for name in CROSS]
    out = [(key, args + ["--repeats", str(SEEDS), "-q"]) for key, args in out]
    return [c for c in out if not only or c[0].split("@")[0] in only]


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _log() -> dict:
    return json.loads(LOG.read_text()) if LOG.exists() else {}


def build(only: tuple[str, ...], sets: tuple[str, ...], force: bool) -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for key, args in commands(only, sets):
        log = _log()
        if key in log and not force:
            continue
        print(f"[reference] bmbench {' '.join(args)}", flush=True)
        wall, _ = measure(bmbench(*args), env={"TF_CPP_MIN_LOG_LEVEL": "3"})
        log[key] = {"command": "bmbench " + " ".join(args), "wall_s": round(wall, 1),
                    "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
        LOG.write_text(json.dumps(log, indent=2) + "\n")


def _leaderboard(fmt: str, store: Path, *filters: str) -> str:
    proc = subprocess.run(bmbench("leaderboard", "--results-dir", str(store), *filters, "--format", fmt),
                          capture_output=True, text=True, check=True)
    return proc.stdout


def tables() -> str:
    """Write ``<set>.md/.csv`` per set and ``cross_leaderboard.md/.csv``; return the COMMANDS section."""
    for fmt, ext in (("markdown", "md"), ("csv", "csv")):
        for name, (kind, _) in SETS.items():
            (OUT / f"{name}.{ext}").write_text(_leaderboard(fmt, RUNS, "--dataset", kind))
        (OUT / f"cross_leaderboard.{ext}").write_text(_leaderboard(fmt, CROSS_RUNS))
    return _commands_md()


def _commands_md() -> str:
    log = _log()
    rows = ["| run | wall s | command |", "|---|---|---|"]
    rows += [f"| {key} | {entry['wall_s']:.0f} | `{entry['command']}` |" for key, entry in log.items()]
    total = sum(e["wall_s"] for e in log.values())
    pending = [key for key, _ in commands() if key not in log]
    body = (f"Machine: {machine()}\n\nEach line runs {SEEDS} seeds on one split. Total wall time "
            f"of the reference build: **{total / 60:.1f} min** ({len(log)} commands), an upper bound "
            "when the machine was shared while it ran (this build's first run shared it with the "
            "benchmarks and the test suite, and was paused while they measured).\n\n"
            + "\n".join(rows) + "\n\nThen, for each set: `bmbench leaderboard --results-dir "
            f"{RUNS.relative_to(REPO)} --dataset KIND --format markdown` (and `--format csv`); for "
            f"the cross-data-set table, `--results-dir {CROSS_RUNS.relative_to(REPO)}`.\n")
    if pending:
        body += (f"\nNot run yet: {', '.join(pending)}. `python -m benchmarks reference` runs "
                 "what is missing and rebuilds the tables.\n")
    (OUT / "COMMANDS.md").write_text("# Reference leaderboards: how they were made\n\nRun "
                                     "`python -m benchmarks reference` from the repository root "
                                     "(needs ../shared/datasets).\n\n" + body)
    write_section("End to end: reference leaderboards", body)
    return body


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks reference")
    parser.add_argument("--only", nargs="+", default=(), choices=RECIPES + CROSS)
    parser.add_argument("--sets", nargs="+", default=(), choices=tuple(SETS), help="only these data sets")
    parser.add_argument("--force", action="store_true", help="rerun commands already logged")
    parser.add_argument("--tables", action="store_true", help="only rebuild the tables")
    opts = parser.parse_args(argv or [])
    require_checkout_with_data(REPO, SHARED)
    if not opts.tables:
        build(tuple(opts.only), tuple(opts.sets), opts.force)
    return tables()
