import numpy as np
import pandas as pd
import pytest

from bmbench.audit import leak as L
from bmbench.audit.core import audit_cache, audit_table, decide
from bmbench.data import load_dataset
from bmbench.data.table import make_table
from bmbench.config.recipe import SplitSpec, dataset_spec
from bmbench.data.splits import Fold, Split, make_split

from .conftest import family_dataset


def grouped_table(tmp_path, n=40):
    root = tmp_path / "g"
    rows = []
    for i in range(n):
        rel = f"x/img_{i:03d}.png"  # table rows sort by path: row i is image i
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"x" * (i + 1))
        rows.append({"relpath": rel, "label": f"c{i % 2}", "group": f"p{i % 8}", "split": None})
    return make_table("folder", root, pd.DataFrame(rows))


def fake_split(folds):
    return Split("stratified", {}, "f" * 16, "d" * 16,
                 tuple(Fold(*(np.array(p, np.int64) for p in f)) for f in folds))


def test_compare_calls_a_gap_a_leak_only_beyond_noise():
    big = L.compare(L.LeakScore("a", "", 990, 1000), L.LeakScore("b", "", 600, 1000))
    assert big.leaks and np.isclose(big.gap, 0.39) and big.threshold == L.MIN_GAP
    small_n = L.compare(L.LeakScore("a", "", 9, 10), L.LeakScore("b", "", 6, 10))
    assert not small_n.leaks and small_n.threshold > 0.3  # 30 points on 10 images is noise
    tiny = L.compare(L.LeakScore("a", "", 530, 1000), L.LeakScore("b", "", 500, 1000))
    assert not tiny.leaks


def test_nn_correct_uses_the_reference_rows_and_skips_unreadable():
    x = np.array([[0.0], [10.0], [0.1], [9.9], [np.nan]])
    y = np.array([0, 1, 0, 1, 1])
    assert L.nn_correct(x, y, np.array([0, 1]), np.array([2, 3, 4])) == (2, 2)
    assert L.nn_correct(x, np.array([0, 1, 1, 0, 0]), np.array([0, 1]), np.array([2, 3])) == (0, 2)


def test_patient_overlap_is_found_when_a_split_ignores_groups(tmp_path):
    t = grouped_table(tmp_path)
    leaky = make_split(t, SplitSpec(strategy="stratified", test=0.25, val=0.0))
    overlaps = L.group_overlaps(t, leaky)
    assert overlaps and overlaps[0]["parts"] == "train/test"
    assert set(overlaps[0]["groups"]) <= {f"p{i}" for i in range(8)}
    honest = make_split(t, SplitSpec(strategy="grouped", test=0.25, val=0.1))
    assert L.group_overlaps(t, honest) == []
    by_hand = fake_split([([0, 1, 2], [3], [8, 11])])  # rows 0 and 8 share p0, 3 and 11 share p3
    assert L.group_overlaps(t, by_hand) == [{"fold": 0, "parts": "train/test", "groups": ["p0"]},
                                            {"fold": 0, "parts": "val/test", "groups": ["p3"]}]


def test_part_summaries_count_images_groups_and_classes(tmp_path):
    t = grouped_table(tmp_path)
    s = L.part_summaries(t, fake_split([([0, 1, 2, 3], [], [4, 5, 6])]))
    assert [(p.part, p.images, p.groups) for p in s] == [("train", 4, 4), ("test", 3, 3)]
    assert s[0].class_counts == {"c0": 2, "c1": 2} and s[1].class_counts == {"c0": 2, "c1": 1}


def test_test_rows_with_copies_in_training_per_fold():
    clusters = np.array([0, 1, 2, 0, 1, 3, 3])
    split = fake_split([([0, 1], [2], [3, 4, 5, 6]), ([3, 5], [], [0, 1, 6])])
    got = L.rows_with_training_copies(clusters, split)
    assert got[0].tolist() == [3, 4] and got[1].tolist() == [0, 6]


def test_merged_groups_join_clusters_and_patients_transitively(tmp_path):
    t = grouped_table(tmp_path, n=16)  # rows i and i+8 share patient p(i % 8)
    clusters = np.arange(16)
    clusters[1] = 0  # row 1 copies row 0
    g = L.merged_groups(t, clusters)
    assert g[0] == g[1] == g[8] == g[9]  # 0~1 by copy, 0~8 and 1~9 by patient
    assert len(set(g)) == 7
    no_groups = L.merged_groups(make_table("folder", t.root, t.frame[["relpath", "label"]]), clusters)
    assert no_groups[0] == no_groups[1] and len(set(no_groups)) == 15


@pytest.fixture(scope="module")
def families(tmp_path_factory):
    base = tmp_path_factory.mktemp("families")
    out = {}
    for leaky in (True, False):
        root = family_dataset(base / f"folder-{leaky}", base, leaky)
        out[leaky] = load_dataset(dataset_spec({"kind": "folder", "root": str(root)}))
    return base, out


def test_leak_score_gap_on_a_planted_leaky_set_and_none_on_a_clean_set(families):
    base, tables = families
    spec = SplitSpec(folds=4)
    leaky = audit_table(tables[True], spec, cache=audit_cache(base / "cache"))
    recipe, grouped = leaky.leak["scores"]
    assert recipe.accuracy >= 0.95 and grouped.accuracy <= 0.7
    assert leaky.leak["comparison"].leaks and leaky.verdict.level == "leak"
    assert "LEAK" in leaky.verdict.line and "split.group_by: near_duplicates" in leaky.verdict.line
    assert leaky.n_test_with_copies >= 0.9 * len(tables[True])
    clean = audit_table(tables[False], spec, cache=audit_cache(base / "cache"))
    recipe, grouped = clean.leak["scores"]
    assert recipe.accuracy <= 0.7 and abs(recipe.accuracy - grouped.accuracy) < 0.1
    assert not clean.leak["comparison"].leaks and clean.verdict.level == "ok"
    assert clean.pairs.empty and clean.n_test_with_copies == 0


def test_predefined_split_compares_a_random_resplit_of_its_training_part(tmp_path_factory):
    base = tmp_path_factory.mktemp("manifest")
    csv = family_dataset(base / "m", base, leaky=True, manifest_split=True)
    table = load_dataset(dataset_spec({"kind": "manifest", "root": str(csv)}))
    r = audit_table(table, SplitSpec(), cache=audit_cache(base / "cache"))
    names = [s.name for s in r.leak["scores"]]
    assert names == ["recipe", "random_resplit", "grouped_resplit"] and r.leak["predefined"]
    official, random, grouped = r.leak["scores"]
    assert official.n == 48  # the predefined test images
    assert random.accuracy >= 0.95 and grouped.accuracy <= 0.7 and official.accuracy <= 0.7
    assert r.leak["comparison"].leaks
    assert r.verdict.level == "ok"  # the official test images have no copies in training
    assert "random re-split of its training part LEAKS" in r.verdict.message


def test_verdict_levels():
    s = lambda name, c, n: L.LeakScore(name, name, c, n)
    plain = {"scores": [s("recipe", 50, 100), s("grouped", 50, 100)], "predefined": False}
    plain["comparison"] = L.compare(*plain["scores"])
    assert decide(plain, 0, 100, []).level == "ok"
    assert decide(plain, 3, 100, []).level == "caution"
    overlap = [{"fold": 0, "parts": "train/test", "groups": ["P7"]}]
    v = decide(plain, 0, 100, overlap)
    assert v.level == "leak" and "P7" in v.message
    pre = {"scores": [s("recipe", 55, 100), s("random_resplit", 99, 100), s("grouped_resplit", 50, 100)],
           "predefined": True}
    pre["comparison"] = L.compare(pre["scores"][1], pre["scores"][2])
    v = decide(pre, 2, 100, [])
    assert v.level == "caution" and "LEAKS" in v.message and "55.0% on the predefined test" in v.message


def test_a_split_that_cannot_keep_clusters_together_is_reported_not_fatal(tmp_path):
    from PIL import Image

    from bmbench.audit.descriptors import dihedral
    from bmbench.data.synthetic import render_cell

    for label, seed in (("a", 1), ("b", 2)):  # each class: the 8 flips/rotations of one cell
        (tmp_path / "d" / label).mkdir(parents=True)
        cell = render_cell("blast", np.random.default_rng(seed), 64).image
        for k, im in enumerate(dihedral(cell.transpose(2, 0, 1)).transpose(1, 2, 3, 0)):
            Image.fromarray(np.ascontiguousarray(im)).save(tmp_path / "d" / label / f"{k}.png")
    table = load_dataset(dataset_spec({"kind": "folder", "root": str(tmp_path / "d")}))
    r = audit_table(table, SplitSpec(), cache=audit_cache(tmp_path / "cache"))
    assert len(set(r.finding.clusters)) == 2
    recipe, grouped = r.leak["scores"]
    assert recipe.n == 4 and recipe.accuracy == 1.0
    assert grouped.n == 0 and "not possible" in grouped.description
    assert not r.leak["comparison"].possible and not r.leak["comparison"].leaks
    assert r.verdict.level == "caution" and "no leak score" in r.verdict.message
    assert r.leak["comparison"].as_dict()["gap"] is None
