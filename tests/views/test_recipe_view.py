"""`bmbench validate` shows the recipe as its model family reads it, without contradictions;
the stored, fingerprinted recipe keeps every key."""

from pathlib import Path

import yaml
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.config.recipe import dump_recipe, load_recipe, recipe_from_dict
from bmbench.views.recipe import shown_recipe

RECIPES = Path(__file__).resolve().parents[2] / "recipes"


def _validate(*args) -> dict:
    res = CliRunner().invoke(main, ["validate", *map(str, args)])
    assert res.exit_code == 0, res.output
    return yaml.safe_load(res.output)


def test_an_xgboost_recipe_shows_its_classifier_once_and_no_training_schedule():
    shown = _validate(RECIPES / "xgb_handcrafted.yaml")
    model = shown["model"]
    assert model["classifier"]["early_stopping"] == 0  # what the fit uses
    for shorthand in ("early_stopping", "C", "n_estimators", "max_depth", "learning_rate"):
        assert shorthand not in model, shorthand
    assert set(shown["train"]) == {"class_weight", "jobs", "fraction"}
    assert "image_size" not in shown["dataset"]


def test_a_bare_classifier_name_shows_the_shorthands_it_reads_folded_in(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"extends: {RECIPES / 'xgb_handcrafted.yaml'}\n"
                      "model: {classifier: xgboost, n_estimators: 7}\n")
    assert _validate(recipe)["model"]["classifier"]["n_estimators"] == 7


def test_deep_families_show_the_whole_train_block_and_all_prints_every_key():
    assert "epochs" in _validate(RECIPES / "small_cnn.yaml")["train"]
    full = CliRunner().invoke(main, ["validate", str(RECIPES / "xgb_handcrafted.yaml"), "--all"])
    r = load_recipe(RECIPES / "xgb_handcrafted.yaml")
    assert full.output.split("\n", 1)[1] == dump_recipe(r)


def test_the_shown_recipe_reloads_to_the_same_method_and_fingerprints_stay():
    r = load_recipe(RECIPES / "xgb_handcrafted.yaml")
    again = recipe_from_dict(shown_recipe(r))
    assert again.model.options.classifier_options() == r.model.options.classifier_options()
    assert again.model.options.features == r.model.options.features
    # display only: the stored recipe and its fingerprint are those of before
    assert r.fingerprint() == "b66ca1de9a16c193"
    assert load_recipe(RECIPES / "small_cnn.yaml").fingerprint() == "380ee8626e05b55f"


def test_a_description_is_not_inherited_by_a_recipe_of_another_family(tmp_path):
    other = tmp_path / "other.yaml"
    other.write_text(f"extends: {RECIPES / 'small_cnn.yaml'}\nmodel: {{family: classical}}\n")
    same = tmp_path / "same.yaml"
    same.write_text(f"extends: {RECIPES / 'small_cnn.yaml'}\nname: same\n")
    own = tmp_path / "own.yaml"
    own.write_text(f"extends: {RECIPES / 'small_cnn.yaml'}\nmodel: {{family: classical}}\ndescription: mine\n")
    assert load_recipe(other).description == ""
    assert load_recipe(same).description == load_recipe(RECIPES / "small_cnn.yaml").description
    assert load_recipe(own).description == "mine"
    assert load_recipe(other).fingerprint() == "52cbd0f8dd405bf2"  # as before: description is not hashed


def test_a_cnn_shows_its_normalisation_though_the_default_is_left_out_of_the_fingerprint():
    assert _validate(RECIPES / "small_cnn.yaml")["model"]["norm"] == "batch"
    model = _validate(RECIPES / "small_cnn.yaml", "--set", "model.norm=group")["model"]
    assert (model["norm"], model["norm_groups"]) == ("group", 8)
    assert "norm" not in _validate(RECIPES / "xgb_handcrafted.yaml")["model"]
    assert "norm" not in load_recipe(RECIPES / "small_cnn.yaml").to_dict()["model"]  # fingerprint unchanged
