"""Big synthetic data sets in a published layout, for scale benchmarks and tests.

:func:`generate_matek_tree` writes ``n`` small synthetic cells (:func:`~.synthetic.render_cell`)
as JPEGs in the Matek 2021 layout, ``ROOT/<CLASS>/<first>-<last>/<CLASS>_<5 digits>.jpg``
with 1,000 files per range folder, so ``dataset.kind: matek_bm`` reads it as it reads the
published archive. The four synthetic classes take the Matek codes of the same cell types.
Image ``i`` of a class (0-based) is drawn from ``default_rng([seed, class index, i])``, so the
files are byte-identical for the same arguments, whatever ``jobs`` is.
"""

from __future__ import annotations

import os
import pathlib

import cv2
import numpy as np

from .synthetic import SYNTHETIC_CLASSES, render_cell

#: Matek 2021 class code of each synthetic class.
MATEK_CODES = {"blast": "BLA", "lymphocyte": "LYT", "monocyte": "MON", "neutrophil": "NGS"}

#: Files per range folder of the Matek layout (``0001-1000``, ``1001-2000``, ...).
RANGE = 1000


def matek_relpath(code: str, number: int, per_folder: int = RANGE) -> str:
    """Relative path of file ``number`` (1-based) of class ``code`` in the Matek layout."""
    first = (number - 1) // per_folder * per_folder + 1
    return f"{code}/{first:04d}-{first + per_folder - 1:04d}/{code}_{number:05d}.jpg"


def generate_matek_tree(root: str | os.PathLike, n: int, size: int = 64, seed: int = 0,
                        quality: int = 90, jobs: int = 1, per_folder: int = RANGE) -> pathlib.Path:
    """Write ``n`` images (split evenly over the 4 classes, the first classes taking the
    remainder) of ``size`` px as JPEGs of ``quality`` into ``root`` (created; existing files
    are overwritten), ``per_folder`` per range folder; ``jobs`` worker processes. About
    2.5 KB per 64 px file. Returns root."""
    if n < len(SYNTHETIC_CLASSES) or size < 32:
        raise ValueError(f"need n >= {len(SYNTHETIC_CLASSES)} and size >= 32, got {n} and {size}")
    root = pathlib.Path(root)
    per_class = [n // 4 + (ci < n % 4) for ci in range(len(SYNTHETIC_CLASSES))]
    work = [(ci, start, min(start + per_folder, count)) for ci, count in enumerate(per_class)
            for start in range(0, count, per_folder)]
    args = (str(root), size, seed, quality, per_folder)
    if jobs == 1:
        for item in work:
            _write_range(*item, *args)
    else:
        from joblib import Parallel, delayed

        Parallel(n_jobs=jobs)(delayed(_write_range)(*item, *args) for item in work)
    return root


def _write_range(ci: int, start: int, stop: int, root: str, size: int, seed: int, quality: int,
                 per_folder: int) -> None:
    """Images ``start..stop-1`` (0-based) of class ``SYNTHETIC_CLASSES[ci]``."""
    label = SYNTHETIC_CLASSES[ci]
    folder = None
    for i in range(start, stop):
        path = pathlib.Path(root) / matek_relpath(MATEK_CODES[label], i + 1, per_folder)
        if folder != path.parent:
            folder = path.parent
            folder.mkdir(parents=True, exist_ok=True)
        cell = render_cell(label, np.random.default_rng([seed, ci, i]), size)
        bgr = cv2.cvtColor(cell.image, cv2.COLOR_RGB2BGR)
        if not cv2.imwrite(str(path), bgr, [cv2.IMWRITE_JPEG_QUALITY, int(quality)]):
            raise OSError(f"could not write {path}")
