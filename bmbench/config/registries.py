"""The plug-in points a recipe names, as registries the recipe validator can read.

Each registry is filled by its layer's modules (named here as strings, imported on first
lookup, so this layer imports nothing above it) and by installed plug-ins through the
entry-point group shown. Backbones, classifiers and feature families are registries of
their own layers (:mod:`bmbench.models.backbones`, :mod:`bmbench.models.classifiers`,
:mod:`bmbench.features.registry`): only the family that uses them validates their names.
"""

from __future__ import annotations

from ..core.errors import DatasetError, RecipeError
from ..core.registry import Registry

#: Published data set layouts: :class:`bmbench.data.registry.DatasetKind` entries.
DATASET_KINDS: Registry = Registry("dataset kind", "bmbench.datasets", ("bmbench.data.layouts", "bmbench.data.merged"),
                                   error=DatasetError)

#: Model families: classes following :class:`bmbench.models.registry.Family`.
FAMILIES: Registry = Registry("model family", "bmbench.families", tuple(
    f"bmbench.models.families.{m}" for m in ("baseline", "classical", "cnn", "transfer", "hybrid", "ensemble")),
    error=RecipeError)

#: Image preprocessing steps of the image stage: :class:`bmbench.data.preprocessing.Step`.
PREPROCESSING: Registry = Registry("preprocessing step", "bmbench.preprocessing",
                                   ("bmbench.data.preprocessing",), error=RecipeError)

#: On-the-fly augmentations of the deep families: :class:`bmbench.deep.augment.Augmentation`.
AUGMENTATIONS: Registry = Registry("augmentation", "bmbench.augmentations", ("bmbench.deep.augment",),
                                   error=RecipeError, key="train.augment")
