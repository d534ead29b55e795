import dataclasses

import numpy as np
import pytest

from bmbench.core.cache import ArrayCache
from bmbench.data.images import ImageSource
from bmbench.runs.context import RunContext
from bmbench.models.backbones import build_backbone
from bmbench.models.embeddings import EmbeddingSpec, embed
from bmbench.config.recipe import recipe_from_dict

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset


@pytest.fixture
def setup(tmp_path, make_image):
    recipe = recipe_from_dict({"name": "e", "dataset": {"kind": "synthetic", "image_size": 32,
                                                        "on_bad_image": "skip"},
                               "model": {"family": "transfer"}})
    ctx = RunContext.for_recipe(recipe, cache_dir=tmp_path / "cache")
    paths = [str(make_image(tmp_path / f"{i}.png", size=(48, 48), seed=i)) for i in range(6)]
    (tmp_path / "bad.png").write_bytes(b"nope")
    images = ctx.load_images([*paths, str(tmp_path / "bad.png")])
    return ctx, images


def builder(calls):
    def build():
        calls.append(1)
        return build_backbone("VGG16", "none", 32, seed=3)
    return build


def test_embeddings_are_computed_once_then_read_from_the_cache(setup):
    ctx, images = setup
    spec = EmbeddingSpec.create("VGG16", "none", seed=3)
    calls = []
    first = embed(images, spec, ctx, builder(calls), batch_size=4)
    assert first.shape == (7, 512) and first.dtype == np.float32 and calls == [1]
    assert np.isfinite(first[:6]).all() and np.isnan(first[6]).all()
    again = embed(images, spec, ctx, builder(calls), batch_size=4)
    assert calls == [1], "a full cache hit never builds the backbone"
    assert np.array_equal(first, again, equal_nan=True)
    assert ctx.notes.embedding_cache == {"hits": 6, "computed": 6}


def test_damaged_entries_alone_are_recomputed(setup):
    ctx, images = setup
    spec = EmbeddingSpec.create("VGG16", "none", seed=3)
    first = embed(images, spec, ctx, builder([]), batch_size=4)
    cache = ArrayCache(ctx.cache_dir / "embeddings")
    keys = spec.keys(images, np.arange(6))
    cache.path(keys[1]).write_bytes(b"garbage")
    cache.put(keys[4], np.full(512, np.inf, np.float32))
    ctx.notes.embedding_cache = None
    again = embed(images, spec, ctx, builder([]), batch_size=4)
    assert ctx.notes.embedding_cache == {"hits": 4, "computed": 2}
    assert np.allclose(again[:6], first[:6], atol=1e-5)


def test_keys_depend_on_everything_that_changes_an_embedding(setup, tmp_path):
    ctx, images = setup
    base = EmbeddingSpec.create("VGG16", "none", seed=3)
    weights = tmp_path / "w.weights.h5"
    weights.write_bytes(b"0")
    variants = [EmbeddingSpec.create("VGG19", "none", seed=3),
                EmbeddingSpec.create("VGG16", "none", seed=4),
                EmbeddingSpec.create("VGG16", "imagenet"),
                EmbeddingSpec.create("VGG16", str(weights)),
                EmbeddingSpec.create("VGG16", "none", "max", seed=3),
                EmbeddingSpec.create("VGG16", "none", seed=3, precision="mixed_float16")]
    rows = np.arange(2)
    keys = {tuple(s.keys(images, rows)) for s in [base, *variants]}
    assert len(keys) == 1 + len(variants)
    padded = dataclasses.replace(images, identity=ImageSource(images.size, keep_aspect=True).identity)
    assert base.keys(padded, rows) != base.keys(images, rows)  # the image stage's identity counts
    assert EmbeddingSpec.create("VGG16", "imagenet", seed=1) == EmbeddingSpec.create("VGG16", "imagenet", seed=2)
