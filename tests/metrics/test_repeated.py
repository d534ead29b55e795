"""Bootstrap statistics of a metric averaged over repeats (ablation tables)."""

import numpy as np
import pytest

from bmbench.metrics.bootstrap import bootstrap_ci
from bmbench.metrics.paired import paired_bootstrap
from bmbench.metrics.repeated import paired_repeat_bootstrap, repeat_mean_ci
from bmbench.metrics.scores import compute_metrics


def _data(seed, n=120, k=3, skill=1.5):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, n)
    logits = rng.normal(size=(n, k))
    logits[np.arange(n), y] += skill
    p = np.exp(logits)
    return y, p / p.sum(axis=1, keepdims=True)


def _proba(y, seed, k=3, skill=1.5):
    rng = np.random.default_rng(seed)
    logits = rng.normal(size=(len(y), k))
    logits[np.arange(len(y)), y] += skill
    p = np.exp(logits)
    return p / p.sum(axis=1, keepdims=True)


@pytest.mark.parametrize("metric", ["macro_f1", "accuracy", "log_loss", "roc_auc_ovr_macro"])
def test_one_repeat_equals_the_single_run_statistics(metric):
    y, pa = _data(0)
    pb = _proba(y, 1, skill=0.8)
    ours = paired_repeat_bootstrap(y, [pa], [pb], 3, metric, n_resamples=300, seed=4)
    theirs = paired_bootstrap(y, pa, pb, 3, metric, n_resamples=300, seed=4)
    assert ours == theirs
    single = repeat_mean_ci(y, [pa], 3, metric, n_resamples=300, seed=4)
    assert single["ci"] == pytest.approx(bootstrap_ci(y, pa, ("a", "b", "c"), (metric,), 300, seed=4)[metric])
    assert single["value"] == pytest.approx(compute_metrics(y, pa, ("a", "b", "c"))[metric])


def test_repeat_mean_is_the_mean_of_the_repeats_and_identical_repeats_change_nothing():
    y, p0 = _data(0)
    p1, p2 = _proba(y, 5), _proba(y, 6)
    classes = ("a", "b", "c")
    values = [compute_metrics(y, p, classes)["macro_f1"] for p in (p0, p1, p2)]
    three = repeat_mean_ci(y, [p0, p1, p2], 3, "macro_f1", n_resamples=200)
    assert three["value"] == pytest.approx(np.mean(values)) and three["n_repeats"] == 3
    assert three["ci"][0] < three["value"] < three["ci"][1]
    once = repeat_mean_ci(y, [p0], 3, "macro_f1", n_resamples=200)
    twice = repeat_mean_ci(y, [p0, p0], 3, "macro_f1", n_resamples=200)
    assert twice == {**once, "n_repeats": 2}


def test_paired_difference_detects_a_real_gap_and_not_a_null_one():
    y, _ = _data(0, n=400)
    strong = [_proba(y, s, skill=3.0) for s in (1, 2)]
    weak = [_proba(y, s, skill=0.3) for s in (3, 4)]
    gap = paired_repeat_bootstrap(y, strong, weak, 3, "accuracy", n_resamples=500)
    assert gap["difference"] > 0.2 and gap["ci"][0] > 0 and gap["p_value"] < 0.01 and gap["better"] == "a"
    same = paired_repeat_bootstrap(y, strong, strong[::-1], 3, "accuracy", n_resamples=500)
    assert same["difference"] == pytest.approx(0) and same["better"] is None and same["p_value"] == 1.0
    loss = paired_repeat_bootstrap(y, strong, weak, 3, "log_loss", n_resamples=500)
    assert loss["difference"] < 0 and loss["better"] == "a"  # lower log loss is better
