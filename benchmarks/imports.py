"""`import bmbench` time (issue 35): a notebook's first cell must not wait for TensorFlow.

``python -m benchmarks imports [--repeats 15]``

Each case runs in a fresh Python process (``-X importtime`` off, bytecode already compiled
by a first, untimed run); the table gives the best and the median of ``--repeats`` wall
times of the whole process, the interpreter's own start-up (``python -c pass``) beside them
for scale, and the import alone (best of ``import bmbench`` minus best of ``pass``). Cases:
``import bmbench``; ``import bmbench`` and reaching every notebook API function
(``bmbench.run``, ...: their modules load, nothing runs; not ``bmbench.features``, which is
also the features subpackage and imports OpenCV and scikit-image); ``import pandas`` and
``import tensorflow`` for scale. Target: ``import bmbench`` under 0.5 s, checked in the
output (PASS / FAIL), with the heavy libraries it must not import listed as found or not.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from .common import machine, write_section

REPO = Path(__file__).resolve().parents[1]
SECTION = "import bmbench (issue 35)"
TARGET_S = 0.5
HEAVY = ("tensorflow", "keras", "pandas", "sklearn", "mlflow", "matplotlib", "xgboost", "scipy")
CASES = {
    "`python -c pass` (interpreter start-up, for scale)": "pass",
    "`import bmbench`": "import bmbench",
    "`import bmbench` + reach the notebook API (`bmbench.run`, ...)":
        "import bmbench\nfor f in bmbench._API: f == 'features' or getattr(bmbench, f)",
    "`import pandas` (for scale)": "import pandas",
    "`import tensorflow` (for scale)": "import tensorflow",
}


def wall(code: str) -> float:
    env = {**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "3"}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-c", code], env=env, cwd=REPO, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - start


def heavy_imported(code: str) -> list[str]:
    probe = code + f"\nimport sys, json\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}} & set({HEAVY!r}))))"
    out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO,
                         check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks imports")
    parser.add_argument("--repeats", type=int, default=15)
    args = parser.parse_args(argv or [])
    for code in CASES.values():
        wall(code)  # compile the bytecode, warm the file cache
    times: dict[str, list[float]] = {name: [] for name in CASES}
    for _ in range(args.repeats):  # alternating, so a busy moment hits every case alike
        for name, code in CASES.items():
            times[name].append(wall(code))
    best = {name: min(t) for name, t in times.items()}
    start_up = best["`python -c pass` (interpreter start-up, for scale)"]
    rows = [f"| {name} | {best[name]:.3f} | {statistics.median(t):.3f} | {max(best[name] - start_up, 0):.3f} |"
            for name, t in times.items()]
    ours = best["`import bmbench`"]
    found = {name: heavy_imported(CASES[name]) for name in list(CASES)[1:3]}
    verdict = "PASS" if ours < TARGET_S and not any(found.values()) else "FAIL"
    text = (f"Machine: {machine()}; load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores.\n\n"
            f"Wall time of a fresh process, best and median of {args.repeats} alternating rounds; the import "
            "alone is the best minus the interpreter's best start-up.\n\n"
            "| case | best s | median s | import alone s |\n|---|---|---|---|\n" + "\n".join(rows) + "\n\n"
            f"**{verdict}**: `import bmbench` best {ours:.3f} s (target < {TARGET_S} s, the whole process); "
            + "; ".join(f"{name} imports {', '.join(libs) if libs else 'none'} of {', '.join(HEAVY)}"
                        for name, libs in found.items()) + ".")
    write_section(SECTION, text)
    return f"## {SECTION}\n\n{text}\n"
