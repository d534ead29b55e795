import dataclasses
import logging

import numpy as np
import pytest

from bmbench.models import classifiers
from bmbench.models.classifiers import ClassifierSettings, XGBoostOptions
from bmbench.models.tabular import fit_classifier, predict_proba, readable

SETTINGS = ClassifierSettings(seed=0, jobs=1)
XGB = XGBoostOptions(n_estimators=30, max_depth=3, learning_rate=0.3, early_stopping=5)


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


def fit(name, x, y, cache, settings=SETTINGS, options=None):
    options = options or (XGB if name == "xgboost" else classifiers.get_classifier(name).Options())
    return fit_classifier(name, options, settings, x[:80], y[:80], x[80:100], y[80:100], 3, "balanced", cache)


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
    fit("xgboost", x, y, tmp_path, options=dataclasses.replace(XGB, max_depth=2))
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
        classifiers.LogisticRegressionOptions(), SETTINGS, x[two & readable(x)], y[two & readable(x)], None, None, None, 2)
    p = predict_proba(fitted, x[:6], 3)
    assert p.shape == (6, 3) and (p[readable(x[:6]), 2] == 0).all()


def _options(**raw):
    from bmbench.config.recipe import recipe_from_dict

    recipe = {"name": "t", "dataset": {"kind": "synthetic"}, "model": {"family": "classical", **raw}}
    return recipe_from_dict(recipe).model.options


def test_each_classifier_declares_its_own_options():
    rf = _options(classifier={"name": "random_forest", "max_depth": 4, "n_estimators": 50})
    assert rf.classifier_options() == classifiers.RandomForestOptions(n_estimators=50, max_depth=4)
    assert _options(classifier="random_forest", n_estimators=70).classifier_options() == \
        classifiers.RandomForestOptions(n_estimators=70)  # the old flat shorthand still works
    xgb = _options(n_estimators=400, max_depth=3).classifier_options()
    assert (xgb.n_estimators, xgb.max_depth, xgb.early_stopping) == (400, 3, 50)
    lr = _options(classifier={"name": "logistic_regression", "C": 0.5})
    assert lr.classifier_options() == classifiers.LogisticRegressionOptions(C=0.5)


def test_options_a_classifier_does_not_read_are_never_silently_ignored(caplog):
    from bmbench.core.errors import RecipeError

    with caplog.at_level(logging.WARNING, logger="bmbench"):
        _options(classifier="random_forest", max_depth=8)  # old recipes keep working, loudly
    assert ("model.max_depth: 8 has no effect on classifier random_forest; use classifier: "
            "{name: random_forest, max_depth: 8}") in caplog.text
    with pytest.raises(RecipeError, match=r"model\.classifier\.max_dept: unknown key \(did you mean 'max_depth'"):
        _options(classifier={"name": "random_forest", "max_dept": 8})
    with pytest.raises(RecipeError, match=r"model\.classifier: unknown classifier 'knm'"):
        _options(classifier="knm")
    with pytest.raises(RecipeError, match="give it inside the classifier"):
        _options(classifier={"name": "xgboost"}, n_estimators=10)


def test_the_recipe_form_round_trips_and_keeps_old_fingerprints():
    from bmbench.config.recipe import recipe_from_dict

    raw = {"name": "t", "dataset": {"kind": "synthetic"}, "model": {"family": "classical",
                                                        "classifier": {"name": "svm", "C": 2.0}}}
    r = recipe_from_dict(raw)
    assert r.to_dict()["model"]["classifier"] == {"name": "svm", "C": 2.0}
    assert recipe_from_dict(r.to_dict()) == r
    plain = recipe_from_dict({"name": "t", "dataset": {"kind": "synthetic"}, "model": {"family": "classical"}})
    assert plain.to_dict()["model"]["classifier"] == "xgboost"


def test_the_fit_cache_key_holds_the_classifiers_library_versions(tmp_path, monkeypatch, fit_calls):
    x, y = data()
    fit("logistic_regression", x, y, tmp_path)
    from bmbench.models import tabular

    monkeypatch.setattr(tabular, "version", lambda lib: "999.0")
    fit("logistic_regression", x, y, tmp_path)
    assert fit_calls == ["logistic_regression", "logistic_regression"]


def test_a_cached_fit_predicts_saves_and_explains_itself_without_loading_the_model(tmp_path, monkeypatch):
    from bmbench.models.tabular import CachedFit, best_iteration, importances_of, save_fitted

    x, y = data()
    first = fit("xgboost", x, y, tmp_path)
    assert isinstance(first, CachedFit) and first._model is not None  # the new fit, kept in memory
    expected = predict_proba(first, x[100:], 3)
    imp, best = importances_of("xgboost", first, 6), best_iteration(first)
    save_fitted("xgboost", first, tmp_path / "run1")
    again = fit("xgboost", x, y, tmp_path)
    assert isinstance(again, CachedFit) and again._model is None
    entry = classifiers.get_classifier("xgboost")
    monkeypatch.setitem(classifiers.CLASSIFIERS._entries, "xgboost",
                        dataclasses.replace(entry, load=lambda folder: pytest.fail("the model was loaded")))
    again = fit("xgboost", x, y, tmp_path)
    assert np.array_equal(predict_proba(again, x[100:], 3), expected)
    assert np.array_equal(importances_of("xgboost", again, 6), imp) and best_iteration(again) == best
    save_fitted("xgboost", again, tmp_path / "run2")
    assert (tmp_path / "run2" / "xgboost.json").read_bytes() == (tmp_path / "run1" / "xgboost.json").read_bytes()
    assert sorted(p.name for p in (tmp_path / "run2").iterdir()) == ["xgboost.json"]
    monkeypatch.setitem(classifiers.CLASSIFIERS._entries, "xgboost", entry)
    other = predict_proba(fit("xgboost", x, y, tmp_path), x[:20], 3)  # new rows: the model is loaded
    assert np.array_equal(other, predict_proba(entry.load(again.folder), x[:20], 3), equal_nan=True)
    assert classifiers.get_classifier("xgboost").load(tmp_path / "run2").predict_proba(x[100:101]).shape == (1, 3)


def test_a_cached_fit_whose_files_changed_is_refitted(tmp_path, fit_calls, caplog):
    x, y = data()
    fit("logistic_regression", x, y, tmp_path)
    (entry,) = (tmp_path / "fits").glob("*/*")
    with open(entry / "classifier.skops", "ab") as fh:
        fh.write(b"x")
    with caplog.at_level(logging.WARNING, logger="bmbench.run"):
        fit("logistic_regression", x, y, tmp_path)
    assert "does not match its sha256" in caplog.text and fit_calls == ["logistic_regression"] * 2
