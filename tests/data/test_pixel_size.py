"""Physical pixel size: resampling and field of view in the image stage, recipe keys."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from bmbench.config.recipe import recipe_from_dict
from bmbench.core.cache import key_for
from bmbench.core.errors import RecipeError
from bmbench.data.imageio import centre_field, rescale
from bmbench.data.images import IMAGE_STAGE_VERSION, ImageSource
from bmbench.data.pixel_size import microns_per_pixel, physical_scale



def write_image(path, array):
    from PIL import Image

    Image.fromarray(array).save(path)
    return path


def _disk(side=100, radius=30, bg=(230, 220, 225), fg=(90, 40, 120)):
    yy, xx = np.mgrid[:side, :side]
    image = np.empty((side, side, 3), np.uint8)
    image[:] = bg
    image[(yy - side / 2) ** 2 + (xx - side / 2) ** 2 < radius ** 2] = fg
    return image


def test_rescale_multiplies_both_sides_and_keeps_the_object_share():
    image = _disk()
    small = rescale(image, 0.5)
    assert small.shape == (50, 50, 3)
    share = lambda im: (im[..., 0] < 160).mean()  # noqa: E731
    assert share(small) == pytest.approx(share(image), abs=0.02)
    assert rescale(image, 1.0) is image


def test_centre_field_crops_larger_and_pads_smaller_images_with_the_background():
    image = _disk(100)
    crop = centre_field(image, 60)
    assert crop.shape == (60, 60, 3) and (crop == image[20:80, 20:80]).all()
    pad = centre_field(image, 140)
    assert pad.shape == (140, 140, 3)
    assert (pad[20:120, 20:120] == image).all()
    assert (pad[:20] == (230, 220, 225)).all() and (pad[:, -20:] == (230, 220, 225)).all()


def test_a_scaled_source_gives_every_lab_the_same_physical_field(tmp_path):
    """Lab B photographs the same cell at twice the resolution: after resampling both to one
    µm/px and cutting one field of view in µm, the model inputs agree."""
    a = write_image(tmp_path / "a.png", array=_disk(100, 30))
    b = write_image(tmp_path / "b.png", array=_disk(200, 60))
    src = ImageSource(size=32)
    in_a = src.with_scale(1.0, 80).read(a)   # 1 µm/px, field 80 µm at 1 µm/px
    in_b = src.with_scale(0.5, 80).read(b)   # 0.5 µm/px -> 1 µm/px
    assert in_a.shape == in_b.shape == (32, 32, 3)
    assert np.abs(in_a.astype(int) - in_b.astype(int)).mean() < 3
    c = write_image(tmp_path / "c.png", array=_disk(200, 30))  # the same cell, a larger field
    assert np.abs(src.with_scale(1.0, 80).read(c).astype(int) - in_a.astype(int)).mean() < 3
    assert np.abs(src.read(c).astype(int) - in_a.astype(int)).mean() > 20


def test_identity_is_unchanged_without_a_scale_and_changes_with_one():
    src = ImageSource(size=64)
    old = key_for("bmbench.image_stage", IMAGE_STAGE_VERSION, 64, False, None, [])
    assert src.identity == old  # caches of runs without a pixel size stay valid
    assert src.with_scale(0.8, None).identity != old
    assert src.with_scale(0.8, 100).identity != src.with_scale(0.8, None).identity


RAW = {"name": "r", "dataset": {"kind": "synthetic", "microns_per_pixel": 0.1,
                                "target_microns_per_pixel": 0.08, "field_um": 20.0},
       "model": {"family": "baseline"},
       "evaluate": [{"kind": "folder", "root": ".", "microns_per_pixel": 0.05}]}


def test_physical_scale_of_the_run_and_of_an_evaluation_set():
    recipe = recipe_from_dict(RAW)
    assert microns_per_pixel(recipe.dataset) == 0.1
    assert physical_scale(recipe.dataset, recipe.dataset) == (pytest.approx(1.25), 250)
    assert physical_scale(recipe.evaluate[0], recipe.dataset) == (pytest.approx(0.625), 250)
    plain = recipe_from_dict({**RAW, "dataset": {"kind": "synthetic"}, "evaluate": []})
    assert physical_scale(plain.dataset, plain.dataset) == (1.0, None)


def test_recipes_without_pixel_sizes_keep_their_fingerprint_and_dump():
    plain = recipe_from_dict({"name": "r", "dataset": {"kind": "synthetic"}, "model": {"family": "baseline"}})
    assert not {"microns_per_pixel", "target_microns_per_pixel", "field_um"} & set(plain.to_dict()["dataset"])
    assert recipe_from_dict(RAW).fingerprint() != plain.fingerprint()


@pytest.mark.parametrize("change, key, words", [
    ({"dataset": {"kind": "synthetic", "field_um": 20.0}}, "dataset.field_um", "target_microns_per_pixel"),
    ({"dataset": {"kind": "synthetic", "target_microns_per_pixel": 0.1}}, "dataset.microns_per_pixel",
     "not documented"),
    ({"evaluate": [{"kind": "folder", "root": "."}]}, "evaluate[0].microns_per_pixel", "not documented"),
    ({"evaluate": [{"kind": "folder", "root": ".", "microns_per_pixel": 0.1,
                    "target_microns_per_pixel": 0.1}]}, "evaluate[0].target_microns_per_pixel", "remove"),
    ({"dataset": {"kind": "synthetic", "microns_per_pixel": -1}}, "dataset.microns_per_pixel", ""),
])
def test_bad_pixel_size_keys_name_the_key(change, key, words):
    with pytest.raises(RecipeError, match=key.replace("[", r"\[").replace("]", r"\]")) as info:
        recipe_from_dict({**RAW, **change}, "r.yaml")
    assert words in str(info.value) and str(info.value).startswith("r.yaml: ")


def test_the_data_set_table_states_each_kinds_pixel_size():
    from bmbench.data.registry import list_kinds

    for kind in list_kinds():
        assert kind.microns_per_pixel is None or kind.microns_per_pixel > 0
        assert ("unknown" in kind.pixel_size) == (kind.microns_per_pixel is None)
    spec = dataclasses.replace(recipe_from_dict(RAW).dataset, microns_per_pixel=None)
    assert microns_per_pixel(spec) is None
