"""Rank stored runs that share a data set and a test split (same split fingerprint).

Runs on different data or splits are never mixed: each split gets its own table, titled
with the data set and split settings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import pandas as pd

from .errors import BmbenchError
from .metrics.scores import HEADLINE, LOWER_IS_BETTER
from .schema import did_you_mean
from .store import RunRecord

FORMATS = ("table", "markdown", "csv", "json")
SHOWN = ("accuracy", "balanced_accuracy", "macro_f1", "mcc")


@dataclass(frozen=True)
class Board:
    """One ranking: runs with the same split fingerprint, best first."""

    title: str
    split_fingerprint: str
    rows: pd.DataFrame


def build_boards(records: list[RunRecord], metric: str = "macro_f1", dataset: str | None = None,
                 recipe: str | None = None, family: str | None = None,
                 best_per_recipe: bool = False) -> list[Board]:
    if metric not in HEADLINE:
        raise BmbenchError(f"unknown metric '{metric}'{did_you_mean(metric, HEADLINE)}; "
                           f"choose one of {', '.join(HEADLINE)}")
    records = [r for r in records if _keep(r, dataset, recipe, family)]
    groups: dict[str, list[RunRecord]] = {}
    for r in records:
        groups.setdefault(r.info["split_fingerprint"], []).append(r)
    return [_board(runs, metric, best_per_recipe) for runs in groups.values()]


def _keep(r: RunRecord, dataset, recipe, family) -> bool:
    return ((dataset is None or r.info["dataset"]["kind"] == dataset)
            and (recipe is None or r.info["name"] == recipe)
            and (family is None or r.info["family"] == family))


def _board(runs: list[RunRecord], metric: str, best_per_recipe: bool) -> Board:
    frame = pd.DataFrame([_row(r, metric) for r in runs])
    ascending = metric in LOWER_IS_BETTER
    frame = frame.sort_values([metric, "run"], ascending=[ascending, True], na_position="last")
    if best_per_recipe:
        frame = frame.drop_duplicates("recipe", keep="first")
    frame.insert(0, "rank", frame[metric].rank(method="min", ascending=ascending).astype("Int64"))
    return Board(_title(runs[0]), runs[0].info["split_fingerprint"], frame.reset_index(drop=True))


def _row(r: RunRecord, metric: str) -> dict:
    m, info = r.metrics, r.info
    row = {"run": r.id, "recipe": info["name"], "family": info["family"],
           "settings": info.get("settings", "")}
    for key in dict.fromkeys((metric, *SHOWN)):
        row[key] = m.get(key)
    t = info.get("timings", {})
    row.update({"fit_s": t.get("fit_seconds"), "img_per_s": t.get("inference_images_per_s"),
                "n_train": info.get("n_train"), "n_test": info.get("n_test")})
    return row


def _title(r: RunRecord) -> str:
    d, s = r.info["dataset"], r.info["split"]
    settings = ", ".join(f"{k}={v}" for k, v in s.items() if k != "strategy")
    return (f"{d['kind']} ({len(d['classes'])} classes, {d['n_images']} images) - "
            f"{s['strategy']} split ({settings}) - split {r.info['split_fingerprint']}")


def render(boards: list[Board], fmt: str = "table") -> str:
    if fmt not in FORMATS:
        raise BmbenchError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")
    if not boards:
        return "No runs stored yet: try `bmbench run recipes/quickstart.yaml`.\n" if fmt == "table" else (
            "[]\n" if fmt == "json" else "")
    return {"table": _text, "markdown": _markdown, "csv": _csv, "json": _json}[fmt](boards)


def _fmt(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    if isinstance(value, float):
        return f"{value:.4f}" if abs(value) < 10 else f"{value:.1f}"
    return str(value)


def _cells(board: Board) -> tuple[list[str], list[list[str]]]:
    header = list(board.rows.columns)
    return header, [[_fmt(v) for v in row] for row in board.rows.itertuples(index=False)]


def _text(boards: list[Board]) -> str:
    out = []
    for b in boards:
        header, body = _cells(b)
        widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(header)]
        line = lambda cells: "  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip()
        out += [b.title, line(header), line(["-" * w for w in widths]), *map(line, body), ""]
    return "\n".join(out)


def _markdown(boards: list[Board]) -> str:
    out = []
    for b in boards:
        header, body = _cells(b)
        out += [f"### {b.title}", "", "| " + " | ".join(header) + " |",
                "|" + "|".join("---" for _ in header) + "|",
                *("| " + " | ".join(r) + " |" for r in body), ""]
    return "\n".join(out)


def _csv(boards: list[Board]) -> str:
    frames = [b.rows.assign(split_fingerprint=b.split_fingerprint, table=b.title) for b in boards]
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def _json(boards: list[Board]) -> str:
    data = [{"title": b.title, "split_fingerprint": b.split_fingerprint,
             "rows": json.loads(b.rows.to_json(orient="records"))} for b in boards]
    return json.dumps(data, indent=2) + "\n"
