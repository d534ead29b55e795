"""Grad-CAM: the heatmap machinery on every model shape bmbench builds, and a trained small
CNN looking at the white cell of synthetic smears (whose generator knows where it is)."""

import cv2
import numpy as np
import pytest

from bmbench.data.synthetic import SYNTHETIC_CLASSES, render_cell
from bmbench.models.backbones import build_backbone, preprocess_for
from bmbench.models.families.cnn import build_cnn
from bmbench.models.gradcam import explain_images, feature_layer, heatmaps, overlay

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

SIZE = 48


def transfer_model(name, size=32, n_classes=3):
    import keras

    backbone = build_backbone(name, "none", size)
    inputs = keras.Input((size, size, 3))
    x = keras.layers.GlobalAveragePooling2D()(backbone(inputs, training=False))
    outputs = keras.layers.Dense(n_classes, activation="softmax")(keras.layers.Dropout(0.3)(x))
    return keras.Model(inputs, outputs), backbone.name


def test_the_small_cnn_is_explained_on_its_last_convolution_not_a_pooling():
    assert feature_layer(build_cnn(32, 3, depth=3, width=8)) == "block3_relu2"


@pytest.mark.parametrize("name", ["MobileNetV2", "EfficientNetB0", "ResNet50"])
@pytest.mark.parametrize("method", ["gradcam", "gradcam++"])
def test_a_nested_keras_applications_backbone_gives_maps_without_graph_errors(name, method):
    model, inner = transfer_model(name)
    assert feature_layer(model) == inner
    x = preprocess_for(name)(np.random.default_rng(0).uniform(0, 255, (3, 32, 32, 3)).astype(np.float32))
    maps = heatmaps(model, x, np.array([0, 1, 2]), method)
    assert maps.shape == (3, 32, 32) and maps.dtype == np.float32
    assert np.isfinite(maps).all() and maps.min() >= 0 and maps.max() <= 1


def test_unreadable_rows_get_nan_maps_and_no_target():
    model = build_cnn(32, 3, depth=2, width=8)
    images = np.zeros((2, 32, 32, 3), np.uint8)
    proba = np.array([[0.2, 0.7, 0.1], [np.nan] * 3])
    expl = explain_images(model, images, np.array([True, False]), proba)
    assert expl.target.tolist() == [1, -1]
    assert np.isfinite(expl.heatmaps[0]).all() and np.isnan(expl.heatmaps[1]).all()


def test_unknown_method_is_refused():
    with pytest.raises(ValueError, match="unknown heatmap method"):
        heatmaps(build_cnn(32, 3, depth=2, width=8), np.zeros((1, 32, 32, 3), np.float32), np.array([0]), "cam")


def test_overlay_is_the_image_size_and_red_where_the_map_is_high():
    image = np.full((40, 60, 3), 128, np.uint8)
    heat = np.zeros((8, 8), np.float32)
    heat[:, 4:] = 1.0
    out = overlay(image, heat)
    assert out.shape == image.shape
    assert out[20, 55, 0] > out[20, 55, 2] and out[20, 5, 2] > out[20, 5, 0]


def _cells(n_per_class, seed):
    rng = np.random.default_rng(seed)
    cells = [render_cell(label, rng, 96) for label in SYNTHETIC_CLASSES for _ in range(n_per_class)]
    x = np.stack([cv2.resize(c.image, (SIZE, SIZE), interpolation=cv2.INTER_AREA) for c in cells])
    masks = np.stack([cv2.resize(c.cell_mask.astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_NEAREST)
                      for c in cells]).astype(bool)
    y = np.repeat(np.arange(len(SYNTHETIC_CLASSES)), n_per_class)
    return x, y, masks


def test_a_trained_small_cnn_looks_at_the_white_cell():
    """Measured (CPU, seed 0): 60% of the Grad-CAM energy (58% Grad-CAM++) lies inside the
    white cell, which covers 15% of the image (the share of a uniform map)."""
    import keras

    keras.utils.set_random_seed(0)
    x, y, _ = _cells(40, seed=1)
    model = build_cnn(SIZE, len(SYNTHETIC_CLASSES), depth=3, width=16, dropout=0.2)
    model.compile(keras.optimizers.Adam(3e-3), "sparse_categorical_crossentropy", metrics=["accuracy"])
    model.fit(x.astype(np.float32), y, epochs=12, batch_size=32, verbose=0, shuffle=True)
    x_test, y_test, masks = _cells(10, seed=2)
    proba = model.predict(x_test.astype(np.float32), verbose=0)
    assert (proba.argmax(axis=1) == y_test).mean() > 0.6  # it learned something to explain
    for method in ("gradcam", "gradcam++"):
        maps = explain_images(model, x_test, np.ones(len(x_test), bool), proba, None, method).heatmaps
        inside = (maps * masks).sum(axis=(1, 2)) / np.maximum(maps.sum(axis=(1, 2)), 1e-9)
        uniform = masks.mean(axis=(1, 2))
        assert np.median(inside) > 2 * np.median(uniform)
        assert np.median(inside) > 0.4
