import json

import numpy as np
import pytest

from bmbench.metrics.calibration import (bin_index, brier_score, expected_calibration_error,
                                         reliability)
from bmbench.metrics.scores import compute_metrics

# five binary predictions: (probabilities, true class)
PROBA = np.array([[0.9, 0.1], [0.9, 0.1], [0.41, 0.59], [0.45, 0.55], [0.2, 0.8]])
Y = np.array([0, 1, 1, 0, 1])


def test_ece_hand_computed():
    # confidences 0.9 (right), 0.9 (wrong), 0.59 (right), 0.55 (wrong), 0.8 (right)
    # 15 bins of width 1/15: 0.9 -> bin 13, 0.59 and 0.55 -> bin 8, 0.8 -> bin 11
    # bin 13: accuracy 1/2, confidence 0.9 -> gap 0.4, weight 2/5
    # bin 8:  accuracy 1/2, confidence 0.57 -> gap 0.07, weight 2/5
    # bin 11: accuracy 1, confidence 0.8 -> gap 0.2, weight 1/5
    assert expected_calibration_error(Y, PROBA) == pytest.approx((2 * 0.4 + 2 * 0.07 + 0.2) / 5)


def test_bins_are_right_closed_and_cover_zero_and_one():
    assert bin_index([0.0, 1 / 15 - 1e-9, 1 / 15 + 1e-9, 0.5, 1.0]).tolist() == [0, 0, 1, 7, 14]


def test_brier_hand_computed_and_bounds():
    # (0.9-1)^2+(0.1)^2 = 0.02 ; wrong: 0.81+0.81 = 1.62 ; (0.41)^2+(0.59-1)^2 = 0.3362
    # (0.45-1)^2+0.55^2 = 0.605 ; 0.2^2+0.2^2 = 0.08
    assert brier_score(Y, PROBA) == pytest.approx((0.02 + 1.62 + 0.3362 + 0.605 + 0.08) / 5)
    k = 4
    y = np.arange(k)
    assert brier_score(y, np.full((k, k), 1 / k)) == pytest.approx(1 - 1 / k)
    assert brier_score(y, np.eye(k)) == 0.0
    assert brier_score(y, np.roll(np.eye(k), 1, axis=1)) == 2.0


def test_reliability_data_matches_ece_and_is_json_ready():
    data = reliability(Y, PROBA)
    assert data["n_bins"] == 15 and len(data["count"]) == 15 and sum(data["count"]) == 5
    assert data["count"][13] == 2 and data["accuracy"][13] == 0.5
    assert data["mean_confidence"][8] == pytest.approx(0.57)
    assert data["accuracy"][0] is None  # empty bins have no accuracy
    assert data["ece"] == pytest.approx(expected_calibration_error(Y, PROBA))
    assert data["bin_upper"][-1] == 1.0
    json.dumps(data)


def test_calibrated_classifier_has_small_ece_and_overconfident_one_large():
    rng = np.random.default_rng(0)
    n = 20000
    conf = rng.uniform(0.5, 1.0, n)
    y = (rng.random(n) >= conf).astype(int)  # class 0 is right with probability conf
    calibrated = np.c_[conf, 1 - conf]
    assert expected_calibration_error(y, calibrated) < 0.02
    sharp = np.c_[np.full(n, 0.999), np.full(n, 0.001)]  # same predictions, 99.9% sure
    assert expected_calibration_error(y, sharp) == pytest.approx(0.999 - (y == 0).mean(), abs=1e-9)


def test_compute_metrics_reports_ece_and_brier():
    m = compute_metrics(Y, PROBA, ("a", "b"))
    assert m["ece"] == pytest.approx(expected_calibration_error(Y, PROBA))
    assert m["brier"] == pytest.approx(brier_score(Y, PROBA))
