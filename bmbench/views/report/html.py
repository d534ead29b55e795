"""Self-contained HTML: one file, inline CSS, figures embedded as base64 PNG, no scripts
and nothing fetched from elsewhere. Every text from a run record is escaped."""

from __future__ import annotations

import base64
import html
from datetime import datetime, timezone

CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; color: #1d1d1d;
       max-width: 1180px; margin: 24px auto; padding: 0 18px; line-height: 1.45; }
h1 { font-size: 1.6em; margin-bottom: 0.2em; }
h2 { font-size: 1.25em; border-bottom: 2px solid #1f5fa8; padding-bottom: 3px; margin-top: 1.8em; }
.sub { color: #555; margin-top: 0; }
table { border-collapse: collapse; margin: 10px 0 14px; font-size: 0.88em; }
th, td { border: 1px solid #cfd6de; padding: 4px 8px; text-align: left; vertical-align: top; }
th { background: #eef3f8; }
td.num { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
tr:nth-child(even) td { background: #fafbfc; }
tr.leader td { background: #dceafa; font-weight: 600; }
tr.ns td { background: #eef5fc; }
.scroll { overflow-x: auto; }
img.figure { max-width: 100%; height: auto; border: 1px solid #e3e3e3; margin: 6px 0; }
.note { color: #555; font-size: 0.88em; }
dl.facts { display: grid; grid-template-columns: max-content auto; gap: 3px 16px; }
dl.facts dt { font-weight: 600; color: #333; }
dl.facts dd { margin: 0; }
code { background: #f2f2f2; padding: 0 3px; border-radius: 3px; }
"""


def esc(value) -> str:
    return html.escape("" if value is None else str(value))


def prose(text) -> str:
    """Escaped text whose `backticked` parts (Markdown code) become <code> elements."""
    import re

    return re.sub(r"`([^`]+)`", r"<code>\1</code>", esc(text))


def page(title: str, body: str, subtitle: str = "") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{sub}\n{body}\n"
            f'<p class="note">Written by bmbench on {stamp}.</p>\n</body>\n</html>\n')


def section(ident: str, heading: str, content: str) -> str:
    return f'<section id="{esc(ident)}">\n<h2>{esc(heading)}</h2>\n{content}\n</section>\n'


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="figure" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(header: list[str], rows: list[list], numeric: set[int] | None = None,
          row_classes: list[str] | None = None) -> str:
    """An HTML table; cells are escaped; ``numeric`` column indices are right-aligned."""
    numeric = numeric or set()
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = "".join(f'<td class="num">{esc(c)}</td>' if j in numeric else f"<td>{esc(c)}</td>"
                        for j, c in enumerate(row))
        body.append(f"<tr{cls}>{cells}</tr>")
    return (f'<div class="scroll"><table>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table></div>")


def facts(pairs: list[tuple[str, object]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="facts">{items}</dl>'


def leaderboard_page(boards) -> str:
    """The leaderboard as a page: per data set and split, a bar chart of the ranking metric
    with interval whiskers, then the table (leader and runs not significantly different
    from it highlighted) and how the marks were made."""
    from ..cells import display_columns
    from .plots import leaderboard_figure, png_bytes

    if not boards:
        return page("bmbench leaderboard", "<p>No runs stored yet: try "
                    "<code>bmbench run recipes/quickstart.yaml</code>.</p>")
    parts = []
    for i, b in enumerate(boards):
        header, body = display_columns(b)
        numeric = {j for j, h in enumerate(header)
                   if h not in ("run", "recipe", "family", "settings", "vs leader")}
        marks = b.rows["vs_leader"].tolist()
        classes = ["leader" if v == "leader" else "ns" if v == "n.s." else "" for v in marks]
        figure = image(png_bytes(leaderboard_figure(b)), f"{b.metric} per run with intervals")
        note = f'<p class="note">{esc(b.test)}</p>' if b.test else ""
        parts.append(section(f"board-{i + 1}", b.title, figure + table(header, body, numeric, classes)
                             + note))
    metric = boards[0].metric
    intro = (f"<p>Ranked by <b>{esc(metric)}</b>, one table per data set and test split (runs on "
             "different data or splits are never ranked together). Intervals are 95% stratified "
             "bootstrap intervals over the test images. Highlighted rows are the leader and the "
             "runs not significantly different from it (Holm-corrected paired tests on the same "
             "test images): their order is not evidence that one is better.</p>")
    return page("bmbench leaderboard", intro + "".join(parts),
                f"{len(boards)} table(s), ranked by {metric}")
