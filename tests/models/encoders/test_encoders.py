"""One contract for every encoder kind (open, identity, embed, cache, bad input), and the
checks each kind makes before any image is decoded."""

from __future__ import annotations

import json
import shutil
from types import SimpleNamespace

import numpy as np
import pytest

from bmbench.config.schema import Context
from bmbench.core.errors import BmbenchError, RecipeError
from bmbench.models.encoders import ENCODERS, parse_encoder
from bmbench.models.embeddings import embed, spec_of

from .conftest import tiny_keras, tiny_onnx, tiny_run

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

CTX = Context("r.yaml", "model.backbone")


def choice_for(kind, files):
    if kind == "keras_applications":
        return parse_encoder("MobileNetV3Small", CTX)
    if kind == "onnx":
        return parse_encoder({"kind": "onnx", "path": str(files["onnx"]), "input_size": 16}, CTX)
    if kind == "keras_file":
        return parse_encoder({"kind": "keras_file", "path": str(files["keras_file"])}, CTX)
    return parse_encoder({"kind": "run", "run": str(files["run"])}, CTX)


def images_of(n=5, size=32, seed=0):
    rng = np.random.default_rng(seed)
    from bmbench.data.images import ImageSet

    return ImageSet(rng.integers(0, 256, (n, size, size, 3), dtype=np.uint8), np.ones(n, bool),
                    tuple(f"d{seed}-{i}" for i in range(n)), f"set{seed}", f"size={size}")


def run_ctx(tmp_path):
    class Notes:
        def count_embeddings(self, hits, computed):
            self.counts = {"hits": hits, "computed": computed}

    return SimpleNamespace(cache_dir=tmp_path / "cache", notes=Notes())


@pytest.mark.parametrize("kind", ["keras_applications", "keras_file", "onnx", "run"])
def test_every_encoder_kind_embeds_caches_and_refuses_bad_input(kind, encoder_files, tmp_path):
    assert kind in ENCODERS
    choice = choice_for(kind, encoder_files)
    assert parse_encoder(choice.to_plain(), CTX) == choice  # the recipe form round-trips
    enc = choice.open()
    weights = "none" if kind == "keras_applications" else "imagenet"
    size = enc.size_for(32)
    enc.check_size(size)
    spec = spec_of(enc, weights, "avg", seed=1, policy="float32")
    assert spec.identity == enc.identity(weights, 1)  # stable
    images = images_of(size=size)
    ctx = run_ctx(tmp_path)
    calls = []

    def build():
        calls.append(1)
        return enc.embedder(weights, size, 1)

    first = embed(images, spec, ctx, build, batch_size=2)
    assert first.ndim == 2 and first.shape[0] == 5 and np.isfinite(first).all()
    again = embed(images, spec, ctx, build, batch_size=2)
    assert calls == [1] and ctx.notes.counts == {"hits": 5, "computed": 0}  # cached: not rebuilt
    assert np.allclose(again, first)
    fresh = embed(images, spec, run_ctx(tmp_path / "other"), build, batch_size=3)
    assert np.allclose(fresh, first, atol=1e-5)  # deterministic, whatever the batch size
    # bad input: one line naming what to fix, no image decoded
    bad = {"keras_applications": "MobileNetV3Smal", "onnx": {"kind": "onnx", "path": str(tmp_path / "no.onnx")},
           "keras_file": {"kind": "keras_file", "path": str(tmp_path / "no.keras")},
           "run": {"kind": "run", "run": str(tmp_path / "no-run"), "results": str(tmp_path / "empty")}}[kind]
    with pytest.raises((BmbenchError, RecipeError)) as err:
        parse_encoder(bad, CTX).open()
    assert "\n" not in str(err.value) and "model.backbone" in str(err.value)


@pytest.mark.parametrize("kind", ["keras_file", "onnx", "run"])
def test_a_changed_file_is_a_new_cache_key(kind, encoder_files, tmp_path):
    choice = choice_for(kind, encoder_files)
    before = choice.open().identity("imagenet", 0)
    if kind == "onnx":
        tiny_onnx(encoder_files["onnx"], seed=5)
    elif kind == "keras_file":
        tiny_keras(encoder_files["keras_file"], seed=5)
    else:
        shutil.rmtree(encoder_files["run"] / "model")
        from bmbench.models.families.cnn import build_cnn
        from bmbench.models.keras_model import KerasClassifier
        import keras

        keras.utils.set_random_seed(9)
        KerasClassifier(("a", "b"), build_cnn(32, 2, depth=2, width=4), 32).save(encoder_files["run"] / "model")
    assert choice.open().identity("imagenet", 0) != before


def test_onnx_input_settings_enter_the_key(tmp_path):
    base = {"kind": "onnx", "path": str(tiny_onnx(tmp_path / "any.onnx", size=None)), "input_size": 16}
    keys = {parse_encoder({**base, **extra}, CTX).open().identity("imagenet", 0)
            for extra in ({}, {"range": [0, 1]}, {"range": [0, 1], "mean": [0.4, 0.4, 0.4], "std": [0.2, 0.2, 0.2]},
                          {"input_size": 24})}
    assert len(keys) == 4


def test_onnx_declarations_are_checked_against_the_file(tmp_path):
    nhwc = tiny_onnx(tmp_path / "a.onnx", size=16)
    fixed = {"kind": "onnx", "path": str(nhwc)}
    with pytest.raises(BmbenchError, match="not 3 channels in layout NCHW; set model.backbone.layout to NHWC"):
        parse_encoder({**fixed, "input_size": 16, "layout": "NCHW"}, CTX).open()
    with pytest.raises(BmbenchError, match="set model.backbone.input_size to 16"):
        parse_encoder({**fixed, "input_size": 224}, CTX).open()
    nchw = tiny_onnx(tmp_path / "b.onnx", size=16, layout="NCHW")
    with pytest.raises(BmbenchError, match="set model.backbone.layout to NCHW"):
        parse_encoder({"kind": "onnx", "path": str(nchw), "input_size": 16}, CTX).open()
    enc = parse_encoder({"kind": "onnx", "path": str(nchw), "input_size": 16, "layout": "NCHW"}, CTX).open()
    assert enc.dims == 4
    cube = tiny_onnx(tmp_path / "c.onnx", size=16, vector=False)
    with pytest.raises(BmbenchError, match="not one vector per image"):
        parse_encoder({"kind": "onnx", "path": str(cube), "input_size": 16}, CTX).open()
    with pytest.raises(BmbenchError, match="has no output 'emb'; its outputs: features"):
        parse_encoder({**fixed, "input_size": 16, "output": "emb"}, CTX).open()
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a model")
    with pytest.raises(BmbenchError, match="not a loadable ONNX model"):
        parse_encoder({"kind": "onnx", "path": str(junk), "input_size": 16}, CTX).open()
    with pytest.raises(RecipeError, match="mean and std"):
        parse_encoder({**fixed, "mean": [0.5, 0.5, 0.5]}, CTX)


def test_onnx_scaling_matches_the_declaration(tmp_path):
    enc = parse_encoder({"kind": "onnx", "path": str(tiny_onnx(tmp_path / "a.onnx")), "input_size": 16,
                         "range": [0, 1], "mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25],
                         "layout": "NHWC"}, CTX).open()
    x = enc.prepare(np.full((1, 16, 16, 3), 255, np.uint8))
    assert np.allclose(x, (1.0 - 0.5) / 0.25)


def test_keras_files_load_in_safe_mode_only(tmp_path):
    lam = tiny_keras(tmp_path / "lambda.keras", lambda_layer=True)
    with pytest.raises(BmbenchError) as err:
        parse_encoder({"kind": "keras_file", "path": str(lam)}, CTX).open()
    assert "Lambda layer" in str(err.value) and "\n" not in str(err.value)
    plain = tiny_keras(tmp_path / "plain.keras")
    custom = tmp_path / "custom.keras"
    import zipfile

    with zipfile.ZipFile(plain) as src, zipfile.ZipFile(custom, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                config["config"]["layers"][-1]["module"] = "my_package.layers"
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    with pytest.raises(BmbenchError, match="custom object my_package.layers"):
        parse_encoder({"kind": "keras_file", "path": str(custom)}, CTX).open()
    notzip = tmp_path / "x.keras"
    notzip.write_text("hello")
    with pytest.raises(BmbenchError, match="not a Keras 3 model file"):
        parse_encoder({"kind": "keras_file", "path": str(notzip)}, CTX).open()


def test_keras_file_outputs_and_scratch_copies(tmp_path):
    vec = parse_encoder({"kind": "keras_file", "path": str(tiny_keras(tmp_path / "v.keras", vector=True))},
                        CTX).open()
    assert vec.output_rank == 2 and vec.input_size is None
    pretrained = vec.build("imagenet", 32, 0).get_weights()
    a, b = vec.build("none", 32, 3).get_weights(), vec.build("none", 32, 3).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))  # seeded
    assert not all(np.array_equal(x, y) for x, y in zip(a, pretrained) if x.ndim == 4)
    assert vec.identity("none", 3) != vec.identity("imagenet", 3)


def test_run_encoders_need_a_network(tmp_path):
    classical = tiny_run(tmp_path / "runs" / "20260101T000000Z-xgb-aaaaaa", family="classical")
    with pytest.raises(BmbenchError, match="classical run, which has no network; give a cnn or transfer run"):
        parse_encoder({"kind": "run", "run": str(classical)}, CTX).open()
    folds = tiny_run(tmp_path / "runs" / "20260101T000000Z-cv-bbbbbb", n_folds=5)
    with pytest.raises(BmbenchError, match="has 5 folds"):
        parse_encoder({"kind": "run", "run": str(folds)}, CTX).open()
    enc = parse_encoder({"kind": "run", "run": str(tiny_run(tmp_path / "r" / "x"))}, CTX).open()
    with pytest.raises(BmbenchError, match="set dataset.image_size to 32"):
        enc.check_size(64)


def test_run_encoders_are_found_by_id_or_recipe_name(encoder_files, tmp_path):
    results = str(encoder_files["run"].parent.parent)
    for ref in ("20260101T000000Z-pre-abc123", "20260101T", "pre"):
        enc = parse_encoder({"kind": "run", "run": ref, "results": results}, CTX).open()
        assert enc.folder == encoder_files["run"]


def test_unknown_backbones_and_kinds_are_one_line(tmp_path):
    with pytest.raises(RecipeError, match="did you mean 'DenseNet121'"):
        parse_encoder("DenseNet12", CTX)
    with pytest.raises(RecipeError, match=r"backbone: \{kind: onnx, path: m.onnx\}"):
        parse_encoder("m.onnx", CTX)
    with pytest.raises(RecipeError, match="unknown encoder kind 'onxx' \\(did you mean 'onnx'\\?\\)"):
        parse_encoder({"kind": "onxx"}, CTX)
    with pytest.raises(RecipeError, match="model.backbone.path: required key is missing"):
        parse_encoder({"kind": "onnx"}, CTX)
