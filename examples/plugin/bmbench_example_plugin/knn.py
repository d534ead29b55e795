"""Classifier ``knn``: k-nearest neighbours on standardised features.

Registered through the ``bmbench.classifiers`` entry point; a recipe selects it with
``model.classifier: {name: knn, n_neighbors: 7}`` (or just ``knn`` for the defaults). Its
options are validated like every recipe key: a typo names the key and the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from bmbench.config.schema import option
from bmbench.models.classifiers import CLASSIFIERS, sklearn_classifier


@dataclass(frozen=True)
class KNNOptions:
    n_neighbors: int = option(5, ge=1, le=1000, doc="neighbours that vote")
    weights: Literal["uniform", "distance"] = option("distance", doc="vote weight of each neighbour")


def _build(options: KNNOptions, settings):
    from sklearn.neighbors import KNeighborsClassifier

    return KNeighborsClassifier(n_neighbors=options.n_neighbors, weights=options.weights,
                                n_jobs=settings.jobs)


#: What a fitted KNeighborsClassifier holds besides arrays (a KD or ball tree and its metric,
#: depending on the data): the exact types its saved file may contain, nothing else loads.
TRUSTED = ("sklearn.neighbors._classification.KNeighborsClassifier", "sklearn.neighbors._kd_tree.KDTree",
           "sklearn.neighbors._ball_tree.BallTree", "sklearn.metrics._dist_metrics.EuclideanDistance64")

CLASSIFIERS.register("knn", sklearn_classifier(
    "knn", "k-nearest neighbours on median-imputed, standardised features", _build, KNNOptions,
    trusted=TRUSTED))
