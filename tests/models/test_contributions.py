"""TreeSHAP from XGBoost's pred_contribs and permutation importance for other classifiers."""

import numpy as np
import pytest

from bmbench.models.classifiers import ClassifierSettings, XGBoostOptions, get_classifier
from bmbench.models.contributions import (FeatureExplanation, explain_matrix, tree_contributions,
                                          tree_margins)
from bmbench.models.tabular import predict_proba


def data(n=240, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (x[:, 0] > 0).astype(int) + (x[:, 1] > 0.5).astype(int)  # 3 classes from 2 features
    return x, y


@pytest.fixture(scope="module")
def xgb():
    x, y = data()
    fitted = get_classifier("xgboost").fit(XGBoostOptions(n_estimators=40, early_stopping=0), ClassifierSettings(0, 1),
                                           x, y, np.ones(len(y)), None, None, 3)
    return fitted, x, y


def test_contributions_plus_bias_are_xgboosts_own_margin(xgb):
    fitted, x, _ = xgb
    c = tree_contributions(fitted, x, 3)
    assert c.shape == (len(x), 3, x.shape[1] + 1)
    np.testing.assert_allclose(c.sum(axis=2), tree_margins(fitted, x, 3), rtol=1e-4, atol=1e-4)


def test_contributions_of_an_early_stopped_model_use_its_best_rounds():
    x, y = data(seed=1)
    fitted = get_classifier("xgboost").fit(XGBoostOptions(n_estimators=300, early_stopping=5), ClassifierSettings(0, 1),
                                           x[:180], y[:180], np.ones(180), x[180:], y[180:], 3)
    assert fitted.best_iteration < 299
    margin = tree_margins(fitted, x, 3)
    np.testing.assert_allclose(tree_contributions(fitted, x, 3).sum(axis=2), margin, rtol=1e-4, atol=1e-4)
    from scipy.special import softmax
    np.testing.assert_allclose(softmax(margin, axis=1), fitted.predict_proba(x), rtol=1e-4, atol=1e-5)


def test_the_informative_features_lead_and_unreadable_rows_are_nan(xgb):
    fitted, x, y = xgb
    x = x.copy()
    x[3] = np.nan
    expl = explain_matrix("xgboost", fitted, x, [f"f{i}" for i in range(6)], 3, predict_proba(fitted, x, 3))
    assert expl.method == "treeshap" and np.isnan(expl.contributions[3]).all()
    assert expl.top_for_image(3, 0) == []
    top = expl.class_importance({k: np.flatnonzero(y == k) for k in range(3)}, k=2)
    assert {name for name, _ in top[0]} == {"f0", "f1"}
    name, contribution, value = expl.top_for_image(0, int(np.argmax(expl.proba[0])), k=1)[0]
    assert name in {"f0", "f1"} and contribution > 0 and value == pytest.approx(float(x[0, int(name[1])]))


def test_other_classifiers_get_permutation_importance_on_labelled_images():
    x, y = data(seed=2)
    fitted = get_classifier("logistic_regression").fit(get_classifier("logistic_regression").Options(),
                                                       ClassifierSettings(0, 1), x, y, np.ones(len(y)), None, None, 3)
    expl = explain_matrix("logistic_regression", fitted, x, [f"f{i}" for i in range(6)], 3,
                          predict_proba(fitted, x, 3), labels=y)
    assert expl.method == "permutation" and expl.contributions is None
    assert set(np.argsort(-expl.importance)[:2]) == {0, 1}
    assert explain_matrix("logistic_regression", fitted, x, list("abcdef"), 3, expl.proba).method == "none"


def test_top_for_image_orders_by_contribution():
    c = np.zeros((1, 2, 4))
    c[0, 1, :3] = [0.1, 0.5, -0.9]
    expl = FeatureExplanation(["a", "b", "c"], np.ones((1, 3), np.float32), np.array([[0.2, 0.8]]), c)
    assert [t[0] for t in expl.top_for_image(0, 1, k=2)] == ["b", "a"]
