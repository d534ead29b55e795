import cv2
import numpy as np
import pytest

from bmbench.features import shape
from bmbench.features.regions import CellView
from bmbench.features.segmentation import Segmentation, segment

NAMES = [f for f, _, _ in shape._PER_REGION]


def region(mask):
    return dict(zip(NAMES, shape._region_shape(mask)))


@pytest.mark.parametrize("r", [12, 30, 60])
def test_disk_measures(r, disk):
    m = disk((2 * r + 20, 2 * r + 20), (r + 10, r + 10), r)
    f = region(m)
    assert f["area"] == pytest.approx(np.pi * r * r, rel=0.03)
    assert f["perimeter"] == pytest.approx(2 * np.sqrt(np.pi * f["area"]), rel=0.03)
    assert f["equivalent_diameter"] == pytest.approx(2 * r, rel=0.02)
    assert f["major_axis"] == pytest.approx(2 * r, rel=0.02)
    assert f["minor_axis"] == pytest.approx(2 * r, rel=0.02)
    assert f["eccentricity"] < 0.1
    assert f["circularity"] == pytest.approx(1.0, abs=0.06)
    assert f["convexity"] > 0.97
    assert f["solidity"] > 0.94
    assert f["extent"] == f["area"] / (2 * r + 1) ** 2
    assert f["max_feret"] == pytest.approx(2 * r, rel=0.02)
    assert shape.count_lobes(m) == 1
    assert shape.indentation(m) < 0.05


def test_ellipse_axes_and_eccentricity():
    m = np.zeros((160, 200), np.uint8)
    cv2.ellipse(m, (100, 80), (60, 24), 30, 0, 360, 1, -1)
    f = region(m.astype(bool))
    assert f["major_axis"] == pytest.approx(120, rel=0.02)
    assert f["minor_axis"] == pytest.approx(48, rel=0.03)
    assert f["eccentricity"] == pytest.approx(np.sqrt(1 - (24 / 60) ** 2), abs=0.01)
    assert f["max_feret"] == pytest.approx(120, rel=0.02)
    assert f["circularity"] < 0.85


def test_rectangle_is_full_extent_and_convex():
    m = np.zeros((100, 100), bool)
    m[20:80, 30:50] = True
    f = region(m)
    assert f["area"] == 1200
    assert f["extent"] == 1.0
    assert f["solidity"] == 1.0
    assert f["convexity"] == pytest.approx(1.0, abs=0.03)


def test_lobes_and_indentation_of_drawn_shapes(disk):
    m = np.zeros((80, 140), np.uint8)
    for cx in (30, 70, 110):
        cv2.circle(m, (cx, 40), 16, 1, -1)
    cv2.line(m, (30, 40), (110, 40), 1, 2)  # thin chromatin strands
    lobed = m.astype(bool)
    assert shape.count_lobes(lobed) == 3
    kidney = disk((100, 100), (50, 50), 35) & ~disk((100, 100), (50, 92), 25)
    assert shape.count_lobes(kidney) == 1
    assert shape.indentation(kidney) > 0.15 > shape.indentation(disk((100, 100), (50, 50), 35))
    assert shape.count_lobes(np.zeros((5, 5), bool)) == 0


def test_lobe_count_on_synthetic_cells(synthetic_cells):
    neutrophils = synthetic_cells["neutrophil"]
    hits = [shape.count_lobes(segment(c.image).nucleus) == c.lobes for c in neutrophils]
    assert {c.lobes for c in neutrophils} >= {3, 4}
    assert np.mean(hits) >= 0.8
    for c in synthetic_cells["lymphocyte"] + synthetic_cells["blast"]:
        assert shape.count_lobes(segment(c.image).nucleus) == 1


def test_compute_order_ratio_and_empty_nucleus(disk):
    cell = disk((120, 120), (60, 60), 40)
    nucleus = disk((120, 120), (60, 60), 20)
    image = np.zeros((120, 120, 3), np.uint8)
    values = shape.compute(CellView(image, Segmentation(nucleus, cell)))
    assert values.shape == (len(shape.SPECS),)
    got = dict(zip([s.name for s in shape.SPECS], values))
    assert got["shape_nucleus_cell_area_ratio"] == pytest.approx(0.25, rel=0.03)
    assert got["shape_cell_equivalent_diameter"] == pytest.approx(80, rel=0.01)
    assert got["shape_nucleus_lobes"] == 1
    empty = dict(zip([s.name for s in shape.SPECS],
                     shape.compute(CellView(image, Segmentation(np.zeros_like(cell), cell)))))
    assert np.isnan(empty["shape_nucleus_area"]) and np.isnan(empty["shape_nucleus_lobes"])
    assert empty["shape_nucleus_cell_area_ratio"] == 0
    assert empty["shape_cell_area"] == cell.sum()


def test_indentation_is_the_outline_depth_inside_the_hull():
    notched = np.zeros((90, 90), bool)
    notched[10:80, 10:80] = True
    notched[10:40, 40:50] = False  # a notch 30 px deep from the top edge
    expected = 30 / np.sqrt(4 * notched.sum() / np.pi)  # hull edge y=10 to notch floor y=40
    assert shape.indentation(notched) == pytest.approx(expected, rel=1e-9)
    square = np.zeros((50, 50), bool)
    square[10:40, 10:40] = True
    assert shape.indentation(square) == 0.0
    line = np.zeros((20, 20), bool)
    line[5, 3:15] = True  # no inside: depth 0
    assert shape.indentation(line) == 0.0
    assert np.isnan(shape.indentation(np.zeros((5, 5), bool)))
