"""Stored runs sent to MLflow (``bmbench run --track mlflow``, ``bmbench export mlflow``),
and a run's metrics at a fixed path for DVC (``bmbench run --metrics-out``).

The run folder stays the truth: an MLflow run is a copy made from the folder through the
safe readers (``run.json``/``metrics.json`` checked by :func:`~bmbench.runs.store.load_record`,
the recipe re-validated by :func:`~bmbench.config.recipe.load_recipe`). Each MLflow run carries
the tag :data:`RUN_ID_TAG`, so sending a run again finds it instead of making a duplicate; the
tag :data:`DONE_TAG` is set last, so a send cut short is replaced on the next try.
MLflow is imported only here, and only when a run is sent.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import math
import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from ..config.recipe import load_recipe, read_yaml
from ..core.errors import BmbenchError
from ..config.locations import results_dir
from ..core.version import __version__
from ..runs.store import RunRecord, load_record, resolve_run, run_folders

log = logging.getLogger(__name__)

#: The MLflow experiment runs go to unless ``--experiment`` or ``$MLFLOW_EXPERIMENT_NAME`` names one.
EXPERIMENT = "bmbench"
RUN_ID_TAG = "bmbench.run_id"
DONE_TAG = "bmbench.complete"
#: Files copied from the run folder (and each evaluation folder) as artifacts, when present.
RUN_FILES = ("MODEL_CARD.md", "predictions.csv", "validation.csv", "metrics.json", "run.json",
             "recipe.yaml", "reliability.json", "environment.json")
EVALUATION_FILES = ("metrics.json", "run.json", "predictions.csv")
_KEY = re.compile(r"[^\w\-. /]")  # MLflow keys: alphanumerics, _ - . space /
_ID = re.compile(r"[A-Za-z0-9_.\-]{1,200}")


class TrackerError(BmbenchError):
    """MLflow refused, or could not be reached."""


@dataclass(frozen=True)
class Sent:
    """One stored run in MLflow: ``new`` is False when it was already there."""

    run_id: str
    mlflow_run_id: str
    experiment_id: str
    new: bool


def check_run_outputs(recipe: str | os.PathLike, overrides: tuple[str, ...], repeats: int | None,
                      track: str | None, metrics_out: str | None):
    """Before any work: the tracker's client importable for ``--track``, one run and a
    writable folder for ``--metrics-out``. Returns the validated recipe."""
    import importlib.util

    loaded = load_recipe(recipe, overrides)
    if track and importlib.util.find_spec(track) is None:
        raise BmbenchError(f"--track {track}: MLflow is not installed; pip install 'bmbench[mlflow]'")
    n = repeats or loaded.repeats
    if metrics_out and n > 1:
        raise BmbenchError(f"--metrics-out {metrics_out}: takes one run, this makes {n} (repeats); "
                           "give --repeats 1 or leave --metrics-out out")
    if metrics_out:
        parent = Path(metrics_out).absolute().parent
        try:
            parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise BmbenchError(f"{parent}: cannot make the --metrics-out folder ({exc.strerror})") from None
        if not os.access(parent, os.W_OK):
            raise BmbenchError(f"{parent}: cannot write --metrics-out there; choose another FILE")
    return loaded


def copy_metrics(folder: Path, out: str | os.PathLike) -> Path:
    """The run's ``metrics.json`` (checked by :func:`load_record`), byte for byte, at ``out``."""
    from ..core.atomic import write_bytes

    load_record(folder)
    try:
        write_bytes(out, (Path(folder) / "metrics.json").read_bytes())
    except OSError as exc:
        raise BmbenchError(f"{out}: cannot write --metrics-out ({exc.strerror}); "
                           f"the run is stored in {folder}") from None
    return Path(out)


def experiment_name(name: str | None = None) -> str:
    return name or os.environ.get("MLFLOW_EXPERIMENT_NAME") or EXPERIMENT


def stored_runs(results: str | os.PathLike | None, refs: tuple[str, ...] = ()) -> list[Path]:
    """The run folders ``refs`` name (folders, ids, recipe names, ``latest``), or every run of
    the store (cross-data-set evaluations travel with their run; damaged folders are skipped
    with a warning line)."""
    store = results_dir(results)
    if refs:
        return [resolve_run(store, ref) for ref in refs]
    found = []
    for folder in run_folders(store):
        if folder.parent.name != "runs":
            continue
        try:
            load_record(folder)
            found.append(folder)
        except BmbenchError as exc:
            log.warning("skipping %s", exc)
    return found


def send_runs(folders: list[Path], tracking_uri: str | None = None, experiment: str | None = None) -> list[Sent]:
    """Send the run folders to MLflow (``tracking_uri``, else ``$MLFLOW_TRACKING_URI``, else
    MLflow's default), each once; a :class:`TrackerError` line when MLflow fails."""
    records = [load_record(Path(f)) for f in folders]  # a damaged folder stops before anything is sent
    with _mlflow_errors(tracking_uri):
        client = _client(tracking_uri)
        exp = _experiment_id(client, experiment_name(experiment))
        return [_send(client, exp, record) for record in records]


def track_run(folder: Path, tracking_uri: str | None = None, experiment: str | None = None) -> Sent | None:
    """:func:`send_runs` for a run just stored: a failure is one warning line, never an error
    (the run is stored whatever MLflow says)."""
    try:
        return send_runs([folder], tracking_uri, experiment)[0]
    except BmbenchError as exc:
        log.warning("%s; the run is stored in %s: send it later with `bmbench export mlflow %s`",
                    exc, folder, Path(folder).name)
        return None


def run_url(tracking_uri: str | None, sent: Sent) -> str | None:
    """The MLflow UI page of a sent run, for an HTTP tracking server."""
    uri = tracking_uri or os.environ.get("MLFLOW_TRACKING_URI") or ""
    if not uri.startswith(("http://", "https://")):
        return None
    return f"{uri.rstrip('/')}/#/experiments/{sent.experiment_id}/runs/{sent.mlflow_run_id}"


class _mlflow_errors:
    """Turns what MLflow and the network raise into one :class:`TrackerError` line."""

    def __init__(self, uri: str | None):
        self.uri = uri or os.environ.get("MLFLOW_TRACKING_URI") or "MLflow's default tracking URI"

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc is None or isinstance(exc, BmbenchError) or not isinstance(exc, Exception):
            return False
        from mlflow.exceptions import MlflowException
        import requests

        if not isinstance(exc, (MlflowException, requests.RequestException, OSError)):
            return False
        unreachable = _chain(exc, (requests.ConnectionError, requests.Timeout))
        if unreachable is not None:
            raise TrackerError(f"MLflow at {self.uri} cannot be reached ({type(unreachable).__name__})") from None
        text = " ".join(str(exc).split())
        raise TrackerError(f"MLflow at {self.uri}: {text if len(text) <= 240 else text[:240] + '...'}") from None


def _chain(exc: BaseException, kinds: tuple) -> BaseException | None:
    """The first exception of ``kinds`` among ``exc`` and its causes."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, kinds):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def _client(tracking_uri: str | None):
    try:
        from mlflow import MlflowClient
    except ImportError:
        raise TrackerError("MLflow is not installed: pip install 'bmbench[mlflow]'") from None
    return MlflowClient(tracking_uri=tracking_uri)


def _experiment_id(client, name: str) -> str:
    found = client.get_experiment_by_name(name)
    if found is None:
        return client.create_experiment(name)
    if found.lifecycle_stage != "active":
        raise TrackerError(f"MLflow experiment '{name}' is deleted; restore it or give another --experiment")
    return found.experiment_id


def _send(client, experiment_id: str, record: RunRecord) -> Sent:
    run_id = record.id
    if not _ID.fullmatch(run_id):
        raise BmbenchError(f"{record.path}: run id {run_id!r} is not a bmbench run id")
    for old in client.search_runs([experiment_id], f"tags.`{RUN_ID_TAG}` = '{run_id}'"):
        if old.data.tags.get(RUN_ID_TAG) != run_id:
            continue
        if old.data.tags.get(DONE_TAG) == "true":
            return Sent(run_id, old.info.run_id, experiment_id, new=False)
        client.delete_run(old.info.run_id)  # an earlier send cut short: sent again in full
    with tempfile.TemporaryDirectory(prefix="bmbench-mlflow-") as tmp:
        # everything is read (and a damaged file refused) before MLflow hears of the run
        start, params_, metrics_ = _start_ms(record), params(record), metrics(record)
        files = _stage_artifacts(record, Path(tmp))
        mid = client.create_run(experiment_id, start_time=start, tags=tags(record), run_name=run_id).info.run_id
        _log(client, mid, params_, metrics_, start)
        client.log_artifacts(mid, str(files))
    client.set_tag(mid, DONE_TAG, "true")
    seconds = (record.info.get("timings") or {}).get("total_seconds")
    end = start + int(1000 * seconds) if _number(seconds) else None
    with contextlib.redirect_stdout(io.StringIO()):  # MLflow prints its own "View run" lines
        client.set_terminated(mid, "FINISHED", end_time=end)
    return Sent(run_id, mid, experiment_id, new=True)


def _log(client, run_id: str, params_: dict, metrics_: dict, timestamp: int) -> None:
    from mlflow.entities import Metric, Param

    ps = [Param(k, v) for k, v in params_.items()]
    ms = [Metric(k, v, timestamp, 0) for k, v in metrics_.items()]
    for i in range(0, len(ps), 100):  # MLflow's batch limits: 100 params, 1000 metrics
        client.log_batch(run_id, params=ps[i:i + 100])
    for i in range(0, len(ms), 1000):
        client.log_batch(run_id, metrics=ms[i:i + 1000])


def _start_ms(record: RunRecord) -> int:
    """The run's start from its id's UTC time stamp (``20261207T223228Z-...``)."""
    try:
        when = datetime.strptime(record.id.split("-", 1)[0], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)
    except ValueError:
        when = datetime.now(timezone.utc)
    return int(when.timestamp() * 1000)


def tags(record: RunRecord) -> dict[str, str]:
    """The tags of a run: ids, data set, split and family, and bmbench's version."""
    info = record.info
    found = {
        RUN_ID_TAG: record.id, "bmbench.version": info.get("bmbench_version") or __version__,
        "bmbench.exported_by": __version__, "bmbench.recipe": info["name"], "bmbench.family": info["family"],
        "bmbench.dataset": info["dataset"]["kind"], "bmbench.dataset_fingerprint": info["dataset"].get("fingerprint"),
        "bmbench.split_fingerprint": info["split_fingerprint"], "bmbench.split_strategy": info["split"]["strategy"],
        "bmbench.recipe_fingerprint": info.get("recipe_fingerprint"), "bmbench.settings": info.get("settings"),
        "mlflow.note.content": info.get("description"),
    }
    return {k: _cut(str(v), _limit("MAX_TAG_VAL_LENGTH", 8000)) for k, v in found.items() if v}


def params(record: RunRecord) -> dict[str, str]:
    """The resolved recipe (``recipe.yaml``, validated again, its values as stored) as flat
    dotted keys; a value longer than MLflow takes is cut, the whole recipe being an artifact."""
    load_recipe(record.path / "recipe.yaml")
    recipe = read_yaml(record.path / "recipe.yaml")
    limit = _limit("MAX_PARAM_VAL_LENGTH", 6000)
    return {_key(k): _cut(_text(v), limit) for k, v in _flat(recipe).items()}


def metrics(record: RunRecord) -> dict[str, float]:
    """Every score of ``metrics.json`` under its own name (``macro_f1``), with its interval
    (``macro_f1_ci_low``, ``macro_f1_ci_high``), per class (``per_class.<class>.f1``), the
    positive class's (``binary.sensitivity``), fold mean and spread
    (``fold_summary.macro_f1.mean``), and each evaluation's under ``eval.<folder>.``. An
    evaluation's ``metrics.json`` holds no interval: its interval is the one the leaderboard
    shows, computed from its ``predictions.csv`` (same resamples and seed)."""
    found = _scores(record.metrics)
    for e in record.info.get("evaluations", []):
        name = e["folder"].split("/", 1)[1]
        evaluation = load_record(record.path / e["folder"])
        scores = dict(evaluation.metrics)
        if "ci" not in scores:
            scores["ci"] = _intervals(evaluation)
        found.update({f"eval.{_key(name)}.{k}": v for k, v in _scores(scores).items()})
    return found


def _intervals(record: RunRecord) -> dict:
    from ..metrics.bootstrap import bootstrap_ci
    from .compare import load_scored

    s = load_scored(record)
    return bootstrap_ci(s.y, s.proba, s.classes) if len(s.y) else {}


def _scores(m: dict) -> dict[str, float]:
    out = {k: v for k, v in m.items() if _number(v)}
    for k, bounds in (m.get("ci") or {}).items():
        if bounds is not None:
            out[f"{k}_ci_low"], out[f"{k}_ci_high"] = bounds
    for cls, row in (m.get("per_class") or {}).items():
        out.update({f"per_class.{_key(cls)}.{k}": v for k, v in row.items() if _number(v)})
    out.update({f"binary.{k}": v for k, v in (m.get("binary") or {}).items() if _number(v)})
    for k, s in (m.get("fold_summary") or {}).items():
        if s is not None:
            out[f"fold_summary.{k}.mean"], out[f"fold_summary.{k}.std"] = s["mean"], s["std"]
    return {k: v for k, v in out.items() if _number(v)}


def _number(v) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def _stage_artifacts(record: RunRecord, tmp: Path) -> Path:
    """The artifact tree in ``tmp/artifacts``: the run's files, the report (rendered here,
    without the explanations section, so the run folder is not written to) and its figures."""
    from .report.run_report import write_report

    out = tmp / "artifacts"
    out.mkdir()
    _copy(record.path, out, RUN_FILES)
    for e in record.info.get("evaluations", []):
        _copy(record.path / e["folder"], out / e["folder"], EVALUATION_FILES)
    write_report(record.path, out / "report.html", explain=False, figures=out / "figures")
    return out


def _copy(src: Path, dst: Path, names: tuple[str, ...]) -> None:
    """Regular files only: a link in a run folder could point at any file of this machine."""
    dst.mkdir(parents=True, exist_ok=True)
    for name in names:
        path = src / name
        if path.is_file() and not path.is_symlink():
            shutil.copyfile(path, dst / name)


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict) and v:
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def _text(v) -> str:
    return v if isinstance(v, str) else json.dumps(v, ensure_ascii=False, sort_keys=True)


def _key(k: str) -> str:
    return _KEY.sub("_", str(k))[:250]


def _cut(text: str, limit: int) -> str:
    mark = " ...(cut)"
    return text if len(text) <= limit else text[:limit - len(mark)] + mark


def _limit(name: str, default: int) -> int:
    from mlflow.utils import validation

    return getattr(validation, name, default)
