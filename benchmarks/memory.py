"""Peak memory of `bmbench features` on 2,000 and 20,000 synthetic 128 px images.

Target: peak RSS grows by less than 20% from 2,000 to 20,000 images (extraction streams
over images; only the output table grows, by about 1 KB per image).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from .common import bmbench, machine, measure, write_section

SIZES = (2_000, 20_000)


def run(argv: list[str] | None = None, sizes=SIZES) -> str:
    from bmbench.data.synthetic import generate

    rows = []
    with tempfile.TemporaryDirectory(prefix="bmbench-mem-") as tmp:
        env = {"BMBENCH_CACHE": str(Path(tmp) / "cache")}
        for n in sizes:
            cells = generate(Path(tmp) / f"cells{n}", n // 4, seed=0, size=128)
            recipe = Path(tmp) / f"mem{n}.yaml"
            recipe.write_text(f"name: mem{n}\ndataset: {{kind: synthetic, root: {cells}, "
                              f"n_per_class: {n // 4}, render_size: 128}}\nmodel: {{family: classical}}\n")
            wall, rss = measure(bmbench("features", str(recipe), "--out", f"{tmp}/t{n}.parquet",
                                        "-q", "--jobs", "2", "--results-dir", f"{tmp}/r"), env)
            rows.append((n, wall, rss))
    (n0, _, r0), (n1, _, r1) = rows[0], rows[-1]
    lines = ["| images | wall s | peak RSS MiB | images/s |", "|---|---|---|---|"]
    lines += [f"| {n:,} | {w:.1f} | {r:.0f} | {n / w:.0f} |" for n, w, r in rows]
    growth = (r1 / r0 - 1) * 100
    body = (f"Machine: {machine()}\n\n`bmbench features` (all families, `--jobs 2`) on synthetic "
            "128 px cells with an empty feature cache; peak RSS of the largest process (main or worker).\n\n" + "\n".join(lines) +
            f"\n\nPeak RSS growth from {n0:,} to {n1:,} images: **{growth:+.1f}%** (target < 20%).")
    write_section("Memory: bmbench features at 2,000 and 20,000 images", body)
    return body
