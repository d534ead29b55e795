"""Default locations of bmbench's folders."""

from __future__ import annotations

import os
from pathlib import Path


def default_cache_dir() -> Path:
    """``$BMBENCH_CACHE``, else ``~/.cache/bmbench``."""
    return Path(os.environ.get("BMBENCH_CACHE") or Path.home() / ".cache" / "bmbench")
