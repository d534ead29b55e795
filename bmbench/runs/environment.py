"""What a run needs recorded to be repeated: versions, machine, seed, bmbench's git commit."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

PACKAGES = ("bmbench", "numpy", "pandas", "scikit-learn", "scikit-image", "xgboost", "tensorflow",
            "keras", "opencv-python-headless", "opencv-python", "pillow", "tifffile", "joblib",
            "click", "pyyaml", "matplotlib")


def environment(seed: int) -> dict:
    return {"python": sys.version.split()[0], "platform": platform.platform(),
            "cpu": _cpu_model(), "cores": os.cpu_count(), "gpus": _gpus(), "seed": seed,
            "packages": _versions(), "bmbench_git_commit": _git_commit()}


def _versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return out


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _gpus() -> list[str]:
    """GPUs TensorFlow sees, asked only if TensorFlow is already loaded (importing it is slow)."""
    tf = sys.modules.get("tensorflow")
    if tf is None:
        return []
    return [d.name for d in tf.config.list_physical_devices("GPU")]


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent.parent
    if not (here / ".git").exists():
        return None
    try:
        out = subprocess.run(["git", "-C", str(here), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None
