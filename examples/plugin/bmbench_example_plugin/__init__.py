"""An example bmbench plug-in (see README.md beside this package)."""
