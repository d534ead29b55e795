import numpy as np
import pytest

from bmbench.features.segmentation import (
    FALLBACK_CELL_RADIUS, METHODS, Segmentation, fallback_cell, overlay, segment,
)
from bmbench.data.synthetic import render_cell


def iou(a, b):
    return (a & b).sum() / max((a | b).sum(), 1)


@pytest.mark.parametrize("method", ["otsu", "watershed"])
def test_nucleus_matches_ground_truth_on_synthetic_cells(synthetic_cells, method):
    ious, ratios = [], []
    for cells in synthetic_cells.values():
        for c in cells:
            seg = segment(c.image, method)
            ious.append(iou(seg.nucleus, c.nucleus_mask))
            ratios.append(seg.nucleus.sum() / c.nucleus_mask.sum())
    ious, ratios = np.array(ious), np.array(ratios)
    assert np.median(ious) > 0.9
    assert np.mean(ious > 0.8) >= 0.9
    assert np.mean(np.abs(ratios - 1) < 0.15) >= 0.9


def test_cell_mostly_matches_ground_truth(synthetic_cells):
    ious = [iou(segment(c.image).cell, c.cell_mask) for cells in synthetic_cells.values() for c in cells]
    assert np.median(ious) > 0.8


def test_downscaled_path_keeps_the_nucleus():
    rng = np.random.default_rng(7)
    for label in ("blast", "monocyte", "neutrophil"):
        c = render_cell(label, rng, 300)  # above WORK_SIZE: segmented at a smaller scale
        seg = segment(c.image)
        assert seg.nucleus.shape == (300, 300)
        assert iou(seg.nucleus, c.nucleus_mask) > 0.85


@pytest.mark.parametrize("method", sorted(METHODS))
def test_masks_are_bool_full_size_and_nested(synthetic_cells, method):
    c = synthetic_cells["monocyte"][0]
    seg = segment(c.image, method)
    assert isinstance(seg, Segmentation)
    for mask in (seg.nucleus, seg.cell, seg.cytoplasm):
        assert mask.dtype == bool and mask.shape == c.image.shape[:2]
    assert not (seg.nucleus & ~seg.cell).any()
    assert seg.nucleus.any() and seg.cytoplasm.any()


@pytest.mark.parametrize("value", [0, 128, 255])
@pytest.mark.parametrize("method", ["otsu", "watershed"])
def test_blank_image_is_flagged_and_falls_back(value, method):
    image = np.full((100, 120, 3), value, np.uint8)
    seg = segment(image, method)
    assert "nucleus_empty" in seg.flags and "cell_empty" in seg.flags
    assert seg.fallback
    assert not seg.nucleus.any()
    np.testing.assert_array_equal(seg.cell, fallback_cell((100, 120)))
    assert abs(seg.cell.sum() - np.pi * (FALLBACK_CELL_RADIUS * 100) ** 2) < 0.05 * seg.cell.sum()


def test_method_none_is_the_whole_image_but_still_finds_the_nucleus(synthetic_cells):
    c = synthetic_cells["blast"][0]
    seg = segment(c.image, "none")
    assert seg.cell.all()
    assert iou(seg.nucleus, c.nucleus_mask) > 0.8


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 200, 3), (64, 48, 3)])
def test_never_raises_on_odd_valid_images(shape):
    image = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    for method in METHODS:
        seg = segment(image, method)
        assert seg.cell.shape == shape[:2]
        assert not (seg.nucleus & ~seg.cell).any()


def test_black_padding_is_never_cell(synthetic_cells):
    image = synthetic_cells["lymphocyte"][1].image.copy()
    yy, xx = np.mgrid[:128, :128]
    padding = (xx + yy < 40) | (xx - yy > 100)  # rotated-augmentation corners
    image[padding] = 0
    seg = segment(image)
    assert not (seg.cell & padding).any()


def test_bad_input_raises_value_error():
    with pytest.raises(ValueError, match="known: otsu, watershed, none"):
        segment(np.zeros((10, 10, 3), np.uint8), "kmeans")
    with pytest.raises(ValueError, match="uint8 RGB"):
        segment(np.zeros((10, 10, 3), np.float32))
    with pytest.raises(ValueError, match="uint8 RGB"):
        segment(np.zeros((10, 10), np.uint8))


def test_overlay_draws_both_contours(synthetic_cells):
    c = synthetic_cells["monocyte"][2]
    seg = segment(c.image)
    out = overlay(c.image, seg)
    assert out.shape == c.image.shape and out.dtype == np.uint8
    assert ((out == (0, 255, 0)).all(axis=2)).sum() > 20      # nucleus outline
    assert ((out == (255, 255, 0)).all(axis=2)).sum() > 20    # cell outline
    assert not np.shares_memory(out, c.image)


def test_three_class_otsu_equals_skimage():
    from skimage.filters import threshold_multiotsu

    from bmbench.features.segmentation import _multiotsu3

    rng = np.random.default_rng(5)
    for trial in range(400):
        hist = np.zeros(256, np.float32)
        n_values = int(rng.integers(3, 257)) if trial % 2 else int(rng.integers(3, 12))
        if trial % 3 == 0:  # a contiguous run, possibly touching either end
            start = int(rng.integers(0, 257 - n_values))
            bins = np.arange(start, start + n_values)
        else:
            bins = rng.choice(256, n_values, replace=False)
        hist[bins] = rng.integers(1, (2, 10, 1000, 20000)[trial % 4], n_values)
        np.testing.assert_array_equal(_multiotsu3(hist), threshold_multiotsu(hist=hist, classes=3))


def test_thresholds_cut_between_three_populations_in_grey_levels():
    from bmbench.features.segmentation import THRESHOLD_BINS, _thresholds

    rng = np.random.default_rng(0)
    score = np.concatenate([rng.normal(m, 6, 3000) for m in (50, 120, 200)]).clip(0, 255).astype(np.uint8)
    score = score.reshape(90, 100)
    t0, t1 = _thresholds(score, np.ones(score.shape, bool))
    assert 62 < t0 < 108 and 132 < t1 < 188  # in the gaps (populations +- 2 SD)
    width = 256 // THRESHOLD_BINS
    assert t0 % width == t1 % width == width - 1  # the last grey level of a bin: class 0 is <= t
    # the same cuts as a 256-bin search, to within one bin
    from skimage.filters import threshold_multiotsu
    np.testing.assert_allclose((t0, t1), threshold_multiotsu(score, classes=3), atol=width)
    # masked out pixels do not count; too few values give "nothing above"
    assert tuple(_thresholds(score, score < 100)) != (t0, t1)
    assert tuple(_thresholds(np.full((4, 4), 7, np.uint8), np.ones((4, 4), bool))) == (255, 255)


def test_shrink_averages_like_inter_area():
    import cv2

    from bmbench.features.segmentation import shrink

    rng = np.random.default_rng(2)
    smooth = cv2.GaussianBlur(rng.integers(0, 256, (250, 363, 3)).astype(np.uint8), (0, 0), 3)
    for size in ((128, 88), (91, 63)):  # ratios 2.8 and 4.0: the two-step path
        fast, area = shrink(smooth, size), cv2.resize(smooth, size, interpolation=cv2.INTER_AREA)
        assert fast.shape == area.shape == (size[1], size[0], 3)
        assert np.abs(fast.astype(int) - area).mean() < 1.0
    big = rng.integers(0, 256, (600, 600, 3)).astype(np.uint8)  # ratio 5: INTER_AREA itself
    np.testing.assert_array_equal(shrink(big, (120, 120)), cv2.resize(big, (120, 120), interpolation=cv2.INTER_AREA))
