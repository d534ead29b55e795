"""bmbench: honest benchmarks for classifying blood and bone-marrow cell images.

Notebook API (:mod:`bmbench.api`): :func:`run`, :func:`leaderboard`, :func:`load_run`,
:func:`features`, :func:`ablate`, :func:`compare`; also :func:`load_recipe`, :func:`run_recipe`,
``BmbenchError`` and ``__version__``.
"""

import os as _os
import sys as _sys
import types as _types

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


class _FeaturesPackage(_types.ModuleType):
    """``bmbench.features`` is both the handcrafted-features package and the notebook call
    ``bmbench.features(source, ...)`` (:func:`bmbench.api.features`)."""

    def __call__(self, *args, **kwargs):
        from .api import features
        return features(*args, **kwargs)


class _Package(_types.ModuleType):
    # Importing bmbench.features.* sets the attribute `features` of this package to the
    # subpackage, whichever way it is imported: it is made callable there.
    def __setattr__(self, name, value):
        if name == "features" and type(value) is _types.ModuleType:
            value.__class__ = _FeaturesPackage
        super().__setattr__(name, value)


_sys.modules[__name__].__class__ = _Package


def __getattr__(name):
    # Imported on first use, so `import bmbench` and `bmbench --version` stay fast: no
    # TensorFlow, pandas, scikit-learn or MLflow until a call needs them.
    if name == "features":  # the subpackage (OpenCV, scikit-image), callable as the API's features()
        import importlib
        return importlib.import_module(".features", __name__)
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
