"""bmbench: honest benchmarks for classifying blood and bone-marrow cell images.

Notebook API (:mod:`bmbench.api`): :func:`run`, :func:`leaderboard`, :func:`load_run`,
:func:`features`, :func:`ablate`, :func:`compare`; also :func:`load_recipe`, :func:`run_recipe`,
``BmbenchError`` and ``__version__``.
"""

import os as _os

# OpenMP threads (XGBoost, scikit-learn) busy-wait by default; on a shared or oversubscribed
# machine that made an XGBoost fit 6x slower in our measurements. Users can still override.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from .core import tf_log as _tf_log  # noqa: E402

_tf_log.install()

from .core.version import __version__  # noqa: E402
__all__ = ["run", "leaderboard", "load_run", "features", "ablate", "compare", "load_recipe", "run_recipe",
           "BmbenchError", "__version__"]

#: The notebook API (:mod:`bmbench.api`): each returns an object that renders in Jupyter.
_API = ("run", "leaderboard", "load_run", "features", "ablate", "compare")


def __getattr__(name):
    # Imported on first use, so `import bmbench` and `bmbench --version` stay fast: no
    # TensorFlow, pandas, scikit-learn or MLflow until a call needs them.
    if name in _API:
        from . import api
        return getattr(api, name)
    if name == "load_recipe":
        from .config.recipe import load_recipe
        return load_recipe
    if name == "run_recipe":
        from .runs.runner import run_recipe
        return run_recipe
    if name == "BmbenchError":
        from .core.errors import BmbenchError
        return BmbenchError
    raise AttributeError(f"module 'bmbench' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
