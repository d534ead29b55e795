import itertools

import numpy as np
import pytest

from bmbench.audit import neighbours as N
from bmbench.audit.descriptors import describe_files
from bmbench.core.cache import ArrayCache
from bmbench.data.duplicates import exact_duplicates

from .conftest import PLANTS


@pytest.fixture(scope="module")
def planted_finding(planted):
    from bmbench.data import load_dataset
    from bmbench.config.recipe import dataset_spec

    root, pairs = planted
    table = load_dataset(dataset_spec({"kind": "folder", "root": str(root)}))
    desc = describe_files(table.frame["path"].tolist())
    return table, desc, pairs, N.find_duplicates(desc, exact_duplicates(table))


def found_pairs(table, finding) -> dict[tuple[str, str], tuple[str, str]]:
    rel = table.frame["relpath"].to_numpy()
    return {tuple(sorted((rel[a], rel[b]))): (kind, evidence) for a, b, kind, evidence in
            finding.pairs[["a", "b", "kind", "evidence"]].itertuples(index=False)}


def test_every_planted_copy_is_found_with_the_right_kind_and_nothing_else(planted_finding):
    table, _, pairs, finding = planted_finding
    found = found_pairs(table, finding)
    expected = {tuple(sorted(p)): name for name, p in pairs.items()}
    assert set(found) == set(expected), (set(found) ^ set(expected))
    for key, name in expected.items():
        kind, evidence = found[key]
        assert kind == ("exact" if PLANTS[name][1] is None else "near"), name
    by_name = {name: found[tuple(sorted(p))][1] for name, p in pairs.items()}
    assert by_name["rot90"] == by_name["flip"] == by_name["jpeg"] == "hash"
    assert by_name["rotate20"] == by_name["crop"] == "keypoints"  # hash cannot see these


def test_clusters_join_copies_and_keep_distinct_cells_apart(planted_finding):
    table, _, pairs, finding = planted_finding
    index = {r: i for i, r in enumerate(table.frame["relpath"])}
    c = finding.clusters
    for a, b in pairs.values():
        assert c[index[a]] == c[index[b]]
    originals = [index[a] for a, _ in pairs.values()]
    assert len(set(c[originals])) == len(originals)
    sizes = finding.cluster_sizes
    assert sizes.sum() == len(table) and sizes.max() == 2
    assert (sizes == 2).sum() == len(pairs)


def test_label_noise_pairs_are_the_planted_cross_label_copies(planted_finding):
    table, _, pairs, finding = planted_finding
    labels = table.frame["label"].to_numpy()
    p = finding.pairs
    conflicts = {tuple(sorted(table.frame["relpath"].to_numpy()[[a, b]]))
                 for a, b in zip(p["a"], p["b"]) if labels[a] != labels[b]}
    assert conflicts == {tuple(sorted(pairs["exact_other_label"])), tuple(sorted(pairs["flipcrop_other_label"]))}


def test_pair_distances_are_reported(planted_finding):
    _, _, _, finding = planted_finding
    p = finding.pairs
    near = p[p["kind"] == "near"]
    assert (near[near["evidence"] == "hash"]["hash_distance"] <= 24 / 255).all()
    kp = near[near["evidence"] == "keypoints"]
    assert (kp["matches"] >= N.NearDuplicateSettings().min_matches).all()
    assert (kp["colour_distance"] <= N.NearDuplicateSettings().colour).all()
    assert (p[p["kind"] == "exact"]["hash_distance"] == 0).all()


def test_hash_pairs_match_brute_force_across_block_boundaries():
    rng = np.random.default_rng(0)
    base = rng.integers(0, 2 ** 63, (6, 8, 4), dtype=np.uint64)
    h = np.concatenate([base, base ^ np.uint64(1), base[:3] ^ np.uint64(7)])  # near copies
    valid = np.ones(len(h), bool)
    valid[4] = False
    for bits in (0, 1, 3):
        got = {tuple(p) for p in N.hash_pairs(h, valid, bits, block=4).tolist()}
        want = {(i, j) for i, j in itertools.combinations(range(len(h)), 2)
                if valid[i] and valid[j] and N.hash_distance(h, [i], [j])[0] <= bits}
        assert got == want and all(i < j for i, j in got)


def test_large_data_sets_check_hashes_on_colour_candidates_only(planted_finding):
    table, desc, _, full = planted_finding
    limited = N.find_duplicates(desc, exact_duplicates(table), N.NearDuplicateSettings(hash_all_pairs=0))
    near = lambda f: {(a, b) for a, b, k in f.pairs[["a", "b", "kind"]].itertuples(index=False) if k == "near"}
    assert near(limited) == near(full)


def test_pairs_are_cached_on_file_content(planted_finding, tmp_path, monkeypatch):
    table, desc, _, full = planted_finding
    cache = ArrayCache(tmp_path)
    exact = exact_duplicates(table)
    first = N.find_duplicates(desc, exact, cache=cache)
    monkeypatch.setattr(N, "_search", lambda *a: (_ for _ in ()).throw(AssertionError("searched again")))
    again = N.find_duplicates(desc, exact, cache=cache)
    cols = ["a", "b", "kind", "evidence", "matches"]
    assert again.pairs[cols].equals(first.pairs[cols]) and first.pairs[cols].equals(full.pairs[cols])
    assert np.array_equal(again.clusters, first.clusters) and again.verified == first.verified
    with pytest.raises(AssertionError, match="searched again"):
        N.find_duplicates(desc, exact, N.NearDuplicateSettings(min_matches=30), cache=cache)


def test_copies_of_copies_form_one_cluster_without_checking_every_pair(tmp_path):
    from PIL import Image

    from bmbench.data.synthetic import render_cell

    from .conftest import crop, rotate

    a = render_cell("neutrophil", np.random.default_rng(3), 256).image
    others = [render_cell("blast", np.random.default_rng(s), 256).image for s in range(4)]
    copies = [a, crop(a), rotate(a, 15), crop(rotate(a, -25), 5, 5, 5, 5)]
    paths = []
    for i, im in enumerate(copies + others):
        Image.fromarray(im).save(tmp_path / f"{i}.png")
        paths.append(tmp_path / f"{i}.png")
    desc = describe_files(paths)
    f = N.find_duplicates(desc)
    assert len(set(f.clusters[:4])) == 1
    assert len(set(f.clusters[4:])) == 4 and not set(f.clusters[4:]) & {f.clusters[0]}
    assert 3 <= len(f.pairs) <= 6


def test_unreadable_rows_never_pair(planted_finding):
    _, desc, _, _ = planted_finding
    import dataclasses

    broken = dataclasses.replace(desc, ok=desc.ok.copy())
    broken.ok[:] = False
    f = N.find_duplicates(broken)
    assert f.pairs.empty and len(set(f.clusters)) == len(desc)


def test_three_byte_copies_are_exact_pairs_only(tmp_path):
    from PIL import Image

    from bmbench.data.duplicates import DuplicateGroup
    from bmbench.data.synthetic import render_cell

    Image.fromarray(render_cell("blast", np.random.default_rng(0), 64).image).save(tmp_path / "0.png")
    for i in (1, 2):
        (tmp_path / f"{i}.png").write_bytes((tmp_path / "0.png").read_bytes())
    Image.fromarray(render_cell("monocyte", np.random.default_rng(1), 64).image).save(tmp_path / "3.png")
    desc = describe_files([tmp_path / f"{i}.png" for i in range(4)])
    for limit in (20_000, 0):
        f = N.find_duplicates(desc, [DuplicateGroup((0, 1, 2), ("a", "a", "a"))],
                              N.NearDuplicateSettings(hash_all_pairs=limit))
        assert f.pairs[["a", "b", "kind"]].values.tolist() == [[0, 1, "exact"], [0, 2, "exact"]]
        assert f.clusters.tolist()[:3] == [0, 0, 0] and f.clusters[3] != 0


def test_hash_block_memory_is_within_the_documented_bound_and_not_far_below():
    """The all-pairs hash comparison's peak allocations (numpy arrays, traced) lie between
    half and all of the ``HASH_BLOCK x n x 64`` bytes ``search_memory_bound`` counts."""
    import tracemalloc

    n = 3000
    rng = np.random.default_rng(0)
    phash = rng.integers(0, 2**63, (n, 8, 4), dtype=np.uint64)
    tracemalloc.start()
    try:
        N.hash_pairs(phash, np.ones(n, bool), 24)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    block = N.HASH_BLOCK * n * 64
    assert block / 2 < peak <= block


def test_search_memory_bound_counts_the_hash_block_only_where_all_pairs_are_compared():
    s = N.NearDuplicateSettings(hash_all_pairs=1000)
    per_image = 2048 + 128 * (s.neighbours + 1) + 200 * s.neighbours + 40
    assert N.search_memory_bound(1000, s) == N.HASH_BLOCK * 1000 * 64 + 1000 * per_image + 64 * 2**20
    assert N.search_memory_bound(1001, s) == 1001 * per_image + 64 * 2**20
    assert N.search_memory_bound(100_000) / 2**20 == pytest.approx(525.6, abs=0.1)  # as docs/scale.md says


def test_colour_candidates_are_the_same_with_and_without_invalid_rows():
    rng = np.random.default_rng(1)
    hist = np.sqrt(rng.dirichlet(np.ones(64), 300)).astype(np.float32)
    hist[::7] = hist[1::7][: len(hist[::7])] * 0.999  # close neighbours
    every, d_every = N.colour_candidates(hist, np.ones(300, bool), 4, 0.2)
    padded = np.vstack([hist, np.full((5, 64), np.nan, np.float32)])
    some, d_some = N.colour_candidates(padded, np.r_[np.ones(300, bool), np.zeros(5, bool)], 4, 0.2)
    assert len(every) and np.array_equal(every, some) and np.array_equal(d_every, d_some)
