"""Classifier ``naive_bayes``: Gaussian naive Bayes on standardised features.

Registered through the ``bmbench.classifiers`` entry point; a recipe selects it with
``model.classifier: {name: naive_bayes, var_smoothing: 1.0e-6}`` (or just ``naive_bayes``
for the defaults). Its options are validated like every recipe key: a typo names the key
and the valid ones.
"""

from __future__ import annotations

from dataclasses import dataclass

from bmbench.config.schema import option
from bmbench.models.classifiers import CLASSIFIERS, sklearn_classifier


@dataclass(frozen=True)
class NaiveBayesOptions:
    var_smoothing: float = option(1e-9, gt=0.0, le=1.0, doc="share of the largest variance added to every variance")


def _build(options: NaiveBayesOptions, settings):
    from sklearn.naive_bayes import GaussianNB

    return GaussianNB(var_smoothing=options.var_smoothing)


CLASSIFIERS.register("naive_bayes", sklearn_classifier(
    "naive_bayes", "Gaussian naive Bayes on median-imputed, standardised features", _build, NaiveBayesOptions,
    trusted=("sklearn.naive_bayes.GaussianNB",)))
