"""What the notebook API (:mod:`bmbench.api`) returns: objects that render themselves.

Each has a plain-text ``repr`` (what the CLI prints), ``_repr_html_`` (Jupyter and Colab
show it: compact tables, figures as inline PNG) and ``to_pandas()``. HTML is built here
from the same pieces as the CLI's text and the HTML reports, so a notebook and a terminal
show the same numbers. pandas and matplotlib are imported only when something is drawn.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from pathlib import Path

from ..runs.store import RunRecord
from .report import html as H

#: Styles of the notebook tables (a notebook has none of the report pages' CSS).
STYLE = """<style>
.bmbench table { border-collapse: collapse; font-size: 0.9em; margin: 6px 0; }
.bmbench th, .bmbench td { border: 1px solid #cfd6de; padding: 3px 7px; text-align: left; }
.bmbench td.num { text-align: right; font-variant-numeric: tabular-nums; }
.bmbench tr.leader td { background: #dceafa; font-weight: 600; }
.bmbench tr.ns td { background: #eef5fc; }
.bmbench .note { color: #555; font-size: 0.85em; }
.bmbench dl.facts { display: grid; grid-template-columns: max-content auto; gap: 2px 14px; }
.bmbench dl.facts dt { font-weight: 600; }
.bmbench dl.facts dd { margin: 0; }
.bmbench .figures { display: flex; flex-wrap: wrap; gap: 10px; align-items: flex-start; }
</style>"""


def _box(title: str, body: str) -> str:
    return f'{STYLE}<div class="bmbench"><h4>{H.esc(title)}</h4>{body}</div>'


def _img(fig, alt: str, width: int = 460) -> str:
    from .report.plots import png_bytes

    data = base64.b64encode(png_bytes(fig)).decode("ascii")
    return f'<img alt="{H.esc(alt)}" width="{width}" src="data:image/png;base64,{data}">'


def _shown(path: Path) -> str:
    """``path`` relative to the working folder when it lies inside it."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def headline(record: RunRecord, note: str = "") -> str:
    """``FOLDER  macro_f1=...  accuracy=...  balanced_accuracy=...  (n_test=N)``."""
    m = record.metrics
    return (f"{record.path}  macro_f1={m['macro_f1']:.4f}  accuracy={m['accuracy']:.4f}  "
            f"balanced_accuracy={m['balanced_accuracy']:.4f}  (n_test={m['n']}{note})")


def run_text(record: RunRecord) -> str:
    """What ``bmbench run`` prints about a stored run: its headline scores, the
    positive-class scores when the recipe names one, each evaluation elsewhere."""
    lines = [headline(record)]
    b = record.metrics.get("binary")
    if b:
        shown = "  ".join(f"{k}={b[k]:.4f}" if b[k] is not None else f"{k}=n/a"
                          for k in ("sensitivity", "specificity", "precision", "f1", "roc_auc"))
        lines.append(f"  {b['positive_class']} vs rest: {shown}  (TP={b['tp']} FP={b['fp']} FN={b['fn']} "
                     f"TN={b['tn']})")
    for e in record.info.get("evaluations", []):
        a = e.get("adaptation")
        adapted = f", adapted with {a['n_per_class']}/class (seed {a['seed']})" if a else ""
        adapted += f", transductive {e['transductive']}" if e.get("transductive") else ""
        lines.append(f"  tested on {e['kind']} ({e['n_images']} images{adapted}): macro_f1={e['macro_f1']:.4f}")
    return "\n".join(lines)


class Run:
    """A stored run: ``.record`` (``.info``, ``.metrics``, ``.path``, ``.id``, ``.classes``,
    ``.recipe``); renders as its summary card; ``.to_pandas()`` is its per-class table.
    ``predict``, ``predict_proba``, ``explain`` and ``set_pixel_size`` load its model on
    first use (``.model``, as :func:`bmbench.runs.predict.load_run`)."""

    _MODEL_CALLS = ("predict", "predict_proba", "explain", "set_pixel_size", "read_image", "models")

    def __init__(self, record: RunRecord, results=None):
        self.record, self._results, self._loaded = record, results, None

    id = property(lambda self: self.record.id)
    path = property(lambda self: self.record.path)
    info = property(lambda self: self.record.info)
    metrics = property(lambda self: self.record.metrics)

    @property
    def classes(self) -> tuple[str, ...]:
        return tuple(self.info["dataset"]["classes"])

    @property
    def recipe(self):
        """The run's resolved recipe (its ``recipe.yaml``)."""
        from ..config.recipe import load_recipe

        return load_recipe(self.path / "recipe.yaml")

    def __getattr__(self, name):
        if name in Run._MODEL_CALLS:
            return getattr(self.model, name)
        raise AttributeError(f"'Run' object has no attribute {name!r}")

    @property
    def model(self):
        """The loaded model (:class:`bmbench.runs.predict.LoadedRun`)."""
        if self._loaded is None:
            from ..runs.predict import load_run

            self._loaded = load_run(self.record.path, self._results)
        return self._loaded

    def to_pandas(self):
        """Per-class precision, recall, F1 and support on the test images, one row a class."""
        import pandas as pd

        per_class = self.metrics.get("per_class") or {}
        return pd.DataFrame.from_dict(per_class, orient="index").rename_axis("class")

    def __repr__(self) -> str:
        return run_text(self.record)

    def _repr_html_(self) -> str:
        from .report.run_report import summary_card

        return _box(f"{self.info['name']} ({self.info['family']}) on {self.info['dataset']['kind']}",
                    summary_card(self.record, _img))


class Runs(list):
    """The runs of one ``bmbench.run`` call with several seeds: one line each."""

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame([{"run": r.id, "seed": r.info.get("seed"),
                              **{k: r.metrics.get(k) for k in ("macro_f1", "accuracy", "balanced_accuracy")}}
                             for r in self])

    def __repr__(self) -> str:
        return "\n".join(repr(r) for r in self)

    def _repr_html_(self) -> str:
        rows = self.to_pandas().values.tolist()
        return _box(f"{len(self)} runs", H.table(["run", "seed", "macro_f1", "accuracy", "balanced_accuracy"],
                                                 [[r[0], r[1], *(f"{v:.4f}" for v in r[2:])] for r in rows],
                                                 numeric={1, 2, 3, 4}))


@dataclass
class Leaderboard:
    """Stored runs ranked per data set and test split (``.boards``); ``message`` says why
    there is nothing to rank."""

    boards: list
    store: Path
    message: str | None = None

    def to_pandas(self):
        """Every board's rows, with the board's ``table`` title and ``split_fingerprint``."""
        import pandas as pd

        frames = [b.rows.assign(split_fingerprint=b.split_fingerprint, table=b.title) for b in self.boards]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    def __repr__(self) -> str:
        from .leaderboard import render

        return self.message or render(self.boards, "table")

    def _repr_html_(self) -> str:
        from .cells import TableView, view_columns

        if not self.boards:
            return _box("bmbench leaderboard", f"<p>{H.esc(self.message or repr(self))}</p>")
        parts = []
        for b in self.boards:
            header, body = view_columns(b, TableView())
            marks = b.table.column("vs_leader")
            classes = ["leader" if v == "leader" else "ns" if v == "n.s." else "" for v in marks]
            numeric = {j for j, h in enumerate(header) if h not in ("id", "recipe", "settings", "vs leader")}
            parts.append(f"<p><b>{H.esc(b.title)}</b></p>" + H.table(header, body, numeric, classes)
                         + (f'<p class="note">{H.esc(b.test)}</p>' if b.test else ""))
        return _box(f"bmbench leaderboard: {_shown(self.store)}", "".join(parts))


@dataclass
class Comparison:
    """A paired comparison of two runs (``.result``: the dict ``compare --format json`` prints)."""

    result: dict

    def to_pandas(self):
        import pandas as pd

        return pd.DataFrame([{"side": s.upper(), **{k: v for k, v in self.result[s].items() if k != "stored_ci"}}
                             for s in "ab"]).set_index("side")

    def __repr__(self) -> str:
        from .compare import format_comparison

        return format_comparison(self.result)

    def _repr_html_(self) -> str:
        lines = repr(self).strip().splitlines()
        return _box("bmbench compare", "".join(f"<p>{H.esc(line)}</p>" for line in lines))


@dataclass
class Ablation:
    """An ablation's tables (``.report``, per metric) and where its files were written."""

    report: object
    paths: dict = field(default_factory=dict)
    failed: list = field(default_factory=list)

    def to_pandas(self, metric: str | None = None):
        """One metric's table (default: the first): a row per variant."""
        return self.report.tables[metric or self.report.metrics[0]]

    def __repr__(self) -> str:
        from .ablation import to_markdown

        return to_markdown(self.report, images=False)

    def _repr_html_(self) -> str:
        from .ablation import display_rows, figure

        parts = []
        for metric in self.report.metrics:
            header, rows = display_rows(self.report, metric)
            parts.append(f"<p><b>{H.esc(metric)}</b></p>" + H.table(header, rows, set(range(1, len(header) - 1)))
                         + _img(figure(self.report, metric), f"{metric} per variant", 560))
        failed = (f'<p class="note">{len(self.failed)} run(s) failed.</p>' if self.failed else "")
        return _box(f"ablation {self.report.id}", failed + "".join(parts))


@dataclass
class FeatureTable:
    """A features (or embeddings) table: ``.frame`` (one row an image), ``.dictionary``
    (each feature's name, family, region, unit and definition), ``.path`` (None when not kept)."""

    frame: object
    dictionary: dict
    path: Path | None = None

    def to_pandas(self):
        return self.frame

    def __repr__(self) -> str:
        return f"{self._shape()}\n{self.frame.head(10).to_string(max_cols=12)}"

    def _shape(self) -> str:
        n_meta = sum(c in ("path", "label", "split", "patient", "segmentation_flags") for c in self.frame.columns)
        where = f", written to {self.path}" if self.path else ""
        return f"{len(self.frame)} images x {self.frame.shape[1] - n_meta} features{where}"

    def _repr_html_(self) -> str:
        return _box(self._shape(), self.frame.head(10).to_html(max_cols=12, float_format=lambda v: f"{v:.4g}"))
