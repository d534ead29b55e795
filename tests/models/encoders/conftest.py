"""Tiny encoder files of every kind, made by the tests themselves (no model file is shipped)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest


def tiny_onnx(path: Path, size: int | None = 16, layout: str = "NHWC", dims: int = 4, output: str = "features",
              vector: bool = True, seed: int = 0) -> Path:
    """An ONNX encoder: mean over the image per channel, then a fixed 3 x dims matrix."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    side = size if size is not None else "S"  # None: a variable input size
    shape = ["N", side, side, 3] if layout == "NHWC" else ["N", 3, side, side]
    axes = [1, 2] if layout == "NHWC" else [2, 3]
    w = np.random.default_rng(seed).normal(size=(3, dims)).astype(np.float32)
    nodes = [helper.make_node("ReduceMean", ["images"], ["pooled"], axes=axes, keepdims=0),
             helper.make_node("MatMul", ["pooled", "w"], ["vec"])]
    if vector:
        nodes.append(helper.make_node("Identity", ["vec"], [output]))
        out_shape = ["N", dims]
    else:  # a (N, dims, 1) tensor: not one vector per image
        nodes.append(helper.make_node("Unsqueeze", ["vec", "axis"], [output]))
        out_shape = ["N", dims, 1]
    inits = [numpy_helper.from_array(w, "w"), numpy_helper.from_array(np.array([2], np.int64), "axis")]
    graph = helper.make_graph(nodes, "tiny", [helper.make_tensor_value_info("images", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info(output, TensorProto.FLOAT, out_shape)], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path


def tiny_keras(path: Path, vector: bool = False, lambda_layer: bool = False, seed: int = 0) -> Path:
    """A .keras encoder: RGB [0, 255] in (any size), a 4 x 4 feature map of 8 channels or an
    8-vector out."""
    import keras
    from keras import layers

    keras.utils.set_random_seed(seed)
    inputs = keras.Input((None, None, 3))
    x = layers.Rescaling(1 / 255.0)(inputs)
    if lambda_layer:
        x = layers.Lambda(lambda t: t * 2.0)(x)
    x = layers.Conv2D(8, 3, strides=2, padding="same")(x)
    x = layers.BatchNormalization()(x)
    x = layers.ReLU()(x)
    if vector:
        x = layers.GlobalAveragePooling2D()(x)
    model = keras.Model(inputs, x)
    path.parent.mkdir(parents=True, exist_ok=True)
    model.save(path)
    return path


def tiny_run(folder: Path, family: str = "cnn", size: int = 32, n_folds: int = 1) -> Path:
    """A stored run folder as bmbench writes it (run.json, model/model.keras + model.json)."""
    from bmbench.models.families.cnn import build_cnn
    from bmbench.models.keras_model import KerasClassifier

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "run.json").write_text(json.dumps({"id": folder.name, "family": family, "n_folds": n_folds}))
    (folder / "metrics.json").write_text("{}")
    if family == "cnn":
        KerasClassifier(("a", "b"), build_cnn(size, 2, depth=2, width=4), size).save(folder / "model")
    return folder


@pytest.fixture
def encoder_files(tmp_path):
    return {"onnx": tiny_onnx(tmp_path / "enc.onnx"), "keras_file": tiny_keras(tmp_path / "enc.keras"),
            "run": tiny_run(tmp_path / "results" / "runs" / "20260101T000000Z-pre-abc123")}
