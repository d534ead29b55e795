"""Equal-budget tuning (``bmbench tune``): an Optuna study over a recipe's search space,
scored on the validation images only, stored in a database, and ended by one ordinary run.

- **Space**: :func:`bmbench.config.space.default_space` (declared beside each option) or the
  recipe's ``tune.space``; the recipe's own values are enqueued as trial 0, so the best trial
  is never worse on validation than the default.
- **Objective**: ``tune.metric`` (default macro-F1) on the validation split of fold 0, or the
  mean over ``tune.cv`` stratified folds of the training and validation images. The test
  images of the split are never decoded, featurised or predicted during a study. Classifier
  trials of a tabular family (``classical``) reuse one feature matrix and fit only the
  classifier (without early stopping: the validation images are for scoring, never for
  fitting); deep trials report Keras's validation accuracy after every epoch and are pruned
  (median or Hyperband pruner).
- **Store**: Optuna's RDB storage, by default SQLite at ``results/studies/<id>/study.db``
  (``--storage URL`` for a database server). Every finished trial is a committed row, so a
  study killed at any moment resumes with ``--resume``; trials left running by a dead
  process are failed after :data:`HEARTBEAT` seconds without a heartbeat and not counted.
  Several processes (``--jobs``, a second ``bmbench tune --resume``, Dask workers) share one
  study through the same database: the budget counts finished and running trials of all.
- **Result**: the best of the first ``trials`` finished trials is refitted as its recipe says
  and stored as an ordinary run whose ``run.json`` and model card carry ``tuning``.
"""

from __future__ import annotations

from contextlib import contextmanager

import dataclasses
import hashlib
import json
import logging
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from ..config.recipe import Recipe, TuneSpec, recipe_from_dict
from ..config.space import SearchSpace, Space, tabular_base
from ..core.atomic import write_json
from ..core.errors import BmbenchError

log = logging.getLogger("bmbench.tune")

STUDIES = "studies"
DEFAULT_TRIALS = 40
#: ``(heartbeat interval, grace period)`` in seconds of a study's running trials.
HEARTBEAT = (10, 30)
MANIFEST = "study.json"


# --- a recipe with parameters -------------------------------------------------------------

def with_params(recipe: Recipe, params: Mapping[str, Any]) -> Recipe:
    """``recipe`` with ``params`` (``{key: recipe value}``) set, validated again. A bare
    classifier name becomes its explicit mapping (with its effective options) first."""
    raw = recipe.to_dict()
    model = raw["model"]
    opts = recipe.model.options
    if any(k.startswith("model.classifier.") for k in params) and hasattr(opts, "classifier_options"):
        model["classifier"] = {"name": opts.classifier.name, **dataclasses.asdict(opts.classifier_options())}
        for f in dataclasses.fields(tabular_base(opts)):
            if f.name != "classifier":
                model[f.name] = f.default  # shorthands are folded into the mapping
    for key, value in params.items():
        section, _, rest = key.partition(".")
        node = raw[section]
        parts = rest.split(".")
        for part in parts[:-1]:
            node = node[part]
        node[parts[-1]] = list(value) if isinstance(value, tuple) else value
    return recipe_from_dict(raw, recipe.source or "<tuned recipe>")


# --- the plan -----------------------------------------------------------------------------

@dataclass(frozen=True)
class StudyPlan:
    """Everything a worker needs to take part in a study (plain data through :meth:`payload`)."""

    id: str
    recipe: Recipe
    trials: int | None
    minutes: float | None
    storage: str
    folder: Path

    @property
    def tune(self) -> TuneSpec:
        return self.recipe.tune

    @property
    def space(self) -> SearchSpace:
        return self.recipe.tune.space

    @property
    def direction(self) -> str:
        from ..metrics.scores import LOWER_IS_BETTER

        return "minimize" if self.tune.metric in LOWER_IS_BETTER else "maximize"

    def defaults(self) -> dict:
        """Trial 0: the recipe's own value of every searched key, as Optuna stores it."""
        from ..config.space import current_value

        return {k: s.encode(current_value(self.recipe, k)) for k, s in self.space}

    def payload(self) -> dict:
        return {"id": self.id, "recipe": self.recipe.to_dict(), "source": self.recipe.source,
                "fingerprint": self.recipe.fingerprint(), "trials": self.trials,
                "minutes": self.minutes, "storage": self.storage, "folder": str(self.folder)}

    @classmethod
    def from_payload(cls, p: dict) -> "StudyPlan":
        recipe = recipe_from_dict(p["recipe"], p["source"])
        if recipe.fingerprint() != p["fingerprint"]:
            raise BmbenchError(f"the recipe resolves differently on {os.uname().nodename} (fingerprint "
                               f"{recipe.fingerprint()} instead of {p['fingerprint']}); install the same "
                               "bmbench version on every worker")
        return cls(p["id"], recipe, p["trials"], p["minutes"], p["storage"], Path(p["folder"]))


def plan_study(recipe: Recipe, results: Path, trials: int | None = None, minutes: float | None = None,
               study_id: str | None = None, storage: str | None = None) -> StudyPlan:
    """The study of ``recipe`` (its ``tune`` section, or the defaults) with the budget
    ``trials``/``minutes`` (command line over recipe; 40 trials when neither is given)."""
    if recipe.tune is None:
        recipe = recipe_from_dict({**recipe.to_dict(), "tune": {}}, recipe.source or "<recipe>")
    tune = recipe.tune
    if not len(tune.space):
        raise BmbenchError(f"{recipe.source or recipe.name}: the {recipe.model.family} family declares no "
                           "search space; give one as tune.space (e.g. {model.C: {log_float: [0.01, 100]}})")
    trials = trials if trials is not None else tune.trials
    minutes = minutes if minutes is not None else tune.minutes
    if trials is None and minutes is None:
        trials = DEFAULT_TRIALS
    if study_id is None:
        what = [recipe.fingerprint(), tune.space.to_plain(), tune.metric, tune.cv, tune.seed, tune.pruner]
        study_id = f"{recipe.name}-{hashlib.sha256(json.dumps(what, sort_keys=True, default=str).encode()).hexdigest()[:8]}"
    from ..core.paths import safe_name

    folder = Path(results).resolve() / STUDIES / safe_name(study_id)
    url = storage or f"sqlite:///{folder / 'study.db'}"
    return StudyPlan(study_id, recipe, trials, minutes, url, folder)


def _storage(url: str):
    import warnings

    import optuna

    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)

    kwargs = {"connect_args": {"timeout": 300}} if url.startswith("sqlite") else {}
    return optuna.storages.RDBStorage(url, engine_kwargs=kwargs, heartbeat_interval=HEARTBEAT[0],
                                      grace_period=HEARTBEAT[1])


@contextmanager
def _schema_lock(plan: StudyPlan):
    """Held while Optuna creates its tables: two processes opening a new SQLite study at once
    would both create them ("table studies already exists")."""
    if not plan.storage.startswith("sqlite:///") or not plan.folder.is_dir():
        yield
        return
    import fcntl

    with open(plan.folder / ".schema.lock", "a") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def open_study(plan: StudyPlan, worker: int = 0, create: bool = False):
    """The Optuna study of ``plan`` (TPE seeded with ``tune.seed + worker``)."""
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    if create and plan.storage.startswith("sqlite:///"):
        plan.folder.mkdir(parents=True, exist_ok=True)
    sampler = optuna.samplers.TPESampler(seed=plan.tune.seed + worker, constant_liar=True)
    try:
        with _schema_lock(plan):
            storage = _storage(plan.storage)
            if create:
                return optuna.create_study(study_name=plan.id, storage=storage, sampler=sampler,
                                           pruner=_pruner(plan), direction=plan.direction, load_if_exists=True)
        return optuna.load_study(study_name=plan.id, storage=storage, sampler=sampler, pruner=_pruner(plan))
    except Exception as exc:  # noqa: BLE001 - a database that cannot be opened
        raise BmbenchError(f"{plan.storage}: cannot open study {plan.id} ({type(exc).__name__}: "
                           f"{str(exc).splitlines()[0][:200]})") from None


def _pruner(plan: StudyPlan):
    import optuna

    if plan.tune.pruner == "none":
        return optuna.pruners.NopPruner()
    if plan.tune.pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(2, plan.recipe.train.epochs))
    return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=3)


def finished(study) -> list:
    """Complete and pruned trials, in trial order."""
    from optuna.trial import TrialState

    return study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))


def prepare(plan: StudyPlan, resume: bool):
    """Create (or, with ``resume``, continue) the study; fail trials left by dead processes;
    enqueue trial 0 unless it is done or under way. Writes ``study.json``."""
    from optuna.trial import TrialState

    existing = _exists(plan)
    if existing and not resume:
        n = len(finished(open_study(plan)))
        raise BmbenchError(f"{plan.folder}: study {plan.id} already exists with {n} finished trial(s); "
                           "add --resume to continue it, or give another --study")
    study = open_study(plan, create=True)
    import optuna

    optuna.storages.fail_stale_trials(study)
    _fail_dead_trials(study)
    defaults = plan.defaults()
    live = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.RUNNING, TrialState.WAITING)
    if not any(t.system_attrs.get("fixed_params") == defaults for t in study.get_trials(deepcopy=False, states=live)):
        study.enqueue_trial(defaults, user_attrs={"default": True})
    _write_manifest(plan, {"status": "running"})
    return study


def _fail_dead_trials(study) -> None:
    """Fail the running trials of processes on this machine that no longer exist (a trial
    killed within its first heartbeat interval has no heartbeat for Optuna to judge)."""
    from datetime import datetime

    from optuna.trial import TrialState

    host = os.uname().nodename
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        worker = str(t.user_attrs.get("worker", ""))
        name, _, pid = worker.rpartition(":")
        if name == host and pid.isdigit():
            dead = not _alive(int(pid))
        else:  # never got as far as naming its process: dead once past the grace period
            started = t.datetime_start or datetime.now()
            dead = not worker and (datetime.now() - started).total_seconds() > HEARTBEAT[1]
        if dead:
            try:
                study._storage.set_trial_state_values(t._trial_id, state=TrialState.FAIL)
            except Exception:  # noqa: BLE001 - another process failed it first
                pass


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _exists(plan: StudyPlan) -> bool:
    if plan.storage.startswith("sqlite:///") and not (plan.folder / "study.db").is_file():
        return False
    import optuna

    try:
        names = optuna.get_all_study_names(_storage(plan.storage))
    except Exception:  # noqa: BLE001
        return False
    return plan.id in names


def _write_manifest(plan: StudyPlan, extra: dict) -> None:
    path = plan.folder / MANIFEST
    try:
        old = json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        old = {}
    doc = {**old, "id": plan.id, "recipe": plan.recipe.to_dict(), "metric": plan.tune.metric,
           "direction": plan.direction, "objective": _objective_text(plan),
           "space": plan.space.to_plain(), "trials": plan.trials, "minutes": plan.minutes,
           "storage": plan.storage if plan.storage.startswith("sqlite") else "(server database)", **extra}
    plan.folder.mkdir(parents=True, exist_ok=True)
    write_json(path, doc)


def _objective_text(plan: StudyPlan) -> str:
    cv = plan.tune.cv
    return f"{cv}-fold cross-validation inside the training images" if cv else "validation split"


# --- one trial ----------------------------------------------------------------------------

def suggest(trial, key: str, space: Space) -> Any:
    """Ask ``trial`` for ``key`` in ``space``; the recipe value."""
    if space.kind == "choice":
        return space.decode(trial.suggest_categorical(key, [space.encode(v) for v in space.values]))
    low, high = space.values
    if space.kind in ("int", "log_int"):
        return trial.suggest_int(key, int(low), int(high), log=space.log)
    return trial.suggest_float(key, float(low), float(high), log=space.log)


class TrialEvaluator:
    """Scores recipes of one study on its validation images (or CV folds), never on test.

    Built once per worker: the data set table and split are read once, and a tabular family's
    feature matrix is computed once per feature setting (from the on-disk feature cache)."""

    def __init__(self, recipe: Recipe, results: Path | None):
        from ..data import load_dataset
        from ..data.splits import recipe_split, subsample_train

        self.recipe = recipe
        self.table = load_dataset(recipe.dataset)
        store = Path(results) / "splits" if results is not None else None
        split = recipe_split(self.table, recipe, store, recipe.train.jobs)
        split = subsample_train(split, self.table.labels, recipe.train.fraction, (recipe.split.seed, recipe.seed))
        fold = split.folds[0]
        self.split_fingerprint = split.fingerprint
        self.test_rows = np.asarray(fold.test)  # never read below: kept for checks
        cv = recipe.tune.cv if recipe.tune else None
        if cv:
            from sklearn.model_selection import StratifiedKFold

            rows = np.concatenate([fold.train, fold.val])
            folds = StratifiedKFold(cv, shuffle=True, random_state=recipe.split.seed)
            self.parts = [(rows[a], rows[b]) for a, b in folds.split(rows, self.table.labels[rows])]
        else:
            if not len(fold.val):
                raise BmbenchError(f"{recipe.source or recipe.name}: split.val is 0, so a study has no "
                                   "validation images to score; set split.val (e.g. 0.1) or tune.cv: 5")
            self.parts = [(np.asarray(fold.train), np.asarray(fold.val))]
        self._matrices: dict[str, tuple[np.ndarray, dict]] = {}

    @property
    def paths(self) -> np.ndarray:
        return self.table.frame["path"].to_numpy()

    def score(self, recipe: Recipe, on_epoch=None) -> tuple[float, list[float]]:
        """``(mean, per part)`` of ``recipe.tune.metric`` on the validation images of each part."""
        from ..metrics.scores import compute_metrics
        from ..models.registry import get_family
        from .context import RunContext

        random.seed(recipe.seed)
        np.random.seed(recipe.seed)
        family = get_family(recipe.model.family)()
        family.preflight(recipe.model.options)
        metric = recipe.tune.metric
        tabular = hasattr(family, "tabular_inputs") and hasattr(recipe.model.options, "classifier_options")
        scores = []
        for i, (tr, va) in enumerate(self.parts):
            ctx = RunContext.for_recipe(recipe)
            ctx.fold = i
            if tabular:
                proba = self._tabular(family, recipe, ctx, tr, va)
            else:
                ctx.on_epoch = on_epoch if len(self.parts) == 1 else None
                proba = self._fitted(family, recipe, ctx, tr, va)
            y = self.table.labels[va]
            ok = np.isfinite(proba).all(axis=1)
            scores.append(float(compute_metrics(y[ok], proba[ok], self.table.classes)[metric]))
        return float(np.mean(scores)), scores

    def _subset(self, rows):
        from ..models.registry import Subset

        return Subset(self.paths[rows], self.table.labels[rows], self.table.classes)

    def _fitted(self, family, recipe, ctx, tr, va) -> np.ndarray:
        from .staged import StagedModel, fit_preprocessing

        train, val = self._subset(tr), self._subset(va)
        steps = fit_preprocessing(recipe.dataset.preprocess, train.paths, ctx)
        ctx.images = ctx.images.with_steps(steps)
        model = StagedModel(family.fit(train, val, ctx), steps)
        return np.asarray(model.predict_proba(val.paths, ctx), dtype=np.float64)

    def _tabular(self, family, recipe, ctx, tr, va) -> np.ndarray:
        from ..models.classifiers import ClassifierSettings
        from ..models.tabular import fit_classifier, predict_proba
        from .context import MAX_JOBS_ENV

        x, where = self._matrix(family, recipe, ctx)
        opts = recipe.model.options
        cap = os.environ.get(MAX_JOBS_ENV, "")
        threads = int(cap) if cap.isdigit() and int(cap) > 0 else (os.cpu_count() or 1)
        n = len(self.table.classes)
        labels = self.table.labels
        # no validation images in the fit: they score the trial (no early stopping either)
        fitted = fit_classifier(opts.classifier.name, opts.classifier_options(), ClassifierSettings(recipe.seed, threads),
                                x[[where[r] for r in tr]], labels[tr], None, None, n,
                                recipe.train.class_weight, None)
        return predict_proba(fitted, x[[where[r] for r in va]], n)

    def _matrix(self, family, recipe, ctx):
        """The tabular inputs of every non-test row used by the study, once per setting."""
        from .staged import fit_preprocessing

        raw = recipe.to_dict()
        model = {k: v for k, v in raw["model"].items()
                 if k not in {f.name for f in dataclasses.fields(tabular_base(recipe.model.options))}}
        key = json.dumps([raw["dataset"], model], sort_keys=True, default=str)
        if key not in self._matrices:
            rows = np.unique(np.concatenate([np.concatenate(p) for p in self.parts]))
            fit_rows = self.parts[0][0] if len(self.parts) == 1 else rows
            steps = fit_preprocessing(recipe.dataset.preprocess, self.paths[fit_rows], ctx)
            ctx.images = ctx.images.with_steps(steps)
            x = np.asarray(family.tabular_inputs(self.paths[rows], ctx))
            self._matrices[key] = (x, {int(r): i for i, r in enumerate(rows)})
        return self._matrices[key]


class Objective:
    """``objective(trial) -> score`` of a study: the plan's recipe with the trial's values."""

    def __init__(self, plan: StudyPlan, results: Path | None):
        self.plan = plan
        self.evaluator = TrialEvaluator(plan.recipe, results)

    def __call__(self, trial) -> float:
        import optuna

        trial.set_user_attr("worker", f"{os.uname().nodename}:{os.getpid()}")  # for --resume after a kill
        params = {key: suggest(trial, key, space) for key, space in self.plan.space}
        recipe = with_params(self.plan.recipe, params)
        step = [0]

        def on_epoch(stage: str, epoch: int, row: dict) -> None:
            value = row.get("val_accuracy")
            if value is None or not np.isfinite(value):
                return
            step[0] += 1
            trial.report(float(value), step[0])
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned after {stage} epoch {epoch}")

        t0 = time.perf_counter()
        value, parts = self.evaluator.score(recipe, on_epoch)
        trial.set_user_attr("seconds", round(time.perf_counter() - t0, 3))
        trial.set_user_attr("parts", parts)
        trial.set_user_attr("split_fingerprint", self.evaluator.split_fingerprint)
        log.info("trial %d: %s=%.4f (%s)", trial.number, self.plan.tune.metric, value,
                 ", ".join(f"{k}={v}" for k, v in params.items()))
        return value


# --- workers ------------------------------------------------------------------------------

def optimize(plan: StudyPlan, results: Path | None, worker: int = 0, deadline: float | None = None) -> int:
    """Run trials of ``plan`` in this process until the study holds ``plan.trials`` finished
    or running trials (of every process) or ``deadline`` (``time.time()``) passes; returns
    the number of trials this process finished."""
    from optuna.trial import TrialState

    study = open_study(plan, worker)
    objective = Objective(plan, results)
    done = 0
    failures = 0
    while True:
        if deadline is not None and time.time() >= deadline:
            break
        if plan.trials is not None:
            busy = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED,
                                                            TrialState.RUNNING))
            if len(busy) >= plan.trials:
                break
        before = len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,)))
        study.optimize(objective, n_trials=1, catch=(BmbenchError, ValueError, ArithmeticError))
        if len(study.get_trials(deepcopy=False, states=(TrialState.FAIL,))) > before:
            failures += 1
            if failures >= max(5, (plan.trials or 20) // 2):
                raise BmbenchError(f"study {plan.id}: {failures} trials failed in a row on this worker "
                                   "(see study.db); check the search space")
        else:
            failures = 0
            done += 1
    return done


def _worker(payload: dict, results: str | None, worker: int, threads: int | None, deadline: float | None) -> int:
    from .backends import apply_thread_share

    if threads:
        apply_thread_share(threads)
        from ..core.progress import set_quiet

        set_quiet(True)
    return optimize(StudyPlan.from_payload(payload), Path(results) if results else None, worker, deadline)


def _dask_worker(payload: dict, worker: int, shares: dict, deadline: float | None) -> int:
    from distributed import get_worker

    from .backends import _host

    return _worker(payload, None, worker, shares.get(_host(get_worker().address), 1), deadline)


def run_study(plan: StudyPlan, results: Path, backend: str = "local", jobs: int = 1,
              scheduler: str | None = None, resume: bool = False, client=None) -> Any:
    """Prepare the study, run its trials on the backend, return the Optuna study."""
    from .backends import connect, cpu_count, thread_share

    prepare(plan, resume)
    deadline = time.time() + plan.minutes * 60 if plan.minutes else None
    if backend == "local":
        if jobs == -1:
            jobs = cpu_count()
        if jobs < 1:
            raise BmbenchError(f"--jobs {jobs}: give a positive number of parallel trials (or -1: one per core)")
        if jobs == 1:
            optimize(plan, results, 0, deadline)
        else:
            from joblib import Parallel, delayed

            share = thread_share(jobs)
            Parallel(n_jobs=jobs, backend="loky")(
                delayed(_worker)(plan.payload(), str(results), i, share, deadline) for i in range(jobs))
    elif backend == "dask":
        from .backends import _workers, host_shares

        own = client is None
        client = client or connect(scheduler)
        try:
            shares = host_shares(client)
            if not shares:
                raise BmbenchError(f"the dask cluster has no workers; start some with `dask worker {scheduler}`")
            n = jobs if jobs > 1 else sum(int(w.get("nthreads", 1)) for w in _workers(client).values())
            futures = [client.submit(_dask_worker, plan.payload(), i, shares, deadline, pure=False,
                                     key=f"bmbench-tune-{plan.id}-{os.urandom(3).hex()}-{i}") for i in range(n)]
            client.gather(futures)
        finally:
            if own:
                client.close()
    else:
        raise BmbenchError(f"unknown backend {backend!r}; choose local or dask")
    return open_study(plan)


# --- the result ---------------------------------------------------------------------------

def counted(study, trials: int | None) -> list:
    """The finished trials the budget covers: the first ``trials`` in trial order."""
    done = sorted(finished(study), key=lambda t: t.number)
    return done[:trials] if trials else done


def best_trial(study, trials: int | None):
    from optuna.trial import TrialState

    complete = [t for t in counted(study, trials) if t.state == TrialState.COMPLETE and t.value is not None]
    if not complete:
        raise BmbenchError(f"study {study.study_name}: no trial finished; nothing to refit")
    sign = 1 if study.direction.name == "MAXIMIZE" else -1
    return max(complete, key=lambda t: (sign * t.value, -t.number))


def tuning_record(plan: StudyPlan, study) -> dict:
    """``run.json["tuning"]`` of the refitted best trial."""
    from optuna.trial import TrialState

    trials = counted(study, plan.trials)
    best = best_trial(study, plan.trials)
    default = next((t for t in trials if t.user_attrs.get("default") or
                    t.system_attrs.get("fixed_params") == plan.defaults()), None)
    starts = [t.datetime_start for t in trials if t.datetime_start]
    ends = [t.datetime_complete for t in trials if t.datetime_complete]
    minutes = (max(ends) - min(starts)).total_seconds() / 60 if starts and ends else 0.0
    return {
        "study": plan.id, "trials": len(trials),
        "pruned": sum(t.state == TrialState.PRUNED for t in trials),
        "minutes": round(minutes, 2),
        "trial_minutes": round(sum(t.user_attrs.get("seconds", 0.0) for t in trials) / 60, 2),
        "budget": {"trials": plan.trials, "minutes": plan.minutes},
        "metric": plan.tune.metric, "objective": _objective_text(plan),
        "best_trial": best.number, "best_value": round(float(best.value), 6),
        "default_value": round(float(default.value), 6) if default is not None and default.value is not None else None,
        "best_params": {k: plan.space.get(k).decode(v) for k, v in best.params.items()},
        "space": plan.space.to_plain(),
    }


def refit_best(plan: StudyPlan, study, results: Path) -> Path:
    """Store the best trial's recipe as an ordinary run (with ``tuning`` in its run.json)."""
    from .runner import run_recipe

    record = tuning_record(plan, study)
    recipe = with_params(plan.recipe, record["best_params"])
    folder = run_recipe(recipe, results, tuning=record)
    _write_manifest(plan, {"status": "complete", "best_run": folder.name, "best_trial": record["best_trial"],
                           "best_value": record["best_value"], "finished_trials": record["trials"]})
    return folder


def study_summary(results: Path, study_id: str, storage: str | None = None) -> dict:
    """A stored study as plain data for reports: its manifest, every trial and (with at least
    two finished trials) the fANOVA importance of each parameter."""
    import optuna
    from optuna.trial import TrialState

    from ..core.paths import safe_name

    folder = Path(results).resolve() / STUDIES / safe_name(study_id)
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError):
        known = sorted(p.name for p in (Path(results) / STUDIES).glob("*") if (p / MANIFEST).is_file())
        raise BmbenchError(f"{folder}: no stored study {study_id!r}; known: {', '.join(known) or 'none'}") from None
    url = storage or f"sqlite:///{folder / 'study.db'}"
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.load_study(study_name=study_id, storage=_storage(url))
    rows = []
    for t in study.get_trials(deepcopy=False):
        rows.append({"number": t.number, "state": t.state.name, "value": t.value, "params": dict(t.params),
                     "seconds": t.user_attrs.get("seconds"), "default": bool(t.user_attrs.get("default")),
                     "intermediate": dict(t.intermediate_values)})
    importances = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if len(complete) >= 2 and len({json.dumps(t.params, sort_keys=True) for t in complete}) >= 2:
        try:
            importances = optuna.importance.get_param_importances(
                study, evaluator=optuna.importance.FanovaImportanceEvaluator(seed=0))
        except (RuntimeError, ValueError) as exc:
            log.warning("parameter importances: %s", exc)
    return {"manifest": manifest, "trials": rows, "importances": dict(importances),
            "direction": study.direction.name.lower(), "folder": str(folder)}
