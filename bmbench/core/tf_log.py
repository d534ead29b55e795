"""TensorFlow's native start-up chatter, kept off a CPU machine's terminal.

Importing TensorFlow and listing its devices prints, from C++ (absl logging, which ignores
``TF_CPP_MIN_LOG_LEVEL`` before ``absl::InitializeLog``), lines such as
``E0000 ... failed call to cuInit: ... UNKNOWN ERROR (303)`` on every machine without a GPU,
the absl "All log messages before absl::InitializeLog()" warning and the
``cpu_feature_guard`` notice. A user reads an ``E`` line as a failure.

:func:`install` (called when bmbench is imported, so worker processes get it too) hooks the
first ``import tensorflow`` of the process: the import and the first device listing run with
file descriptor 2 fed through a pipe, and a thread forwards every line except the known
start-up notices (:data:`NOISE`). Errors other than these, and everything printed after
start-up, reach stderr unchanged. ``BMBENCH_TF_LOG=1`` (or ``bmbench -v``) shows it all.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import os
import re
import sys
import threading
from contextlib import contextmanager
from pathlib import Path

ENV_VAR = "BMBENCH_TF_LOG"

#: Native start-up lines dropped while TensorFlow loads: absl INFO/WARNING lines (their
#: letter, then MMDD), the absl pre-initialisation warning, the CPU-instructions notice
#: and, only where the machine has no NVIDIA device, the failed CUDA initialisation.
NOISE = (
    re.compile(r"^[IW]\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] "),
    re.compile(r"^WARNING: All log messages before absl::InitializeLog\(\) is called are written to STDERR$"),
    re.compile(r"^To enable the following instructions: .* rebuild TensorFlow with the appropriate compiler flags\.$"),
)
NO_GPU_NOISE = re.compile(r"^E\d{4} \d\d:\d\d:\d+\.\d+ +\d+ [\w.]+:\d+\] failed call to cuInit: ")


def enabled() -> bool:
    """True unless ``BMBENCH_TF_LOG=1`` asks for TensorFlow's own start-up output."""
    return os.environ.get(ENV_VAR, "0") != "1"


def has_nvidia_device() -> bool:
    return any(Path("/dev").glob("nvidia[0-9]*")) or Path("/proc/driver/nvidia").exists()


def is_noise(line: str, gpu_present: bool) -> bool:
    line = line.rstrip("\r\n")
    if any(p.match(line) for p in NOISE):
        return True
    return not gpu_present and bool(NO_GPU_NOISE.match(line))


@contextmanager
def filtered_stderr():
    """Within the block, lines written to file descriptor 2 (by C++ or Python) pass
    :func:`is_noise` first; the rest reach the real stderr as they come."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no usable stderr (closed, or replaced by a non-file)
        yield
        return
    read_fd, write_fd = os.pipe()
    gpu = has_nvidia_device()

    def forward():
        with os.fdopen(read_fd, "rb") as pipe:
            for raw in pipe:
                if not is_noise(raw.decode("utf-8", "replace"), gpu):
                    os.write(saved, raw)

    thread = threading.Thread(target=forward, name="bmbench-tf-log", daemon=True)
    thread.start()
    os.dup2(write_fd, 2)
    os.close(write_fd)
    try:
        yield
    finally:
        try:
            sys.stderr.flush()
        except (OSError, ValueError):
            pass
        os.dup2(saved, 2)  # closes the pipe's last write end: the thread reads to the end
        thread.join(timeout=10)
        os.close(saved)


class _QuietLoader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        with filtered_stderr():
            self.loader.exec_module(module)
            try:
                module.config.list_physical_devices()  # the CUDA probe logs here
            except Exception:  # noqa: BLE001 - devices are listed again, loudly, where used
                pass


class _Finder(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != "tensorflow" or not enabled():
            return None
        sys.meta_path.remove(self)  # once per process; also keeps the lookup below plain
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is not None and spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def install() -> None:
    """Hook the first ``import tensorflow`` (no-op once TensorFlow is loaded)."""
    if "tensorflow" in sys.modules or any(isinstance(f, _Finder) for f in sys.meta_path):
        return
    sys.meta_path.insert(0, _Finder())
