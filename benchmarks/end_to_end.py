"""End to end: what a new user waits for. In a fresh virtual environment, install bmbench
from this checkout (``pip install -e .``, packages from the configured index), then run the
quickstart of the README (``bmbench run recipes/quickstart.yaml`` and ``bmbench
leaderboard``) with an empty cache and results store. The wall time of building the
reference leaderboards is recorded by ``python -m benchmarks reference``.

    python -m benchmarks end_to_end [--no-install]   (--no-install: use this environment)
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from .common import machine, write_section

REPO = Path(__file__).resolve().parents[1]


def _timed(cmd: list[str], env: dict) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return time.perf_counter() - t0


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks end_to_end")
    parser.add_argument("--no-install", action="store_true", help="use this environment's bmbench")
    opts = parser.parse_args(argv or [])
    rows = []
    with tempfile.TemporaryDirectory(prefix="bmbench-e2e-") as tmp:
        env = {**os.environ, "BMBENCH_CACHE": f"{tmp}/cache", "BMBENCH_RESULTS": f"{tmp}/results",
               "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
        bindir = Path(sys.executable).parent
        if not opts.no_install:
            subprocess.run([sys.executable, "-m", "venv", f"{tmp}/venv"], check=True)
            bindir = Path(tmp) / "venv" / "bin"
            rows.append(("`pip install -e .` into a fresh virtual environment",
                         _timed([str(bindir / "pip"), "install", "-q", "-e", "."], env)))
        rows.append(("`bmbench run recipes/quickstart.yaml` (empty cache: draws the synthetic cells)",
                     _timed([str(bindir / "bmbench"), "run", "recipes/quickstart.yaml", "-q"], env)))
        rows.append(("`bmbench leaderboard`", _timed([str(bindir / "bmbench"), "leaderboard"], env)))
    total = sum(s for _, s in rows)
    body = (f"Machine: {machine()}\n\n| step | wall s |\n|---|---|\n"
            + "\n".join(f"| {name} | {s:.1f} |" for name, s in rows)
            + f"\n| **total** | **{total:.1f}** |\n")
    write_section("End to end: quickstart on a fresh install", body)
    return body
