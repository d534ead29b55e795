"""The notebook API: the CLI's commands as Python calls returning objects that render
themselves in Jupyter and Colab (:mod:`bmbench.views.notebook`).

``bmbench.run``, ``leaderboard``, ``load_run``, ``features``, ``ablate`` and ``compare`` make
the same calls as ``bmbench run``, ``leaderboard``, ... (the shared code lives below this
layer) and take the same options as keyword arguments. A user's mistake raises the same
one-line :class:`~bmbench.core.errors.BmbenchError` the CLI prints, and IPython shows it as
that one line (``BmbenchError._render_traceback_``), not a traceback.
"""

from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

from .core.errors import BmbenchError
from .core.progress import configure_output

__all__ = ["run", "leaderboard", "load_run", "features", "ablate", "compare"]


def _user_facing(fn):
    """An OS error (a full disk, a read-only folder) becomes the CLI's one line."""

    @functools.wraps(fn)
    def call(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except BmbenchError:
            raise
        except OSError as exc:
            from .core.oserrors import describe

            raise BmbenchError(describe(exc)) from None
    return call


@_user_facing
def run(recipe: str | os.PathLike, *, set: dict | None = None, repeats: int | None = None,
        results_dir: str | os.PathLike | None = None, quiet: bool = False, **overrides):
    """Train and score ``recipe`` (a YAML path, or the name of one in ``./recipes/``) and store
    the run, as ``bmbench run``; returns the stored :class:`~bmbench.views.notebook.Run`
    (a :class:`~bmbench.views.notebook.Runs` list with ``repeats`` > 1).

    Overrides are ``--set``'s dotted keys, given as ``set={"train.epochs": 2}`` or as
    keywords (``**{"train.epochs": 2}``); a text value is read as YAML, like on the command line.
    """
    from .runs.runner import run_repeats
    from .runs.store import load_record
    from .views.notebook import Run, Runs

    configure_output(quiet)
    folders = run_repeats(_recipe_path(recipe), results_dir, _override_texts(set, overrides), repeats)
    runs = [Run(load_record(f), results_dir) for f in folders]
    return runs[0] if len(runs) == 1 else Runs(runs)


@_user_facing
def leaderboard(results_dir: str | os.PathLike | None = None, *, metric: str = "macro_f1",
                dataset: str | None = None, recipe: str | None = None, family: str | None = None,
                best_per_recipe: bool = False, fair: bool = False, use_index: bool = True):
    """Stored runs ranked per data set and test split, the metric with its 95% interval and
    runs not significantly different from the leader marked n.s., as ``bmbench leaderboard``;
    returns a :class:`~bmbench.views.notebook.Leaderboard`."""
    from .views.leaderboard import store_boards
    from .views.notebook import Leaderboard

    configure_output(False)
    store, boards, empty = store_boards(results_dir, metric, dataset, recipe, family, best_per_recipe, fair,
                                        use_index)
    return Leaderboard(boards, store, empty)


@_user_facing
def load_run(ref: str | os.PathLike = "latest", results_dir: str | os.PathLike | None = None, *,
             dataset: str | None = None):
    """The stored run ``ref`` (a folder, an id or id prefix, a recipe name, or ``latest``) as a
    :class:`~bmbench.views.notebook.Run`: its summary card in a notebook; ``.predict(images)``
    and ``.explain(images)`` load its model."""
    from .config.locations import results_dir as resolve
    from .runs.store import load_record, resolve_run
    from .views.notebook import Run

    folder = resolve_run(resolve(results_dir), str(ref), dataset)
    return Run(load_record(folder), results_dir)


@_user_facing
def compare(a: str, b: str, *, metric: str = "macro_f1", resamples: int = 1000, seed: int = 0,
            dataset: str | None = None, results_dir: str | os.PathLike | None = None):
    """Paired tests of runs ``a`` and ``b`` on their shared test images (exact McNemar, paired
    bootstrap of the metric difference), as ``bmbench compare``; returns a
    :class:`~bmbench.views.notebook.Comparison`."""
    from .views.compare import compare_refs
    from .views.notebook import Comparison

    if not 100 <= resamples <= 100_000:
        raise BmbenchError(f"resamples={resamples}: choose 100 to 100000")
    return Comparison(compare_refs(str(a), str(b), metric, resamples, seed, dataset, results_dir))


@_user_facing
def features(source: str | os.PathLike, out: str | os.PathLike | None = None, *, kind: str = "folder",
             options: dict | None = None, families: list[str] | None = None, segmentation: str = "otsu",
             feature_size: int | None = None, set: dict | None = None, jobs: int = 1, backbone: str | None = None,
             weights: str | None = None, image_size: int | None = None,
             results_dir: str | os.PathLike | None = None, quiet: bool = False):
    """Handcrafted features (or, with ``backbone``, its embeddings) of every image of
    ``source`` (a recipe, or a data folder of ``kind``), as ``bmbench features``; returns a
    :class:`~bmbench.views.notebook.FeatureTable` (``.to_pandas()``). ``out``: also keep the
    table there (``.csv`` or ``.parquet``, data dictionary beside it)."""
    import tempfile

    configure_output(quiet)
    overrides = _override_texts(set, {})
    with tempfile.TemporaryDirectory(prefix="bmbench-features-") as tmp:
        target = Path(out) if out is not None else Path(tmp) / "features.parquet"
        if backbone:
            from .views.export_embeddings import embedding_job, export_embeddings

            job = embedding_job(source, backbone, weights, image_size, kind, options, overrides, results_dir, jobs)
            path = export_embeddings(job, target)
        else:
            from .views.export_features import export_features, feature_source

            src = feature_source(source, kind, options, families, segmentation, feature_size, overrides, results_dir)
            path = export_features(src, target, jobs)
        return _feature_table(path, kept=out is not None)


def _feature_table(path: Path, kept: bool):
    import pandas as pd

    from .core.untrusted import read_json
    from .views.notebook import FeatureTable

    frame = pd.read_parquet(path) if path.suffix.lower() == ".parquet" else pd.read_csv(path)
    dictionary = read_json(path.with_suffix(".features.json"),
                           lambda d: None if isinstance(d, dict) else "not a mapping",
                           "a damaged data dictionary: export the features again")
    return FeatureTable(frame, dictionary, path if kept else None)


@_user_facing
def ablate(source: str | os.PathLike | None = None, vary: dict | list | None = None, *, mode: str | None = None,
           repeats: int | None = None, metrics: tuple[str, ...] = (), set: dict | None = None,
           id: str | None = None, backend: str = "local", jobs: int = 1, scheduler: str | None = None,
           report: str | None = None, results_dir: str | os.PathLike | None = None, quiet: bool = False):
    """Run an ablation (an ablation file, or a recipe with ``vary={"key.path": [v1, v2]}``),
    or with ``report=ID`` rebuild a stored one's tables, as ``bmbench ablate``; returns an
    :class:`~bmbench.views.notebook.Ablation` (``.to_pandas(metric)``)."""
    from .config.ablation import check_metrics, plan_ablation
    from .config.locations import results_dir as resolve
    from .views.ablation import build_report, run_and_report, write_report
    from .views.notebook import Ablation

    configure_output(quiet)
    store = resolve(results_dir)
    chosen = check_metrics(tuple(metrics))
    if report:
        if source or vary:
            raise BmbenchError("report= rebuilds a stored ablation from the results; give no source or vary with it")
        built = build_report(store, report, chosen)
        return Ablation(built, write_report(built, store))
    if not source:
        raise BmbenchError("give an ablation file, a recipe with vary={'key.path': [v1, v2]}, or report=ID")
    plan = plan_ablation(_recipe_path(source), _vary_texts(vary), _override_texts(set, {}), mode, repeats, chosen,
                         id)
    say = (lambda line: None) if quiet else (lambda line: print(line, file=sys.stderr))
    say(f"ablation {plan.id}: {len(plan.variants)} variant(s) x {plan.repeats} repeat(s) = {plan.n_runs} run(s), "
        "all valid")
    outcome, built, paths = run_and_report(plan, store, backend, jobs, scheduler, say)
    return Ablation(built, paths, list(outcome.failed))


def _recipe_path(recipe: str | os.PathLike) -> str:
    """``recipe`` itself, or ``recipes/<name>.yaml`` for a bare name found there."""
    text = os.fspath(recipe)
    named = Path("recipes") / f"{text}.yaml"
    if not Path(text).exists() and Path(text).suffix == "" and os.sep not in text and named.is_file():
        return str(named)
    return text


def _value_text(value) -> str:
    """A Python value as ``--set`` text: strings as given (read as YAML, like the CLI's);
    anything else as JSON, which YAML reads back as the same value."""
    if isinstance(value, str):
        return value
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    try:
        return json.dumps(value)
    except TypeError:
        raise BmbenchError(f"value {value!r}: give a number, text, list or mapping") from None


def _override_texts(given, keywords: dict) -> tuple[str, ...]:
    """``key.path=value`` texts of ``set`` (a mapping, or ``key=value`` texts) and keywords."""
    if given is None:
        given = {}
    if isinstance(given, (list, tuple)):
        texts = [str(t) for t in given]
    elif isinstance(given, dict):
        texts = [f"{k}={_value_text(v)}" for k, v in given.items()]
    else:
        raise BmbenchError(f"set={given!r}: give a mapping such as set={{'train.epochs': 2}}")
    return tuple(texts + [f"{k}={_value_text(v)}" for k, v in keywords.items()])


def _vary_texts(vary) -> tuple[str, ...]:
    """``--vary`` texts (``key.path=v1,v2``) of ``{"key.path": [v1, v2]}`` or such texts."""
    if vary is None:
        return ()
    if isinstance(vary, dict):
        out = []
        for key, values in vary.items():
            if not isinstance(values, (list, tuple)) or not values:
                raise BmbenchError(f"vary[{key!r}]: give a list of values, e.g. {{'{key}': [1, 2]}}")
            out.append(f"{key}=" + ",".join(json.dumps(v) for v in values))
        return tuple(out)
    return tuple(str(v) for v in vary)
