import numpy as np
import pytest

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
                                   ["flip", "brightness", "rotate90", "contrast"]])
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
    assert "none" in augmentation_names()


@pytest.mark.parametrize("augment, message", [
    (["none", "flip"], r"train.augment: 'none' cannot be combined"),
    (["flip", "rotate"], r"train.augment\[1\]: unknown value 'rotate' \(did you mean 'rotate90'\?\)"),
    ("flip", r"train.augment: expected a list"),
])
def test_recipe_refuses_bad_augmentation(augment, message):
    with pytest.raises(RecipeError, match=message):
        _recipe(augment)
