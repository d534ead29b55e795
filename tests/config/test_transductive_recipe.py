"""Recipe keys of issue 34: ``model.norm`` / ``norm_groups`` and ``evaluate[i].adapt.transductive``."""

from pathlib import Path

import pytest

from bmbench.config.recipe import INERT_MODEL_DEFAULTS, dump_recipe, load_recipe, recipe_from_dict
from bmbench.core.errors import RecipeError

ROOT = Path(__file__).resolve().parents[2] / "recipes"
CROSS = """
name: demo
dataset: {kind: synthetic, n_per_class: 10, image_size: 32}
model: {family: FAMILY}
evaluate:
  - {kind: synthetic, n_per_class: 6, generator_seed: 9ADAPT}
"""


def recipe(tmp_path, family="classical", adapt="", model=""):
    p = tmp_path / "r.yaml"
    p.write_text(CROSS.replace("FAMILY", family + model).replace("ADAPT", adapt))
    return p


def test_inert_defaults_keep_the_fingerprints(tmp_path):
    from bmbench.models.norm import DEFAULT_GROUPS

    assert INERT_MODEL_DEFAULTS == {"norm": "batch", "norm_groups": DEFAULT_GROUPS}
    for family in ("cnn", "classical"):
        plain = load_recipe(recipe(tmp_path, family))
        none = load_recipe(recipe(tmp_path, family, ", adapt: {transductive: none}"))
        assert none.fingerprint() == plain.fingerprint() and dump_recipe(none) == dump_recipe(plain)
    cnn = load_recipe(recipe(tmp_path, "cnn"))
    batch = load_recipe(recipe(tmp_path, "cnn", model=", norm: batch, norm_groups: 8"))
    assert batch.fingerprint() == cnn.fingerprint() and "norm" not in cnn.to_dict()["model"]
    # the shipped cross recipes: the fingerprints they had before these keys existed
    shipped = load_recipe(ROOT / "cross_pbc_to_matek.yaml", ["dataset.preprocess=[]"]).to_dict()
    shipped["dataset"]["root"], shipped["evaluate"][0]["root"] = "/data/pbc", "/data/matek_bm"
    assert recipe_from_dict(shipped, "pinned").fingerprint() == "5cb8f2b1a63f7278"


def test_set_keys_change_the_fingerprint_and_survive_a_round_trip(tmp_path):
    plain = load_recipe(recipe(tmp_path, "cnn"))
    group = load_recipe(recipe(tmp_path, "cnn", model=", norm: group, norm_groups: 4"))
    assert group.model.options.norm == "group" and group.fingerprint() != plain.fingerprint()
    assert group.to_dict()["model"]["norm_groups"] == 4
    assert recipe_from_dict(group.to_dict(), "again").fingerprint() == group.fingerprint()
    coral = load_recipe(recipe(tmp_path, "classical", ", adapt: {transductive: coral}"))
    assert coral.to_dict()["evaluate"][0]["adapt"] == {"transductive": "coral"}
    assert coral.fingerprint() != load_recipe(recipe(tmp_path)).fingerprint()
    both = load_recipe(recipe(tmp_path, "classical", ", adapt: {transductive: standardize, n_per_class: 3}"))
    assert both.to_dict()["evaluate"][0]["adapt"] == {"n_per_class": 3, "seed": 0, "transductive": "standardize"}
    assert recipe_from_dict(both.to_dict(), "again").evaluate[0].adapt == both.evaluate[0].adapt


@pytest.mark.parametrize("family, adapt, model, message", [
    ("classical", "adabn", "", "evaluate[0].adapt.transductive: adabn re-estimates BatchNorm statistics of "
                               "families cnn, transfer; family classical supports standardize, coral (or none)"),
    ("cnn", "coral", "", "coral aligns the covariance of handcrafted and embedding features of families "
                         "classical, hybrid; family cnn supports adabn (or none)"),
    ("baseline", "standardize", "", "family baseline supports no transductive mode"),
    ("cnn", "adabn", ", norm: group", "adabn re-estimates BatchNorm statistics, and model.norm: group has none"),
    ("cnn", "bn", "", "evaluate[0].adapt.transductive: invalid value 'bn'; choose one of"),
])
def test_transductive_modes_are_checked_against_the_family(tmp_path, family, adapt, model, message):
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe(tmp_path, family, f", adapt: {{transductive: {adapt}}}", model))
    assert message in str(exc.value) and "\n" not in str(exc.value)


@pytest.mark.parametrize("model, message", [
    (", norm: group, width: 12, norm_groups: 8", "norm_groups: 8 groups do not divide the 12 filters of width 12"),
    (", norm_groups: 4", "norm_groups: 4 is read by norm: group only (norm is batch)"),
    (", norm: instance", "model.norm: invalid value 'instance'; choose one of"),
    (", norm: group, norm_groups: 0", "model.norm_groups: value 0 is out of range"),
])
def test_cnn_norm_errors_name_the_key(tmp_path, model, message):
    with pytest.raises(RecipeError, match="model") as exc:
        load_recipe(recipe(tmp_path, "cnn", model=model))
    assert message in str(exc.value)


def test_transfer_norm_needs_weights_none(tmp_path):
    with pytest.raises(RecipeError) as exc:
        load_recipe(recipe(tmp_path, "transfer", model=", backbone: MobileNetV2, norm: group"))
    assert "norm: group replaces the BatchNorm layers that the pretrained weights (imagenet) need" in str(exc.value)
    ok = load_recipe(recipe(tmp_path, "transfer", model=", backbone: MobileNetV2, weights: none, norm: layer"))
    assert ok.model.options.norm == "layer"
