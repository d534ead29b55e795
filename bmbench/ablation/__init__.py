"""Ablation studies and sweeps: variants of a base recipe, run on a backend, tabulated.

- :mod:`.spec`: ablation files / ``--vary`` options -> validated variants.
- :mod:`.sweep`: resumable execution (skips runs already stored), failure records.
- :mod:`.report`: tables per metric (mean, CI, paired difference to the base), plots.
"""

from .report import build_report, render, write_report
from .spec import Ablation, Axis, Variant, ablation_from_options, expand, load_ablation, parse_values
from .sweep import SweepOutcome, run_ablation

__all__ = ["Ablation", "Axis", "Variant", "SweepOutcome", "ablation_from_options", "build_report",
           "expand", "load_ablation", "parse_values", "render", "run_ablation", "write_report"]
