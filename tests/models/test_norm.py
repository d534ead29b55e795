"""model.norm: the built Keras networks hold the normalisation layers the recipe names."""

import pytest

from bmbench.core.errors import RecipeError
from bmbench.models.families.cnn import build_cnn
from bmbench.models.norm import count_layers, replace_batchnorm
from bmbench.runs.runner import run_recipe

RECIPE = """
name: cnn_norm
dataset: {kind: synthetic, n_per_class: 6, render_size: 48, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: cnn, depth: 2, width: 8}
train: {epochs: 1, batch_size: 8}
"""


@pytest.mark.parametrize("norm, expected", [
    ("batch", {"BatchNormalization": 6}), ("group", {"GroupNormalization": 6}),
    ("layer", {"GroupNormalization": 6}), ("none", {}),
])
def test_small_cnn_has_the_norm_layers_the_recipe_names(norm, expected):
    model = build_cnn(32, 3, depth=3, width=8, norm=norm, norm_groups=4)
    counts = count_layers(model)
    norms = {k: v for k, v in counts.items() if "Normalization" in k}
    assert norms == expected and counts["Conv2D"] == 6
    convs = [layer for layer in model.layers if type(layer).__name__ == "Conv2D"]
    assert all(c.use_bias == (norm == "none") for c in convs), "a bias only where nothing normalises"
    groups = {layer.groups for layer in model.layers if type(layer).__name__ == "GroupNormalization"}
    assert groups == {"group": {4}, "layer": {1}}.get(norm, set())


def test_default_network_is_unchanged():
    names = [layer.name for layer in build_cnn(32, 3, depth=2, width=8).layers]
    assert names[2:5] == ["block1_conv1", "block1_bn1", "block1_relu1"], "saved models keep their layer names"


def test_cnn_run_trains_the_network_the_recipe_names(tmp_path, monkeypatch):
    from bmbench.core.loaders import load_keras

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE)
    run = run_recipe(recipe, tmp_path / "results", ("model.norm=group", "model.norm_groups=2"))
    model = load_keras(run / "model" / "model.keras")
    counts = count_layers(model)
    assert counts.get("GroupNormalization") == 4 and "BatchNormalization" not in counts
    assert {layer.groups for layer in model.layers if type(layer).__name__ == "GroupNormalization"} == {2}
    assert "group norm" in (run / "run.json").read_text()


@pytest.mark.parametrize("norm", ["group", "layer", "none"])
def test_from_scratch_backbone_batchnorm_replaced(norm):
    import keras

    net = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    n_bn = count_layers(net)["BatchNormalization"]
    out = count_layers(replace_batchnorm(net, norm, 8))
    assert "BatchNormalization" not in out
    assert out.get({"none": "Identity"}.get(norm, "GroupNormalization")) == n_bn
    assert {k: v for k, v in out.items() if k not in ("GroupNormalization", "Identity")} == \
        {k: v for k, v in count_layers(net).items() if k != "BatchNormalization"}, "every other layer kept"


def test_backbone_without_batchnorm_is_one_line():
    import keras

    inputs = keras.Input((8, 8, 3))
    net = keras.Model(inputs, keras.layers.Conv2D(4, 3)(inputs), name="plain")
    with pytest.raises(ValueError, match="plain has no BatchNormalization layers to replace; use norm: batch"):
        replace_batchnorm(net, "group", 8)


def test_transfer_from_scratch_trains_group_norm(tmp_path, monkeypatch):
    from bmbench.core.loaders import load_keras

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    recipe = tmp_path / "r.yaml"
    recipe.write_text(RECIPE.replace("{family: cnn, depth: 2, width: 8}",
                                     "{family: transfer, backbone: MobileNetV2, weights: none, norm: group}"))
    run = run_recipe(recipe, tmp_path / "results")
    counts = count_layers(load_keras(run / "model" / "model.keras"))
    assert counts.get("GroupNormalization", 0) > 40 and "BatchNormalization" not in counts
    with pytest.raises(RecipeError, match="norm: group replaces the BatchNorm layers"):
        run_recipe(recipe, tmp_path / "results", ("model.weights=imagenet",))
