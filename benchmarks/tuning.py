"""Tuning budget: a 40-trial classical study against one untuned run of the same recipe.

Goal (issue "Equal-budget tuning"): a 40-trial ``bmbench tune`` of ``xgb_handcrafted`` on the
1,600 PBC images in at most 5x the wall time of one untuned ``bmbench run`` of it. Both start
with an empty feature cache of their own, so each extracts the features once; the study then
refits only XGBoost per trial and ends with the refit of the best trial as a run (included).

    python -m benchmarks tuning [--kind pbc] [--root ../shared/datasets/pbc] [--trials 40]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

from .common import bmbench, machine, measure, write_section

REPO = Path(__file__).resolve().parents[1]
GOAL = 5.0


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks tuning")
    parser.add_argument("--kind", default="pbc")
    parser.add_argument("--root", default=str(REPO.parent / "shared" / "datasets" / "pbc"))
    parser.add_argument("--recipe", default=str(REPO / "recipes" / "xgb_handcrafted.yaml"))
    parser.add_argument("--trials", type=int, default=40)
    opts = parser.parse_args(argv or [])
    sets = ["--set", f"dataset.kind={opts.kind}", "--set", f"dataset.root={opts.root}"]
    with tempfile.TemporaryDirectory(prefix="bmbench-tune-bench-") as tmp:
        run_s, _ = measure(bmbench("run", opts.recipe, *sets, "--results-dir", f"{tmp}/res", "-q"),
                           {"BMBENCH_CACHE": f"{tmp}/cache-run"})
        study_s, _ = measure(bmbench("tune", opts.recipe, *sets, "--trials", str(opts.trials),
                                     "--results-dir", f"{tmp}/res", "-q"), {"BMBENCH_CACHE": f"{tmp}/cache-study"})
    ratio = study_s / run_s
    body = (f"Machine: {machine()}\n\n"
            f"| {Path(opts.recipe).stem} on {opts.kind} | wall s |\n|---|---|\n"
            f"| one untuned run (features extracted) | {run_s:.0f} |\n"
            f"| {opts.trials}-trial study + refit of the best (features extracted once) | {study_s:.0f} |\n"
            f"| ratio (goal <= {GOAL:g}x) | **{ratio:.1f}x** |\n")
    write_section("Tuning budget", body)
    return body
