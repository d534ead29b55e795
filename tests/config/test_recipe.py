from pathlib import Path

import pytest

from bmbench.core.errors import RecipeError
from bmbench.config.recipe import load_recipe, recipe_from_dict, dump_recipe

BASE = """
name: demo
dataset:
  kind: synthetic
  n_per_class: 10
  image_size: 32
model:
  family: baseline
  pixels: 8
"""


def write(tmp_path: Path, text: str, name: str = "r.yaml") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def test_valid_recipe_becomes_typed_objects(tmp_path):
    r = load_recipe(write(tmp_path, BASE))
    assert r.name == "demo"
    assert r.dataset.image_size == 32
    assert r.dataset.options.n_per_class == 10
    assert r.model.options.pixels == 8
    assert r.split.strategy == "auto" and r.split.test == 0.2
    assert r.train.class_weight == "balanced"


def test_resolved_recipe_round_trips(tmp_path):
    import yaml
    r = load_recipe(write(tmp_path, BASE))
    again = recipe_from_dict(yaml.safe_load(dump_recipe(r)), "again")
    drop = lambda d: {k: v for k, v in d.items() if k != "source"}
    assert drop(again.to_dict()) == drop(r.to_dict())
    assert again.fingerprint() == r.fingerprint()


@pytest.mark.parametrize("patch, message", [
    ("modle: {}", "modle: unknown key (did you mean 'model'?)"),
    ("seed: abc", "seed: expected an integer, got 'abc'"),
    ("seed: -1", "seed: value -1 is out of range; it must be >= 0"),
    ("split: {test: 1.5}", "split.test: value 1.5 is out of range; it must be < 1.0"),
    ("split: {strategy: stratifed}", "did you mean 'stratified'"),
    ("train: {epochs: 2.5}", "train.epochs: expected an integer"),
    ("train: [1, 2]", "train: expected a mapping"),
])
def test_errors_name_the_file_and_key(tmp_path, patch, message):
    path = write(tmp_path, BASE + patch + "\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert str(path) in str(exc.value)
    assert message in str(exc.value)


def test_deep_training_keys(tmp_path):
    r = load_recipe(write(tmp_path, BASE + "train: {augment: [flip, hue], mixed_precision: off, "
                                          "deterministic: true, jit_compile: true}\n"))
    t = r.train
    assert t.augment == ("flip", "hue") and t.deterministic and t.jit_compile
    assert t.mixed_precision is False, "YAML reads an unquoted off as false; bmbench treats it as 'off'"
    assert load_recipe(write(tmp_path, BASE + "train: {mixed_precision: 'on'}\n")).train.mixed_precision == "on"
    defaults = load_recipe(write(tmp_path, BASE)).train
    assert (defaults.augment, defaults.mixed_precision, defaults.deterministic, defaults.jit_compile) == (
        ("flip", "rotate90"), "auto", False, False)


@pytest.mark.parametrize("patch, message", [
    ("train: {mixed_precision: half}", "train.mixed_precision: invalid value 'half' (str); expected 'auto', 'on', 'off' or bool"),
    ("train: {deterministic: 1}", "train.deterministic: expected true or false"),
    ("train: {augment: [none, hue]}", "train.augment: 'none' cannot be combined"),
    ("train: {augment: [flips]}", "train.augment[0]: unknown value 'flips' (did you mean 'flip'?)"),
])
def test_deep_training_keys_are_validated(tmp_path, patch, message):
    path = write(tmp_path, BASE + patch + "\n")
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert str(path) in str(exc.value) and message in str(exc.value)


def test_family_and_kind_options_are_validated(tmp_path):
    with pytest.raises(RecipeError, match=r"model.pixls: unknown key \(did you mean 'pixels'\?\)"):
        load_recipe(write(tmp_path, BASE.replace("pixels: 8", "pixls: 8")))
    with pytest.raises(RecipeError, match=r"model.pixels: value 1 is out of range"):
        load_recipe(write(tmp_path, BASE.replace("pixels: 8", "pixels: 1")))
    with pytest.raises(RecipeError, match=r"dataset.kind: unknown dataset kind 'synthetc' \(did you mean 'synthetic'\?\)"):
        load_recipe(write(tmp_path, BASE.replace("kind: synthetic", "kind: synthetc")))
    with pytest.raises(RecipeError, match=r"model.family: unknown model family 'baseline2'"):
        load_recipe(write(tmp_path, BASE.replace("family: baseline", "family: baseline2")))


@pytest.mark.parametrize("content, message", [
    (b"", "recipe is empty"),
    (b"\xff\xfe\x00bad", "not UTF-8"),
    (b"- a\n- b\n", "must be a mapping"),
    (b"name: [unclosed\n", r"invalid YAML .*a \[list\] is not closed"),
    (b"name: x\ndataset:\n  kind: pbc\n root: a\n", r":4: invalid YAML .*indented differently"),
    (b"name: x\ndataset:\n\tkind: pbc\n", "indent with spaces, not tabs"),
    (b"name: x: y\n", "put it in quotes"),
    (b"a: &x [1, 2]\nb: *x\n", "aliases"),
])
def test_unreadable_recipes(tmp_path, content, message):
    p = tmp_path / "bad.yaml"
    p.write_bytes(content)
    with pytest.raises(RecipeError, match=message) as exc:
        load_recipe(p)
    assert str(p) in str(exc.value)


def test_missing_recipe_file(tmp_path):
    with pytest.raises(RecipeError, match="recipe file not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_extends_merges_and_detects_cycles(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\nname: child\nmodel: {pixels: 4}\n", "child.yaml")
    r = load_recipe(child)
    assert r.name == "child" and r.model.options.pixels == 4 and r.model.family == "baseline"
    write(tmp_path, "extends: b.yaml\n", "a.yaml")
    write(tmp_path, "extends: a.yaml\n", "b.yaml")
    with pytest.raises(RecipeError, match="cycle"):
        load_recipe(tmp_path / "a.yaml")


def test_extends_with_another_kind_or_family_drops_the_base_specifics(tmp_path):
    write(tmp_path, BASE, "base.yaml")
    child = write(tmp_path, "extends: base.yaml\ndataset: {kind: pbc, root: data}\n"
                            "model: {family: classical}\n", "child.yaml")
    r = load_recipe(child)
    assert r.dataset.kind == "pbc" and r.dataset.image_size == 32
    assert "n_per_class" not in r.dataset.options.__dict__ and r.model.family == "classical"
    same = write(tmp_path, "extends: base.yaml\ndataset: {kind: synthetic}\n", "same.yaml")
    assert load_recipe(same).dataset.options.n_per_class == 10


def test_env_expansion_and_relative_paths(tmp_path, monkeypatch):
    monkeypatch.setenv("BMB_DATA", str(tmp_path / "data"))
    r = load_recipe(write(tmp_path, BASE.replace("image_size: 32", "image_size: 32\n  root: ${BMB_DATA}/x")))
    assert r.dataset.root == str(tmp_path / "data" / "x")
    sub = tmp_path / "recipes"
    sub.mkdir()
    r = load_recipe(write(sub, BASE.replace("image_size: 32", "image_size: 32\n  root: ../imgs")))
    assert r.dataset.root == str((tmp_path / "imgs").resolve())
    monkeypatch.delenv("BMB_DATA")
    with pytest.raises(RecipeError, match=r"dataset.root: environment variable \$\{BMB_DATA\} is not set"):
        load_recipe(write(tmp_path, BASE.replace("image_size: 32", "image_size: 32\n  root: ${BMB_DATA}")))


def test_set_overrides(tmp_path, monkeypatch):
    path = write(tmp_path, BASE)
    r = load_recipe(path, ["dataset.image_size=48", "split.test=0.3", "train.class_weight=none"])
    assert (r.dataset.image_size, r.split.test, r.train.class_weight) == (48, 0.3, "none")
    monkeypatch.chdir(tmp_path)
    r = load_recipe(path, ["dataset.kind=pbc", "dataset.root=imgs"])
    assert r.dataset.kind == "pbc" and r.dataset.root == str(tmp_path / "imgs")
    assert r.dataset.image_size == 32, "common keys survive a change of kind"
    with pytest.raises(RecipeError, match="expected KEY.PATH=VALUE"):
        load_recipe(path, ["dataset.image_size"])
    with pytest.raises(RecipeError, match=r"with --set overrides\): dataset.image_size: value 2 is out of range"):
        load_recipe(path, ["dataset.image_size=2"])


def test_name_defaults_to_file_stem_and_is_checked(tmp_path):
    r = load_recipe(write(tmp_path, BASE.replace("name: demo\n", ""), "my_recipe.yaml"))
    assert r.name == "my_recipe"
    with pytest.raises(RecipeError, match="name: invalid value 'a b'"):
        load_recipe(write(tmp_path, BASE.replace("name: demo", "name: a b")))


def test_shipped_recipes_are_valid():
    root = Path(__file__).resolve().parents[2] / "recipes"
    recipes = sorted(root.rglob("*.yaml"))
    assert recipes
    for p in recipes:
        if "ablations" not in p.parts:
            load_recipe(p)


from hypothesis import given, settings, strategies as st

_scalars = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6),
                     st.floats(allow_nan=True), st.text(max_size=12))
_values = st.recursive(_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=10), inner, max_size=4)), max_leaves=12)
_keys = st.sampled_from(["name", "dataset", "model", "split", "train", "seed", "kind", "family",
                         "image_size", "test", "pixels", "features", "extends", "x"])


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(_keys, _values, max_size=6),
       st.dictionaries(_keys, _values, max_size=4), st.dictionaries(_keys, _values, max_size=4))
def test_any_mapping_gives_a_recipe_or_a_recipe_error(top, dataset, model):
    raw = dict(top)
    if dataset:
        raw["dataset"] = {"kind": "synthetic", **dataset}
    if model:
        raw["model"] = {"family": "baseline", **model}
    try:
        recipe = recipe_from_dict(raw, "fuzz.yaml")
    except RecipeError as exc:
        assert str(exc).startswith("fuzz.yaml") and "\n" not in str(exc)
    else:
        assert recipe.dataset.kind == "synthetic" and recipe.model.family == "baseline"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=200))
def test_any_text_file_gives_a_recipe_or_a_recipe_error(tmp_path_factory, text):
    p = tmp_path_factory.mktemp("fuzz") / "r.yaml"
    p.write_text(text, encoding="utf-8")
    try:
        load_recipe(p)
    except RecipeError as exc:
        assert str(p) in str(exc) and "\n" not in str(exc)


# --- evaluate[i].adapt (few-shot adaptation) ------------------------------------------------

CROSS = BASE + """evaluate:
  - {kind: synthetic, n_per_class: 6, generator_seed: 9}
"""


def test_adapt_is_a_typed_evaluate_key_and_k_zero_keeps_the_fingerprint(tmp_path):
    from bmbench.config.recipe import AdaptSpec

    plain = load_recipe(write(tmp_path, CROSS))
    assert plain.evaluate[0].adapt == AdaptSpec(0, 0) and "adapt" not in plain.to_dict()["evaluate"][0]
    zero = load_recipe(write(tmp_path, CROSS.replace("seed: 9}", "seed: 9, adapt: {n_per_class: 0, seed: 4}}")))
    assert zero.fingerprint() == plain.fingerprint() and dump_recipe(zero) == dump_recipe(plain)
    ten = load_recipe(write(tmp_path, CROSS.replace("seed: 9}", "seed: 9, adapt: {n_per_class: 10}}")))
    assert ten.evaluate[0].adapt == AdaptSpec(10, 0) and ten.fingerprint() != plain.fingerprint()
    assert ten.to_dict()["evaluate"][0]["adapt"] == {"n_per_class": 10, "seed": 0}
    again = recipe_from_dict(ten.to_dict(), "again")
    assert again.fingerprint() == ten.fingerprint() and again.evaluate[0].adapt.n_per_class == 10


def _pinned_fingerprint(recipe):
    """The fingerprint with the data roots pinned: shipped roots are relative to the recipe file,
    so their resolved form (and a plain fingerprint) depends on where the checkout lives."""
    raw = recipe.to_dict()
    raw["dataset"]["root"] = "/data/pbc"
    for entry in raw["evaluate"]:
        entry["root"] = "/data/matek_bm"
    return recipe_from_dict(raw, "pinned").fingerprint()


def test_shipped_recipes_without_adapt_keep_their_fingerprints():
    """Fingerprints from before ``adapt`` and the pixel-size keys existed (the code and recipe of
    a24000f give 5cb8f2b1a63f7278 with the same roots; the shipped recipes have since gained their
    normalisation steps)."""
    root = Path(__file__).resolve().parents[2] / "recipes"
    plain = ["dataset.preprocess=[]"]
    assert _pinned_fingerprint(load_recipe(root / "cross_pbc_to_matek.yaml", plain)) == "5cb8f2b1a63f7278"
    fewshot = load_recipe(root / "cross_pbc_to_matek_fewshot.yaml")
    assert fewshot.evaluate[0].adapt.n_per_class == 10 and fewshot.evaluate[0].root.endswith("matek_bm")
    zero = load_recipe(root / "cross_pbc_to_matek_fewshot.yaml", ["evaluate.0.adapt.n_per_class=0", *plain])
    assert _pinned_fingerprint(zero) == "5cb8f2b1a63f7278"


@pytest.mark.parametrize("adapt, message", [
    ("{n_per_class: -1}", "evaluate[0].adapt.n_per_class: value -1 is out of range; it must be >= 0"),
    ("{n_per_class: 2.5}", "evaluate[0].adapt.n_per_class: expected an integer"),
    ("{n_per_class: true}", "evaluate[0].adapt.n_per_class: expected an integer"),
    ("{n_per_class: 3, seed: -2}", "evaluate[0].adapt.seed: value -2 is out of range"),
    ("{k: 3}", "evaluate[0].adapt.k: unknown key; valid keys here: n_per_class, repeat, seed, transductive"),
    ("10", "evaluate[0].adapt: expected a mapping"),
])
def test_adapt_errors_name_the_key(tmp_path, adapt, message):
    path = write(tmp_path, CROSS.replace("seed: 9}", f"seed: 9, adapt: {adapt}}}"))
    with pytest.raises(RecipeError) as exc:
        load_recipe(path)
    assert str(exc.value).startswith(str(path)) and message in str(exc.value)


def test_adapt_is_refused_under_dataset(tmp_path):
    path = write(tmp_path, BASE.replace("  image_size: 32", "  image_size: 32\n  adapt: {n_per_class: 5}"))
    with pytest.raises(RecipeError, match=r"dataset.adapt: adapt draws labelled images of an evaluation "
                                          r"set .* give it in an evaluate entry"):
        load_recipe(path)


def test_set_addresses_list_entries_and_creates_adapt(tmp_path, monkeypatch):
    path = write(tmp_path, CROSS)
    r = load_recipe(path, ["evaluate.0.adapt.n_per_class=5", "evaluate.0.n_per_class=7"])
    assert r.evaluate[0].adapt.n_per_class == 5 and r.evaluate[0].options.n_per_class == 7
    assert load_recipe(path).with_overrides(["evaluate.0.adapt.seed=3"]).evaluate[0].adapt.seed == 3
    monkeypatch.chdir(tmp_path)
    moved = load_recipe(path, ["evaluate.0.kind=folder", "evaluate.0.root=lab"])
    assert moved.evaluate[0].root == str(tmp_path / "lab"), "relative like dataset.root"
    for override, message in (("evaluate.1.adapt.n_per_class=5", "'evaluate' is a list of 1 entry; '1' is not"),
                              ("evaluate.x.root=a", "'x' is not one of its indices"),
                              ("evaluate.0=3", "'evaluate' is a list; set a key of one entry")):
        with pytest.raises(RecipeError, match=message):
            load_recipe(path, [override])
    with pytest.raises(RecipeError, match="the recipe has no 'evaluate' list"):
        load_recipe(write(tmp_path, BASE), ["evaluate.0.adapt.n_per_class=5"])


def test_unknown_key_hints_leave_out_internal_keys():
    with pytest.raises(RecipeError) as err:
        recipe_from_dict({"name": "x", "dataset": {"kind": "synthetic"}, "model": {"family": "baseline"},
                          "sorce": 1})
    assert "valid keys here: dataset, description, evaluate, model, name, predict, repeats, seed, split, train" in str(err.value)
    assert "source" not in str(err.value).split("valid keys here:")[1]


# --- dataset.positive_class ---------------------------------------------------------------

def test_positive_class_is_typed_absent_when_unset_and_checked_against_the_data(tmp_path, monkeypatch):
    from bmbench.data import load_dataset

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    plain = load_recipe(write(tmp_path, BASE))
    assert plain.dataset.positive_class is None and "positive_class" not in plain.to_dict()["dataset"]
    blast = load_recipe(write(tmp_path, BASE), ["dataset.positive_class=blast"])
    assert blast.to_dict()["dataset"]["positive_class"] == "blast"
    assert blast.fingerprint() != plain.fingerprint()
    assert recipe_from_dict(blast.to_dict(), "again").fingerprint() == blast.fingerprint()
    assert load_dataset(blast.dataset).classes[0] == "blast"
    wrong = load_recipe(write(tmp_path, BASE), ["dataset.positive_class=blasts"])
    with pytest.raises(RecipeError, match=r"dataset\.positive_class: 'blasts' is not a class of the data.*"
                                          r"did you mean 'blast'.*classes: blast, lymphocyte"):
        load_dataset(wrong.dataset)
    with pytest.raises(RecipeError, match=r"dataset\.positive_class: expected a string"):
        load_recipe(write(tmp_path, BASE), ["dataset.positive_class=[a]"])


def test_positive_class_belongs_to_the_run_not_to_an_evaluation(tmp_path):
    text = CROSS.replace("generator_seed: 9}", "generator_seed: 9, positive_class: blast}")
    with pytest.raises(RecipeError, match=r"evaluate\[0\]\.positive_class: evaluations are scored with "
                                          r"the run's dataset\.positive_class"):
        load_recipe(write(tmp_path, text))
