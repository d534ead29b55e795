"""Handcrafted features: bmbench against pyradiomics on the same 300 real images.

bmbench's time covers everything (decode + segmentation + all families); pyradiomics gets
the decoded grey image and bmbench's nucleus mask for free and computes shape2D,
firstorder, GLCM, GLRLM and GLSZM. Targets: bmbench >= 4x pyradiomics' images/s on one
core; `jobs=2` >= 1.7x `jobs=1`.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np

from .common import machine, write_section

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "matek_bm"
RADIOMICS_CLASSES = ("shape2D", "firstorder", "glcm", "glrlm", "glszm")


def sample_paths(n: int = 300) -> list[str]:
    paths = sorted(str(p) for p in SHARED.rglob("*.jpg"))
    if len(paths) < n:
        raise SystemExit(f"needs {n} images under {SHARED}")
    return paths[:: len(paths) // n][:n]


def bmbench_rate(paths, jobs: int) -> tuple[float, int]:
    from bmbench.datasets.imageio import read_rgb
    from bmbench.features.extract import FeatureSettings, extract_many

    extract_many(paths[:16], FeatureSettings(), read_rgb, jobs=jobs)  # warm up workers/imports
    t = time.perf_counter()
    x, _ = extract_many(paths, FeatureSettings(), read_rgb, jobs=jobs)
    return len(paths) / (time.perf_counter() - t), x.shape[1]


def radiomics_rate(paths) -> tuple[float, int] | None:
    try:
        import SimpleITK as sitk
        from radiomics import featureextractor
    except ImportError:
        return None
    from bmbench.datasets.imageio import read_rgb
    from bmbench.features.segmentation import segment

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    inputs = []
    for p in paths:
        rgb = read_rgb(p)
        grey = (rgb @ np.array([0.299, 0.587, 0.114])).astype(np.float32)
        inputs.append((sitk.GetImageFromArray(grey[None]),
                       sitk.GetImageFromArray(segment(rgb).nucleus[None].astype(np.uint8))))
    ext = featureextractor.RadiomicsFeatureExtractor(force2D=True, binCount=32)
    ext.disableAllFeatures()
    for name in RADIOMICS_CLASSES:
        ext.enableFeatureClassByName(name)
    t = time.perf_counter()
    for image, mask in inputs:
        result = ext.execute(image, mask)
    rate = len(inputs) / (time.perf_counter() - t)
    return rate, len([k for k in result if not k.startswith("diagnostics")])


def run(argv: list[str] | None = None) -> str:
    paths = sample_paths()
    one, n_features = bmbench_rate(paths, 1)
    two, _ = bmbench_rate(paths, 2)
    rad = radiomics_rate(paths)
    lines = ["| extractor | images/s | features | ratio |", "|---|---|---|---|"]
    lines.append(f"| bmbench, 1 process (decode + segmentation + shape, color, texture) | {one:.1f} | {n_features} | - |")
    lines.append(f"| bmbench, `jobs=2` | {two:.1f} | {n_features} | {two / one:.2f}x jobs=1 (target 1.7x) |")
    if rad:
        lines.append(f"| pyradiomics {'+'.join(RADIOMICS_CLASSES)} (grey image and mask given) | "
                     f"{rad[0]:.1f} | {rad[1]} | bmbench 1 process = **{one / rad[0]:.2f}x** (target 4x) |")
    else:
        lines.append("| pyradiomics | not installed: `pip install -e '.[bench]'` | | |")
    body = (f"Machine: {machine()}\n\n300 Matek bone-marrow JPEGs (250x250) from "
            "`../shared/datasets/matek_bm`, one after another in one process.\n\n" + "\n".join(lines))
    write_section("Handcrafted features vs pyradiomics", body)
    return body
