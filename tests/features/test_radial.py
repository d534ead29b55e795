import numpy as np
import pytest

from bmbench.features import radial
from bmbench.features.extract import extract_one, feature_names
from bmbench.features.regions import CellView
from bmbench.features.segmentation import Segmentation


def named(values):
    return dict(zip([s.name for s in radial.SPECS], values))


def test_names_and_order():
    names = [s.name for s in radial.SPECS]
    assert len(names) == 7 * radial.RINGS == 70
    assert names[0] == "radial_nucleus_fraction_ring0" and names[-1] == "radial_field_nucleus_score_ring9"
    assert feature_names()[-70:] == names


def test_centred_disks_give_step_profiles(disk):
    h = w = 200
    nucleus, cell = disk((h, w), (99.5, 99.5), 30), disk((h, w), (99.5, 99.5), 60)
    image = np.full((h, w, 3), 230, np.uint8)
    image[cell] = (200, 150, 220)
    image[nucleus] = (90, 40, 160)
    p = radial.profiles(image, nucleus, cell)
    # Rings are tenths of the 100 px half-side: the nucleus (30 px) fills rings 0-2 and is
    # absent from 3 on; the cell (60 px) fills 0-5.
    np.testing.assert_allclose(p[0, :3], 1.0, atol=1e-5)
    np.testing.assert_allclose(p[0, 3:], 0.0, atol=1e-5)
    np.testing.assert_allclose(p[1, :6], 1.0, atol=1e-5)
    np.testing.assert_allclose(p[1, 6:], 0.0, atol=1e-5)
    np.testing.assert_allclose(p[2:5, 0], [90, 40, 160], atol=1e-5)
    np.testing.assert_allclose(p[2:5, 9], [230, 230, 230], atol=1e-5)
    assert p[5, 9] == 0.0 and p[5, 0] == pytest.approx(120 / 160, abs=1 / 255)
    np.testing.assert_allclose(p[6, [0, 4, 9]], [160 - 80, 220 - 300, 230 - 460], atol=1e-5)


def test_non_square_images_use_the_central_square(disk):
    nucleus = disk((100, 160), (49.5, 79.5), 20)
    image = np.zeros((100, 160, 3), np.uint8)
    image[:, :30] = 255  # outside the central 100 x 100 square: no effect
    p = radial.profiles(image, nucleus, nucleus)
    q = radial.profiles(np.zeros((100, 160, 3), np.uint8), nucleus, nucleus)
    np.testing.assert_array_equal(p, q)
    np.testing.assert_allclose(p[0, :4], 1.0, atol=1e-5)


def test_family_reads_the_whole_field_not_the_cell_crop(disk):
    nucleus, cell = disk((120, 120), (59.5, 59.5), 10), disk((120, 120), (59.5, 59.5), 20)
    image = np.full((120, 120, 3), 200, np.uint8)
    image[nucleus] = 50
    view = CellView(image, Segmentation(nucleus, cell))
    values = named(radial.compute(view))
    assert values["radial_cell_fraction_ring9"] == 0.0  # a ring far outside the cell's crop
    assert values["radial_field_rgb_r_ring9"] == pytest.approx(200.0)
    assert values["radial_nucleus_fraction_ring0"] == pytest.approx(1.0)


def test_tiny_images_give_nan_for_empty_rings_only():
    w = radial.ring_weights(16, 4)
    assert np.isnan(w).all(axis=1).any() and not np.isnan(w).any(axis=1).all()
    full = radial.ring_weights(250, 3)
    assert not np.isnan(full).any()
    np.testing.assert_allclose(full.sum(axis=1), 1.0, rtol=1e-5)


def test_extract_one_on_a_synthetic_cell(synthetic_cells):
    cell = synthetic_cells["lymphocyte"][0]
    values = dict(zip(feature_names(), extract_one(cell.image)[0]))
    profile = [values[f"radial_cell_fraction_ring{i}"] for i in range(radial.RINGS)]
    assert profile[0] > 0.9 and profile[-1] < 0.5 and all(np.isfinite(profile))
