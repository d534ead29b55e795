import numpy as np
import pytest

from bmbench.deep import augment
from bmbench.deep.augment import AUGMENTATIONS, augment_batch, augmentation_names
from bmbench.core.errors import RecipeError
from bmbench.config.recipe import recipe_from_dict

tf = pytest.importorskip("tensorflow")


@pytest.fixture(scope="module")
def batch():
    rng = np.random.default_rng(0)
    return tf.constant(rng.integers(0, 256, (16, 32, 32, 3)).astype(np.float32))


def seed(a, b=0):
    return tf.constant([a, b], tf.int64)


@pytest.mark.parametrize("name", sorted(AUGMENTATIONS))
def test_every_augmentation_keeps_shape_dtype_and_range(batch, name):
    out = augment_batch(batch, [name], seed(1))
    assert out.shape == batch.shape and out.dtype == tf.float32
    values = out.numpy()
    assert values.min() >= 0.0 and values.max() <= 255.0 and np.isfinite(values).all()
    assert not np.allclose(values, batch.numpy()), f"{name} changed nothing"
    again = augment_batch(batch, [name], seed(1)).numpy()
    assert np.array_equal(values, again), "same seed, same result"
    assert not np.array_equal(values, augment_batch(batch, [name], seed(2)).numpy())


@pytest.mark.parametrize("names", [["flip"], ["rotate90"], ["flip", "rotate90"]])
def test_geometric_augmentations_only_move_pixels(batch, names):
    out = augment_batch(batch, names, seed(3)).numpy()
    before = np.sort(batch.numpy().reshape(16, -1, 3), axis=1)
    assert np.array_equal(np.sort(out.reshape(16, -1, 3), axis=1), before)


def _one_by_one(x, names, seed_):
    """Reference: each transform applied to the whole batch in turn, as tf.where selects."""
    x = tf.cast(x, tf.float32)
    for i, name in enumerate(names):
        s = tf.random.experimental.stateless_fold_in(seed_, i)
        b = x.shape[0]
        if name == "flip":
            u = tf.random.stateless_uniform([b, 2], s)
            x = tf.where(tf.reshape(u[:, 0] < 0.5, [b, 1, 1, 1]), tf.reverse(x, [2]), x)
            x = tf.where(tf.reshape(u[:, 1] < 0.5, [b, 1, 1, 1]), tf.reverse(x, [1]), x)
        elif name == "rotate90":
            k = tf.random.stateless_uniform([b], s, 0, 4, dtype=tf.int32)
            out = x
            for turns in (1, 2, 3):
                out = tf.where(tf.reshape(tf.equal(k, turns), [b, 1, 1, 1]), tf.image.rot90(x, turns), out)
            x = out
        else:
            x = AUGMENTATIONS[name].apply(x, s)
    return x.numpy()


@pytest.mark.parametrize("names", [["flip"], ["rotate90"], ["flip", "rotate90"], ["rotate90", "flip"],
                                   ["flip", "brightness", "rotate90", "contrast"],
                                   ["flip", "hed", "rotate90", "rescale", "hsv"]])
def test_composed_pixel_maps_equal_transforms_applied_one_by_one(batch, names):
    out = augment_batch(batch, names, seed(6, 9)).numpy()
    np.testing.assert_array_equal(out, _one_by_one(batch, names, seed(6, 9)))


def test_uint8_batches_give_the_float_result():
    rng = np.random.default_rng(1)
    images = rng.integers(0, 256, (8, 16, 16, 3)).astype(np.uint8)
    names = ["flip", "rotate90", "brightness"]
    out = augment_batch(tf.constant(images), names, seed(2))
    assert out.dtype == tf.float32
    np.testing.assert_array_equal(out.numpy(), augment_batch(tf.constant(images.astype(np.float32)),
                                                             names, seed(2)).numpy())


def test_rotations_are_drawn_per_image():
    image = np.arange(32 * 32 * 3, dtype=np.float32).reshape(32, 32, 3) % 256
    out = augment_batch(tf.constant(np.repeat(image[None], 64, axis=0)), ["rotate90"], seed(4)).numpy()
    turns = [next(k for k in range(4) if np.array_equal(np.rot90(image, k), o)) for o in out]
    assert set(turns) == {0, 1, 2, 3}


def test_colour_jitter_is_small(batch):
    out = augment_batch(batch, ["brightness", "contrast", "hue", "saturation"], seed(5)).numpy()
    assert np.abs(out - batch.numpy()).mean() < 40


def test_none_is_the_identity(batch):
    assert augment_batch(batch, ["none"], seed(0)) is batch
    assert augment_batch(batch, [], seed(0)) is batch


def _recipe(augment):
    return recipe_from_dict({"name": "r", "dataset": {"kind": "synthetic"},
                             "model": {"family": "cnn"}, "train": {"augment": augment}})


def test_recipe_accepts_augmentation_lists():
    assert _recipe(["flip", "hue"]).train.augment == ("flip", "hue")
    assert _recipe(["none"]).train.augment == ("none",)
    stain_and_scale = ["flip", "rotate90", "hed", "rescale"]
    assert _recipe(stain_and_scale).train.augment == tuple(stain_and_scale)
    assert "none" in augmentation_names()


@pytest.mark.parametrize("augment, message", [
    (["none", "flip"], r"train.augment: 'none' cannot be combined"),
    (["flip", "rotate"], r"train.augment\[1\]: unknown value 'rotate' \(did you mean 'rotate90'\?\)"),
    ("flip", r"train.augment: expected a list"),
])
def test_recipe_refuses_bad_augmentation(augment, message):
    with pytest.raises(RecipeError, match=message):
        _recipe(augment)


# --- stain (hed, hsv) and scale (rescale) augmentation ------------------------------------------

def _smear(s=32, background=(232, 218, 226)):
    """A stained cell on a light background: pink cytoplasm, purple nucleus."""
    yy, xx = np.mgrid[:s, :s]
    r = np.hypot(yy - s / 2 + 0.5, xx - s / 2 + 0.5)
    img = np.empty((s, s, 3), np.float32)
    img[:] = background
    img[r < s * 0.4] = (205, 125, 140)
    img[r < s * 0.25] = (95, 55, 150)
    return img


def _cells(b=8, s=32):
    return tf.constant(np.repeat(_smear(s)[None], b, axis=0))


def _all_differ(out):
    flat = out.reshape(len(out), -1)
    return all(not np.array_equal(flat[i], flat[j]) for i in range(len(flat)) for j in range(i))


def test_descriptions_are_one_line_and_state_the_range():
    for name, constant in [("hed", augment.HED), ("hsv", augment.HSV_HUE), ("rescale", augment.RESCALE)]:
        text = AUGMENTATIONS[name].description
        assert "\n" not in text and str(constant) in text and not AUGMENTATIONS[name].geometric


def test_hed_round_trip_returns_the_input():
    rng = np.random.default_rng(3)
    x = rng.integers(0, 256, (4, 32, 32, 3)).astype(np.float32)
    out = augment.hed_jitter(tf.constant(x), 1.0, 0.0).numpy()
    assert np.abs(out - x).max() <= 1.0 + 1e-3  # 0 is read as 1 (no log of 0)
    assert np.abs(out - x)[x >= 1].max() < 0.01


def test_hed_conversion_matches_skimage():
    color = pytest.importorskip("skimage.color")
    rng = np.random.default_rng(4)
    x = rng.integers(1, 256, (2, 32, 32, 3)).astype(np.uint8)
    ours = augment.rgb_to_hed(tf.constant(x.astype(np.float32))).numpy()
    ref = np.stack([color.rgb2hed(i) for i in x]) * np.log(1e6)  # skimage scales OD by 1/ln(1e6)
    np.testing.assert_allclose(np.maximum(ours, 0.0), ref, atol=1e-4)  # skimage clips at 0
    back = augment.hed_to_rgb(tf.constant(ref.astype(np.float32))).numpy()
    expected = np.stack([color.hed2rgb(c / np.log(1e6)) for c in ref]) * 255.0
    np.testing.assert_allclose(back, expected, atol=0.01)


def test_hed_jitter_is_bounded_per_image_and_seeded():
    x = _cells()
    for alpha in (1 - augment.HED, 1 + augment.HED):  # the extremes of the range
        for beta in (-augment.HED, augment.HED):
            assert np.abs(augment.hed_jitter(x, alpha, beta).numpy() - x.numpy()).max() < 32
    out = augment_batch(x, ["hed"], seed(7)).numpy()
    diff = np.abs(out - x.numpy())
    assert diff.max() < 32 and 0.1 < diff.mean() < 16
    assert _all_differ(out), "drawn per image"
    assert np.array_equal(out, augment_batch(x, ["hed"], seed(7)).numpy())
    assert not np.array_equal(out, augment_batch(x, ["hed"], seed(8)).numpy())


def test_hsv_jitter_stays_in_its_ranges_per_image_and_seeded():
    x = _cells(16)
    out = augment_batch(x, ["hsv"], seed(9)).numpy()
    before, after = tf.image.rgb_to_hsv(x / 255.0).numpy(), tf.image.rgb_to_hsv(out / 255.0).numpy()
    value = after[..., 2] / before[..., 2]  # one factor per image, within 1 +- HSV_VALUE
    assert np.ptp(value, axis=(1, 2)).max() < 1e-3
    assert np.abs(value - 1).max() <= augment.HSV_VALUE + 1e-3
    dh = np.abs(after[..., 0] - before[..., 0])
    assert np.minimum(dh, 1 - dh).max() <= augment.HSV_HUE + 1e-3
    ratio = after[..., 1] / before[..., 1]
    assert np.abs(ratio - 1).max() <= augment.HSV_SATURATION + 1e-3
    assert np.abs(out - x.numpy()).mean() < 25
    assert _all_differ(out), "drawn per image"
    # hue, saturation and value are independent draws, not one shared random number
    shift = [np.mean(np.minimum(d, 1 - d)) for d in dh]
    assert abs(np.corrcoef(shift, np.abs(value[:, 0, 0] - 1))[0, 1]) < 0.95
    assert np.array_equal(out, augment_batch(x, ["hsv"], seed(9)).numpy())
    assert not np.array_equal(out, augment_batch(x, ["hsv"], seed(10)).numpy())


def test_single_hsv_jitters_keep_their_draws():
    x = _cells(4)
    s = seed(11)
    b = tf.shape(x)[0]
    factor = tf.random.stateless_uniform([b, 1, 1], s, 1 - augment.SATURATION, 1 + augment.SATURATION)
    hsv = tf.image.rgb_to_hsv(x / 255.0)
    expected = tf.image.hsv_to_rgb(tf.stack([hsv[..., 0], tf.clip_by_value(hsv[..., 1] * factor, 0, 1),
                                             hsv[..., 2]], axis=-1)) * 255.0
    np.testing.assert_allclose(AUGMENTATIONS["saturation"].apply(x, s).numpy(), expected.numpy(), atol=1e-3)


def _disk(s=64, radius=20.0, b=1):
    yy, xx = np.mgrid[:s, :s]
    img = (np.hypot(yy - (s - 1) / 2, xx - (s - 1) / 2) < radius).astype(np.float32) * 255.0
    return tf.constant(np.repeat(np.repeat(img[None, :, :, None], 3, axis=3), b, axis=0))


def _area(images):
    return (images[..., 0] > 127.5).sum(axis=(1, 2))


def test_zoom_scales_the_area_by_the_factor_squared():
    factors = np.array([1 / 1.2, 0.9, 1.0, 1.1, 1.2], np.float32)
    out = augment.zoom(_disk(b=len(factors)), tf.constant(factors)).numpy()
    assert out.shape == (5, 64, 64, 3)
    np.testing.assert_allclose(_area(out) / _area(_disk().numpy())[0], factors ** 2, rtol=0.06)
    np.testing.assert_array_equal(out[2], _disk().numpy()[0])


def test_rescale_draws_a_zoom_per_image_within_its_range():
    x = _disk(b=16)
    out = augment_batch(x, ["rescale"], seed(12)).numpy()
    assert out.shape == x.shape
    ratio = _area(out) / _area(x.numpy())
    r2 = augment.RESCALE ** 2
    assert ratio.min() >= 1 / r2 - 0.05 and ratio.max() <= r2 + 0.05
    assert (ratio < 0.97).any() and (ratio > 1.03).any() and len(set(ratio.round(3))) > 10
    assert np.array_equal(out, augment_batch(x, ["rescale"], seed(12)).numpy())
    assert not np.array_equal(out, augment_batch(x, ["rescale"], seed(13)).numpy())


def test_rescale_pads_with_the_border_colour():
    colours = np.array([[200, 180, 220], [10, 250, 90], [255, 255, 255], [0, 0, 0]], np.float32)
    uniform = tf.constant(np.broadcast_to(colours[:, None, None, :], (4, 32, 32, 3)).copy())
    out = augment_batch(uniform, ["rescale"], seed(14)).numpy()
    np.testing.assert_allclose(out, uniform.numpy(), atol=1e-3)  # no black frame
    cells = _cells(3)
    zoomed_out = augment.zoom(cells, tf.constant([1 / 1.2, 0.9, 1.0])).numpy()
    border = np.array([232, 218, 226], np.float32)
    for img in zoomed_out:
        ring = np.concatenate([img[0], img[-1], img[:, 0], img[:, -1]])
        np.testing.assert_allclose(ring, np.broadcast_to(border, ring.shape), atol=1e-3)
    assert not np.allclose(zoomed_out[0], cells.numpy()[0])


def test_border_colour_is_the_median_of_the_outer_ring():
    img = np.full((1, 16, 16, 3), 100.0, np.float32)
    img[0, 0, :5] = 0.0  # a dark cell touching the border does not drag the median down
    np.testing.assert_array_equal(augment.border_colour(tf.constant(img)).numpy(),
                                  np.full((1, 1, 1, 3), 100.0))


@pytest.mark.parametrize("name", ["hed", "hsv", "rescale"])
def test_new_transforms_keep_static_shapes_in_graphs(name):
    fn = tf.function(lambda x: AUGMENTATIONS[name].apply(x, seed(1)),
                     input_signature=[tf.TensorSpec([None, 32, 32, 3], tf.float32)])
    assert fn.get_concrete_function().structured_outputs.shape.as_list() == [None, 32, 32, 3]
