"""Rank stored runs that share a data set and a test split (same split fingerprint).

Runs on different data or splits are never mixed: each split gets its own table, titled
with the data set and split settings. The ranking metric carries its 95% bootstrap interval,
and every run is tested against the leader on the shared test images (paired by path):
an exact McNemar test when ranking by accuracy, a paired stratified bootstrap of the metric
difference otherwise, Holm-corrected over the comparisons in the table. Runs whose adjusted
p-value is at least 0.05 are marked ``n.s.``: not significantly different from the leader.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import BmbenchError
from ..metrics.bootstrap import LEVEL, N_RESAMPLES, SEED, bootstrap_ci
from ..metrics.paired import holm, mcnemar_exact, paired_bootstrap
from ..metrics.scores import HEADLINE, LOWER_IS_BETTER
from ..runs.store import RunRecord
from .cells import TableView, display_columns, view_columns

FORMATS = ("table", "markdown", "csv", "json", "html")
ALPHA = 0.05


@dataclass(frozen=True)
class Board:
    """One ranking: runs with the same split fingerprint, best first.

    ``rows`` columns: rank, run, recipe, family, settings, the metric, ``<metric>_ci_low``,
    ``<metric>_ci_high``, ``vs_leader`` (leader / n.s. / worse / None when untestable),
    ``p_vs_leader`` (Holm-adjusted), the other headline metrics, fit_s, img_per_s, n_train,
    n_test. ``test`` says how the ``vs_leader`` marks were made.
    """

    title: str
    split_fingerprint: str
    rows: pd.DataFrame
    metric: str = "macro_f1"
    test: str = ""
    dataset: dict = field(default_factory=dict)
    #: run id -> ``{class: {"precision", "recall", "f1", "support"}}`` (for ``--per-class``)
    per_class: dict = field(default_factory=dict)


def build_boards(records: list[RunRecord], metric: str = "macro_f1", dataset: str | None = None,
                 recipe: str | None = None, family: str | None = None,
                 best_per_recipe: bool = False, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED) -> list[Board]:
    from .compare import check_metric

    check_metric(metric)
    records = [r for r in records if _keep(r, dataset, recipe, family)]
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.info["split_fingerprint"], []).append(r)
    return [_board(runs, metric, best_per_recipe, n_resamples, seed) for runs in groups.values()]


def check_filters(records: list[RunRecord], store: Path, dataset: str | None = None, recipe: str | None = None,
                  family: str | None = None) -> str | None:
    """Validate the filters against what exists: a name that is no known data set kind,
    family or stored recipe raises :class:`BmbenchError` with the nearest names; filters
    that are known but match no stored run give the message to print (None: runs match)."""
    from ..core.registry import did_you_mean
    from ..data.registry import list_kinds
    from ..models.registry import list_families

    stored = {"dataset": sorted({r.info["dataset"]["kind"] for r in records}),
              "recipe": sorted({r.info["name"] for r in records}),
              "family": sorted({r.info["family"] for r in records})}
    known = {"dataset": sorted({k.name for k in list_kinds()} | set(stored["dataset"])),
             "recipe": stored["recipe"],
             "family": sorted({f.name for f in list_families()} | set(stored["family"]))}
    given = {"dataset": dataset, "recipe": recipe, "family": family}
    for key, value in given.items():
        if value is not None and value not in known[key]:
            what = "stored recipe" if key == "recipe" else ("data set kind" if key == "dataset" else "family")
            raise BmbenchError(f"--{key} {value}: no {what} is called that{did_you_mean(value, known[key])}; "
                               f"stored in {store}: {', '.join(stored[key]) or 'nothing'}")
    if any(_keep(r, dataset, recipe, family) for r in records):
        return None
    if not records:
        return f"No runs stored yet in {store}: try `bmbench run recipes/quickstart.yaml`.\n"
    asked = ", ".join(f"--{k} {v}" for k, v in given.items() if v is not None)
    return (f"No stored run matches {asked} in {store} ({len(records)} runs stored; data sets: "
            f"{', '.join(stored['dataset'])}; recipes: {', '.join(stored['recipe'])}; families: "
            f"{', '.join(stored['family'])}).\n")


def _keep(r: RunRecord, dataset, recipe, family) -> bool:
    return ((dataset is None or r.info["dataset"]["kind"] == dataset)
            and (recipe is None or r.info["name"] == recipe)
            and (family is None or r.info["family"] == family))


def _board(runs: list[RunRecord], metric: str, best_per_recipe: bool, n_resamples: int,
           seed: int) -> Board:
    scored = _ScoredCache()
    frame = pd.DataFrame([_row(r, metric, scored, n_resamples, seed) for r in runs])
    ascending = metric in LOWER_IS_BETTER
    frame = frame.sort_values([metric, "run"], ascending=[ascending, True], na_position="last")
    if best_per_recipe:
        frame = frame.drop_duplicates("recipe", keep="first")
    frame.insert(0, "rank", frame[metric].rank(method="min", ascending=ascending).astype("Int64"))
    frame = frame.reset_index(drop=True)
    by_id = {r.id: r for r in runs}
    marks, p_adj, test = _versus_leader(frame, by_id, metric, scored, n_resamples, seed)
    at = frame.columns.get_loc(f"{metric}_ci_high") + 1
    frame.insert(at, "vs_leader", marks)
    frame.insert(at + 1, "p_vs_leader", p_adj)
    frame.insert(at + 2, "across_seeds", [_seed_spread(runs, by_id[i], metric) for i in frame["run"]])
    first = runs[0]
    per_class = {r.id: r.metrics.get("per_class") or {} for r in runs}
    return Board(_title(first), first.info["split_fingerprint"], frame, metric, test,
                 dict(first.info["dataset"]), per_class)


def _seed_spread(runs: list[RunRecord], run: RunRecord, metric: str) -> str:
    """``mean ± SD (n=k)`` of ``metric`` over the runs of the same recipe that differ only in
    their training seed (same ``seed_group``); empty when there is a single seed."""
    group = run.info.get("seed_group")
    values = [r.metrics.get(metric) for r in runs if group and r.info.get("seed_group") == group]
    values = [v for v in values if v is not None]
    if len(values) < 2:
        return ""
    return f"{np.mean(values):.4f} ± {np.std(values, ddof=1):.4f} (n={len(values)})"


class _ScoredCache:
    """Each run's predictions read once per board; None when a run has none."""

    def __init__(self):
        self._seen: dict[str, object] = {}

    def get(self, r: RunRecord):
        from .compare import load_scored
        from ..core.errors import StoreError

        if r.id not in self._seen:
            try:
                self._seen[r.id] = load_scored(r)
            except StoreError:
                self._seen[r.id] = None
        return self._seen[r.id]


def settings_text(info: dict) -> str:
    """The run's settings summary; for an ablation variant, followed by the values of its
    axes (``[ablation: model.pixels=8]``), which is what tells its variants apart."""
    text = info.get("settings", "")
    tags = info.get("tags") or {}
    if tags.get("ablation") and tags.get("values"):
        varied = ", ".join(f"{k}={_value(v)}" for k, v in tags["values"].items())
        text = f"{text} [{tags['ablation']}: {varied}]" if text else f"[{tags['ablation']}: {varied}]"
    return text


def _value(v) -> str:
    if isinstance(v, (list, tuple)):
        return "[" + ",".join(map(str, v)) + "]"
    return str(v)


def _row(r: RunRecord, metric: str, scored: _ScoredCache, n_resamples: int, seed: int) -> dict:
    m, info = r.metrics, r.info
    low, high = _interval(r, metric, scored, n_resamples, seed)
    row = {"run": r.id, "recipe": info["name"], "family": info["family"],
           "settings": settings_text(info), metric: m.get(metric),
           f"{metric}_ci_low": low, f"{metric}_ci_high": high}
    for key in HEADLINE:
        if key != metric:
            row[key] = m.get(key)
    t = info.get("timings", {})
    row.update({"fit_s": t.get("fit_seconds"), "img_per_s": t.get("inference_images_per_s"),
                "n_train": info.get("n_train"), "n_test": info.get("n_test")})
    return row


def _interval(r: RunRecord, metric: str, scored: _ScoredCache, n_resamples: int, seed: int):
    """The stored interval; for runs stored before intervals existed, one computed from
    their predictions; ``(None, None)`` when neither is available."""
    stored = (r.metrics.get("ci") or {})
    if metric in stored:
        return tuple(stored[metric]) if stored[metric] else (None, None)
    s = scored.get(r)
    if s is None or len(s.y) == 0:
        return None, None
    ci = bootstrap_ci(s.y, s.proba, s.classes, (metric,), n_resamples, LEVEL, seed)[metric]
    return tuple(ci) if ci else (None, None)


def _versus_leader(frame: pd.DataFrame, by_id: dict, metric: str, scored: _ScoredCache,
                   n_resamples: int, seed: int) -> tuple[list, list, str]:
    """Holm-corrected paired tests of every row against row 0 (the leader)."""
    from .compare import align

    n_rows = len(frame)
    marks: list = [None] * n_rows
    p_adj: list = [None] * n_rows
    how = ("exact McNemar test" if metric == "accuracy"
           else f"paired stratified bootstrap of {metric} ({n_resamples} resamples)")
    if n_rows == 0 or pd.isna(frame.loc[0, metric]):
        return marks, p_adj, ""
    marks[0] = "leader"
    leader = scored.get(by_id[frame.loc[0, "run"]])
    raw: dict[int, float] = {}
    shared: list[int] = []
    if leader is not None:
        for i in range(1, n_rows):
            other = scored.get(by_id[frame.loc[i, "run"]])
            if other is None or pd.isna(frame.loc[i, metric]):
                continue
            try:
                y, pa, pb = align(leader, other)
            except BmbenchError:
                continue
            if metric == "accuracy":
                p = mcnemar_exact(pa.argmax(1) == y, pb.argmax(1) == y)["p_value"]
            else:
                p = paired_bootstrap(y, pa, pb, len(leader.classes), metric, n_resamples,
                                     LEVEL, seed)["p_value"]
            if np.isfinite(p):
                raw[i] = p
                shared.append(len(y))
    if raw:
        for i, p in zip(raw, holm(list(raw.values()))):
            p_adj[i] = float(p)
            marks[i] = "n.s." if p >= ALPHA else "worse"
    if n_rows == 1:
        return marks, p_adj, ""
    if not raw:
        return marks, p_adj, ("vs leader: - = not testable (the leader or the other runs have no "
                              "predictions.csv, or share no scored test image).")
    images = (f"{min(shared)}" if min(shared) == max(shared) else f"{min(shared)}-{max(shared)}")
    test = (f"vs leader: {how} of each run against the leader on their {images} shared test "
            f"images, Holm-corrected over {len(raw)} comparison(s); n.s. = not significantly "
            f"different from the leader at {ALPHA:.0%}; - = not testable (no predictions.csv).")
    return marks, p_adj, test


def _title(r: RunRecord) -> str:
    if "title" in r.info:  # cross-data-set evaluations name both data sets
        return r.info["title"]
    d, s = r.info["dataset"], r.info["split"]
    settings = ", ".join(f"{k}={v}" for k, v in s.items() if k != "strategy")
    return (f"{d['kind']} ({len(d['classes'])} classes, {d['n_images']} images) - "
            f"{s['strategy']} split ({settings}) - split {r.info['split_fingerprint']}")


def render(boards: list[Board], fmt: str = "table", view: "TableView | None" = None, report_href=None) -> str:
    """``boards`` in ``fmt``; ``view`` chooses the terminal table's columns and width
    (default: :class:`TableView`'s compact columns, fitted to the terminal); html pages
    link each run to ``report_href(run_id)``."""
    if fmt not in FORMATS:
        raise BmbenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if fmt == "table":
        return _text(boards, view or TableView()) if boards else \
            "No runs stored yet: try `bmbench run recipes/quickstart.yaml`.\n"
    if fmt == "html":
        from .report.html import leaderboard_page

        return leaderboard_page(boards, report_href)
    if not boards:
        return "[]\n" if fmt == "json" else ""
    return {"markdown": _markdown, "csv": _csv, "json": _json}[fmt](boards)


def _text(boards: list[Board], view: TableView) -> str:
    import shutil

    width = view.width or shutil.get_terminal_size((120, 24)).columns
    out = []
    for b in boards:
        header, body = view_columns(b, view)
        if not view.wide:
            body = _fit(header, body, width)
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()  # noqa: E731
        out += [wrap(b.title, width), line(header), line(["-" * w for w in widths]), *map(line, body)]
        out += [wrap(b.test, width), ""] if b.test else [""]
    if view.per_class:
        out += [wrap("per class: F1/recall on the test images (recall: the share of that class's cells "
                     "found).", width), ""]
    elif not view.wide and not view.columns:
        out += [wrap("id: the end of each run's id (give it to `bmbench compare` / `report`); --wide shows "
                     "every column, --per-class the per-class F1/recall, --columns a,b,... your choice.",
                     width), ""]
    return "\n".join(out)


def wrap(text: str, width: int) -> str:
    import textwrap

    return textwrap.fill(text, width=max(40, width), break_on_hyphens=False)


#: Columns shortened (in this order) when the table is wider than the terminal.
_SHRINKABLE = ("settings", "recipe", "run")


def _fit(header: list[str], body: list[list[str]], width: int) -> list[list[str]]:
    widths = [max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(header)]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for name in _SHRINKABLE:
        if excess <= 0 or name not in header:
            continue
        i = header.index(name)
        target = max(len(name), 12, widths[i] - excess)
        if target < widths[i]:
            body = [[c if j != i or len(c) <= target else c[:target - 1] + "…" for j, c in enumerate(r)]
                    for r in body]
            excess -= widths[i] - target
            widths[i] = target
    return body


def _markdown(boards: list[Board]) -> str:
    out = []
    for b in boards:
        header, body = display_columns(b)
        out += [f"### {b.title}", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" for _ in header) + "|",
                *("| " + " | ".join(c.replace("|", "\\|") for c in r) + " |" for r in body), ""]
        out += [b.test, ""] if b.test else []
    return "\n".join(out)


def _csv(boards: list[Board]) -> str:
    frames = [b.rows.assign(split_fingerprint=b.split_fingerprint, table=b.title) for b in boards]
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def _json(boards: list[Board]) -> str:
    data = [{"title": b.title, "split_fingerprint": b.split_fingerprint, "metric": b.metric,
             "test": b.test, "rows": json.loads(b.rows.to_json(orient="records"))} for b in boards]
    return json.dumps(data, indent=2) + "\n"
