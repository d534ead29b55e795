"""scikit-learn transformer computing handcrafted features from RGB images."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator, TransformerMixin

from .extract import FeatureSettings, extract_one, feature_names


def _extract_vector(image: np.ndarray, settings: FeatureSettings) -> np.ndarray:
    return extract_one(np.asarray(image), settings)[0]


class HandcraftedFeatures(TransformerMixin, BaseEstimator):
    """Images -> handcrafted feature matrix, usable as a Pipeline step.

    Parameters (stored as given, validated in ``fit``):
        families: feature family names, or None for all registered families.
        segmentation: segmentation method name.
        image_size: resize each image's longer side to this before extraction, or None.
        jobs: worker processes for ``transform`` (joblib); results do not depend on it.

    ``transform(X)`` takes a sequence of ``uint8[H, W, 3]`` RGB images (sizes may differ) or
    one ``uint8[n, H, W, 3]`` array and returns ``float32[n, n_features]`` (NaN where a
    region is empty). Fitting learns nothing: features are fixed functions of each image.
    """

    def __init__(self, families=None, segmentation="otsu", image_size=None, jobs=1):
        self.families = families
        self.segmentation = segmentation
        self.image_size = image_size
        self.jobs = jobs

    def _settings(self) -> FeatureSettings:
        if self.families is None:
            return FeatureSettings(segmentation=self.segmentation, image_size=self.image_size)
        return FeatureSettings(tuple(self.families), self.segmentation, self.image_size)

    def fit(self, X=None, y=None):
        """Validate the parameters and record the output feature names."""
        settings = self._settings()
        self.feature_names_out_ = np.asarray(feature_names(settings), dtype=object)
        self.n_features_out_ = len(self.feature_names_out_)
        return self

    def transform(self, X) -> np.ndarray:
        if not hasattr(self, "feature_names_out_"):
            self.fit()
        settings = self._settings()
        images = list(X)
        if self.jobs == 1 or len(images) <= 1:
            rows = [_extract_vector(im, settings) for im in images]
        else:
            from joblib import Parallel, delayed

            rows = Parallel(n_jobs=self.jobs)(delayed(_extract_vector)(im, settings) for im in images)
        if not rows:
            return np.empty((0, self.n_features_out_), np.float32)
        return np.stack(rows).astype(np.float32, copy=False)

    def get_feature_names_out(self, input_features=None) -> np.ndarray:
        if not hasattr(self, "feature_names_out_"):
            self.fit()
        return self.feature_names_out_.copy()

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.two_d_array = False
        tags.requires_fit = False
        return tags
