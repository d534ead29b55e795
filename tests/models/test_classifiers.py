import numpy as np
import pytest

from bmbench.core.errors import RecipeError
from bmbench.models.classifiers import (CLASSIFIERS, ClassifierSettings, RandomForestOptions,
                                        XGBoostOptions, class_weights, get_classifier)

SETTINGS = ClassifierSettings(seed=0, jobs=1)
SMALL = {"xgboost": XGBoostOptions(n_estimators=30, max_depth=3, learning_rate=0.3, early_stopping=5),
         "random_forest": RandomForestOptions(n_estimators=30)}


def options(name):
    return SMALL.get(name) or get_classifier(name).Options()


def data(n=90, k=3, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = rng.normal(size=(n, d)) + y[:, None] * 1.5
    x[::7, 2] = np.nan
    return x, y


@pytest.mark.parametrize("name", sorted(CLASSIFIERS))
def test_fit_save_load_gives_identical_probabilities(name, tmp_path):
    x, y = data()
    clf = get_classifier(name)
    fitted = clf.fit(options(name), SETTINGS, x[:60], y[:60], np.ones(60), x[60:75], y[60:75], 3)
    p = fitted.predict_proba(x[75:])
    assert p.shape == (15, 3) and (p.argmax(1) == y[75:]).mean() > 0.6
    clf.save(fitted, tmp_path)
    assert not list(tmp_path.glob("*.pkl")) and not list(tmp_path.glob("*.joblib"))
    again = clf.load(tmp_path)
    assert np.array_equal(again.predict_proba(x[75:]), p)


def test_xgboost_early_stops_and_reports_gain():
    x, y = data(300)
    clf = get_classifier("xgboost")
    o = XGBoostOptions(n_estimators=2000, max_depth=3, learning_rate=0.3, early_stopping=10)
    fitted = clf.fit(o, SETTINGS, x[:200], y[:200], np.ones(200), x[200:], y[200:], 3)
    assert fitted.best_iteration < 1999
    gain = clf.importances(fitted, x.shape[1])
    assert gain.shape == (6,) and gain.max() > 0


def test_balanced_class_weights():
    y = np.array([0, 0, 0, 1])
    w = class_weights(y, 3, "balanced")
    assert w[:3].sum() == pytest.approx(w[3]) and w.mean() == pytest.approx(1.0)
    assert (class_weights(y, 3, "none") == 1).all()


def test_unknown_classifier_names_the_known_ones():
    with pytest.raises(RecipeError, match="did you mean 'xgboost'.*known: knn, logistic, logistic_regression"):
        get_classifier("xgbost")


def test_logistic_probe_chooses_c_on_validation_or_by_dinobloom_rule(caplog):
    from bmbench.models.classifiers import PROBE_C_GRID, LogisticProbeOptions, choose_c

    x, y = data(120, d=5)
    x = np.nan_to_num(x)
    o, x2, y2, w2 = choose_c(LogisticProbeOptions(), SETTINGS, x[:80], y[:80], np.ones(80), x[80:], y[80:], 3)
    assert o.C in PROBE_C_GRID and len(x2) == len(y2) == len(w2) == 120  # validation joins training
    o, x2, _, _ = choose_c(LogisticProbeOptions(C="dinobloom"), SETTINGS, x[:80], y[:80], np.ones(80), x[80:], y[80:], 3)
    assert o.C == pytest.approx(100 / (5 * 3)) and len(x2) == 80
    o, _, _, _ = choose_c(LogisticProbeOptions(C=0.5), SETTINGS, x[:80], y[:80], np.ones(80), None, None, 3)
    assert o.C == 0.5
    o, _, _, _ = choose_c(LogisticProbeOptions(), SETTINGS, x[:80], y[:80], np.ones(80), None, None, 3)
    assert o.C == pytest.approx(100 / 15) and "needs validation images" in caplog.text


def test_knn_probe_caps_k_and_skips_scaling():
    from bmbench.models.classifiers import KNNOptions

    x, y = data(30)
    fitted = get_classifier("knn").fit(KNNOptions(k=500, metric="cosine"), SETTINGS, x, y, np.ones(30), None, None, 3)
    assert fitted.steps[-1][1].n_neighbors == 30
    assert [name for name, _ in fitted.steps] == ["simpleimputer", "kneighborsclassifier"]
