"""Where bmbench keeps what it writes: the results store (run folders, splits, reports)."""

from __future__ import annotations

import os
from pathlib import Path

RESULTS_ENV = "BMBENCH_RESULTS"


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else ``$BMBENCH_RESULTS``, else ``./results``."""
    return Path(explicit or os.environ.get(RESULTS_ENV) or "results")
