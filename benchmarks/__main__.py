"""`python -m benchmarks [all|NAME...]`: run benchmarks, print their tables, update RESULTS.md."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = ("features", "memory")


def main(argv: list[str]) -> int:
    names = list(BENCHMARKS) if not argv or argv == ["all"] else argv
    for name in names:
        if name not in BENCHMARKS:
            print(f"unknown benchmark '{name}'; choose from: all, {', '.join(BENCHMARKS)}", file=sys.stderr)
            return 2
        print(importlib.import_module(f"benchmarks.{name}").run())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
