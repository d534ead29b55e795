import numpy as np
import pytest

from bmbench.runs.context import RunContext
from bmbench.models.families.baseline import Baseline, BaselineModel
from bmbench.models.registry import Subset, get_family
from bmbench.config.recipe import recipe_from_dict


@pytest.fixture
def blobs(tmp_path):
    """Two classes of solid-colour images with noise: trivially separable by pixels."""
    from PIL import Image
    rng = np.random.default_rng(0)
    paths, labels = [], []
    for label, colour in enumerate(((200, 60, 60), (60, 60, 200))):
        for i in range(12):
            a = np.clip(np.array(colour) + rng.normal(0, 25, (16, 16, 3)), 0, 255).astype(np.uint8)
            p = tmp_path / f"{label}_{i}.png"
            Image.fromarray(a).save(p)
            paths.append(str(p))
            labels.append(label)
    return np.array(paths), np.array(labels)


def context(tmp_path):
    recipe = recipe_from_dict({"name": "t", "dataset": {"kind": "folder", "root": str(tmp_path),
                                                        "image_size": 16},
                               "model": {"family": "baseline", "pixels": 4}})
    return RunContext.for_recipe(recipe, tmp_path / "cache")


def test_registry_finds_baseline():
    assert get_family("baseline") is Baseline


def test_settings_name_its_own_options(tmp_path):
    from bmbench.runs.runner import settings_summary

    recipe = recipe_from_dict({"name": "t", "dataset": {"kind": "folder", "root": str(tmp_path), "image_size": 64},
                               "model": {"family": "baseline", "pixels": 8, "C": 0.5}})
    assert settings_summary(recipe) == "64px, 8x8 pixels, C 0.5"


def test_fit_predict_save_load_gives_identical_probabilities(blobs, tmp_path):
    paths, labels = blobs
    ctx = context(tmp_path)
    train = Subset(paths[::2], labels[::2], ("red", "blue"))
    model = Baseline().fit(train, None, ctx)
    proba = model.predict_proba(paths[1::2], ctx)
    assert proba.shape == (12, 2) and np.allclose(proba.sum(1), 1)
    assert (proba.argmax(1) == labels[1::2]).all()
    model.save(tmp_path / "model")
    again = BaselineModel.load(tmp_path / "model")
    assert np.array_equal(again.predict_proba(paths[1::2], ctx), proba)
    assert not list((tmp_path / "model").glob("*.pkl"))


def test_unreadable_prediction_rows_are_nan(blobs, tmp_path):
    paths, labels = blobs
    ctx = context(tmp_path)
    model = Baseline().fit(Subset(paths, labels, ("red", "blue")), None, ctx)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"nope")
    ctx.images.on_bad_image = "skip"
    proba = model.predict_proba(np.array([paths[0], str(bad)]), ctx)
    assert np.isfinite(proba[0]).all() and np.isnan(proba[1]).all()
