"""Pictures of a stored study (``bmbench tune --report STUDY``): the optimisation history
(every trial's validation score, the best so far, trial 0 = the recipe's own values
marked), the fANOVA importance of each parameter, and each parameter's tried values against
the score with the best trial highlighted; plus ``summary.md`` with the best parameters."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.atomic import write_bytes, write_text
from .report.plots import png_bytes


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def history_figure(summary: dict):
    """Score of every complete trial (pruned ones as crosses at their last report) and the
    best so far."""
    rows = summary["trials"]
    maximize = summary["direction"] == "maximize"
    metric = summary["manifest"]["metric"]
    fig = _figure(7, 3.6)
    ax = fig.add_subplot()
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    pruned = [r for r in rows if r["state"] == "PRUNED" and r["intermediate"]]
    if done:
        x = np.array([r["number"] for r in done])
        y = np.array([r["value"] for r in done])
        ax.scatter(x, y, s=18, color="#7fb2e5", label="trial", zorder=2)
        best = (np.maximum if maximize else np.minimum).accumulate(y)
        ax.step(x, best, where="post", color="#1f5fa8", label="best so far", zorder=3)
        for r in done:
            if r["default"]:
                ax.scatter([r["number"]], [r["value"]], s=60, facecolors="none", edgecolors="#c0392b",
                           label="trial 0: recipe's own values", zorder=4)
    if pruned:
        ax.scatter([r["number"] for r in pruned], [list(r["intermediate"].values())[-1] for r in pruned],
                   marker="x", color="#b0b0b0", label="pruned (last epoch score)", zorder=1)
    ax.set_xlabel("trial")
    ax.set_ylabel(f"{metric} (validation)")
    ax.set_title(f"Optimisation history: {summary['manifest']['id']}")
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right" if maximize else "upper right", fontsize=8)
    return fig


def importance_figure(summary: dict):
    imp = summary["importances"]
    fig = _figure(7, 0.9 + 0.35 * max(1, len(imp)))
    ax = fig.add_subplot()
    if not imp:
        ax.text(0.5, 0.5, "too few finished trials for parameter importances", ha="center", va="center")
        ax.set_axis_off()
        return fig
    names = list(imp)[::-1]
    ax.barh(names, [imp[n] for n in names], color="#1f5fa8")
    ax.set_xlabel("fANOVA importance (share of the score's variance)")
    ax.set_title("Parameter importances")
    return fig


def params_figure(summary: dict):
    """One panel per parameter: tried values against the score; the best trial in red."""
    rows = [r for r in summary["trials"] if r["state"] == "COMPLETE" and r["value"] is not None]
    names = list(summary["manifest"]["space"])
    space = summary["manifest"]["space"]
    cols = min(3, max(1, len(names)))
    nrows = -(-len(names) // cols) or 1
    fig = _figure(3.2 * cols, 2.6 * nrows)
    if not rows:
        return fig
    maximize = summary["direction"] == "maximize"
    best = (max if maximize else min)(rows, key=lambda r: r["value"])
    for i, name in enumerate(names):
        ax = fig.add_subplot(nrows, cols, i + 1)
        vals = [r["params"].get(name) for r in rows]
        scores = [r["value"] for r in rows]
        kind = next(iter(space[name]))
        if kind == "choice":
            labels = [str(v) for v in dict.fromkeys(vals)]
            xs = [labels.index(str(v)) for v in vals]
            ax.set_xticks(range(len(labels)), labels, rotation=30, fontsize=7)
            bx = labels.index(str(best["params"].get(name)))
        else:
            xs, bx = vals, best["params"].get(name)
            if kind.startswith("log_"):
                from matplotlib.ticker import NullFormatter

                ax.set_xscale("log")
                ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels of a log axis overlap
        ax.scatter(xs, scores, s=12, color="#7fb2e5")
        ax.scatter([bx], [best["value"]], s=40, color="#c0392b", zorder=3)
        ax.set_title(f"{name.split('.')[-1]} = {_fmt(best['params'].get(name))}", fontsize=9)
        ax.tick_params(labelsize=7)
    fig.suptitle("Tried values against the validation score (best trial in red)", fontsize=10)
    return fig


def _fmt(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def summary_markdown(summary: dict) -> str:
    m = summary["manifest"]
    rows = summary["trials"]
    states = {s: sum(r["state"] == s for r in rows) for s in ("COMPLETE", "PRUNED", "FAIL", "RUNNING")}
    done = [r for r in rows if r["state"] == "COMPLETE" and r["value"] is not None]
    lines = [f"# Study {m['id']}", "",
             f"{m['metric']} on the {m['objective']}; budget {m.get('trials') or '-'} trials"
             f"{', %g min' % m['minutes'] if m.get('minutes') else ''}; "
             f"{states['COMPLETE']} complete, {states['PRUNED']} pruned, {states['FAIL']} failed"
             f"{', %d running' % states['RUNNING'] if states['RUNNING'] else ''}.", ""]
    if done:
        maximize = summary["direction"] == "maximize"
        best = (max if maximize else min)(done, key=lambda r: r["value"])
        default = next((r for r in done if r["default"]), None)
        lines += [f"Best trial {best['number']}: **{best['value']:.4f}**"
                  + (f" (trial 0, the recipe's own values: {default['value']:.4f})" if default else ""), "",
                  "| parameter | best value | searched | importance |", "|---|---|---|---|"]
        for name, rng in m["space"].items():
            kind, values = next(iter(rng.items()))
            imp = summary["importances"].get(name)
            lines.append(f"| {name} | {_fmt(best['params'].get(name))} | {kind} {values} | "
                         f"{'%.3f' % imp if imp is not None else '-'} |")
    if m.get("best_run"):
        lines += ["", f"Refitted as run `{m['best_run']}` (see its run.json `tuning`)."]
    lines += ["", "![optimisation history](history.png)", "", "![parameter importances](importances.png)", "",
              "![parameters](params.png)", ""]
    return "\n".join(lines)


def write_study_report(results: Path, study_id: str, storage: str | None = None) -> dict[str, Path]:
    """Write ``history.png``, ``importances.png``, ``params.png`` and ``summary.md`` into
    ``results/studies/<id>/report/``; returns their paths."""
    from ..runs.tune import study_summary

    summary = study_summary(results, study_id, storage)
    folder = Path(summary["folder"]) / "report"
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, draw in (("history.png", history_figure), ("importances.png", importance_figure),
                       ("params.png", params_figure)):
        write_bytes(folder / name, png_bytes(draw(summary)))
        out[name] = folder / name
    write_text(folder / "summary.md", summary_markdown(summary))
    out["summary.md"] = folder / "summary.md"
    return out
