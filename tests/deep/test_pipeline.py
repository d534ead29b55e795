import numpy as np
import pytest

import bmbench.data.images as images_module
from bmbench.runs.context import RunContext
from bmbench.deep.pipeline import inference_batches, steps_per_epoch, training_batches
from bmbench.core.errors import DatasetError
from bmbench.config.recipe import recipe_from_dict


def make_ctx(tmp_path, **dataset):
    recipe = recipe_from_dict({"name": "p", "dataset": {"kind": "synthetic", "image_size": 16, **dataset},
                               "model": {"family": "cnn"}})
    return RunContext.for_recipe(recipe, cache_dir=tmp_path / "cache")


@pytest.fixture
def files(tmp_path, make_image):
    return [str(make_image(tmp_path / "img" / f"{i}.png", size=(40 + i, 36), seed=i)) for i in range(10)]


def test_images_are_decoded_once_and_memory_mapped(tmp_path, files, monkeypatch):
    ctx = make_ctx(tmp_path)
    first = ctx.load_images(files)
    assert first.images.shape == (10, 16, 16, 3) and first.images.dtype == np.uint8
    assert first.valid.all() and isinstance(first.images, np.memmap)
    assert np.array_equal(first.images[3], ctx.images.read(files[3]))
    monkeypatch.setattr(images_module, "_decode_all", lambda *a: pytest.fail("decoded again"))
    again = make_ctx(tmp_path).load_images(files)
    assert again.key == first.key and np.array_equal(again.images, first.images)


def test_cache_key_follows_content_and_settings(tmp_path, files, make_image):
    key = make_ctx(tmp_path).load_images(files).key
    assert make_ctx(tmp_path, image_size=20).load_images(files).key != key
    assert make_ctx(tmp_path, keep_aspect=True).load_images(files).key != key
    make_image(files[0], size=(40, 36), seed=99)
    assert make_ctx(tmp_path).load_images(files).key != key


def test_truncated_cache_entry_is_rebuilt(tmp_path, files, caplog):
    ctx = make_ctx(tmp_path)
    good = np.array(ctx.load_images(files).images)
    entry = next((tmp_path / "cache" / "images").glob("*/*[0-9a-f].npy"))
    entry.write_bytes(entry.read_bytes()[:500])
    rebuilt = make_ctx(tmp_path).load_images(files)
    assert np.array_equal(rebuilt.images, good)
    assert "damaged or stale" in caplog.text


def test_unreadable_image_is_skipped_on_decode_and_on_hit(tmp_path, files):
    bad = tmp_path / "img" / "bad.png"
    bad.write_bytes(b"not a png")
    paths = [*files[:3], str(bad)]
    for _ in range(2):  # the second call is a cache hit
        ctx = make_ctx(tmp_path, on_bad_image="skip")
        images = ctx.load_images(paths)
        assert images.valid.tolist() == [True, True, True, False]
        assert str(bad) in ctx.images.skipped
    with pytest.raises(DatasetError, match="bad.png"):
        make_ctx(tmp_path, on_bad_image="error").load_images(paths)


def test_worker_processes_decode_the_same_images(tmp_path, files, monkeypatch):
    monkeypatch.setattr(images_module, "CHUNK", 4)
    one = np.array(make_ctx(tmp_path / "a").load_images(files).images)
    ctx = make_ctx(tmp_path / "b")
    ctx.recipe = recipe_from_dict({**ctx.recipe.to_dict(), "train": {"jobs": 2}})
    assert np.array_equal(ctx.load_images(files).images, one)


def test_training_batches_cover_every_row_once_per_epoch(tmp_path, files):
    images = make_ctx(tmp_path).load_images(files)
    rows = np.array([0, 2, 3, 5, 6, 7, 8, 9])
    labels = np.arange(8) % 3
    weights = np.linspace(0.5, 2.0, 8)
    data = training_batches(images, rows, labels, weights, 4, ["none"], seed=1)
    assert steps_per_epoch(8, 4) == 2 and steps_per_epoch(9, 4) == 3
    batches = list(data.take(6).as_numpy_iterator())
    x, y, w = batches[0]
    assert x.shape == (4, 16, 16, 3) and x.dtype == np.float32
    assert y.dtype == np.int32 and w.dtype == np.float32
    for epoch in range(3):
        seen = np.concatenate([b[0] for b in batches[2 * epoch:2 * epoch + 2]])
        expected = images.images[rows].astype(np.float32)
        order = [next(j for j in range(8) if np.array_equal(s, expected[j])) for s in seen]
        assert sorted(order) == list(range(8)), "each row exactly once per epoch"
        got_y = np.concatenate([b[1] for b in batches[2 * epoch:2 * epoch + 2]])
        got_w = np.concatenate([b[2] for b in batches[2 * epoch:2 * epoch + 2]])
        assert np.array_equal(got_y, labels[order])
        assert np.allclose(got_w, weights[order]), "per-sample (class) weights follow their image"
    again = list(training_batches(images, rows, labels, weights, 4, ["none"], 1).take(6).as_numpy_iterator())
    assert all(np.array_equal(a[0], b[0]) for a, b in zip(batches, again)), "seeded order"


def test_augmented_and_preprocessed_batches(tmp_path, files):
    images = make_ctx(tmp_path).load_images(files)
    rows = np.arange(10)
    data = training_batches(images, rows, rows % 2, np.ones(10), 5, ["flip", "rotate90", "hue"],
                            seed=0, preprocess=lambda x: x / 127.5 - 1.0)
    x, _, _ = next(iter(data))
    assert x.shape == (5, 16, 16, 3) and x.dtype.name == "float32"
    assert -1.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0


def test_inference_batches_keep_order(tmp_path, files):
    images = make_ctx(tmp_path).load_images(files)
    rows = np.array([9, 1, 4, 0, 7])
    x = np.concatenate(list(inference_batches(images, rows, 2).as_numpy_iterator()))
    assert np.array_equal(x, images.images[rows].astype(np.float32))
    pairs = list(inference_batches(images, rows, 2, labels=np.arange(5)).as_numpy_iterator())
    assert np.array_equal(np.concatenate([p[1] for p in pairs]), np.arange(5))


def test_no_images(tmp_path):
    images = make_ctx(tmp_path).load_images([])
    assert images.images.shape == (0, 16, 16, 3) and len(images) == 0


def test_full_batches_pads_with_the_last_row_and_keeps_full_ones():
    from bmbench.deep.pipeline import full_batches

    assert full_batches(np.arange(5), 4).tolist() == [0, 1, 2, 3, 4, 4, 4, 4]
    assert full_batches(np.arange(8), 4).tolist() == list(range(8))
    assert full_batches(np.zeros((3, 2)), 2).shape == (4, 2)
    assert len(full_batches(np.arange(0), 4)) == 0
