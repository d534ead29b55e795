"""`python -m benchmarks [all|NAME...]`: run benchmarks, print their tables, update RESULTS.md.

`python -m benchmarks NAME --option ...` passes the options to that one benchmark (see its
module docstring); `all` runs every benchmark except `reference` (hours of training),
`bigdata` (about an hour on 2 cores: a 100,000-image tree) and `tuning` (a 40-trial study on
the real PBC images) and `cross_selection` (hours on 2 cores: the cross-lab setups chosen on a
dev half of the target). `python -m benchmarks docs-outputs [--write] PAGE...` re-runs the
commands a documentation page shows and checks (or rewrites) the outputs it pastes
(see benchmarks/docs_outputs.py).
"""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("features", "caches", "startup", "imports", "pipeline", "statistics", "memory", "bigdata",
              "end_to_end", "encoders", "reference", "tuning", "cross_selection")
QUICK = tuple(b for b in BENCHMARKS if b not in ("reference", "bigdata", "tuning", "cross_selection"))


def main(argv: list[str]) -> int:
    if argv[:1] == ["docs-outputs"]:
        print(importlib.import_module("benchmarks.docs_outputs").run(argv[1:]))
        return 0
    if argv and argv[0] in BENCHMARKS and len(argv) > 1 and argv[1].startswith("-"):
        print(importlib.import_module(f"benchmarks.{argv[0]}").run(argv[1:]))
        return 0
    names = list(QUICK) if not argv or argv == ["all"] else argv
    unknown = [n for n in names if n not in BENCHMARKS]
    if unknown:
        print(f"unknown benchmark '{unknown[0]}'; choose from: all, {', '.join(BENCHMARKS)}", file=sys.stderr)
        return 2
    for name in names:
        print(importlib.import_module(f"benchmarks.{name}").run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
