"""How numbers read in every view: p-values, scores, and the leaderboard's table cells."""

from __future__ import annotations

import pandas as pd

from ..metrics.bootstrap import LEVEL


def format_p(p) -> str:
    """A p-value: 3 decimals, or 2 significant digits below 0.001; ``-`` when missing."""
    if p is None or p != p:
        return "-"
    return f"{p:.2g}" if p < 0.001 else f"{p:.3f}"


def format_value(value) -> str:
    """A table cell: floats to 4 decimals (1 from 10 on), ``-`` for missing values."""
    if value is None or (isinstance(value, float) and value != value) or value is pd.NA:
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def format_amount(value) -> str:
    """Seconds and rates: 2 decimals under 1, 1 under 100, none from 100 on; ``-`` if missing."""
    if value is None or value is pd.NA or (isinstance(value, float) and value != value):
        return "-"
    value = float(value)
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


#: Columns shown with :func:`format_amount` rather than as scores.
AMOUNTS = ("fit_s", "img_per_s")


def display_columns(board) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of a leaderboard ``board`` as shown to people: the metric with
    its interval in one column, the leader mark with its adjusted p-value in another."""
    m = board.metric
    rows = board.rows
    skip = {m, f"{m}_ci_low", f"{m}_ci_high", "vs_leader", "p_vs_leader"}
    rest = [c for c in rows.columns if c not in skip and c not in ("rank", "run", "recipe",
                                                                    "family", "settings")]
    header = ["rank", "run", "recipe", "family", "settings", f"{m} [{LEVEL:.0%} CI]", "vs leader", *rest]
    body = []
    for _, r in rows.iterrows():
        low, high = r[f"{m}_ci_low"], r[f"{m}_ci_high"]
        value = format_value(r[m])
        if not (pd.isna(low) or pd.isna(high)):
            value += f" [{low:.4f}, {high:.4f}]"
        mark = r["vs_leader"]
        if mark is None or pd.isna(mark):
            shown = "-"
        elif mark == "leader":
            shown = "leader"
        else:
            shown = f"{mark} (p={format_p(r['p_vs_leader'])})"
        body.append([format_value(r["rank"]), r["run"], r["recipe"], r["family"], format_value(r["settings"]),
                     value, shown, *((format_amount if c in AMOUNTS else format_value)(r[c]) for c in rest)])
    return header, body
