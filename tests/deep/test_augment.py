import numpy as np
import pytest

from bmbench.deep.augment import AUGMENTATIONS, augment_batch, augmentation_names
from bmbench.errors import RecipeError
from bmbench.recipe import recipe_from_dict

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
