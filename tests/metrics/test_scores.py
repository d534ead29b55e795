import numpy as np
import pytest

from bmbench.metrics.scores import compute_metrics

CLASSES = ("a", "b", "c")


def onehot(pred, k=3, p=0.8):
    out = np.full((len(pred), k), (1 - p) / (k - 1))
    out[np.arange(len(pred)), pred] = p
    return out


def test_against_hand_computed_values():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 2, 2, 2])
    pred = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 0])
    m = compute_metrics(y, onehot(pred), CLASSES)
    assert m["accuracy"] == pytest.approx(7 / 10)
    # recall a=3/4, b=2/3, c=2/3 ; precision a=3/4, b=2/3, c=2/3
    assert m["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3 + 2 / 3) / 3)
    assert m["per_class"]["a"] == {"precision": 0.75, "recall": 0.75, "f1": 0.75, "support": 4}
    assert m["per_class"]["b"]["f1"] == pytest.approx(2 / 3)
    assert m["macro_f1"] == pytest.approx((0.75 + 2 / 3 + 2 / 3) / 3)
    assert m["weighted_f1"] == pytest.approx((4 * 0.75 + 3 * 2 / 3 + 3 * 2 / 3) / 10)
    assert m["confusion_matrix"] == [[3, 1, 0], [0, 2, 1], [1, 0, 2]]
    # Cohen's kappa: po = 0.7, pe = sum(row_i * col_i) / n^2 = (4*4 + 3*3 + 3*3) / 100
    pe = (4 * 4 + 3 * 3 + 3 * 3) / 100
    assert m["cohen_kappa"] == pytest.approx((0.7 - pe) / (1 - pe))
    # log loss: every true class gets 0.8 when right, 0.1 when wrong
    assert m["log_loss"] == pytest.approx(-(7 * np.log(0.8) + 3 * np.log(0.1)) / 10)
    assert m["n"] == 10 and m["classes"] == list(CLASSES)


def test_mcc_binary_hand_computed():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    pred = np.array([1, 1, 0, 0, 0, 0, 0, 1])
    m = compute_metrics(y, onehot(pred, 2), ("neg", "pos"))
    tp, tn, fp, fn = 2, 4, 1, 1
    expected = (tp * tn - fp * fn) / np.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    assert m["mcc"] == pytest.approx(expected)


def test_perfect_and_auc():
    y = np.array([0, 1, 2, 0, 1, 2])
    m = compute_metrics(y, onehot(y), CLASSES)
    assert m["accuracy"] == m["macro_f1"] == m["mcc"] == m["roc_auc_ovr_macro"] == 1.0


def test_auc_of_a_ranking_hand_computed():
    # binary: scores for positives 0.9, 0.4; negatives 0.6, 0.2 -> 3 of 4 pairs ordered
    y = np.array([1, 1, 0, 0])
    p1 = np.array([0.9, 0.4, 0.6, 0.2])
    m = compute_metrics(y, np.c_[1 - p1, p1], ("neg", "pos"))
    assert m["roc_auc_ovr_macro"] == pytest.approx(0.75)


def test_absent_test_class_is_left_out_of_macro_averages():
    y = np.array([0, 0, 1, 1])
    m = compute_metrics(y, onehot(y), CLASSES)
    assert m["macro_f1"] == 1.0 and m["per_class"]["c"]["support"] == 0


def test_bad_probabilities_are_refused():
    with pytest.raises(ValueError, match="shape"):
        compute_metrics([0, 1], np.ones((2, 2)), CLASSES)
    with pytest.raises(ValueError, match="NaN"):
        compute_metrics([0, 1], np.full((2, 3), np.nan), CLASSES)


# --- one class against the rest (dataset.positive_class) ------------------------------------

def test_binary_metrics_count_the_positive_class_against_the_rest():
    from bmbench.metrics.scores import binary_metrics

    # classes all/hem; truth: 4 all, 3 hem; predictions: 3 of the 4 all right, 1 hem called all
    y = np.array([0, 0, 0, 0, 1, 1, 1])
    p_all = np.array([0.9, 0.8, 0.6, 0.2, 0.7, 0.1, 0.3])
    proba = np.stack([p_all, 1 - p_all], axis=1)
    b = binary_metrics(y, proba, ("all", "hem"), "all")
    assert (b["tp"], b["fn"], b["fp"], b["tn"]) == (3, 1, 1, 2)
    assert b["n_positive"] == 4 and b["n_negative"] == 3
    assert b["sensitivity"] == pytest.approx(3 / 4) and b["specificity"] == pytest.approx(2 / 3)
    assert b["precision"] == pytest.approx(3 / 4) and b["npv"] == pytest.approx(2 / 3)
    assert b["f1"] == pytest.approx(6 / 8) and b["balanced_accuracy"] == pytest.approx((3 / 4 + 2 / 3) / 2)
    assert b["roc_auc"] == pytest.approx(9 / 12)  # 9 of the 12 (all, hem) pairs ranked right
    # the other class as positive swaps the roles
    h = binary_metrics(y, proba, ("all", "hem"), "hem")
    assert h["sensitivity"] == b["specificity"] and h["specificity"] == b["sensitivity"]


def test_binary_metrics_undefined_rates_are_none_and_multiclass_is_one_vs_rest():
    from bmbench.metrics.scores import binary_metrics

    proba = np.array([[0.1, 0.2, 0.7], [0.2, 0.7, 0.1]])
    b = binary_metrics(np.array([2, 1]), proba, ("a", "b", "c"), "a")
    assert b["n_positive"] == 0 and b["sensitivity"] is None and b["precision"] is None
    assert b["specificity"] == 1.0 and b["f1"] is None and b["roc_auc"] is None
    assert b["balanced_accuracy"] is None
    c = binary_metrics(np.array([2, 1]), proba, ("a", "b", "c"), "c")
    assert (c["tp"], c["tn"], c["sensitivity"], c["roc_auc"]) == (1, 1, 1.0, 1.0)


def test_compute_metrics_adds_binary_only_when_a_positive_class_is_given():
    y = np.array([0, 1, 1, 0])
    proba = np.array([[0.8, 0.2], [0.3, 0.7], [0.6, 0.4], [0.4, 0.6]])
    plain = compute_metrics(y, proba, ("all", "hem"))
    both = compute_metrics(y, proba, ("all", "hem"), positive="all")
    assert "binary" not in plain
    assert {k: v for k, v in both.items() if k != "binary"} == plain
    assert both["binary"]["sensitivity"] == plain["per_class"]["all"]["recall"]
