import importlib
import socket
from pathlib import Path

import numpy as np
import pytest

from bmbench.core.errors import BmbenchError, RecipeError
from bmbench.models.backbones import (BACKBONES, build_backbone, get_backbone, keras_models_dir,
                                        preprocess_for, weights_identity)

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

FAST = ("MobileNetV3Small", "MobileNetV2", "InceptionV3", "ResNet50V2")
REPO = Path(__file__).resolve().parents[2]


def test_every_entry_names_a_real_constructor_and_preprocess():
    import keras

    issue = {"DenseNet121", "DenseNet169", "DenseNet201", "ResNet50", "ResNet101", "ResNet152",
             "ResNet50V2", "ResNet101V2", "ResNet152V2", "VGG16", "VGG19", "InceptionV3", "Xception",
             "MobileNetV2", "MobileNetV3Small", "MobileNetV3Large", "ConvNeXtTiny",
             *(f"EfficientNetB{i}" for i in range(8)),
             *(f"EfficientNetV2{v}" for v in ("B0", "B1", "B2", "B3", "S"))}
    assert set(BACKBONES) == issue
    for name, spec in BACKBONES.items():
        assert callable(getattr(keras.applications, spec.constructor)), name
        assert callable(spec.preprocess_input()), name
        assert 32 <= spec.min_size <= spec.default_size <= 600


def _check_builds(name):
    import keras

    spec = get_backbone(name)
    model = build_backbone(name, "none", spec.min_size)
    assert model.input_shape == (None, spec.min_size, spec.min_size, 3)
    features = model(keras.ops.convert_to_tensor(
        preprocess_for(name)(np.full((2, spec.min_size, spec.min_size, 3), 128.0, np.float32))))
    assert len(features.shape) == 4 and features.shape[0] == 2 and features.shape[-1] >= 256


@pytest.mark.parametrize("name", FAST)
def test_backbone_builds_at_its_minimum_size(name):
    _check_builds(name)


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(set(BACKBONES) - set(FAST)))
def test_every_backbone_builds_at_its_minimum_size(name):
    _check_builds(name)


def test_unknown_backbone_lists_the_known_ones():
    with pytest.raises(RecipeError, match=r"unknown backbone 'DenseNet12' \(did you mean 'DenseNet121'\?\); known: .*MobileNetV2"):
        get_backbone("DenseNet12")


def test_too_small_input_names_the_minimum():
    with pytest.raises(RecipeError, match=r"dataset.image_size: 64 px is below the minimum input size of InceptionV3 \(75 px\)"):
        build_backbone("InceptionV3", "none", 64)


def test_random_init_depends_only_on_the_seed():
    a = build_backbone("MobileNetV3Small", "none", 32, seed=1).get_weights()
    b = build_backbone("MobileNetV3Small", "none", 32, seed=1).get_weights()
    c = build_backbone("MobileNetV3Small", "none", 32, seed=2).get_weights()
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c))


def test_weights_file_is_loaded_and_checked(tmp_path):
    path = tmp_path / "mnv3.weights.h5"
    saved = build_backbone("MobileNetV3Small", "none", 32, seed=5)
    saved.save_weights(path)
    loaded = build_backbone("MobileNetV3Small", str(path), 48)  # weights do not depend on size
    assert all(np.array_equal(x, y) for x, y in zip(saved.get_weights(), loaded.get_weights()))
    assert weights_identity(str(path), 0).startswith("file:")
    assert weights_identity(str(path), 0) == weights_identity(str(path), 9)
    other = tmp_path / "mnv2.weights.h5"
    build_backbone("MobileNetV2", "none", 32).save_weights(other)
    with pytest.raises(BmbenchError, match=r"mnv2.weights.h5 does not match backbone MobileNetV3Small"):
        build_backbone("MobileNetV3Small", str(other), 32)
    with pytest.raises(BmbenchError, match=r"missing.weights.h5 does not exist"):
        build_backbone("MobileNetV3Small", str(tmp_path / "missing.weights.h5"), 32)
    (tmp_path / "w.pkl").write_bytes(b"x")
    with pytest.raises(BmbenchError, match=r"not a Keras weights file"):
        build_backbone("MobileNetV3Small", str(tmp_path / "w.pkl"), 32)


def test_offline_imagenet_names_the_file_to_place(tmp_path, monkeypatch):
    config = importlib.import_module("keras.src.backend.config")
    monkeypatch.setattr(config, "_KERAS_DIR", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise socket.gaierror(-2, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    assert keras_models_dir() == tmp_path / "keras" / "models"
    with pytest.raises(BmbenchError) as err:
        build_backbone("DenseNet121", "imagenet", 32)
    message = str(err.value)
    assert "\n" not in message
    assert ("place densenet121_weights_tf_dim_ordering_tf_kernels_notop.h5 (from https://"
            in message and f"in {tmp_path / 'keras' / 'models'}/" in message)
    assert "model.weights" in message and "none" in message


@pytest.mark.parametrize("name", ["DenseNet121", "ResNet50V2", "MobileNetV2", "MobileNetV3Small",
                                  "EfficientNetB0", "EfficientNetV2B0"])
def test_the_weights_file_pattern_is_the_name_keras_asks_for(name, monkeypatch):
    from fnmatch import fnmatch

    from keras.src.utils import file_utils

    asked = []

    def record(fname=None, origin=None, *args, **kwargs):
        asked.append(fname)
        raise RuntimeError("stop here")

    monkeypatch.setattr(file_utils, "get_file", record)
    with pytest.raises(RuntimeError, match="stop here"):
        get_backbone(name).build_fn()(include_top=False, weights="imagenet", input_shape=(32, 32, 3))
    assert asked and fnmatch(asked[-1], get_backbone(name).weights_file), (asked, get_backbone(name).weights_file)


def test_offline_imagenet_is_refused_before_anything_runs_unless_cached(tmp_path, monkeypatch):
    from bmbench.models.backbones import check_imagenet_available

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))

    def offline(*args, **kwargs):
        raise OSError(101, "Network is unreachable")

    monkeypatch.setattr(socket, "create_connection", offline)
    with pytest.raises(RecipeError) as err:
        check_imagenet_available("MobileNetV2")
    message = str(err.value)
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_*_no_top.h5" in message
    assert str(tmp_path / "keras" / "models") in message and "Network is unreachable" in message
    cached = tmp_path / "keras" / "models" / "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_224_no_top.h5"
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"")
    check_imagenet_available("MobileNetV2")  # in the cache: no error, no network needed


def test_validate_and_run_refuse_unreachable_imagenet_weights_at_once(tmp_path, monkeypatch):
    from click.testing import CliRunner

    from bmbench.cli import main

    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: (_ for _ in ()).throw(OSError(101, "down")))
    for command in ("validate", "run"):
        res = CliRunner().invoke(main, [command, str(REPO / "recipes" / "densenet_tl.yaml")])
        assert res.exit_code == 2 and "imagenet weights of DenseNet121 are not in" in res.output, res.output
    assert not (tmp_path / "results" / "runs").exists() or not list((tmp_path / "results" / "runs").iterdir())
