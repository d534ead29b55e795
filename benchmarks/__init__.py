"""bmbench benchmarks: `python -m benchmarks all` (or a name) prints tables and updates RESULTS.md."""
