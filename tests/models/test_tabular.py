import dataclasses
import logging

import numpy as np
import pytest

from bmbench.models import classifiers
from bmbench.models.classifiers import ClassifierSettings
from bmbench.models.tabular import fit_classifier, predict_proba, readable

SETTINGS = ClassifierSettings(n_estimators=30, max_depth=3, learning_rate=0.3, C=1.0,
                              early_stopping=5, seed=0, jobs=1)


def data(n=120, k=3, d=6, seed=0):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % k
    x = (rng.normal(size=(n, d)) + y[:, None] * 1.5).astype(np.float32)
    x[5] = np.nan  # an unreadable image
    return x, y


@pytest.fixture
def fit_calls(monkeypatch):
    """Count real fits of every registered classifier."""
    calls = []
    for name, clf in list(classifiers.CLASSIFIERS.items()):
        def counted(*args, _fit=clf.fit, _name=name):
            calls.append(_name)
            return _fit(*args)
        monkeypatch.setitem(classifiers.CLASSIFIERS._entries, name, dataclasses.replace(clf, fit=counted))
    return calls


def fit(name, x, y, cache, settings=SETTINGS):
    return fit_classifier(name, settings, x[:80], y[:80], x[80:100], y[80:100], 3, "balanced", cache)


@pytest.mark.parametrize("name", ["xgboost", "logistic_regression"])
def test_second_fit_on_same_inputs_is_loaded_and_predicts_identically(name, tmp_path, fit_calls):
    x, y = data()
    first = predict_proba(fit(name, x, y, tmp_path), x[100:], 3)
    second = predict_proba(fit(name, x, y, tmp_path), x[100:], 3)
    assert fit_calls == [name]
    assert np.array_equal(first, second)
    assert len(list((tmp_path / "fits").glob("*/*"))) == 1


def test_any_change_of_inputs_or_settings_refits(tmp_path, fit_calls):
    x, y = data()
    fit("xgboost", x, y, tmp_path)
    fit("xgboost", x, y, tmp_path, dataclasses.replace(SETTINGS, seed=1))
    fit("xgboost", x, y, tmp_path, dataclasses.replace(SETTINGS, max_depth=2))
    x2 = x.copy()
    x2[0, 0] += 1e-3
    fit("xgboost", x2, y, tmp_path)
    y2 = y.copy()
    y2[[0, 1]] = y2[[1, 0]]
    fit("xgboost", x, y2, tmp_path)
    fit("logistic_regression", x, y, tmp_path)
    assert len(fit_calls) == 6


def test_without_a_cache_folder_every_fit_trains(fit_calls):
    x, y = data()
    fit("xgboost", x, y, None)
    fit("xgboost", x, y, None)
    assert len(fit_calls) == 2


def test_damaged_entry_is_discarded_and_refitted(tmp_path, fit_calls, caplog):
    x, y = data()
    expected = predict_proba(fit("xgboost", x, y, tmp_path), x[100:], 3)
    (entry,) = (tmp_path / "fits").glob("*/*")
    (entry / "xgboost.json").write_text("{not json")
    with caplog.at_level(logging.WARNING, logger="bmbench.run"):
        again = predict_proba(fit("xgboost", x, y, tmp_path), x[100:], 3)
    assert "damaged cached fit" in caplog.text
    assert fit_calls == ["xgboost", "xgboost"]
    assert np.array_equal(again, expected)
    assert (entry / "xgboost.json").read_text().startswith("{")


def test_unwritable_cache_does_not_fail_the_fit(tmp_path, fit_calls, caplog):
    x, y = data()
    blocker = tmp_path / "fits"
    blocker.write_text("a file where the folder should be")
    with caplog.at_level(logging.WARNING, logger="bmbench.run"):
        fitted = fit("xgboost", x, y, tmp_path)
    assert fitted is not None and "could not cache" in caplog.text


def test_unreadable_rows_are_left_out_and_get_nan_probabilities():
    x, y = data()
    assert not readable(x)[5] and readable(x).sum() == len(x) - 1
    fitted = fit("xgboost", x, y, None)
    p = predict_proba(fitted, x[:10], 3)
    assert np.isnan(p[5]).all()
    assert np.allclose(np.delete(p, 5, axis=0).sum(axis=1), 1.0)


def test_classes_missing_from_training_get_probability_zero():
    x, y = data()
    two = y < 2
    fitted = classifiers.get_classifier("logistic_regression").fit(
        SETTINGS, x[two & readable(x)], y[two & readable(x)], None, None, None, 2)
    p = predict_proba(fitted, x[:6], 3)
    assert p.shape == (6, 3) and (p[readable(x[:6]), 2] == 0).all()
