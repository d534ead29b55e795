"""bmbench's own preprocessing steps: each module here registers one or more steps in
:data:`bmbench.config.registries.PREPROCESSING` and is imported on the first lookup (a new
step is a new module here and nothing else; see :mod:`bmbench.data.preprocessing`)."""
