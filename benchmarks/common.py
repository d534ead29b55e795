"""Shared helpers: run a command and measure its wall time and peak RSS; machine facts;
write one section of RESULTS.md."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"


def measure(cmd: list[str], env: dict | None = None) -> tuple[float, float]:
    """Run ``cmd``; return (wall seconds, peak resident memory in MiB) of that process."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, env={**os.environ, **(env or {})}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed: {proc.stderr.read().decode()[-2000:]}")
    return wall, usage.ru_maxrss / 1024


def bmbench(*args: str) -> list[str]:
    return [sys.executable, "-m", "bmbench.cli", *args]


def machine() -> str:
    cpu = platform.processor()
    try:
        text = Path("/proc/cpuinfo").read_text()
        cpu = re.search(r"model name\s*:\s*(.*)", text).group(1)
    except (OSError, AttributeError):
        pass
    from importlib.metadata import version
    versions = ", ".join(f"{p} {version(p)}" for p in ("bmbench", "numpy", "scikit-image",
                                                         "opencv-python-headless", "xgboost"))
    return (f"{date.today().isoformat()}; {cpu}; {os.cpu_count()} cores; Python "
            f"{platform.python_version()}; {versions}")


def write_section(name: str, body: str) -> None:
    """Replace (or append) the section ``## name`` of RESULTS.md."""
    text = RESULTS.read_text() if RESULTS.exists() else (
        "# bmbench benchmarks\n\nRun with `python -m benchmarks all` (or one name). Figures "
        "are ratios measured side by side in one run on the same machine; absolute times are "
        "context only.\n")
    section = f"## {name}\n\n{body.rstrip()}\n"
    pattern = re.compile(rf"^## {re.escape(name)}\n.*?(?=^## |\Z)", re.S | re.M)
    text = pattern.sub(section + "\n", text) if pattern.search(text) else text.rstrip() + "\n\n" + section
    RESULTS.write_text(text)


def require_checkout_with_data(repo: Path, shared: Path) -> None:
    """Real-data benchmarks run from the repository root, beside ``../shared/datasets``."""
    if Path.cwd().resolve() != repo:
        raise SystemExit(f"run from the repository root: cd {repo}")
    if not shared.is_dir():
        raise SystemExit(f"needs the real data sets under {shared}")
