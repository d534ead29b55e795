"""Where bmbench keeps what it writes: the results store (run folders, splits, reports)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from pathlib import Path

RESULTS_ENV = "BMBENCH_RESULTS"


#: The results store of the run being made (set by the runner), so a recipe that names a
#: stored run (``model.backbone: {kind: run, run: NAME}``) finds it in ``--results-dir``.
_ACTIVE: list[Path] = []


def results_dir(explicit: str | os.PathLike | None = None) -> Path:
    """``explicit``, else the store of the run being made, else ``$BMBENCH_RESULTS``, else
    ``./results``."""
    return Path(explicit or (_ACTIVE[-1] if _ACTIVE else None) or os.environ.get(RESULTS_ENV) or "results")


@contextmanager
def using_results(store: str | os.PathLike):
    """Within the block, :func:`results_dir` defaults to ``store``."""
    _ACTIVE.append(Path(store))
    try:
        yield
    finally:
        _ACTIVE.pop()
