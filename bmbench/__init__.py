"""bmbench: honest benchmarks for classifying blood and bone-marrow cell images.

Public API: :func:`load_recipe`, :func:`run_recipe`, :func:`load_run`, ``__version__``.
"""

import os as _os

# OpenMP threads (XGBoost, scikit-learn) busy-wait by default; on a shared or oversubscribed
# machine that made an XGBoost fit 6x slower in our measurements. Users can still override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core import tf_log as _tf_log  # noqa: E402

_tf_log.install()

from .core.version import __version__  # noqa: E402
__all__ = ["load_recipe", "run_recipe", "load_run", "__version__"]


def __getattr__(name):
    # Imported on first use, so `bmbench --version` and recipe checks stay fast.
    if name == "load_recipe":
        from .config.recipe import load_recipe
        return load_recipe
    if name == "run_recipe":
        from .runs.runner import run_recipe
        return run_recipe
    if name == "load_run":
        from .runs.predict import load_run
        return load_run
    raise AttributeError(f"module 'bmbench' has no attribute {name!r}")
