import numpy as np
import pytest

from bmbench.metrics.paired import PairedBootstrap, bootstrap_p_value, holm, mcnemar_exact, paired_bootstrap


def outcomes(both_right, a_only, b_only, both_wrong):
    a = [1] * both_right + [1] * a_only + [0] * b_only + [0] * both_wrong
    b = [1] * both_right + [0] * a_only + [1] * b_only + [0] * both_wrong
    return np.array(a, bool), np.array(b, bool)


def test_mcnemar_hand_computed():
    # 8 discordant images, A alone right on 1: p = 2 * (C(8,0) + C(8,1)) / 2^8 = 18/256
    res = mcnemar_exact(*outcomes(50, 1, 7, 10))
    assert res == {"n": 68, "both_right": 50, "both_wrong": 10, "a_only": 1, "b_only": 7,
                   "p_value": pytest.approx(18 / 256)}
    # symmetric in A and B
    assert mcnemar_exact(*outcomes(50, 7, 1, 10)[::-1])["p_value"] == pytest.approx(18 / 256)
    # 0 vs 5: p = 2 / 32
    assert mcnemar_exact(*outcomes(3, 0, 5, 0))["p_value"] == pytest.approx(1 / 16)
    # balanced discordance and no discordance are capped at / equal to 1
    assert mcnemar_exact(*outcomes(5, 3, 3, 5))["p_value"] == 1.0
    assert mcnemar_exact(*outcomes(5, 0, 0, 5))["p_value"] == 1.0


def test_mcnemar_refuses_unpaired_outcomes():
    with pytest.raises(ValueError, match="length"):
        mcnemar_exact([1, 0], [1])


def test_holm_hand_computed():
    # sorted: 0.005*4=0.02, 0.01*3=0.03, 0.03*2=0.06, 0.04*1=0.04 -> monotone 0.06
    assert holm([0.01, 0.04, 0.03, 0.005]) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    assert holm([0.5, 0.9]).tolist() == [1.0, 1.0]  # 0.5*2 caps at 1; monotone after it
    assert holm([0.2, 0.01]).tolist() == [0.2, 0.02]
    assert len(holm([])) == 0


def test_bootstrap_p_value():
    assert bootstrap_p_value(np.zeros(99)) == 1.0
    assert bootstrap_p_value(np.ones(99)) == pytest.approx(2 / 100)
    assert bootstrap_p_value(np.r_[np.ones(89), -np.ones(10)]) == pytest.approx(2 * 11 / 100)


def _simulated(rng, accuracy, y, k):
    right = rng.random(len(y)) < accuracy
    pred = np.where(right, y, (y + rng.integers(1, k, len(y))) % k)
    proba = np.full((len(y), k), 0.2 / (k - 1))
    proba[np.arange(len(y)), pred] = 0.8
    return proba


def test_paired_bootstrap_finds_a_real_difference_and_its_direction():
    rng = np.random.default_rng(1)
    y = np.repeat(np.arange(3), 100)
    good, bad = _simulated(rng, 0.95, y, 3), _simulated(rng, 0.6, y, 3)
    res = paired_bootstrap(y, good, bad, 3, "macro_f1")
    assert res["difference"] == pytest.approx(res["a"] - res["b"]) and res["difference"] > 0.2
    assert res["ci"][0] > 0 and res["p_value"] < 0.01 and res["better"] == "a"
    # lower is better for log loss: the good run has the smaller loss and is still "a"
    res = paired_bootstrap(y, good, bad, 3, "log_loss")
    assert res["difference"] < 0 and res["ci"][1] < 0 and res["better"] == "a"
    res = paired_bootstrap(y, bad, good, 3, "accuracy")
    assert res["better"] == "b"


def test_identical_runs_are_not_different():
    rng = np.random.default_rng(2)
    y = np.repeat(np.arange(3), 30)
    p = _simulated(rng, 0.7, y, 3)
    res = paired_bootstrap(y, p, p.copy(), 3, "macro_f1")
    assert res["difference"] == 0 and res["ci"] == [0.0, 0.0] and res["p_value"] == 1.0
    assert res["better"] is None


def test_false_positive_rate_under_the_null_is_controlled():
    # two independent classifiers with the same true accuracy: the 5% tests should reject
    # in about 5% of repetitions (McNemar's exact test is conservative)
    rng = np.random.default_rng(3)
    y = np.repeat(np.arange(2), 100)
    reps, boot, mcn = 150, 0, 0
    for r in range(reps):
        a, b = _simulated(rng, 0.75, y, 2), _simulated(rng, 0.75, y, 2)
        boot += paired_bootstrap(y, a, b, 2, "accuracy", n_resamples=400, seed=r)["p_value"] < 0.05
        mcn += mcnemar_exact(a.argmax(1) == y, b.argmax(1) == y)["p_value"] < 0.05
    assert boot / reps <= 0.10 and mcn / reps <= 0.08


@pytest.mark.parametrize("metric", ["macro_f1", "balanced_accuracy", "log_loss"])
def test_many_runs_against_one_leader_give_exactly_the_pairwise_results(metric):
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 150)
    lead = rng.dirichlet(np.ones(4), 150)
    lead[np.arange(150), y] += 1.0
    lead /= lead.sum(1, keepdims=True)
    others = [rng.dirichlet(np.ones(4), 150) for _ in range(3)]
    batch = PairedBootstrap(y, lead, 4, metric, 300, 0.95, 7)
    for other in others:
        assert batch.versus(other) == paired_bootstrap(y, lead, other, 4, metric, 300, 0.95, 7)
