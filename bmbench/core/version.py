"""bmbench's version (one place: the package, setup.cfg and run records read it)."""

__version__ = "0.1.0"
