"""The shape of a run's ``run.json`` and ``metrics.json``, checked whenever they are read back.

A run folder may come from a colleague, an older bmbench or a half-failed copy: every
field a view uses is checked here once (type, and for nested values their types), so a
damaged record is one :class:`~bmbench.core.untrusted.DamagedFile` line naming the file and
the field, never a traceback deep inside the leaderboard or a report. Fields are optional
unless a view cannot do without them; unknown fields are allowed (newer bmbench versions).

The shapes are declared in :mod:`bmbench.core.shapes`' vocabulary.
"""

from __future__ import annotations

import re
from pathlib import Path

from ..core.shapes import ListOf, MapOf, problem
from ..core.untrusted import damaged
from ..metrics.scores import HEADLINE

NUMBER = (int, float)
_EVALUATION_FOLDER = re.compile(r"evaluations/[A-Za-z0-9_][A-Za-z0-9_.-]*")
MAYBE_NUMBER = (int, float, type(None))


_EVALUATION = {"folder": str, "kind": str, "n_images": int, "macro_f1?": MAYBE_NUMBER,
               "accuracy?": MAYBE_NUMBER, "adaptation?": {"n_per_class": int, "seed": int},
               "transductive?": str}

#: ``run.json`` (runs and their cross-data-set evaluations).
INFO = {
    "id?": str, "name": str, "description?": (str, None), "family": str, "settings?": str,
    "recipe_fingerprint?": str, "seed?": int, "seed_group?": str, "title?": str,
    "dataset": {"kind": str, "classes": ListOf(str), "root?": str, "fingerprint?": str,
                "n_images?": int, "class_counts?": MapOf(int)},
    "split_fingerprint": str, "split": {"strategy": str},
    "n_folds?": int, "n_train?": int, "n_val?": int, "n_test?": int, "n_unscored_test_images?": int,
    "skipped_images?": dict, "timings?": MapOf(MAYBE_NUMBER), "notes?": dict, "bmbench_version?": str,
    "tags?": {"ablation?": str, "variant?": str, "values?": dict, "repeat?": int},
    "evaluations?": ListOf(_EVALUATION), "evaluation?": dict, "transductive?": {"mode": str},
}

#: ``metrics.json``.
METRICS = {
    "n?": int, "classes?": ListOf(str), **{f"{m}?": MAYBE_NUMBER for m in HEADLINE},
    "per_class?": MapOf({"precision": MAYBE_NUMBER, "recall": MAYBE_NUMBER, "f1": MAYBE_NUMBER,
                         "support": int}),
    "confusion_matrix?": ListOf(ListOf(int)),
    "ci?": MapOf((ListOf(NUMBER, 2), None)), "ci_method?": dict,
    "fold_summary?": MapOf(({"mean": NUMBER, "std": NUMBER}, None)), "folds?": list,
    "binary?": ({"positive_class": str, "tp": int, "fp": int, "fn": int, "tn": int,
                 "sensitivity": MAYBE_NUMBER, "specificity": MAYBE_NUMBER, "precision": MAYBE_NUMBER,
                 "f1": MAYBE_NUMBER, "roc_auc": MAYBE_NUMBER}, None),
}


def check_info(value) -> str | None:
    """A :func:`~bmbench.core.untrusted.read_json` check of ``run.json``."""
    found = problem(value, INFO)
    if found:
        return found
    if not 1 <= value.get("n_folds", 1) <= 1000:
        return f"field 'n_folds' is {value['n_folds']}, expected 1 to 1000"
    if not value["dataset"]["classes"]:
        return "field 'dataset.classes' is empty"
    for i, e in enumerate(value.get("evaluations", [])):
        if not _EVALUATION_FOLDER.fullmatch(e["folder"]):
            return f"field 'evaluations.{i}.folder' is {e['folder']!r}, expected evaluations/<name> inside the run"
    return None


def check_metrics(value) -> str | None:
    """A :func:`~bmbench.core.untrusted.read_json` check of ``metrics.json``: the shapes,
    and a confusion matrix and per-class table that match its class list."""
    found = problem(value, METRICS)
    if found or "classes" not in value:
        return found
    k = len(value["classes"])
    cm = value.get("confusion_matrix")
    if cm is not None and (len(cm) != k or any(len(row) != k for row in cm)):
        return f"field 'confusion_matrix' is not {k} x {k} (the number of classes)"
    if "per_class" in value and set(value["per_class"]) != set(value["classes"]):
        return "field 'per_class' does not name the same classes as 'classes'"
    return None


def require(record, what: str, *keys: str) -> None:
    """Refuse ``record`` (one line naming its ``metrics.json``) when a field ``what`` (a
    command) needs is missing: older or partial records may lack optional fields."""
    missing = [k for k in keys if k not in record.metrics]
    if missing:
        raise damaged(record.path / "metrics.json", f"lacks the field '{missing[0]}', which {what} needs",
                      "a damaged run record: restore the file or delete that run folder")


def data_root(record) -> Path:
    """The data set root of a :class:`~bmbench.runs.store.RunRecord`, where its
    ``predictions.csv`` paths lie."""
    return Path(str((record.info.get("dataset") or {}).get("root") or "."))
