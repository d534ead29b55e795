"""Synthetic cells shared by the feature tests (generated, never real images)."""

from __future__ import annotations

import numpy as np
import pytest

from bmbench.data.synthetic import SYNTHETIC_CLASSES, render_cell


@pytest.fixture(scope="session")
def synthetic_cells():
    """``{label: [SyntheticCell, ...]}``: 16 cells per class, 128 px, fixed seed."""
    rng = np.random.default_rng(2024)
    return {label: [render_cell(label, rng, 128) for _ in range(16)] for label in SYNTHETIC_CLASSES}


def _disk(shape, center, radius) -> np.ndarray:
    yy, xx = np.ogrid[: shape[0], : shape[1]]
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius ** 2


@pytest.fixture
def disk():
    """``disk(shape, (row, col), radius)`` -> ``bool[shape]`` disk."""
    return _disk
