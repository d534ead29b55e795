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


#: Inline script of pages with sortable tables: a click on a header sorts by that column
#: (numbers by value, text alphabetically; a second click reverses). No network, no library.
SORT_SCRIPT = """
document.querySelectorAll("table.sortable").forEach(function (t) {
  t.querySelectorAll("th").forEach(function (th, col) {
    th.addEventListener("click", function () {
      var body = t.tBodies[0], rows = Array.from(body.rows);
      var down = th.dataset.dir !== "asc"; th.dataset.dir = down ? "asc" : "desc";
      var key = function (r) { var s = r.cells[col].textContent.trim(), n = parseFloat(s);
                               return isNaN(n) ? s.toLowerCase() : n; };
      rows.sort(function (a, b) { var x = key(a), y = key(b);
                                  return (x < y ? -1 : x > y ? 1 : 0) * (down ? 1 : -1); });
      rows.forEach(function (r) { body.appendChild(r); });
    });
  });
});
"""


def page(title: str, body: str, subtitle: str = "", script: str = "") -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    sub = f'<p class="sub">{esc(subtitle)}</p>' if subtitle else ""
    tail = f"<script>{script}</script>\n" if script else ""
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
            f"<title>{esc(title)}</title>\n<style>{CSS}</style>\n</head>\n<body>\n"
            f"<h1>{esc(title)}</h1>\n{sub}\n{body}\n"
            f'<p class="note">Written by bmbench on {stamp}.</p>\n{tail}</body>\n</html>\n')


def section(ident: str, heading: str, content: str) -> str:
    return f'<section id="{esc(ident)}">\n<h2>{esc(heading)}</h2>\n{content}\n</section>\n'


def image(png: bytes, alt: str) -> str:
    data = base64.b64encode(png).decode("ascii")
    return f'<img class="figure" alt="{esc(alt)}" src="data:image/png;base64,{data}">'


def table(header: list[str], rows: list[list], numeric: set[int] | None = None,
          row_classes: list[str] | None = None, sortable: bool = False,
          links: dict[int, list[str | None]] | None = None) -> str:
    """An HTML table; cells are escaped; ``numeric`` column indices are right-aligned;
    ``sortable`` tables sort by a clicked header (with :data:`SORT_SCRIPT` on the page);
    ``links[j][i]`` makes cell ``(i, j)`` a link."""
    numeric, links = numeric or set(), links or {}
    title = ' title="click to sort"' if sortable else ""
    head = "".join(f"<th{title}>{esc(h)}</th>" for h in header)
    body = []
    for i, row in enumerate(rows):
        cls = f' class="{esc(row_classes[i])}"' if row_classes and row_classes[i] else ""
        cells = []
        for j, c in enumerate(row):
            text = esc(c)
            href = links.get(j, [None] * len(rows))[i]
            if href:
                text = f'<a href="{esc(href)}">{text}</a>'
            cells.append(f'<td class="num">{text}</td>' if j in numeric else f"<td>{text}</td>")
        body.append(f"<tr{cls}>{''.join(cells)}</tr>")
    kind = ' class="sortable"' if sortable else ""
    return (f'<div class="scroll"><table{kind}>\n<thead><tr>{head}</tr></thead>\n<tbody>\n'
            + "\n".join(body) + "\n</tbody></table></div>")


def facts(pairs: list[tuple[str, object]]) -> str:
    items = "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in pairs if v not in (None, ""))
    return f'<dl class="facts">{items}</dl>'


def leaderboard_page(boards, report_href=None) -> str:
    """The leaderboard as a page: per data set and split, a bar chart of the ranking metric
    with interval whiskers, the compact table (leader and runs not significantly different
    from it highlighted; each run linked to its report by ``report_href(run_id)``), the
    per-class F1/recall and every column in folded sections; every table sortable."""
    from ..cells import TableView, view_columns
    from .plots import leaderboard_figure, png_bytes

    if not boards:
        return page("bmbench leaderboard", "<p>No runs stored yet: try "
                    "<code>bmbench run recipes/quickstart.yaml</code>.</p>")
    text_cols = {"run", "id", "recipe", "family", "settings", "vs leader"}
    parts = []
    for i, b in enumerate(boards):
        marks = b.rows["vs_leader"].tolist()
        classes = ["leader" if v == "leader" else "ns" if v == "n.s." else "" for v in marks]
        href = [report_href(r) if report_href else None for r in b.rows["run"]]
        blocks = []
        for name, view in (("compact", TableView()), ("per class: F1/recall", TableView(per_class=True)),
                           ("every column", TableView(wide=True))):
            header, body = view_columns(b, view)
            numeric = {j for j, h in enumerate(header) if h not in text_cols}
            col = header.index("id") if "id" in header else header.index("run")
            html_table = table(header, body, numeric, classes, sortable=True, links={col: href})
            blocks.append(html_table if name == "compact" else
                          f"<details><summary>{esc(name)}</summary>{html_table}</details>")
        figure = image(png_bytes(leaderboard_figure(b)), f"{b.metric} per run with intervals")
        note = f'<p class="note">{esc(b.test)}</p>' if b.test else ""
        parts.append(section(f"board-{i + 1}", b.title, figure + "".join(blocks) + note))
    metric = boards[0].metric
    intro = (f"<p>Ranked by <b>{esc(metric)}</b>, one table per data set and test split (runs on "
             "different data or splits are never ranked together). Intervals are 95% stratified "
             "bootstrap intervals over the test images. Highlighted rows are the leader and the "
             "runs not significantly different from it (Holm-corrected paired tests on the same "
             "test images): their order is not evidence that one is better. Click a header to sort; "
             "a run's id opens its report (written by <code>bmbench report ID</code>).</p>")
    return page("bmbench leaderboard", intro + "".join(parts),
                f"{len(boards)} table(s), ranked by {metric}", SORT_SCRIPT)
