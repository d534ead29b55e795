import numpy as np
import pytest
from sklearn.base import clone
from sklearn.ensemble import RandomForestClassifier
from sklearn.pipeline import Pipeline

from bmbench.features import HandcraftedFeatures, feature_names


@pytest.fixture(scope="module")
def data(synthetic_cells):
    images, labels = [], []
    for label, cells in synthetic_cells.items():
        for c in cells[:8]:
            images.append(c.image)
            labels.append(label)
    return images, np.array(labels)


def test_pipeline_with_a_classifier(data):
    images, labels = data
    pipe = Pipeline([("features", HandcraftedFeatures()),
                     ("model", RandomForestClassifier(n_estimators=50, random_state=0))])
    train = np.arange(len(images)) % 4 != 0
    pipe.fit([im for im, t in zip(images, train) if t], labels[train])
    score = pipe.score([im for im, t in zip(images, train) if not t], labels[~train])
    assert score >= 0.75  # synthetic classes differ clearly in shape and colour
    names = pipe[:-1].get_feature_names_out()
    assert list(names) == feature_names()


def test_params_clone_and_array_input(data):
    images, _ = data
    t = HandcraftedFeatures(families=["shape", "color"], segmentation="watershed")
    assert t.get_params()["families"] == ["shape", "color"]
    t2 = clone(t)
    stacked = np.stack(images[:4])  # (n, H, W, 3)
    X = t2.fit_transform(stacked)
    assert X.shape == (4, 25 + 204) and X.dtype == np.float32
    assert t2.n_features_out_ == 229
    np.testing.assert_array_equal(X, t2.transform(list(stacked)))


def test_jobs_do_not_change_results(data):
    images, _ = data
    a = HandcraftedFeatures(families=["texture"]).fit_transform(images[:6])
    b = HandcraftedFeatures(families=["texture"], jobs=2).fit_transform(images[:6])
    np.testing.assert_array_equal(a, b)


def test_invalid_params_fail_in_fit():
    with pytest.raises(ValueError, match="known"):
        HandcraftedFeatures(families=["nope"]).fit([])
    with pytest.raises(ValueError, match="known"):
        HandcraftedFeatures(segmentation="nope").fit([])
