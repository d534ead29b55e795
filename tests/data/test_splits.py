import json

import numpy as np
import pandas as pd
import pytest

from bmbench.data.table import make_table
from bmbench.core.errors import BmbenchError, DatasetError
from bmbench.config.recipe import SplitSpec
from bmbench.data.splits import make_split


def table(tmp_path, n_per_class=(30, 20, 10), groups=False, predefined=False, name="d"):
    root = tmp_path / name
    rows = []
    for c, n in enumerate(n_per_class):
        for i in range(n):
            rel = f"c{c}/img_{i:03d}.png"
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            (root / rel).write_bytes(b"x" * (i + 1))
            rows.append({"relpath": rel, "label": f"c{c}",
                         "group": f"p{i % 7}" if groups else None,
                         "split": ("test" if i % 4 == 0 else "train") if predefined else None})
    return make_table("folder", root, pd.DataFrame(rows))


def parts(split):
    f = split.folds[0]
    return set(f.train), set(f.val), set(f.test)


def test_stratified_split_is_disjoint_complete_and_stratified(tmp_path):
    t = table(tmp_path)
    s = make_split(t, SplitSpec(test=0.2, val=0.1))
    train, val, test = parts(s)
    assert not (train & val or train & test or val & test)
    assert train | val | test == set(range(len(t)))
    counts = np.bincount(t.labels[sorted(test)], minlength=3)
    assert counts.tolist() == [6, 4, 2]
    assert s.strategy == "stratified"


def test_same_data_and_settings_give_identical_test_set(tmp_path):
    a = make_split(table(tmp_path, name="a"), SplitSpec(seed=3))
    b = make_split(table(tmp_path, name="b"), SplitSpec(seed=3))
    assert a.fingerprint == b.fingerprint
    assert [x.tolist() for x in a.folds[0].__dict__.values()] == [x.tolist() for x in b.folds[0].__dict__.values()]


def test_different_seed_gives_different_split(tmp_path):
    t = table(tmp_path)
    a, b = make_split(t, SplitSpec(seed=0)), make_split(t, SplitSpec(seed=1))
    assert a.fingerprint != b.fingerprint
    assert set(a.folds[0].test) != set(b.folds[0].test)


def test_split_is_saved_and_read_back(tmp_path):
    t = table(tmp_path)
    store = tmp_path / "splits"
    s = make_split(t, SplitSpec(), store)
    saved = json.loads((store / f"{s.fingerprint}.json").read_text())
    assert saved["dataset_fingerprint"] == t.fingerprint
    assert sorted(saved["folds"][0]["test"]) == sorted(t.frame["relpath"][s.folds[0].test])
    again = make_split(t, SplitSpec(), store)
    assert again.folds[0].test.tolist() == s.folds[0].test.tolist()


def test_damaged_saved_split_is_refused_then_recomputed(tmp_path):
    t = table(tmp_path)
    store = tmp_path / "splits"
    s = make_split(t, SplitSpec(), store)
    path = store / f"{s.fingerprint}.json"
    path.write_text("{broken")
    with pytest.raises(BmbenchError, match=f"{s.fingerprint}.json: not valid JSON .*delete it"):
        make_split(t, SplitSpec(), store)
    path.unlink()
    assert make_split(t, SplitSpec(), store).folds[0].test.tolist() == s.folds[0].test.tolist()


def test_grouped_split_keeps_patients_on_one_side(tmp_path):
    t = table(tmp_path, groups=True)
    s = make_split(t, SplitSpec())
    assert s.strategy == "grouped"
    g = t.frame["group"].to_numpy()
    train, val, test = parts(s)
    assert not set(g[list(test)]) & set(g[list(train | val)])
    assert not set(g[list(val)]) & set(g[list(train)])


def test_predefined_split_and_val_carved_from_train(tmp_path):
    t = table(tmp_path, predefined=True)
    s = make_split(t, SplitSpec(val=0.1))
    assert s.strategy == "predefined"
    train, val, test = parts(s)
    assert test == set(np.flatnonzero(t.frame["split"] == "test"))
    assert val and not val & train
    assert "test" not in s.settings, "the test fraction does not affect a predefined split"


def test_kfold_covers_every_image_once(tmp_path):
    t = table(tmp_path)
    s = make_split(t, SplitSpec(folds=5))
    tests = np.concatenate([f.test for f in s.folds])
    assert sorted(tests.tolist()) == list(range(len(t)))
    for f in s.folds:
        assert not set(f.train) & set(f.test) and not set(f.val) & set(f.test)


def test_too_small_class_is_a_clear_error(tmp_path):
    t = table(tmp_path, n_per_class=(30, 1))
    with pytest.raises(DatasetError, match="class 'c1' has 1 image"):
        make_split(t, SplitSpec())


def test_strategy_mismatch_errors(tmp_path):
    with pytest.raises(DatasetError, match="no predefined split"):
        make_split(table(tmp_path), SplitSpec(strategy="predefined"))
    with pytest.raises(DatasetError, match="no patient/group ids"):
        make_split(table(tmp_path, name="e"), SplitSpec(strategy="grouped"))


def test_augmented_kind_refuses_a_random_resplit_unless_allowed(tmp_path):
    t = table(tmp_path, predefined=True)
    leaky = make_table("bloodcells4", t.root, t.frame[["relpath", "label", "group", "split"]])
    assert make_split(leaky, SplitSpec()).strategy == "predefined"
    with pytest.raises(DatasetError, match="augmented near-duplicates.*split.allow_leaky: true"):
        make_split(leaky, SplitSpec(strategy="stratified"))
    assert make_split(leaky, SplitSpec(strategy="stratified", allow_leaky=True)).strategy == "stratified"
