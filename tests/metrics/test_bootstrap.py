import numpy as np
import pytest

from bmbench.metrics.bootstrap import (Resampler, bootstrap_ci, percentile_interval,
                                       stratified_indices)
from bmbench.metrics.scores import HEADLINE, compute_metrics
from bmbench.metrics.summary import add_statistics, fold_summary


def random_run(rng, n, k, tie_decimals=None, absent=()):
    y = rng.integers(0, k, n)
    for c in absent:
        y[y == c] = (c + 1) % k
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += 1.2
    p = np.exp(logits)
    p /= p.sum(axis=1, keepdims=True)
    if tie_decimals is not None:  # coarse probabilities: many tied scores
        p = np.round(p, tie_decimals) + 1e-6
    return y, p


@pytest.mark.parametrize("k, ties, absent", [(2, None, ()), (4, 1, ()), (5, 2, (3,))])
def test_each_resample_equals_compute_metrics_on_that_resample(k, ties, absent):
    rng = np.random.default_rng(k)
    y, p = random_run(rng, 150, k, ties, absent)
    classes = [f"c{i}" for i in range(k)]
    idx = stratified_indices(y, 6, seed=1)
    got = Resampler(y, p, k).metrics(idx)
    for r in range(len(idx)):
        want = compute_metrics(y[idx[r]], p[idx[r]], classes)
        for name in HEADLINE:
            assert got[name][r] == pytest.approx(want[name], abs=1e-12), (name, r)
    whole = Resampler(y, p, k).metrics(np.arange(len(y))[None])
    full = compute_metrics(y, p, classes)
    assert {m: whole[m][0] for m in HEADLINE} == pytest.approx({m: full[m] for m in HEADLINE})


def test_resamples_are_stratified_seeded_and_with_replacement():
    y = np.array([0] * 7 + [1] * 3 + [2] * 5)
    idx = stratified_indices(y, 50, seed=3)
    assert idx.shape == (50, 15)
    for row in idx:
        assert np.bincount(y[row], minlength=3).tolist() == [7, 3, 5]
    assert any(len(set(row)) < 15 for row in idx)  # drawn with replacement
    assert (stratified_indices(y, 50, seed=3) == idx).all()
    assert not (stratified_indices(y, 50, seed=4) == idx).all()


def simulate(rng, p_correct, per_class):
    """A classifier that is right on class c with probability p_correct[c]."""
    k = len(p_correct)
    y = np.repeat(np.arange(k), per_class)
    right = rng.random(len(y)) < np.repeat(p_correct, per_class)
    pred = np.where(right, y, (y + rng.integers(1, k, len(y))) % k)
    proba = np.full((len(y), k), 0.1 / (k - 1))
    proba[np.arange(len(y)), pred] = 0.9
    return y, proba


def test_ci_covers_the_true_accuracy_about_95_percent_of_the_time():
    # class counts are fixed (as a stratified split fixes them), so the true accuracy is
    # the count-weighted mean of the per-class accuracies: (0.9 + 0.75 + 0.6) / 3 = 0.75,
    # and the true balanced accuracy is the same. 600 repetitions: the observed coverage of
    # a correct 95% interval lies in [0.925, 0.972] with probability ~98% (+-2.5 standard
    # errors); a 90% interval (observed 0.91 with this seed) or a 99% one (0.982) fails.
    rng = np.random.default_rng(123)
    reps, hits = 600, np.zeros(2)
    for r in range(reps):
        y, p = simulate(rng, np.array([0.9, 0.75, 0.6]), 100)
        ci = bootstrap_ci(y, p, "abc", ("accuracy", "balanced_accuracy"), n_resamples=500, seed=r)
        hits += [ci[m][0] <= 0.75 <= ci[m][1] for m in ("accuracy", "balanced_accuracy")]
    coverage = hits / reps
    assert ((0.925 <= coverage) & (coverage <= 0.972)).all(), coverage


def test_ci_width_shrinks_like_one_over_root_n():
    rng = np.random.default_rng(5)
    widths = []
    for per_class in (100, 1600):
        y, p = simulate(rng, np.array([0.8, 0.8]), per_class)
        low, high = bootstrap_ci(y, p, "ab", ("accuracy",))["accuracy"]
        widths.append(high - low)
    assert widths[0] / widths[1] == pytest.approx(4, rel=0.25)


def test_ci_contains_the_point_estimate_and_is_deterministic():
    rng = np.random.default_rng(6)
    y, p = random_run(rng, 300, 4)
    classes = list("abcd")
    ci = bootstrap_ci(y, p, classes)
    point = compute_metrics(y, p, classes)
    assert set(ci) == set(HEADLINE)
    for name in HEADLINE:
        low, high = ci[name]
        assert low <= point[name] <= high, name
    assert bootstrap_ci(y, p, classes) == ci


def test_undefined_metrics_have_no_interval():
    y = np.zeros(10, int)  # one class present: ROC-AUC is undefined
    p = np.tile([0.7, 0.3], (10, 1))
    ci = bootstrap_ci(y, p, ("a", "b"))
    assert ci["roc_auc_ovr_macro"] is None and ci["accuracy"] == [1.0, 1.0]
    assert bootstrap_ci([], np.zeros((0, 2)), ("a", "b"))["accuracy"] is None
    assert percentile_interval(np.array([np.nan, np.nan])) is None


def test_ten_thousand_predictions_give_every_headline_interval():
    # its speed is measured in benchmarks/statistics.py, not here
    rng = np.random.default_rng(7)
    y, p = random_run(rng, 10_000, 8)
    ci = bootstrap_ci(y, p, [str(i) for i in range(8)], n_resamples=200)
    assert all(ci[m] is not None and ci[m][0] <= ci[m][1] for m in HEADLINE)


def test_add_statistics_and_fold_summary():
    rng = np.random.default_rng(8)
    y, p = random_run(rng, 120, 3)
    classes = list("abc")
    metrics = compute_metrics(y, p, classes)
    fold = np.arange(120) % 3
    metrics["folds"] = [compute_metrics(y[fold == i], p[fold == i], classes) for i in range(3)]
    rel = add_statistics(metrics, y, p, classes, n_resamples=200)
    assert set(metrics["ci"]) == set(HEADLINE) and metrics["ci_method"]["n_resamples"] == 200
    f1s = [f["macro_f1"] for f in metrics["folds"]]
    assert metrics["fold_summary"]["macro_f1"] == pytest.approx(
        {"mean": np.mean(f1s), "std": np.std(f1s, ddof=1), "n_folds": 3})
    assert rel["n"] == 120 and rel["ece"] == pytest.approx(metrics["ece"])
    assert fold_summary([{"accuracy": 0.5, "roc_auc_ovr_macro": None}])["accuracy"]["std"] == 0.0
