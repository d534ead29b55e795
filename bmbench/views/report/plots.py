"""Figures for run reports and leaderboard pages (matplotlib, Agg renderer).

Every function returns a :class:`matplotlib.figure.Figure` built without pyplot (so no
global backend is touched and nothing opens a window); :func:`png_bytes` renders one to PNG.
Figures grow with the number of classes or rows so that labels never overlap: long tick
labels are rotated or wrapped and layouts are computed by matplotlib's constrained layout.
"""

from __future__ import annotations

import io
import textwrap

import numpy as np

DPI = 110
LEADER, SAME, WORSE, UNTESTED = "#1f5fa8", "#7fb2e5", "#b0b0b0", "#d9c27a"
# higher-is-better scores shown as points with intervals (the others are losses)
SCORES = ("accuracy", "balanced_accuracy", "macro_f1", "weighted_f1", "macro_precision",
          "macro_recall", "mcc", "cohen_kappa", "roc_auc_ovr_macro")


def _figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=DPI, layout="constrained")


def png_bytes(fig) -> bytes:
    """The figure as PNG bytes (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=DPI)
    return buf.getvalue()


def _wrap(label: str, width: int) -> str:
    return "\n".join(textwrap.wrap(str(label), width, break_long_words=True)) or str(label)


def confusion_matrix_figure(cm, classes, title: str = "Confusion matrix (row-normalised)"):
    """Heatmap of the confusion matrix normalised by true class (each row sums to 1), with
    the percentage (and count) in each cell; rows of classes without test images are grey."""
    cm = np.asarray(cm, dtype=np.float64)
    k = len(classes)
    support = cm.sum(axis=1, keepdims=True)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.where(support > 0, cm / np.maximum(support, 1), np.nan)
    side = float(np.clip(1.8 + 0.42 * k, 5.0, 11.0))
    fig = _figure(side + 1.4, side)
    ax = fig.add_subplot()
    masked = np.ma.masked_invalid(norm)
    import matplotlib

    cmap = matplotlib.colormaps["Blues"].with_extremes(bad="#e0e0e0")
    im = ax.imshow(masked, cmap=cmap, vmin=0.0, vmax=1.0)
    labels = [_wrap(c, 14) for c in classes]
    upright = k <= 3 and max(len(c) for c in classes) <= 12
    # vertical labels beyond three classes: one label per column, never touching its neighbour
    ax.set_xticks(range(k), labels, rotation=0 if upright else 90, fontsize=_tick_size(k))
    ax.set_yticks(range(k), labels, fontsize=_tick_size(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    if k <= 25:
        size = 9 if k <= 8 else 8 if k <= 15 else 6.5
        for i in range(k):
            for j in range(k):
                if np.isnan(norm[i, j]) or (k > 10 and cm[i, j] == 0):
                    continue  # many classes: empty cells stay blank
                text = f"{norm[i, j]:.0%}" if k > 10 else f"{norm[i, j]:.0%}\n({int(cm[i, j])})"
                ax.text(j, i, text, ha="center", va="center", fontsize=size,
                        color="white" if norm[i, j] > 0.55 else "#222222")
    bar = fig.colorbar(im, ax=ax, shrink=0.8)
    bar.set_label("fraction of the true class")
    return fig


def _tick_size(k: int) -> float:
    return 10 if k <= 10 else 9 if k <= 16 else 8


def reliability_figure(rel: dict, title: str = "Reliability diagram"):
    """Accuracy against confidence per bin (bars), the diagonal of perfect calibration, the
    gap to it (red), and below it how many test images fall in each bin."""
    lower = np.asarray(rel["bin_lower"])
    upper = np.asarray(rel["bin_upper"])
    width = upper - lower
    centre = (lower + upper) / 2
    acc = np.array([np.nan if a is None else a for a in rel["accuracy"]], dtype=float)
    conf = np.array([np.nan if c is None else c for c in rel["mean_confidence"]], dtype=float)
    count = np.asarray(rel["count"])
    fig = _figure(6.4, 6.4)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=[3, 1])
    has = count > 0
    top.bar(centre[has], acc[has], width=width[has], color="#4c84c4", edgecolor="white",
            label="accuracy in bin")
    # the gap between accuracy and mean confidence, drawn as an outline so that it reads the
    # same above the bar (over-confident) and inside it (under-confident)
    gap_low, gap_high = np.minimum(acc, conf)[has], np.maximum(acc, conf)[has]
    top.bar(centre[has], gap_high - gap_low, bottom=gap_low, width=width[has] * 0.9,
            facecolor="none", edgecolor="#c0392b", hatch="///", lw=1.0, label="gap to mean confidence")
    top.scatter(centre[has], conf[has], marker="_", s=120, color="#222222", zorder=3,
                label="mean confidence in bin")
    top.plot([0, 1], [0, 1], "--", color="#555555", lw=1, label="perfect calibration")
    top.set_xlim(0, 1)
    top.set_ylim(0, 1.02)
    top.set_ylabel("accuracy")
    top.set_title(f"{title} (ECE = {rel['ece']:.3f}, {rel['n_bins']} bins, {rel['n']} images)")
    top.legend(loc="upper left", fontsize=9)
    bottom.bar(centre, count, width=width, color="#888888", edgecolor="white")
    bottom.set_xlabel("confidence (largest predicted probability)")
    bottom.set_ylabel("images")
    from matplotlib.ticker import MaxNLocator

    bottom.yaxis.set_major_locator(MaxNLocator(nbins=4, integer=True))
    return fig


def metric_ci_figure(metrics: dict, level: float = 0.95):
    """Each higher-is-better headline score as a point with its bootstrap interval."""
    ci = metrics.get("ci") or {}
    names = [m for m in SCORES if metrics.get(m) is not None]
    fig = _figure(7.2, 0.45 * len(names) + 1.4)
    ax = fig.add_subplot()
    y = np.arange(len(names))[::-1]
    values = np.array([metrics[m] for m in names])
    low = np.array([ci[m][0] if ci.get(m) else v for m, v in zip(names, values)])
    high = np.array([ci[m][1] if ci.get(m) else v for m, v in zip(names, values)])
    # a percentile interval need not hold the point estimate (a skewed or one-valued
    # bootstrap, float sums one step apart): its whiskers then end at the point
    ax.errorbar(values, y, xerr=[np.maximum(values - low, 0), np.maximum(high - values, 0)], fmt="o", color="#1f5fa8",
                ecolor="#1f5fa8", capsize=4, lw=1.5)
    for yi, v, h in zip(y, values, high):
        ax.annotate(f"{v:.3f}", (h, yi), xytext=(6, 0), textcoords="offset points",
                    va="center", fontsize=9)
    ax.set_yticks(y, names)
    # a dot plot need not start at 0: zoom to the intervals (in steps of 0.1) to read them
    left = float(np.floor((np.nanmin(low) - 0.03) * 10) / 10) if len(names) else 0.0
    ax.set_xlim(max(-1.0, min(left, 0.9)), 1.0 + 0.12 * (1.0 - max(-1.0, min(left, 0.9))))
    ax.set_xlabel(f"score with {level:.0%} stratified bootstrap interval")
    ax.set_title("Headline scores on the test images")
    ax.grid(axis="x", alpha=0.3)
    return fig


def training_curves_figure(history, title: str = "Training curves"):
    """One panel per quantity in ``history.csv`` (loss, accuracy...), training and
    validation lines against the epoch, one line per fold for k-fold runs. When training
    ran in stages (e.g. head, then fine-tuning), epochs are counted on across stages and
    each stage start is marked with a dotted line."""
    from matplotlib.ticker import MaxNLocator

    frame = history.reset_index(drop=True).copy()
    if "fold" not in frame.columns:
        frame["fold"] = 0
    if "epoch" not in frame.columns:
        frame["epoch"] = frame.groupby("fold").cumcount() + 1
    staged = "stage" in frame.columns and frame["stage"].nunique() > 1
    # x: epochs counted on across the stages of each fold
    frame["_x"] = frame.groupby("fold").cumcount() + 1 if staged else frame["epoch"]
    skip = {"epoch", "fold", "stage", "lr", "learning_rate", "seconds", "_x"}
    bases = []
    for c in frame.columns:
        if c in skip or not np.issubdtype(frame[c].dtype, np.number):
            continue
        base = c[4:] if c.startswith("val_") else c
        if base not in bases:
            bases.append(base)
    n = max(1, len(bases))
    cols = min(n, 2)
    rows = -(-n // cols)
    fig = _figure(5.2 * cols, 3.6 * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    folds = sorted(frame["fold"].unique())
    labelled: dict[str, object] = {}
    for ax, base in zip(axes, bases):
        for i, fold in enumerate(folds):
            part = frame[frame["fold"] == fold]
            tag = f" (fold {fold})" if len(folds) > 1 else ""
            for col, style, name in ((base, "-", "train"), (f"val_{base}", "--", "validation")):
                if col in part.columns and part[col].notna().any():
                    (line,) = ax.plot(part["_x"], part[col], style, marker="o", ms=3,
                                      color=f"C{i % 10}", label=f"{name}{tag}")
                    labelled.setdefault(line.get_label(), line)
        if staged:
            first = frame[frame["fold"] == folds[0]]
            starts = first.loc[first["stage"] != first["stage"].shift(), ["_x", "stage"]]
            for x, stage in starts.itertuples(index=False):
                ax.axvline(x - 0.5, color="#777777", ls=":", lw=1)
                ax.annotate(str(stage), (x - 0.5, 1.0), xycoords=("data", "axes fraction"),
                            xytext=(3, -3), textcoords="offset points", va="top", fontsize=8,
                            color="#555555")
        ax.set_title(base.replace("_", " "))
        ax.set_xlabel("epoch" + (" (all stages)" if staged else ""))
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # epochs are whole numbers
        ax.set_ylabel(base.replace("_", " "))
        ax.grid(alpha=0.3)
    for ax in axes[len(bases):]:
        ax.set_visible(False)
    if labelled:  # one legend under the panels: solid = training, dashed = validation
        fig.legend(list(labelled.values()), list(labelled), loc="outside lower center",
                   ncol=min(4, len(labelled)), fontsize=8, frameon=False)
    fig.suptitle(title)
    return fig


def feature_importance_figure(frame, top: int = 20, title: str = "Top features by gain"):
    """Horizontal bars of the ``top`` features' share of the total gain, largest first."""
    frame = frame.sort_values("gain", ascending=False)
    total = float(frame["gain"].sum()) or 1.0
    shown = frame.head(top).iloc[::-1]
    fig = _figure(8.0, 0.32 * len(shown) + 1.5)
    ax = fig.add_subplot()
    share = shown["gain"].to_numpy() / total
    ax.barh(range(len(shown)), share, color="#4c84c4")
    ax.set_yticks(range(len(shown)), [_wrap(f, 40) for f in shown["feature"]], fontsize=8.5)
    ax.set_xlabel("share of the total gain")
    ax.set_title(f"{title} (top {len(shown)} of {len(frame)})")
    ax.set_xlim(0, share.max() * 1.18 if len(share) else 1)
    for i, v in enumerate(share):
        ax.annotate(f"{v:.1%}", (v, i), xytext=(3, 0), textcoords="offset points", va="center",
                    fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    return fig


def mistakes_figure(items: list[dict], title: str = "Most confident mistakes", cols: int = 4):
    """Thumbnails of predictions: ``items`` have ``image`` (RGB array or None), ``true``,
    ``predicted``, ``probability``, ``path`` and optionally ``note`` (lines under the image)."""
    n = max(1, len(items))
    cols = min(cols, n)
    rows = -(-n // cols)
    extra = max((str(i.get("note", "")).count("\n") + 1 for i in items if i.get("note")), default=0)
    fig = _figure(2.9 * cols, (3.6 + 0.16 * extra) * rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax, item in zip(axes, items):
        if item.get("image") is not None:
            ax.imshow(item["image"])
        else:
            ax.text(0.5, 0.5, "image not found", ha="center", va="center", fontsize=9,
                    color="#a00000", transform=ax.transAxes)
        ax.set_title(f"true: {_short(item['true'])}\npredicted: {_short(item['predicted'])}"
                     f" ({item['probability']:.2f})\n{_short(item['path'].rsplit('/', 1)[-1], 30)}",
                     fontsize=8.5)
        if item.get("note"):
            ax.set_xlabel(item["note"], fontsize=7, loc="left")
        ax.set_xticks([])
        ax.set_yticks([])
    for ax in axes[len(items):]:
        ax.set_visible(False)
    fig.suptitle(title)
    return fig


def _short(text: str, width: int = 22) -> str:
    text = str(text)
    return text if len(text) <= width else text[:width - 1] + "…"


def leaderboard_figure(board, level: float = 0.95):
    """Bars of the ranking metric per run with interval whiskers, coloured by the paired
    test against the leader; the leader's interval is shaded across the chart."""
    import pandas as pd

    rows = board.rows
    m = board.metric
    rows = rows[rows[m].notna()]
    fig = _figure(9.0, 0.42 * len(rows) + 1.9)
    ax = fig.add_subplot()
    if len(rows) == 0:
        ax.text(0.5, 0.5, f"no run has {m}", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    dup = rows["recipe"].duplicated(keep=False)
    labels = [f"{r.recipe} ({r.run.rsplit('-', 1)[-1]})" if d else r.recipe
              for r, d in zip(rows.itertuples(), dup)]
    y = np.arange(len(rows))[::-1]
    value = rows[m].to_numpy(dtype=float)
    low = rows[f"{m}_ci_low"].astype(float).fillna(pd.Series(value, index=rows.index)).to_numpy()
    high = rows[f"{m}_ci_high"].astype(float).fillna(pd.Series(value, index=rows.index)).to_numpy()
    colours = [{"leader": LEADER, "n.s.": SAME, "worse": WORSE}.get(v, UNTESTED)
               for v in rows["vs_leader"]]
    ax.barh(y, value, color=colours, edgecolor="#333333", lw=0.5)
    ax.errorbar(value, y, xerr=[np.maximum(value - low, 0), np.maximum(high - value, 0)], fmt="none", ecolor="#111111",
                capsize=4, lw=1.2)
    if not np.isnan(low[0]):
        ax.axvspan(low[0], high[0], color=LEADER, alpha=0.12, lw=0)
    ax.set_yticks(y, [_short(label, 40) for label in labels])
    span = max(float(np.nanmax(high)), 1e-9)
    ax.set_xlim(min(0.0, float(np.nanmin(low))), span * 1.12)
    for yi, v, h in zip(y, value, high):
        ax.annotate(f"{v:.3f}", (h, yi), xytext=(4, 0), textcoords="offset points", va="center",
                    fontsize=8.5)
    better = "lower is better" if m in ("log_loss", "ece", "brier") else "higher is better"
    ax.set_xlabel(f"{m} ({better}); whiskers: {level:.0%} bootstrap interval")
    d = board.dataset or {}
    ax.set_title(f"{m} per run" + (f" on {d['kind']}" if d.get("kind") else "")
                 + f", split {board.split_fingerprint}", fontsize=10)
    from matplotlib.patches import Patch

    handles = [Patch(color=LEADER, label="leader"),
               Patch(color=SAME, label="not significantly different from the leader"),
               Patch(color=WORSE, label="significantly worse than the leader")]
    if any(c == UNTESTED for c in colours):
        handles.append(Patch(color=UNTESTED, label="not tested (no predictions)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=2, fontsize=8, frameon=False)
    ax.grid(axis="x", alpha=0.3)
    return fig
