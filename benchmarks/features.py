"""Handcrafted features: bmbench against pyradiomics on the same 300 real images.

bmbench's time covers everything (decode + segmentation + all families); pyradiomics gets
the decoded grey image and bmbench's nucleus mask for free and computes shape2D,
firstorder, GLCM, GLRLM and GLSZM (32 grey levels, as bmbench's GLCM). "One core" means
this process is pinned to one CPU (``sched_setaffinity``), so neither side's libraries
(OpenCV, SimpleITK, BLAS) can use a second one. The four (one core, one core with the three
families of FEATURE_VERSION 4's recipe, pyradiomics, two cores in a fresh process as
``bmbench features -j 2`` runs) alternate over 5 rounds and the
median round counts, so drifting load on a shared machine hits all alike. Targets:
bmbench >= 4x pyradiomics' images/s on one core; ``jobs=2`` >= 1.8x ``jobs=1``.
"""

from __future__ import annotations

import logging
import os
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from .common import machine, write_section

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "matek_bm"
RADIOMICS_CLASSES = ("shape2D", "firstorder", "glcm", "glrlm", "glszm")
ROUNDS = 5


def sample_paths(n: int = 300) -> list[str]:
    paths = sorted(str(p) for p in SHARED.rglob("*.jpg"))
    if len(paths) < n:
        raise SystemExit(f"needs {n} images under {SHARED}")
    return paths[:: len(paths) // n][:n]


@contextmanager
def one_core():
    """Pin this process (and threads it starts) to one CPU."""
    before = os.sched_getaffinity(0)
    os.sched_setaffinity(0, {min(before)})
    try:
        yield
    finally:
        os.sched_setaffinity(0, before)


#: The families of FEATURE_VERSION 4's recipe, timed beside all of them (radial's cost).
CORE_FAMILIES = ("shape", "color", "texture")


def bmbench_rate(paths, jobs: int, families: tuple[str, ...] | None = None) -> tuple[float, int]:
    from bmbench.features.extract import FeatureSettings, extract_many

    settings = FeatureSettings(families=families) if families else FeatureSettings()
    t = time.perf_counter()
    x, _ = extract_many(paths, settings, jobs=jobs)
    return len(paths) / (time.perf_counter() - t), x.shape[1]


def fresh_process_rate(paths, jobs: int) -> float:
    """images/s of ``extract_many`` with ``jobs`` workers in a new Python process, as
    ``bmbench features -j`` runs (workers started and warmed up before the timed pass):
    this process has been pinned to one CPU, and thread pools it started then stay pinned."""
    import json
    import subprocess
    import sys

    code = ("import json, sys, time\n"
            "from bmbench.features.extract import FeatureSettings, extract_many\n"
            "paths = json.loads(sys.stdin.read())\n"
            f"extract_many(paths[:64], FeatureSettings(), jobs={jobs})\n"
            "t = time.perf_counter()\n"
            f"extract_many(paths, FeatureSettings(), jobs={jobs})\n"
            "print(len(paths) / (time.perf_counter() - t))\n")
    out = subprocess.run([sys.executable, "-c", code], input=json.dumps(list(paths)), capture_output=True,
                         text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def radiomics_inputs(paths):
    """(grey image, nucleus mask) SimpleITK pairs, made outside the timed part."""
    import SimpleITK as sitk

    from bmbench.data.imageio import read_rgb
    from bmbench.features.segmentation import segment

    inputs = []
    for p in paths:
        rgb = read_rgb(p)
        grey = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
        inputs.append((sitk.GetImageFromArray(grey[None]),
                       sitk.GetImageFromArray(segment(rgb).nucleus[None].astype(np.uint8))))
    return inputs


def radiomics_extractor():
    import SimpleITK as sitk
    from radiomics import featureextractor

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    sitk.ProcessObject.SetGlobalDefaultNumberOfThreads(1)
    ext = featureextractor.RadiomicsFeatureExtractor(force2D=True, binCount=32)
    ext.disableAllFeatures()
    for name in RADIOMICS_CLASSES:
        ext.enableFeatureClassByName(name)
    return ext


def radiomics_rate(ext, inputs) -> tuple[float, int]:
    t = time.perf_counter()
    for image, mask in inputs:
        result = ext.execute(image, mask)
    return len(inputs) / (time.perf_counter() - t), len([k for k in result if not k.startswith("diagnostics")])


def _have_radiomics() -> bool:
    try:
        import radiomics  # noqa: F401
        import SimpleITK  # noqa: F401
    except ImportError:
        return False
    return True


def run(argv: list[str] | None = None) -> str:
    paths = sample_paths()
    rad_ok = _have_radiomics()
    ours, theirs, twos, cores = [], [], [], []
    with one_core():
        bmbench_rate(paths[:16], 1)  # imports and first-call costs out of the timing
        if rad_ok:
            ext, inputs = radiomics_extractor(), radiomics_inputs(paths)
            radiomics_rate(ext, inputs[:5])
    for _ in range(ROUNDS):
        with one_core():
            rate, n_features = bmbench_rate(paths, 1)
            ours.append(rate)
            core_rate, n_core = bmbench_rate(paths, 1, CORE_FAMILIES)
            cores.append(core_rate)
            if rad_ok:
                theirs.append(radiomics_rate(ext, inputs))
        twos.append(fresh_process_rate(paths, 2))
    one, two, core = float(np.median(ours)), float(np.median(twos)), float(np.median(cores))
    from bmbench.features.extract import FeatureSettings

    families = ", ".join(FeatureSettings().families)
    lines = ["| extractor | images/s (median of 5 rounds) | features | ratio |", "|---|---|---|---|",
             f"| bmbench, one core (decode + segmentation + {families}) | {one:.1f} | {n_features} | - |",
             f"| bmbench, `jobs=2` (two cores) | {two:.1f} | {n_features} | {two / one:.2f}x one core (target 1.8x) |",
             f"| bmbench, one core, {', '.join(CORE_FAMILIES)} only | {core:.1f} | {n_core} | - |"]
    if rad_ok:
        rad = float(np.median([r for r, _ in theirs]))
        lines.append(f"| pyradiomics {'+'.join(RADIOMICS_CLASSES)}, one core (grey image and nucleus "
                     f"mask given) | {rad:.1f} | {theirs[0][1]} | bmbench one core = **{one / rad:.2f}x** (target 4x); "
                     f"{', '.join(CORE_FAMILIES)} only {core / rad:.2f}x |")
    else:
        lines.append("| pyradiomics | not installed: see README, Benchmarks | | |")
    body = (f"Machine: {machine()}\n\n300 Matek bone-marrow JPEGs (250x250) from "
            "`../shared/datasets/matek_bm`.\n\n" + "\n".join(lines))
    write_section("Handcrafted features vs pyradiomics", body)
    return body
