import numpy as np
import pytest
from skimage.feature import graycomatrix, graycoprops, local_binary_pattern

from bmbench.features import texture
from bmbench.features.regions import CellView
from bmbench.features.segmentation import Segmentation


def named(values):
    return dict(zip([s.name for s in texture.SPECS], values))


def test_constant_region_glcm(disk):
    gray = np.full((60, 60), 120, np.uint8)
    mask = disk((60, 60), (30, 30), 20)
    props = texture.glcm_features(gray, mask).reshape(6, 3)
    names = [p for p, _, _ in texture.GLCM_PROPERTIES]
    assert list(props[names.index("contrast")]) == [0, 0, 0]
    assert list(props[names.index("dissimilarity")]) == [0, 0, 0]
    for prop in ("energy", "ASM", "homogeneity", "correlation"):
        np.testing.assert_allclose(props[names.index(prop)], 1.0)


def test_outside_pixels_do_not_count(disk):
    rng = np.random.default_rng(1)
    gray = rng.integers(0, 256, (60, 60)).astype(np.uint8)
    mask = disk((60, 60), (30, 30), 20)
    inside = gray.copy()
    inside[mask] = 99
    np.testing.assert_allclose(texture.glcm_features(inside, mask).reshape(6, 3)[0], 0)


def test_checkerboard_contrast_and_no_pairs():
    gray = (np.indices((40, 40)).sum(0) % 2 * 200 + 20).astype(np.uint8)
    mask = np.ones((40, 40), bool)
    props = texture.glcm_features(gray, mask).reshape(6, 3)
    assert props[0, 0] > 100 * props[0, 1]  # d=1 pairs alternate (mostly), d=2 pairs agree
    single = np.zeros((40, 40), bool)
    single[5, 5] = True
    assert np.isnan(texture.glcm_features(gray, single)).all()


def test_glcm_properties_equal_skimage():
    rng = np.random.default_rng(0)
    q = rng.integers(0, 32, (50, 50)).astype(np.uint8)
    glcm = graycomatrix(q, [1, 2, 4], texture.GLCM_ANGLES, levels=32, symmetric=True).astype(float)
    glcm /= glcm.sum(axis=(0, 1), keepdims=True)
    mine = texture.glcm_properties(glcm)
    for i, (prop, _, _) in enumerate(texture.GLCM_PROPERTIES):
        np.testing.assert_allclose(mine[i], graycoprops(glcm, prop), rtol=1e-9, atol=1e-12)


def test_quantise_levels(disk):
    gray = np.tile(np.arange(100, dtype=np.uint8), (100, 1))
    mask = disk((100, 100), (50, 50), 40)
    q = texture.quantise(gray, mask)
    assert q[~mask].max() == 0
    assert q[mask].min() == 1 and q[mask].max() == texture.GLCM_LEVELS


def _lbp_by_loops(image):
    """Uniform LBP on the 3x3 neighbourhood, pixel by pixel (zero padding)."""
    pad = np.pad(image.astype(int), 1)
    out = np.zeros(image.shape, np.uint8)
    for y in range(image.shape[0]):
        for x in range(image.shape[1]):
            c = pad[y + 1, x + 1]
            bits = [int(pad[y + 1 + dy, x + 1 + dx] >= c) for dy, dx in texture._LBP_NEIGHBOURS]
            changes = sum(a != b for a, b in zip(bits, bits[1:]))
            out[y, x] = sum(bits) if changes <= 2 else 9
    return out


@pytest.mark.parametrize("step", [1, 2, 3])
def test_uniform_lbp_equals_a_pixel_loop(step):
    rng = np.random.default_rng(step)
    images = (rng.integers(0, 256, (41, 57)), rng.integers(100, 103, (20, 9)), np.zeros((3, 3)),
              rng.integers(0, 256, (1, 5)), rng.integers(200, 203, (30, 27)))
    for image in images:
        image = image.astype(np.uint8)
        np.testing.assert_array_equal(texture.uniform_lbp(image, step), _lbp_by_loops(image)[::step, ::step])


def test_uniform_lbp_matches_skimage_on_the_axis_neighbours():
    """The 4 axis neighbours are exact pixels in skimage too: patterns without diagonal
    differences (a vertical ramp: diagonals equal their axis neighbours) give the same codes."""
    image = np.repeat(np.arange(0, 200, 10, dtype=np.uint8)[:, None], 12, axis=1)
    inner = np.s_[1:-1, 1:-1]
    expected = local_binary_pattern(image, 8, 1, "uniform")[inner]
    np.testing.assert_array_equal(texture.uniform_lbp(image)[inner], expected)


def test_two_regions_in_one_pass_equal_each_alone(disk):
    rng = np.random.default_rng(4)
    gray = rng.integers(0, 256, (70, 70)).astype(np.uint8)
    nucleus = disk((70, 70), (35, 35), 14)
    cytoplasm = disk((70, 70), (35, 35), 30) & ~nucleus
    both = texture.glcm_features(gray, nucleus, cytoplasm)
    np.testing.assert_allclose(both, np.concatenate([texture.glcm_features(gray, nucleus),
                                                     texture.glcm_features(gray, cytoplasm)]))
    empty = texture.glcm_features(gray, nucleus, np.zeros_like(nucleus))
    assert np.isnan(empty[18:]).all() and np.allclose(empty[:18], both[:18])


def test_lbp_histogram(disk):
    gray = np.full((50, 50), 80, np.uint8)
    mask = disk((50, 50), (25, 25), 15)
    hist = texture.lbp_histogram(gray, mask)
    assert hist.sum() == pytest.approx(1.0)
    assert hist[8] == 1.0  # flat: every neighbour >= centre
    assert np.isnan(texture.lbp_histogram(gray, np.zeros_like(mask))).all()


def test_granularity_sees_dark_clumps(disk):
    nucleus = disk((80, 80), (40, 40), 25)
    cell = disk((80, 80), (40, 40), 35)
    image = np.full((80, 80, 3), 150, np.uint8)
    flat = named(texture.compute(CellView(image, Segmentation(nucleus, cell))))
    clumpy = image.copy()
    ys, xs = np.nonzero(nucleus)
    pick = np.random.default_rng(0).choice(len(ys), 40, replace=False)
    for y, x in zip(ys[pick], xs[pick]):
        clumpy[y - 1:y + 1, x - 1:x + 1] = 60
    clumped = named(texture.compute(CellView(clumpy, Segmentation(nucleus, cell))))
    assert flat["texture_nucleus_clump_fraction"] == 0 and flat["texture_nucleus_tophat_mean"] == 0
    assert clumped["texture_nucleus_clump_fraction"] > 0.02
    assert clumped["texture_nucleus_dog_std"] > flat["texture_nucleus_dog_std"]
    assert clumped["texture_cytoplasm_clump_fraction"] < clumped["texture_nucleus_clump_fraction"]
    assert len(clumped) == len(texture.SPECS) == 54


def test_cooccurrence_equals_skimage():
    rng = np.random.default_rng(3)
    levels = texture.GLCM_LEVELS
    shapes = [(1, 1), (1, 7), (9, 1), (2, 3), (5, 5), (23, 41), (64, 37)]
    for trial, shape in enumerate(shapes * 4):
        q = rng.integers(0, levels + 1, shape).astype(np.uint8)
        if trial % 4 == 1:
            q[rng.random(shape) < 0.7] = 0  # sparse region, many outside pixels
        elif trial % 4 == 2:
            q[:] = 0
            q[rng.integers(shape[0]), rng.integers(shape[1])] = 5  # one-pixel region
        elif trial % 4 == 3:
            q[:] = 0  # empty region
        expected = graycomatrix(q, texture.GLCM_DISTANCES, texture.GLCM_ANGLES, levels=levels + 1,
                                symmetric=True)[1:, 1:]
        np.testing.assert_array_equal(texture.cooccurrence(q), expected)
    q = rng.integers(0, 2 * levels + 1, (30, 40)).astype(np.uint8)  # two regions' level ranges
    expected = graycomatrix(q, texture.GLCM_DISTANCES, texture.GLCM_ANGLES, levels=2 * levels + 1,
                            symmetric=True)[1:, 1:]
    np.testing.assert_array_equal(texture.cooccurrence(q, 2 * levels), expected)


@pytest.mark.parametrize("step", [2, 3])
def test_cooccurrence_of_every_kth_row_counts_the_pairs_starting_there(step):
    rng = np.random.default_rng(step)
    levels = texture.GLCM_LEVELS
    q = rng.integers(0, levels + 1, (29, 33)).astype(np.uint8)
    h, w = q.shape
    expected = np.zeros((levels, levels, len(texture.GLCM_DISTANCES) * len(texture.GLCM_ANGLES)))
    for k, (dr, dc) in enumerate(texture._GLCM_OFFSETS):
        for r in range(0, h, step):
            for c in range(w):
                r2, c2 = r + dr, c + dc
                if 0 <= r2 < h and 0 <= c2 < w and q[r, c] and q[r2, c2]:
                    expected[q[r, c] - 1, q[r2, c2] - 1, k] += 1
                    expected[q[r2, c2] - 1, q[r, c] - 1, k] += 1
    got = texture.cooccurrence(q, levels, step)
    np.testing.assert_array_equal(got, expected.reshape(got.shape))


def test_large_regions_count_a_row_sample_of_pairs():
    rng = np.random.default_rng(0)
    side = int(np.sqrt(4 * texture.GLCM_SAMPLE_PIXELS)) + 1  # 4 x the sample: every 4th row
    gray = rng.normal(128, 30, (side, side)).clip(0, 255).astype(np.uint8)
    mask = np.ones(gray.shape, bool)
    sampled = texture.glcm_features(gray, mask).reshape(6, 3)
    q = texture.quantise(gray, mask)
    full = texture.glcm_properties(texture.cooccurrence(q) / texture.cooccurrence(q).sum(axis=(0, 1))).mean(axis=2)
    assert not np.array_equal(sampled, full)  # a sample, not all rows ...
    np.testing.assert_allclose(sampled, full, rtol=0.02, atol=0.01)  # ... estimating the same


def test_glcm_properties_of_nearly_constant_regions_equal_skimage():
    glcm = np.zeros((32, 32, 1, 2))
    glcm[7, 7, 0, 0] = 1.0                                   # constant: correlation 1
    glcm[7, 7, 0, 1], glcm[7, 8, 0, 1], glcm[8, 7, 0, 1] = 1 - 2e-6, 1e-6, 1e-6  # two pairs in 10**6
    mine = texture.glcm_properties(glcm)
    for i, (prop, _, _) in enumerate(texture.GLCM_PROPERTIES):
        np.testing.assert_allclose(mine[i], graycoprops(glcm, prop), rtol=1e-6, atol=1e-9)


def test_granularity_equals_numpy_statistics():
    rng = np.random.default_rng(1)
    dog = rng.normal(0, 3, (40, 50)).astype(np.float32)
    tophat = rng.integers(0, 30, (40, 50)).astype(np.uint8)
    mask = rng.random((40, 50)) < 0.4
    d, t = dog[mask].astype(np.float64), tophat[mask]
    expected = [d.mean(), d.std(), t.mean(), np.mean(t > texture.CLUMP_THRESHOLD)]
    np.testing.assert_allclose(texture.granularity(dog, tophat, mask), expected, rtol=1e-9)
    assert np.isnan(texture.granularity(dog, tophat, np.zeros_like(mask))).all()


def test_dog_kernels_blur_as_gaussian_blur_of_a_float_copy():
    import cv2

    gray = np.random.default_rng(4).integers(0, 256, (60, 70)).astype(np.uint8)
    for kernel, sigma in zip(texture._DOG_KERNELS, (1.0, 2.0)):
        mine = cv2.sepFilter2D(gray, cv2.CV_32F, kernel, kernel)
        np.testing.assert_allclose(mine, cv2.GaussianBlur(gray.astype(np.float32), (0, 0), sigma), atol=1e-3)
