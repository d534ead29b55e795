"""train.fraction: a stratified, nested, deterministic share of the training images; the
validation and test images never change."""

import json

import numpy as np
import pandas as pd
import pytest

from bmbench.core.errors import RecipeError
from bmbench.config.recipe import load_recipe
from bmbench.runs.runner import run_recipe
from bmbench.data.splits import Fold, Split, subsample_train



def _split(labels):
    rows = np.arange(len(labels))
    return Split("stratified", {}, "fp", "data", (Fold(rows[:60], rows[60:70], rows[70:]),
                                                  Fold(rows[10:70], rows[:10], rows[70:])))


def test_subsample_is_stratified_nested_deterministic_and_keeps_val_and_test():
    labels = np.repeat(np.arange(4), 25)
    rng = np.random.default_rng(1)
    rng.shuffle(labels)
    split = _split(labels)
    assert subsample_train(split, labels, 1.0, 0) is split
    previous = None
    for fraction in (0.1, 0.25, 0.5, 0.9):
        cut = subsample_train(split, labels, fraction, (0, 3))
        assert cut.fingerprint == split.fingerprint
        for full, part in zip(split.folds, cut.folds):
            assert set(part.train) <= set(full.train)
            np.testing.assert_array_equal(part.val, full.val)
            np.testing.assert_array_equal(part.test, full.test)
            for c in range(4):
                n = int((labels[full.train] == c).sum())
                assert (labels[part.train] == c).sum() == max(1, int(np.ceil(round(fraction * n, 9))))
        if previous is not None:  # nested: a larger fraction contains the smaller one
            assert all(set(a.train) <= set(b.train) for a, b in zip(previous.folds, cut.folds))
        previous = cut
    again = subsample_train(split, labels, 0.5, (0, 3))
    np.testing.assert_array_equal(again.folds[0].train, subsample_train(split, labels, 0.5, (0, 3)).folds[0].train)
    other = subsample_train(split, labels, 0.5, (0, 4))  # another training seed, another subset
    assert not np.array_equal(other.folds[0].train, again.folds[0].train)
    # every class keeps at least one image, however small the fraction
    tiny = subsample_train(split, labels, 0.001, 0)
    assert sorted(np.unique(labels[tiny.folds[0].train])) == [0, 1, 2, 3] and len(tiny.folds[0].train) == 4


def test_runs_with_a_fraction_are_scored_on_the_same_test_images(recipe_path, tmp_path):
    path = recipe_path
    full = run_recipe(path, tmp_path / "r")
    half = run_recipe(path, tmp_path / "r", ("train.fraction=0.5",))
    fa, fb = (json.loads((f / "run.json").read_text()) for f in (full, half))
    assert fa["split_fingerprint"] == fb["split_fingerprint"]
    assert fb["n_train"] == 16 < fa["n_train"] == 28 and fa["n_val"] == fb["n_val"] and fa["n_test"] == fb["n_test"]
    assert "train 50%" in fb["settings"] and "train" not in fa["settings"]
    pa, pb = (pd.read_csv(f / "predictions.csv") for f in (full, half))
    assert pa["path"].tolist() == pb["path"].tolist()
    assert pa["true_label"].tolist() == pb["true_label"].tolist()
    assert fa["recipe_fingerprint"] != fb["recipe_fingerprint"]


@pytest.mark.parametrize("value", ["0", "1.5", "-0.2", "half"])
def test_fraction_outside_0_1_is_a_recipe_error(recipe_path, value):
    with pytest.raises(RecipeError, match="train.fraction"):
        load_recipe(recipe_path, [f"train.fraction={value}"])
