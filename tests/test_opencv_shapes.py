"""Every OpenCV entry point of bmbench on degenerate images, with whatever OpenCV is installed.

OpenCV 5 reads some arrays differently from 4 on one-pixel-wide images (a ``(1, 3)`` colour
became a matrix, not a scalar), so each public function that hands pixels to cv2 is run on
1x1, 1xN, Nx1, 2x2, all-black and all-white images.
"""

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest

from bmbench.audit.descriptors import colour_histogram, describe, work_image
from bmbench.data.imageio import resize
from bmbench.features.extract import FEATURE_VERSION, FeatureSettings, extract_one, feature_names
from bmbench.features.segmentation import METHODS, overlay, segment

SHAPES = [(1, 1), (1, 40), (40, 1), (2, 2), (3, 200), (200, 3), (130, 1), (1, 130), (48, 64)]
FILLS = ["random", "black", "white"]


def make(shape, fill):
    if fill == "random":
        return np.random.default_rng(sum(shape)).integers(0, 256, (*shape, 3), dtype=np.uint8)
    return np.full((*shape, 3), 0 if fill == "black" else 255, np.uint8)


def test_opencv_version_is_supported():
    assert int(cv2.__version__.split(".")[0]) in (4, 5)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_segmentation_and_overlay(shape, fill):
    image = make(shape, fill)
    for method in METHODS:
        seg = segment(image, method)
        assert seg.cell.shape == seg.nucleus.shape == shape
        assert not (seg.nucleus & ~seg.cell).any()
        assert overlay(image, seg).shape == (*shape, 3)


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("size", [None, 64])
def test_features_never_raise_and_are_never_infinite(shape, fill, size):
    # NaN is the documented value of a feature a region cannot define (empty region, a GLCM
    # distance longer than the region, the perimeter of a single pixel).
    settings = FeatureSettings(image_size=size)
    vector, seg = extract_one(make(shape, fill), settings)
    assert vector.shape == (len(feature_names(settings)),)
    assert not np.isinf(vector).any()
    if size is None and min(shape) >= 40:
        assert np.isfinite(vector[[n.startswith("shape_cell_") for n in feature_names(settings)]]).all()


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_resize_both_ways(shape, fill):
    image = make(shape, fill)
    for keep_aspect in (False, True):
        out = resize(image, 16, keep_aspect)
        assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    if fill != "random":
        assert (resize(image, 16) == image[0, 0]).all()


@pytest.mark.parametrize("fill", FILLS)
@pytest.mark.parametrize("shape", SHAPES)
def test_audit_descriptors(shape, fill):
    image = make(shape, fill)
    work = work_image(image)
    assert work.ndim == 3 and max(work.shape[:2]) > 1
    hist = colour_histogram(work)
    assert np.isfinite(hist).all() and hist.sum() > 0
    d = describe(image)
    assert d.shape == shape


GOLDEN = Path(__file__).parent / "features" / "golden_features.json"


def _golden_vectors():
    from bmbench.data.synthetic import SYNTHETIC_CLASSES, render_cell

    rng = np.random.default_rng(11)
    cells = [render_cell(label, rng, 160) for label in SYNTHETIC_CLASSES for _ in range(2)]
    return np.stack([extract_one(c.image)[0] for c in cells])


def test_features_match_the_golden_values_of_this_feature_version():
    """Pins FEATURE_VERSION's values on whatever OpenCV / scikit-image / numpy is installed:
    a library release that changes a feature fails here, not silently in a cached run.
    Regenerate only together with a FEATURE_VERSION bump: BMBENCH_WRITE_GOLDEN=1 pytest -k golden."""
    vectors = _golden_vectors()
    if os.environ.get("BMBENCH_WRITE_GOLDEN") == "1":
        GOLDEN.write_text(json.dumps({"feature_version": FEATURE_VERSION, "names": feature_names(),
                                      "vectors": np.where(np.isnan(vectors), None, vectors).tolist()}))
    doc = json.loads(GOLDEN.read_text())
    assert doc["feature_version"] == FEATURE_VERSION, "FEATURE_VERSION changed: regenerate the golden file"
    assert doc["names"] == feature_names()
    expected = np.array(doc["vectors"], dtype=np.float64)
    np.testing.assert_allclose(vectors, expected, rtol=1e-5, atol=1e-6, equal_nan=True)
