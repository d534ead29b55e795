"""Run an ablation: plan, skip what is done, execute the rest on a backend, record failures.

Every run is an ordinary run in the store, tagged (``run.json`` ``tags``) with the ablation
id, the variant and its values and the repeat. A run counts as done when the store holds a
run with the same resolved recipe fingerprint (which covers every value, ``train.fraction``
included) and seed, preferably one tagged with this ablation id; rerunning an ablation,
continuing an interrupted one, or ablating a recipe already run only executes the others. ``results/ablations/<id>/ablation.json`` holds the plan, the
run of each planned (variant, repeat) and the failures.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable

from ..core.errors import BmbenchError
from .backends import Task, TaskResult
from ..core.atomic import write_json
from .store import list_runs
from ..config.ablation import ABLATION_ID, Ablation

log = logging.getLogger("bmbench.ablation")
MANIFEST = "ablation.json"


@dataclass
class SweepOutcome:
    """What :func:`run_ablation` did: planned, already done (skipped), run now, failed."""

    ablation: Ablation
    folder: Path
    planned: int
    skipped: int
    completed: list[TaskResult] = field(default_factory=list)
    failed: list[TaskResult] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.failed


def ablation_folder(results: Path, ablation_id: str) -> Path:
    """``results/ablations/<id>``; an id that is not one plain name (``--report ../x``, or a
    run's ``tags.ablation`` from a shared store) is refused, so no file lands elsewhere."""
    if not isinstance(ablation_id, str) or not ABLATION_ID.fullmatch(ablation_id):
        raise BmbenchError(f"ablation id {ablation_id!r}: use letters, digits, _ . - only "
                           "(starting with a letter or digit)")
    return Path(results) / "ablations" / ablation_id


def task_key(variant_index: int, repeat: int) -> str:
    return f"v{variant_index:03d}-r{repeat}"


def tasks(ablation: Ablation) -> list[Task]:
    """One :class:`Task` per (variant, repeat), in plan order."""
    out = []
    for v in ablation.variants:
        for r, recipe in enumerate(v.recipes):
            out.append(Task(task_key(v.index, r), recipe.to_dict(), recipe.source or ablation.source,
                            v.tags(ablation.id, r), recipe.fingerprint()))
    return out


def completed_runs(results: Path, ablation_id: str) -> dict[tuple[str, int], str]:
    """``{(recipe fingerprint, seed): run id}`` of the stored runs an ablation can use: its
    own (tagged with ``ablation_id``; the latest when several match), else any other stored
    run of exactly that resolved recipe and seed (a plain ``bmbench run`` of the base
    recipe, say), which is then not trained again."""
    own, other = {}, {}
    for record in list_runs(results):
        if record.path is not None and record.path.parent.name == "evaluations":
            continue
        key = (record.info.get("recipe_fingerprint"), record.info.get("seed"))
        tags = record.info.get("tags") or {}
        (own if tags.get("ablation") == ablation_id else other)[key] = record.id
    return {**other, **own}


def run_ablation(ablation: Ablation, results: Path, backend,
                 on_result: Callable[[TaskResult, Task, int, int], None] | None = None) -> SweepOutcome:
    """Execute the runs of ``ablation`` not yet in the store ``results`` on ``backend``.

    ``on_result(result, task, done, total)`` is called as each run finishes. Failed runs are
    recorded (with their error) in the manifest and do not stop the others.
    """
    results = Path(results)
    folder = ablation_folder(results, ablation.id)
    all_tasks = tasks(ablation)
    done = completed_runs(results, ablation.id)
    state = _State(ablation, folder, all_tasks, done)
    todo = [t for t in all_tasks if state.run_of(t) is None]
    outcome = SweepOutcome(ablation, folder, len(all_tasks), len(all_tasks) - len(todo))
    log.info("ablation %s: %d variant(s) x %d repeat(s) = %d run(s); %d already stored, %d to run",
             ablation.id, len(ablation.variants), ablation.repeats, len(all_tasks),
             outcome.skipped, len(todo))
    state.save(status="running")
    by_key = {t.key: t for t in todo}
    finished = 0
    try:
        for result in backend.run(todo, results):
            finished += 1
            task = by_key[result.key]
            state.record(task, result)
            (outcome.completed if result.ok else outcome.failed).append(result)
            state.save(status="running")
            if on_result is not None:
                on_result(result, task, finished, len(todo))
    except BaseException:
        state.save(status="interrupted")
        raise
    state.save(status="failed" if outcome.failed else "complete")
    return outcome


class _State:
    """The manifest being kept up to date while the sweep runs (written atomically)."""

    def __init__(self, ablation: Ablation, folder: Path, all_tasks: list[Task], done: dict):
        self.ablation = ablation
        self.folder = folder
        self.plan = ablation.plan()
        self.runs: dict[str, str] = {}
        for t in all_tasks:
            run = done.get((t.fingerprint, t.recipe["seed"]))
            if run:
                self.runs[t.key] = run
        # failures of runs still to do are kept until they succeed (a changed plan drops them)
        previous = read_manifest(folder) or {}
        same_plan = previous.get("variants") == self.plan["variants"]
        keys = {t.key for t in all_tasks} - set(self.runs)
        self.failures: dict[str, dict] = {k: v for k, v in (previous.get("failures") or {}).items()
                                          if same_plan and k in keys}
        self.created = previous.get("created") if same_plan else None

    def run_of(self, task: Task) -> str | None:
        return self.runs.get(task.key)

    def record(self, task: Task, result: TaskResult) -> None:
        if result.ok:
            self.runs[task.key] = result.run_id
            self.failures.pop(task.key, None)
        else:
            self.failures[task.key] = {"variant": task.tags["variant"], "repeat": task.tags["repeat"],
                                       "error": result.error, "details": result.details,
                                       "worker": result.worker,
                                       "time": datetime.now(timezone.utc).isoformat(timespec="seconds")}

    def save(self, status: str) -> None:
        now = datetime.now(timezone.utc).isoformat(timespec="seconds")
        self.created = self.created or now
        doc = dict(self.plan, status=status, created=self.created, updated=now,
                   runs=dict(sorted(self.runs.items())), failures=self.failures)
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            write_json(self.folder / MANIFEST, doc)
        except OSError as exc:
            raise BmbenchError(f"{self.folder}: cannot write the ablation record ({exc.strerror}); "
                               "choose another --results-dir") from None


def read_manifest(folder: Path) -> dict | None:
    """The stored ``ablation.json`` of an ablation folder, or None when absent or damaged."""
    import json

    try:
        doc = json.loads((Path(folder) / MANIFEST).read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) and "variants" in doc else None

