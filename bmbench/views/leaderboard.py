"""Rank stored runs that share a data set and a test split (same split fingerprint).

Runs on different data or splits are never mixed: each split gets its own table, titled
with the data set and split settings. The ranking metric carries its 95% bootstrap interval,
and every run is tested against the leader on the shared test images (paired by path):
an exact McNemar test when ranking by accuracy, a paired stratified bootstrap of the metric
difference otherwise, Holm-corrected over the comparisons in the table. Runs whose adjusted
p-value is at least 0.05 are marked ``n.s.``: not significantly different from the leader.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from ..core.errors import BmbenchError
from ..metrics.bootstrap import LEVEL, N_RESAMPLES, SEED, bootstrap_ci
from ..metrics.paired import PairedBootstrap, holm, mcnemar_exact
from ..metrics.scores import HEADLINE, LOWER_IS_BETTER
from ..runs.store import RunRecord
from .cells import TableView, display_columns, view_columns
from .rows import Rows, is_missing, min_rank, sort_rows

FORMATS = ("table", "markdown", "csv", "json", "html")
ALPHA = 0.05
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Board:
    """One ranking: runs with the same split fingerprint, best first.

    ``table`` (and :attr:`rows`, the same as a pandas DataFrame) columns: rank, run, recipe,
    family, settings, the metric, ``<metric>_ci_low``, ``<metric>_ci_high``, ``vs_leader``
    (leader / n.s. / worse / None when untestable), ``p_vs_leader`` (Holm-adjusted), the
    other headline metrics, fit_s, img_per_s, n_train, n_test. ``test`` says how the
    ``vs_leader`` marks were made.
    """

    title: str
    split_fingerprint: str
    table: Rows
    metric: str = "macro_f1"
    test: str = ""
    dataset: dict = field(default_factory=dict)
    #: run id -> ``{class: {"precision", "recall", "f1", "support"}}`` (for ``--per-class``)
    per_class: dict = field(default_factory=dict)

    @cached_property
    def rows(self):
        """:attr:`table` as a pandas DataFrame (imports pandas; the terminal table does not)."""
        return self.table.frame()


def build_boards(records: list[RunRecord], metric: str = "macro_f1", dataset: str | None = None,
                 recipe: str | None = None, family: str | None = None,
                 best_per_recipe: bool = False, n_resamples: int = N_RESAMPLES,
                 seed: int = SEED, index=None, fair: bool = False) -> list[Board]:
    """One :class:`Board` per split fingerprint of the ``records`` kept by the filters
    (with ``fair``, one per split fingerprint and tuning budget, so that only runs given the
    same budget are ranked together). ``index``: the store's
    :class:`~bmbench.runs.index.StoreIndex`, which remembers the paired tests against each
    leader (recomputed when either predictions.csv changes)."""
    from .compare import check_metric

    check_metric(metric)
    records = [r for r in records if _keep(r, dataset, recipe, family)]
    groups: dict[tuple, list[RunRecord]] = {}
    for r in records:
        groups.setdefault((r.info["split_fingerprint"], budget_text(r.info) if fair else ""), []).append(r)
    boards = []
    for (_, budget), runs in groups.items():
        board = _board(runs, metric, best_per_recipe, n_resamples, seed, index)
        boards.append(dataclasses.replace(board, title=f"{board.title} - budget: {budget}") if fair else board)
    return boards


def store_boards(results_dir=None, metric: str = "macro_f1", dataset: str | None = None,
                 recipe: str | None = None, family: str | None = None, best_per_recipe: bool = False,
                 fair: bool = False, use_index: bool = True) -> tuple[Path, list[Board], str | None]:
    """The store (``results_dir`` resolved), its :class:`Board` s and, when no stored run
    matches the filters, the message saying so (else None): what ``bmbench leaderboard``
    and ``bmbench.leaderboard()`` show."""
    from ..config.locations import results_dir as resolve
    from ..runs.index import StoreIndex
    from ..runs.store import list_runs
    from .compare import check_metric

    check_metric(metric)
    store = resolve(results_dir).resolve()
    with StoreIndex(store, enabled=use_index) as index:
        records = list_runs(store, index)
        empty = check_filters(records, store, dataset, recipe, family)
        if empty is not None:
            return store, [], empty
        return store, build_boards(records, metric, dataset, recipe, family, best_per_recipe, index=index,
                                   fair=fair), None


def budget_text(info: dict) -> str:
    """How much search chose the run's settings: ``tuned 40 trials`` or ``default``."""
    t = info.get("tuning")
    if not t:
        return "default"
    return f"tuned {t.get('trials')} trials"


def check_filters(records: list[RunRecord], store: Path, dataset: str | None = None, recipe: str | None = None,
                  family: str | None = None) -> str | None:
    """Validate the filters against what exists: a name that is no known data set kind,
    family or stored recipe raises :class:`BmbenchError` with the nearest names; filters
    that are known but match no stored run give the message to print (None: runs match)."""
    from ..core.registry import did_you_mean

    stored = {"dataset": sorted({r.info["dataset"]["kind"] for r in records}),
              "recipe": sorted({r.info["name"] for r in records}),
              "family": sorted({r.info["family"] for r in records})}
    given = {"dataset": dataset, "recipe": recipe, "family": family}
    for key, value in given.items():
        # the registries (which import every family's module) only for a name not stored
        if value is not None and value not in stored[key] and value not in (known := _known(key, stored)):
            what = "stored recipe" if key == "recipe" else ("data set kind" if key == "dataset" else "family")
            raise BmbenchError(f"--{key} {value}: no {what} is called that{did_you_mean(value, known)}; "
                               f"stored in {store}: {', '.join(stored[key]) or 'nothing'}")
    if any(_keep(r, dataset, recipe, family) for r in records):
        return None
    if not records:
        return f"No runs stored yet in {store}: try `bmbench run recipes/quickstart.yaml`.\n"
    asked = ", ".join(f"--{k} {v}" for k, v in given.items() if v is not None)
    return (f"No stored run matches {asked} in {store} ({len(records)} runs stored; data sets: "
            f"{', '.join(stored['dataset'])}; recipes: {', '.join(stored['recipe'])}; families: "
            f"{', '.join(stored['family'])}).\n")


def _known(key: str, stored: dict) -> list[str]:
    """The names a ``--dataset`` / ``--recipe`` / ``--family`` filter may take."""
    if key == "dataset":
        from ..data.registry import list_kinds

        return sorted({k.name for k in list_kinds()} | set(stored["dataset"]))
    if key == "family":
        from ..models.registry import list_families

        return sorted({f.name for f in list_families()} | set(stored["family"]))
    return stored["recipe"]


def _keep(r: RunRecord, dataset, recipe, family) -> bool:
    return ((dataset is None or r.info["dataset"]["kind"] == dataset)
            and (recipe is None or r.info["name"] == recipe)
            and (family is None or r.info["family"] == family))


def _board(runs: list[RunRecord], metric: str, best_per_recipe: bool, n_resamples: int,
           seed: int, index=None) -> Board:
    scored = _ScoredCache()
    data = [_row(r, metric, scored, n_resamples, seed) for r in runs]
    columns = tuple(data[0])
    data = Rows(columns, tuple(data)).records()  # pandas' value types, before ranking
    ascending = metric in LOWER_IS_BETTER
    data = sort_rows(data, metric, "run", descending=not ascending)
    if best_per_recipe:
        seen: set = set()
        data = [r for r in data if not (r["recipe"] in seen or seen.add(r["recipe"]))]
    for r, rank in zip(data, min_rank([r[metric] for r in data], descending=not ascending)):
        r["rank"] = rank
    by_id = {r.id: r for r in runs}
    if any(r.info.get("tuning") for r in runs):  # the budget beside every score of a table with a tuned run
        for r in data:
            r["settings"] = ", ".join(x for x in (r["settings"], budget_text(by_id[r["run"]].info)) if x)
    marks, p_adj, test = _versus_leader(data, by_id, metric, scored, n_resamples, seed, index)
    spread = _seed_spreads(runs, metric)
    for r, mark, p in zip(data, marks, p_adj):
        r.update(vs_leader=mark, p_vs_leader=p, across_seeds=spread.get(by_id[r["run"]].info.get("seed_group"), ""))
    at = columns.index(f"{metric}_ci_high") + 1
    columns = ("rank", *columns[:at], "vs_leader", "p_vs_leader", "across_seeds", *columns[at:])
    first = runs[0]
    per_class = {r.id: r.metrics.get("per_class") or {} for r in runs}
    return Board(_title(first), first.info["split_fingerprint"], Rows(columns, tuple(data), ("rank",)),
                 metric, test, dict(first.info["dataset"]), per_class)


def _seed_spreads(runs: list[RunRecord], metric: str) -> dict[str, str]:
    """``seed_group -> "mean ± SD (n=k)"`` of ``metric`` over the runs of the same recipe
    that differ only in their training seed; groups of a single seed are left out. Reruns
    with the same seed are one result (the newest), not a spread: only seeds make one."""
    groups: dict[str, dict] = {}
    for r in sorted(runs, key=lambda r: r.id):  # ids start with their UTC time: newest last
        value = r.metrics.get(metric)
        if r.info.get("seed_group") and value is not None:
            groups.setdefault(r.info["seed_group"], {})[r.info.get("seed", r.id)] = value
    groups = {g: list(by_seed.values()) for g, by_seed in groups.items()}
    if not any(len(v) >= 2 for v in groups.values()):
        return {}
    import numpy as np

    return {g: f"{np.mean(v):.4f} ± {np.std(v, ddof=1):.4f} (n={len(v)})" for g, v in groups.items() if len(v) >= 2}


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
            except StoreError as exc:  # none (runs may have none): quietly untestable; damaged: said once
                if r.path is not None and os.path.isfile(os.path.join(r.path, "predictions.csv")):
                    log.warning("%s; the run's paired test is left out", exc)
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


def _versus_leader(data: list[dict], by_id: dict, metric: str, scored: _ScoredCache,
                   n_resamples: int, seed: int, index=None) -> tuple[list, list, str]:
    """Holm-corrected paired tests of every row against row 0 (the leader)."""
    n_rows = len(data)
    marks: list = [None] * n_rows
    p_adj: list = [None] * n_rows
    how = ("exact McNemar test" if metric == "accuracy"
           else f"paired stratified bootstrap of {metric} ({n_resamples} resamples)")
    if n_rows == 0 or is_missing(data[0][metric]):
        return marks, p_adj, ""
    marks[0] = "leader"
    lead = by_id[data[0]["run"]]
    rows = [i for i in range(1, n_rows) if not is_missing(data[i][metric])]
    keys = dict(zip(rows, _pair_keys(lead, [by_id[data[i]["run"]] for i in rows], metric, n_resamples, seed,
                                     index)))
    stored = index.derived([k[0] for k in keys.values() if k]) if index is not None else {}
    raw: dict[int, float] = {}
    shared: list[int] = []
    leaders: dict = {}  # the leader's resamples, once per set of shared images
    for i in rows:
        key = keys[i]
        hit = stored.get(key[0]) if key else None
        if hit is not None and hit[0] == key[1] and _is_pair_result(hit[1]):
            result = hit[1]
        else:
            result = _pair_test(scored, lead, by_id[data[i]["run"]], metric, n_resamples, seed, leaders)
            if key:
                index.remember(*key, result)
        if result is not None:
            raw[i] = result["p"]
            shared.append(result["n"])
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


def _is_pair_result(value) -> bool:
    """A remembered :func:`_pair_test` result read back from the index (untrusted too)."""
    return value is None or (isinstance(value, dict) and type(value.get("n")) is int
                             and type(value.get("p")) in (int, float) and 0 <= value["p"] <= 1)


def _pair_keys(lead: RunRecord, others: list[RunRecord], metric: str, n_resamples: int, seed: int,
               index) -> list[tuple[str, str] | None]:
    """``(key, stamp)`` of the paired test of each of ``others`` against ``lead`` in
    ``index`` (None without an index or a folder); the stamp changes with either run's
    predictions.csv, the key with the test's settings and the runs' classes."""
    if index is None or lead.path is None:
        return [None] * len(others)
    from ..runs.index import stamp

    def classes(r: RunRecord) -> str:
        return ",".join(r.metrics.get("classes") or r.info["dataset"]["classes"])

    head = "|".join(("paired", metric, str(n_resamples), str(seed), str(LEVEL), classes(lead), str(lead.path)))
    lead_stamp = stamp(os.path.join(lead.path, "predictions.csv"))
    return [None if r.path is None else
            (f"{head}|{classes(r)}|{r.path}", f"{lead_stamp},{stamp(os.path.join(r.path, 'predictions.csv'))}")
            for r in others]


def _pair_test(scored: _ScoredCache, lead: RunRecord, other: RunRecord, metric: str, n_resamples: int,
               seed: int, leaders: dict) -> dict | None:
    """``{"p": raw p-value, "n": shared images}`` of ``other`` against ``lead``; None when
    untestable (no predictions, no shared image, undefined p-value). ``leaders`` keeps the
    leader's :class:`PairedBootstrap` per set of shared images for the next comparisons."""
    from .compare import align

    a, b = scored.get(lead), scored.get(other)
    if a is None or b is None:
        return None
    try:
        y, pa, pb = align(a, b)
    except BmbenchError:
        return None
    if metric == "accuracy":
        p = mcnemar_exact(pa.argmax(1) == y, pb.argmax(1) == y)["p_value"]
    else:
        key = (y.tobytes(), pa.tobytes())
        if key not in leaders:
            leaders.clear()  # one entry: runs almost always share all their test images
            leaders[key] = PairedBootstrap(y, pa, len(a.classes), metric, n_resamples, LEVEL, seed)
        p = leaders[key].versus(pb)["p_value"]
    return {"p": float(p), "n": int(len(y))} if math.isfinite(p) else None


def _title(r: RunRecord) -> str:
    if "title" in r.info:  # cross-data-set evaluations name both data sets
        return r.info["title"]
    d, s = r.info["dataset"], r.info["split"]
    settings = ", ".join(f"{k}={v}" for k, v in s.items() if k != "strategy")
    left_out = f", tested on the lab left out: {d['leave_out']}" if isinstance(d.get("leave_out"), str) else ""
    return (f"{d['kind']} ({len(d['classes'])} classes, {d['n_images']} images{left_out}) - "
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
    import pandas as pd

    frames = [b.rows.assign(split_fingerprint=b.split_fingerprint, table=b.title) for b in boards]
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def _json(boards: list[Board]) -> str:
    data = [{"title": b.title, "split_fingerprint": b.split_fingerprint, "metric": b.metric,
             "test": b.test, "rows": json.loads(b.rows.to_json(orient="records"))} for b in boards]
    return json.dumps(data, indent=2) + "\n"
