"""How numbers read in every view: p-values, scores, and the leaderboard's table cells."""

from __future__ import annotations

from dataclasses import dataclass

from ..core.errors import BmbenchError
from ..metrics.bootstrap import LEVEL
from .rows import is_missing


def format_p(p) -> str:
    """A p-value: 3 decimals, or 2 significant digits below 0.001; ``-`` when missing."""
    if p is None or p != p:
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def format_value(value) -> str:
    """A table cell: floats to 4 decimals (1 from 10 on), ``-`` for missing values."""
    if is_missing(value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_amount(value) -> str:
    """Seconds and rates: 2 decimals under 1, 1 under 100, none from 100 on; ``-`` if missing."""
    if is_missing(value):
        return "-"
    value = float(value)
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


#: Columns shown with :func:`format_amount` rather than as scores.
AMOUNTS = ("fit_s", "img_per_s")


def display_columns(board, shown=None) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of a leaderboard ``board`` as shown to people: the metric with
    its interval in one column, the leader mark with its adjusted p-value in another.
    ``shown``: the only columns after ``vs leader`` whose cells are needed (the others are
    left empty; None: all)."""
    m = board.metric
    table = board.table
    skip = {m, f"{m}_ci_low", f"{m}_ci_high", "vs_leader", "p_vs_leader"}
    rest = [c for c in table.columns if c not in skip and c not in ("rank", "run", "recipe",
                                                                     "family", "settings")]
    header = ["rank", "run", "recipe", "family", "settings", f"{m} [{LEVEL:.0%} CI]", "vs leader", *rest]
    needed = set(rest) if shown is None else set(shown)
    body = []
    for r in table.records():
        low, high = r[f"{m}_ci_low"], r[f"{m}_ci_high"]
        value = format_value(r[m])
        if not (is_missing(low) or is_missing(high)):
            value += f" [{low:.4f}, {high:.4f}]"
        mark = r["vs_leader"]
        if is_missing(mark):
            mark_text = "-"
        elif mark == "leader":
            mark_text = "leader"
        else:
            mark_text = f"{mark} (p={format_p(r['p_vs_leader'])})"
        body.append([format_value(r["rank"]), r["run"], r["recipe"], r["family"], format_value(r["settings"]),
                     value, mark_text, *(_cell(c, r[c]) if c in needed else "" for c in rest)])
    return header, body


def _cell(column: str, value) -> str:
    return (format_amount if column in AMOUNTS else format_value)(value)


#: The terminal table's default columns (``--wide``: all of them).
COMPACT = ("rank", "id", "recipe", "settings", "METRIC", "vs leader", "across_seeds", "n_test")


@dataclass(frozen=True)
class TableView:
    """What the terminal table shows: ``columns`` (display names; ``METRIC`` is the ranking
    metric with its CI; None: :data:`COMPACT`), ``wide`` (every column), ``per_class``
    (per-class F1/recall instead of the other metrics) and ``width`` (characters; None: the
    terminal's, 120 when not a terminal). Free-text columns are shortened with "…" to fit."""

    columns: tuple[str, ...] | None = None
    wide: bool = False
    per_class: bool = False
    width: int | None = None


def view_columns(b, view: "TableView") -> tuple[list[str], list[list[str]]]:
    named = None if view.wide and not view.per_class else () if view.per_class else \
        {c.replace("across seeds", "across_seeds") for c in (view.columns or COMPACT)}
    header, body = display_columns(b, named)
    metric_col = header[5]
    header = [h.replace("across_seeds", "across seeds") for h in header]
    ids = [r[1].rsplit("-", 1)[-1] for r in body]
    header, body = ["id", *header], [[i, *r] for i, r in zip(ids, body)]
    if view.wide and not view.per_class:
        return header[1:], [r[1:] for r in body]
    if view.per_class:
        classes = list(b.dataset.get("classes") or [])
        keep = [header.index(c) for c in ("rank", "id", "recipe")]
        rows = []
        for r, value in zip(body, b.table.column(b.metric)):
            stats = b.per_class.get(r[header.index("run")], {})
            cells = [f"{stats[c]['f1']:.2f}/{stats[c]['recall']:.2f}" if c in stats else "-" for c in classes]
            rows.append([r[k] for k in keep] + [format_value(value)] + cells)
        return [header[k] for k in keep] + [b.metric] + [c[:12] for c in classes], rows
    wanted = list(view.columns or COMPACT)
    names = {h: h for h in header} | {"METRIC": metric_col, b.metric: metric_col, "vs_leader": "vs leader",
                                      "across_seeds": "across seeds"}
    unknown = [c for c in wanted if c not in names]
    if unknown:
        choices = ", ".join(["rank", "id", "run", "recipe", "family", "settings", b.metric, "vs_leader",
                             "across_seeds", *[h for h in header[9:] if " " not in h]])
        raise BmbenchError(f"--columns: unknown column '{unknown[0]}'; choose from {choices}")
    keep = [header.index(names[c]) for c in wanted]
    if view.columns is None:  # the default view leaves out a seed column no run has
        seeds = header.index("across seeds")
        keep = [k for k in keep if k != seeds or any(r[k] for r in body)]
    return [header[k] for k in keep], [[r[k] for k in keep] for r in body]
