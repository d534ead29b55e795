"""Handcrafted features of segmented blood and bone-marrow cells (the classical family).

``segment`` finds the nucleus and the whole cell; the shape, colour and texture families
(``registry.FEATURE_FAMILIES``) turn them into documented feature vectors; ``extract_one`` and
``extract_many`` run the lot, ``HandcraftedFeatures`` wraps it for scikit-learn.
"""

from .extract import (
    FEATURE_VERSION,
    FeatureSettings,
    data_dictionary,
    extract_many,
    extract_one,
    feature_names,
    write_data_dictionary,
)
from .registry import FEATURE_FAMILIES
from .segmentation import METHODS, Segmentation, overlay, segment
from .specs import REGIONS, Family, FeatureSpec

__all__ = [
    "FEATURE_FAMILIES", "FEATURE_VERSION", "METHODS", "REGIONS", "Family", "FeatureSettings", "FeatureSpec",
    "HandcraftedFeatures", "Segmentation", "data_dictionary", "extract_many", "extract_one",
    "feature_names", "overlay", "segment", "write_data_dictionary",
]


def __getattr__(name):
    # sklearn is imported only when the transformer is asked for.
    if name == "HandcraftedFeatures":
        from .sklearn import HandcraftedFeatures

        return HandcraftedFeatures
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
