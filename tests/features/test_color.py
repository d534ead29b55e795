import cv2
import numpy as np
import pytest
from skimage.color import rgb2hed, rgb2lab

from bmbench.features import color
from bmbench.features.regions import BYTE_VALUES, CHANNELS, HED_BINS, HED_VALUES, CellView, rgb_to_codes
from bmbench.features.segmentation import Segmentation


def features(image, nucleus, cell):
    values = color.compute(CellView(image, Segmentation(nucleus, cell)))
    assert values.shape == (len(color.SPECS),)
    return dict(zip([s.name for s in color.SPECS], values))


def test_uniform_region_is_exact(disk):
    rgb = (200, 100, 50)
    image = np.empty((80, 90, 3), np.uint8)
    image[:] = rgb
    cell = disk((80, 90), (40, 45), 30)
    f = features(image, np.zeros_like(cell), cell)
    for channel, value in zip(("r", "g", "b"), rgb):
        for stat in ("mean", "p10", "p50", "p90"):
            assert f[f"color_cell_rgb_{channel}_{stat}"] == value
        assert f[f"color_cell_rgb_{channel}_std"] == 0
    pixel = np.array([[rgb]], np.uint8)
    h, s, v = cv2.cvtColor(pixel, cv2.COLOR_RGB2HSV)[0, 0].astype(int)
    assert f["color_cell_hsv_h_mean"] == 2 * h + 360  # orange: 0-90 deg reads as 360-450
    assert f["color_cell_hsv_s_mean"] == pytest.approx(s / 255)
    assert f["color_cell_lab_l_mean"] == pytest.approx(int(cv2.cvtColor(pixel, cv2.COLOR_RGB2LAB)[0, 0, 0]) * 100 / 255)
    assert f["color_cell_lab_l_mean"] == pytest.approx(rgb2lab(pixel)[0, 0, 0], abs=0.5)
    hed = rgb2hed(pixel)[0, 0]
    for i, stain in enumerate("hed"):
        assert f[f"color_cell_hed_{stain}_mean"] == pytest.approx(hed[i], abs=0.002)
    # Empty nucleus: NaN, cytoplasm = cell.
    assert all(np.isnan(v) for k, v in f.items() if k.startswith("color_nucleus_"))
    assert f["color_cytoplasm_rgb_g_mean"] == 100


def test_regions_see_their_own_colours(disk):
    image = np.empty((100, 100, 3), np.uint8)
    image[:] = (230, 180, 190)
    nucleus = disk((100, 100), (50, 50), 15)
    cell = disk((100, 100), (50, 50), 35)
    image[nucleus] = (90, 40, 140)
    f = features(image, nucleus, cell)
    assert f["color_nucleus_rgb_b_mean"] == 140 and f["color_cytoplasm_rgb_b_mean"] == 190
    share = nucleus.sum() / cell.sum()  # ~18% nucleus: p10 is nucleus, p50/p90 cytoplasm
    assert 0.1 < share < 0.5
    assert f["color_cell_rgb_r_p10"] == 90 and f["color_cell_rgb_r_p90"] == 230
    expected = share * 90 + (1 - share) * 230
    assert f["color_cell_rgb_r_mean"] == pytest.approx(expected)
    assert 260 < f["color_nucleus_hsv_h_mean"] < 300  # purple
    assert f["color_nucleus_hed_h_mean"] > f["color_cytoplasm_hed_h_mean"]
    assert f["color_cell_rgb_r_nucleus_minus_cytoplasm_mean"] == 90 - 230
    assert f["color_cell_rgb_b_nucleus_minus_cytoplasm_p50"] == 140 - 190
    for name in (s.name for s in color.SPECS if "_minus_" in s.name):
        nucleus, cytoplasm = (name.replace("cell", region).replace("_nucleus_minus_cytoplasm", "")
                              for region in ("nucleus", "cytoplasm"))
        assert f[name] == pytest.approx(f[nucleus] - f[cytoplasm]), name


def test_contrasts_are_documented_and_nan_without_a_nucleus(disk):
    contrasts = [s for s in color.SPECS if "_nucleus_minus_cytoplasm_" in s.name]
    assert len(contrasts) == 24 and all(s.region == "cell" for s in contrasts)
    units = {s.name: s.unit for s in contrasts}
    assert units["color_cell_rgb_g_nucleus_minus_cytoplasm_mean"] == "±255"
    assert units["color_cell_hsv_h_nucleus_minus_cytoplasm_p50"] == "deg"
    assert units["color_cell_hed_h_nucleus_minus_cytoplasm_mean"] == "OD"
    image = np.full((60, 60, 3), 120, np.uint8)
    cell = disk((60, 60), (30, 30), 20)
    f = features(image, np.zeros_like(cell), cell)
    assert all(np.isnan(f[s.name]) for s in contrasts)


def test_histogram_statistics_match_numpy():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (60, 70, 3), dtype=np.uint8)
    byte, hed = rgb_to_codes(image)
    mask = rng.random((60, 70)) < 0.3
    hist = np.stack([np.bincount(byte[mask][:, c], minlength=256) for c in range(9)])[None]
    got = color.histogram_stats(hist, BYTE_VALUES)[0]
    values = BYTE_VALUES[np.arange(9), byte[mask]]
    assert np.isfinite(values).all()
    np.testing.assert_allclose(got[:, 0], values.mean(0))
    np.testing.assert_allclose(got[:, 1], values.std(0), atol=1e-9)
    np.testing.assert_allclose(got[:, 2:].T, np.percentile(values, [10, 50, 90], axis=0, method="inverted_cdf"))
    hed_values = HED_VALUES[np.arange(3), hed[mask]]
    np.testing.assert_allclose(hed_values, rgb2hed(image)[mask], atol=0.002)


def test_hue_is_unwrapped_around_red():
    colours = np.array([[[255, 0, 0], [255, 128, 0], [128, 0, 255], [255, 0, 128]]], np.uint8)
    byte, _ = rgb_to_codes(colours)
    hue = BYTE_VALUES[3, byte[0, :, 3]]
    np.testing.assert_allclose(hue, [360, 390, 270, 330], atol=2)


def test_channel_names_follow_the_spec_order():
    names = [s.name for s in color.SPECS]
    assert names[0] == "color_nucleus_rgb_r_mean" and names[179] == "color_cell_hed_d_p90"
    assert names[180] == "color_cell_rgb_r_nucleus_minus_cytoplasm_mean"
    assert names[-1] == "color_cell_hed_d_nucleus_minus_cytoplasm_p50"
    assert len(names) == 3 * len(CHANNELS) * 5 + len(CHANNELS) * len(color.CONTRASTS)


def test_code_histograms_count_each_region():
    rng = np.random.default_rng(2)
    byte, hed = rgb_to_codes(rng.integers(0, 256, (45, 52, 3), dtype=np.uint8))
    nucleus = rng.random((45, 52)) < 0.3
    cytoplasm = ~nucleus & (rng.random((45, 52)) < 0.5)
    b, h = color.code_histograms((byte, hed), nucleus, cytoplasm)
    for i, region in enumerate(color.REGIONS):
        mask = {"nucleus": nucleus, "cytoplasm": cytoplasm, "cell": nucleus | cytoplasm}[region]
        for c in range(9):
            np.testing.assert_array_equal(b[i, c], np.bincount(byte[mask][:, c], minlength=256))
        for c in range(3):
            np.testing.assert_array_equal(h[i, c], np.bincount(hed[mask][:, c], minlength=HED_BINS))
    empty = np.zeros_like(nucleus)
    b, h = color.code_histograms((byte, hed), empty, empty)
    assert not b.any() and not h.any()
    assert np.isnan(color.histogram_stats(b, BYTE_VALUES)).all()
