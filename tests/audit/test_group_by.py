"""``split.group_by: near_duplicates``: near-duplicate clusters become split groups."""

import json

import numpy as np
import pytest

from bmbench.audit import split_groups
from bmbench.data.splits import recipe_split
from bmbench.audit.core import audit_cache
from bmbench.data import load_dataset
from bmbench.core.errors import BmbenchError, DatasetError, RecipeError
from bmbench.config.recipe import SplitSpec, dataset_spec, recipe_from_dict
from bmbench.data.splits import make_split

from .conftest import family_dataset


@pytest.fixture(scope="module")
def leaky(tmp_path_factory):
    base = tmp_path_factory.mktemp("groupby")
    root = family_dataset(base / "data", base, leaky=True, families=24)
    table = load_dataset(dataset_spec({"kind": "folder", "root": str(root)}))
    families = np.array([p.split("/")[1].split("_")[0] for p in table.frame["relpath"]])
    return base, root, table, families, split_groups(table, cache=audit_cache(base / "cache"))


def straddling(families, fold) -> set:
    parts = [set(families[getattr(fold, p)]) for p in ("train", "val", "test")]
    return (parts[0] & parts[1]) | (parts[0] & parts[2]) | (parts[1] & parts[2])


def test_groups_are_the_planted_families(leaky):
    _, _, table, families, groups = leaky
    assert len(set(groups)) == len(set(families)) == 24
    for f in set(families):
        assert len(set(groups[families == f])) == 1


@pytest.mark.parametrize("spec", [SplitSpec(group_by="near_duplicates", seed=s) for s in range(3)]
                         + [SplitSpec(group_by="near_duplicates", folds=4, val=0.1)])
def test_planted_augmented_copies_never_straddle_the_split(leaky, spec):
    _, _, table, families, groups = leaky
    split = make_split(table, spec, groups=groups)
    assert split.strategy == "grouped"
    for fold in split.folds:
        assert len(fold.test) and len(fold.train)
        assert straddling(families, fold) == set()


def test_a_random_split_of_the_same_data_does_straddle(leaky):
    _, _, table, families, _ = leaky
    split = make_split(table, SplitSpec())
    assert straddling(families, split.folds[0])  # what group_by prevents


def test_fingerprint_includes_group_by_and_the_groups(leaky, tmp_path):
    _, _, table, _, groups = leaky
    plain = make_split(table, SplitSpec(strategy="grouped"), groups=groups)
    by = make_split(table, SplitSpec(group_by="near_duplicates"), tmp_path, groups=groups)
    assert by.settings["group_by"] == "near_duplicates" and "groups" in by.settings
    assert by.fingerprint != plain.fingerprint != make_split(table, SplitSpec()).fingerprint
    renamed = np.array(["g" + g for g in groups])
    assert make_split(table, SplitSpec(group_by="near_duplicates"), groups=renamed).fingerprint == by.fingerprint
    other = groups.copy()
    other[0] = "somewhere-else"
    assert make_split(table, SplitSpec(group_by="near_duplicates"), groups=other).fingerprint != by.fingerprint
    again = make_split(table, SplitSpec(group_by="near_duplicates"), tmp_path, groups=groups)
    assert [f.test.tolist() for f in again.folds] == [f.test.tolist() for f in by.folds]
    assert "group_by" not in make_split(table, SplitSpec()).settings  # old fingerprints unchanged


def test_group_by_needs_groups_and_a_grouping_strategy(leaky):
    _, _, table, _, groups = leaky
    with pytest.raises(DatasetError, match="needs the near-duplicate groups"):
        make_split(table, SplitSpec(group_by="near_duplicates"))
    with pytest.raises(DatasetError, match="stratified cannot"):
        make_split(table, SplitSpec(group_by="near_duplicates", strategy="stratified"), groups=groups)


def test_recipe_key_is_validated():
    raw = {"name": "r", "dataset": {"kind": "synthetic"}, "model": {"family": "baseline"},
           "split": {"group_by": "near_duplicates"}}
    assert recipe_from_dict(raw).split.group_by == "near_duplicates"
    assert recipe_from_dict({**raw, "split": {}}).split.group_by == "none"
    with pytest.raises(RecipeError, match="split.group_by"):
        recipe_from_dict({**raw, "split": {"group_by": "patients"}})


def test_augmented_kind_may_be_resplit_honestly_without_allow_leaky(tmp_path, make_image):
    root = tmp_path / "bc4"
    for part, n in (("TRAIN", 6), ("TEST", 2)):
        for c in ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL"):
            for i in range(n):
                make_image(root / "images" / part / c / f"_{i}_{c}.jpeg", size=(40, 30), seed=hash((part, c, i)) % 999)
    table = load_dataset(dataset_spec({"kind": "bloodcells4", "root": str(root)}))
    groups = np.array([f"g{i}" for i in range(len(table))])
    with pytest.raises(BmbenchError, match="allow_leaky"):
        make_split(table, SplitSpec(strategy="stratified"))
    split = make_split(table, SplitSpec(strategy="grouped", group_by="near_duplicates", val=0.0), groups=groups)
    assert split.strategy == "grouped"
    assert make_split(table, SplitSpec(group_by="near_duplicates"), groups=groups).strategy == "predefined"


def test_runs_with_group_by_keep_copies_apart(leaky, monkeypatch):
    from bmbench.runs.runner import run_recipe

    base, root, table, families, _ = leaky
    monkeypatch.setenv("BMBENCH_CACHE", str(base / "cache"))
    raw = {"name": "grouped-run", "dataset": {"kind": "folder", "root": str(root), "image_size": 16},
           "model": {"family": "baseline", "pixels": 8}, "split": {"group_by": "near_duplicates"}}
    folder = run_recipe(recipe_from_dict(raw), base / "results")
    info = json.loads((folder / "run.json").read_text())
    assert info["split"]["group_by"] == "near_duplicates"
    split = recipe_split(table, recipe_from_dict(raw), base / "results" / "splits")
    assert split.fingerprint == info["split_fingerprint"]
    assert straddling(families, split.folds[0]) == set()
    tested = {p.split("/")[1].split("_")[0] for p in
              __import__("pandas").read_csv(folder / "predictions.csv")["path"]}
    trained = set(families[np.concatenate([split.folds[0].train, split.folds[0].val])])
    assert tested and not tested & trained
