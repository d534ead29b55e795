"""Ablation tables and plots, rebuilt from the run store (``bmbench ablate --report ID``).

Per metric, one row per variant: its values on every axis, the number of training images,
the runs found, the **mean** over repeats and their **standard deviation** (seed spread), the
**95% CI** of that mean (stratified bootstrap over the test images, every repeat scored on
the same resampled images: :func:`bmbench.metrics.repeated.repeat_mean_ci`), and the
**difference to the base variant** with its paired bootstrap CI and p-value on the shared
test images (:func:`bmbench.metrics.repeated.paired_repeat_bootstrap`), Holm-corrected over
the variants of the table (:func:`bmbench.metrics.paired.holm`). A second table gives the
**best value per axis** (one-at-a-time: along that axis around the base; grid: the value
with the best mean over the other axes' combinations).

Written to ``results/ablations/<id>/``: ``summary.md``, ``summary.html`` (self-contained),
``summary.csv`` (long format), ``best_per_axis.csv`` and ``<metric>.png`` (bars with CI
error bars, or a learning curve when ``train.fraction`` is an axis).

Runs with cross-data-set evaluations (``evaluate``) get one more table per evaluation set,
"tested on <kind>": per variant, the mean (and sd) over repeats of each metric on that set,
with its number of test images (also ``evaluations.csv``). Varying
``evaluate.0.adapt.n_per_class`` this is the few-shot learning curve. Those test sets shrink
as images are drawn into training (nested for one seed), so they carry no paired tests.
Where an evaluation adapted its model to the set's unlabelled images
(``evaluate[i].adapt.transductive``), its row says which mode in the column ``transductive``.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..core.errors import BmbenchError, StoreError
from ..core.untrusted import DamagedFile, read_json
from ..metrics.bootstrap import LEVEL, N_RESAMPLES, SEED
from ..metrics.paired import holm
from ..metrics.repeated import paired_repeat_bootstrap, repeat_mean_ci
from ..metrics.scores import HEADLINE, LOWER_IS_BETTER, compute_metrics
from ..core.atomic import write_bytes, write_text
from ..runs.records import check_metrics
from ..runs.store import RunRecord, list_runs, load_record
from ..config.ablation import DEFAULT_METRICS, SETTINGS, TRAIN_FRACTION, format_value
from ..runs.sweep import ablation_folder, read_manifest, task_key
from .cells import format_p
from ..runs.predictions import read_scored
from .report import html as H
from .report.plots import png_bytes

log = logging.getLogger("bmbench.ablation")
FORMATS = ("markdown", "csv", "html")
ALPHA = 0.05


@dataclass
class VariantData:
    """A planned variant and the stored runs (one per repeat found) and failures it has."""

    index: int
    label: str
    values: dict
    changed: list
    is_base: bool
    planned: int
    records: list[RunRecord] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    @property
    def status(self) -> str:
        n = len(self.records)
        if n == self.planned:
            return "ok"
        if self.errors:
            error = self.errors[0] if len(self.errors[0]) <= 90 else self.errors[0][:89] + "…"
            return f"failed ({len(self.errors)}): {error}"
        return f"partial ({n}/{self.planned})" if n else "not run"


@dataclass
class AblationReport:
    id: str
    doc: dict
    variants: list[VariantData]
    metrics: tuple[str, ...]
    tables: dict[str, pd.DataFrame]
    best: pd.DataFrame
    facts: dict
    evaluations: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def axes(self) -> list[str]:
        return [a["key"] for a in self.doc["axes"]]

    @property
    def learning_curve(self) -> bool:
        return TRAIN_FRACTION in self.axes


# --- collecting ---------------------------------------------------------------------------

def collect(results: Path, ablation_id: str) -> tuple[dict, list[VariantData]]:
    """The plan (``ablation.json``, or one rebuilt from the runs' tags when it is missing)
    and every variant with its stored runs."""
    results = Path(results)
    stored = list_runs(results)
    tagged = [r for r in stored if (r.info.get("tags") or {}).get("ablation") == ablation_id]
    doc = read_manifest(ablation_folder(results, ablation_id))
    if doc is None:
        if not tagged:
            known = sorted({(r.info.get("tags") or {}).get("ablation") for r in list_runs(results)} - {None})
            hint = f"; stored ablations: {', '.join(known)}" if known else "; none is stored there yet"
            raise BmbenchError(f"no ablation '{ablation_id}' in {results}{hint}")
        doc = _plan_from_tags(ablation_id, tagged)
    by_key = {(r.info.get("recipe_fingerprint"), r.info.get("seed")): r for r in tagged}
    by_id = {r.id: r for r in stored}  # the manifest may name a reused run of another origin
    failures = doc.get("failures") or {}
    variants = []
    for v in doc["variants"]:
        data = VariantData(v["index"], v["label"], v["values"], v.get("changed", []), v["base"],
                           len(v["runs"]))
        for run in v["runs"]:
            key = task_key(v["index"], run["repeat"])
            record = by_key.get((run["fingerprint"], run["seed"])) or by_id.get((doc.get("runs") or {}).get(key))
            if record is not None:
                data.records.append(record)
            elif key in failures:
                data.errors.append(failures[key]["error"])
        variants.append(data)
    return doc, variants


def _plan_from_tags(ablation_id: str, records: list[RunRecord]) -> dict:
    """A plan rebuilt from the runs alone (their ``tags``), when ``ablation.json`` is gone."""
    variants: dict[str, dict] = {}
    for r in records:
        t = r.info["tags"]
        v = variants.setdefault(t["variant"], {"index": t.get("variant_index", len(variants)),
                                               "label": t["variant"], "values": t.get("values", {}),
                                               "changed": [], "base": bool(t.get("base")), "runs": []})
        v["runs"].append({"repeat": t.get("repeat", 0), "seed": r.info.get("seed"),
                          "fingerprint": r.info.get("recipe_fingerprint")})
    ordered = sorted(variants.values(), key=lambda v: (not v["base"], v["index"]))
    base = next((v for v in ordered if v["base"]), ordered[0])
    keys = list(base["values"])
    for v in ordered:
        v["changed"] = [k for k in keys if v["values"].get(k) != base["values"].get(k)]
    return {"id": ablation_id, "description": "", "mode": "unknown (rebuilt from the runs' tags)",
            "repeats": max(len(v["runs"]) for v in ordered), "metrics": list(DEFAULT_METRICS),
            "axes": [{"key": k, "values": []} for k in keys], "variants": ordered,
            "base": {"name": records[0].info["name"]}, "failures": {}, "runs": {}}


# --- statistics ---------------------------------------------------------------------------

class _Predictions:
    """Each run's scored test images, read once: ``(paths, y, proba)``."""

    def __init__(self):
        self._cache: dict[str, tuple] = {}

    def get(self, record: RunRecord):
        if record.id not in self._cache:
            try:
                self._cache[record.id] = read_predictions(record)
            except StoreError as exc:  # missing or damaged: the paired statistics leave the run out
                log.warning("%s; left out of the paired statistics", exc)
                self._cache[record.id] = None
        return self._cache[record.id]


def read_predictions(record: RunRecord) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(paths, y, proba)`` of the test images the run scored (NaN rows left out)."""
    return read_scored(Path(record.path), record.metrics.get("classes") or record.info["dataset"]["classes"])


def _aligned(records: list[RunRecord], preds: _Predictions):
    """``(y, [proba per record])`` on the images every record scored, in one order."""
    loaded = [preds.get(r) for r in records]
    if any(x is None for x in loaded):
        return None
    common = set(loaded[0][0])
    for paths, _, _ in loaded[1:]:
        common &= set(paths)
    if not common:
        return None
    order = sorted(common)
    y = None
    probas = []
    for paths, labels, proba in loaded:
        pos = {p: i for i, p in enumerate(paths)}
        rows = np.array([pos[p] for p in order], dtype=np.int64)
        if y is None:
            y = labels[rows]
        elif (labels[rows] != y).any():
            return None
        probas.append(proba[rows])
    return y, probas


def _same_test_set(records: list[RunRecord]) -> bool:
    return len({r.info.get("split_fingerprint") for r in records}) == 1 and \
        len({tuple(r.metrics.get("classes") or ()) for r in records}) == 1


def metric_table(variants: list[VariantData], metric: str, preds: _Predictions,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED) -> pd.DataFrame:
    """One row per variant (see the module documentation for the columns)."""
    base = next(v for v in variants if v.is_base)
    rows = []
    for v in variants:
        values = [r.metrics.get(metric) for r in v.records]
        values = [float(x) for x in values if x is not None]
        row = {"variant": v.label, "index": v.index, "base": v.is_base, **{k: val for k, val in v.values.items()},
               "n_train": _n_train(v.records), "runs": len(v.records), "planned": v.planned,
               "status": v.status, "mean": np.mean(values) if values else np.nan,
               "sd": float(np.std(values, ddof=1)) if len(values) > 1 else np.nan,
               "ci_low": np.nan, "ci_high": np.nan, "diff": np.nan, "diff_ci_low": np.nan,
               "diff_ci_high": np.nan, "p_value": np.nan, "paired": "", "repeat_values": values}
        if values and _same_test_set(v.records):
            aligned = _aligned(v.records, preds)
            if aligned is not None:
                y, probas = aligned
                k = probas[0].shape[1]
                ci = repeat_mean_ci(y, probas, k, metric, n_resamples, LEVEL, seed)["ci"]
                if ci:
                    row["ci_low"], row["ci_high"] = ci
        if not v.is_base and values and base.records:
            both = base.records + v.records
            if not _same_test_set(both):
                row["paired"] = "different test images: not compared"
            else:
                aligned = _aligned(both, preds)
                if aligned is None:
                    row["paired"] = "no shared test images"
                else:
                    y, probas = aligned
                    nb = len(base.records)
                    boot = paired_repeat_bootstrap(y, probas[nb:], probas[:nb], probas[0].shape[1],
                                                   metric, n_resamples, LEVEL, seed)
                    row["diff"] = boot["difference"]
                    if boot["ci"]:
                        row["diff_ci_low"], row["diff_ci_high"] = boot["ci"]
                    row["p_value"] = boot["p_value"]
                    row["paired"] = f"{len(y)} shared test images"
        rows.append(row)
    frame = pd.DataFrame(rows)
    tested = frame["p_value"].notna().to_numpy()
    frame["p_holm"] = np.nan
    if tested.any():
        frame.loc[tested, "p_holm"] = holm(frame.loc[tested, "p_value"].to_numpy())
    means = frame["mean"]
    if means.notna().any():
        best = means.min() if metric in LOWER_IS_BETTER else means.max()
        frame["best"] = np.isclose(means, best) & means.notna()
    else:
        frame["best"] = False
    return frame


def _n_train(records: list[RunRecord]):
    sizes = {r.info.get("n_train") for r in records}
    return sizes.pop() if len(sizes) == 1 else (None if not sizes else float(np.mean(list(sizes))))


def best_per_axis(tables: dict[str, pd.DataFrame], variants: list[VariantData], axes: list[str],
                  mode: str) -> pd.DataFrame:
    """Per metric and axis: the value with the best mean (see the module documentation)."""
    base = next(v for v in variants if v.is_base)
    rows = []
    for metric, table in tables.items():
        lower = metric in LOWER_IS_BETTER
        for axis in axes:
            if mode == "one_at_a_time":
                picks = [i for i, v in enumerate(variants) if set(v.changed) <= {axis}]
            else:
                picks = list(range(len(variants)))
            groups: dict[str, list[float]] = {}
            rows_of: dict[str, list[int]] = {}
            for i in picks:
                mean = table["mean"].iloc[i]
                if not np.isnan(mean):
                    value = format_value(variants[i].values.get(axis))
                    groups.setdefault(value, []).append(mean)
                    rows_of.setdefault(value, []).append(i)
            if not groups:
                continue
            means = {value: float(np.mean(m)) for value, m in groups.items()}
            best = (min if lower else max)(means, key=means.get)
            base_value = format_value(base.values.get(axis))
            # One variant holds the best value (one-at-a-time): its Holm p against the base
            # says whether "best" is more than noise; a grid value averages several variants.
            single = rows_of[best][0] if len(rows_of[best]) == 1 else None
            p_holm = float(table["p_holm"].iloc[single]) if single is not None and best != base_value else np.nan
            rows.append({"metric": metric, "axis": axis, "best_value": best, "mean": means[best],
                         "base_value": base_value,
                         "diff_vs_base_value": means[best] - means[base_value] if base_value in means else np.nan,
                         "p_holm": p_holm, "n_values": len(means)})
    return pd.DataFrame(rows, columns=["metric", "axis", "best_value", "mean", "base_value",
                                       "diff_vs_base_value", "p_holm", "n_values"])


def build_report(results: Path, ablation_id: str, metrics: tuple[str, ...] | None = None,
                 n_resamples: int = N_RESAMPLES, seed: int = SEED) -> AblationReport:
    doc, variants = collect(results, ablation_id)
    metrics = tuple(metrics or doc.get("metrics") or DEFAULT_METRICS)
    unknown = [m for m in metrics if m not in HEADLINE]
    if unknown:
        raise BmbenchError(f"unknown metric '{unknown[0]}'; choose from {', '.join(HEADLINE)}")
    preds = _Predictions()
    tables = {m: metric_table(variants, m, preds, n_resamples, seed) for m in metrics}
    axes = [a["key"] for a in doc["axes"]]
    best = best_per_axis(tables, variants, axes, doc.get("mode", "grid"))
    records = [r for v in variants for r in v.records]
    facts = {"runs_stored": len(records), "runs_planned": sum(v.planned for v in variants)}
    if records:
        info = records[0].info
        facts.update(dataset=info["dataset"]["kind"], n_test=info.get("n_test"),
                     split=info.get("split_fingerprint"), family=info.get("family"))
    return AblationReport(ablation_id, doc, variants, metrics, tables, best, facts,
                          evaluation_tables(variants, metrics))


def evaluation_tables(variants: list[VariantData], metrics: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    """``{"tested on <kind>": table}`` per evaluation set of the runs (see the module
    documentation): one row per variant, columns ``variant, base, <axis values>, n_train,
    n_test, runs, <metric>, <metric>_sd``, and ``common`` (the first metric on the ``n_common``
    images that every variant's runs tested, so test sets shrunk by ``adapt`` compare like
    with like)."""
    scores: dict[str, dict[int, list[dict]]] = {}
    for v in variants:
        for r in v.records:
            for e in r.info.get("evaluations") or []:
                scores.setdefault(e["folder"], {}).setdefault(v.index, []).append(_evaluation_scores(r, e))
    kinds = [folder.split("-", 1)[-1] for folder in scores]
    tables = {}
    for (folder, per_variant), kind in zip(scores.items(), kinds):
        name = f"tested on {kind}" + (f" ({folder.split('/')[-1]})" if kinds.count(kind) > 1 else "")
        n_common = _on_common_images([f for found in per_variant.values() for f in found], metrics[0])
        tables[name] = pd.DataFrame([_evaluation_row(v, per_variant.get(v.index, []), metrics)
                                     for v in variants]).assign(n_common=n_common)
    return tables


def _evaluation_scores(record: RunRecord, summary: dict) -> dict:
    """The evaluation's ``metrics.json`` (the run's summary of it when that is missing)."""
    try:  # a damaged file was reported when the store was listed (the evaluation is a record too)
        metrics = read_json(Path(record.path) / summary["folder"] / "metrics.json", check_metrics)
    except DamagedFile:
        metrics = summary
    classes = metrics.get("classes") or record.info["dataset"]["classes"]
    try:
        scored = read_scored(Path(record.path) / summary["folder"], classes)
    except BmbenchError:
        scored = None
    return {**metrics, "n_test": summary.get("n_images"), "classes": classes, "scored": scored,
            "transductive": summary.get("transductive") or ""}


def _on_common_images(found: list[dict], metric: str) -> int:
    """Score ``metric`` of every evaluation in ``found`` on the images all of them tested
    (each entry gains ``common``); how many images that is (0: none, or predictions missing)."""
    if not found or any(f["scored"] is None for f in found):
        return 0
    common = np.array(sorted(set.intersection(*(set(f["scored"][0]) for f in found))), dtype=object)
    for f in found:
        paths, y, proba = f["scored"]
        keep = np.isin(paths, common)
        f["common"] = compute_metrics(y[keep], proba[keep], f["classes"])[metric] if len(common) else None
    return len(common)


def _evaluation_row(v: VariantData, found: list[dict], metrics: tuple[str, ...]) -> dict:
    sizes = sorted({f["n_test"] for f in found if f.get("n_test") is not None})
    row = {"variant": v.label, "base": v.is_base, **v.values, "n_train": _n_train(v.records),
           "n_test": sizes[0] if len(sizes) == 1 else (np.mean(sizes) if sizes else np.nan),
           "runs": len(found), "transductive": "/".join(sorted({f["transductive"] for f in found} - {""}))}
    for m in metrics:
        values = [float(f[m]) for f in found if f.get(m) is not None]
        row[m] = np.mean(values) if values else np.nan
        row[f"{m}_sd"] = float(np.std(values, ddof=1)) if len(values) > 1 else np.nan
    common = [float(f["common"]) for f in found if f.get("common") is not None]
    row["common"] = np.mean(common) if common else np.nan
    return row


# --- rendering ----------------------------------------------------------------------------

def _num(x, digits: int = 4) -> str:
    if x is None or (isinstance(x, float) and np.isnan(x)):
        return "–"
    return f"{x:.{digits}f}"


def _signed(x) -> str:
    return "–" if x is None or np.isnan(x) else f"{x:+.4f}"


def _p(p) -> str:
    if p is None or np.isnan(p):
        return "–"
    return format_p(p) + (" *" if p < ALPHA else "")


def _size(n) -> str:
    if n is None or (isinstance(n, float) and np.isnan(n)):
        return "–"
    return f"{n:,.0f}"


def display_rows(report: AblationReport, metric: str) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one metric's table."""
    axes = report.doc["axes"]
    short = _short_axes(axes)
    header = ["variant", *short, "n_train", "runs", "mean", "sd", "95% CI", "Δ vs base",
              "Δ 95% CI", "p (Holm)", "status"]
    rows = []
    for _, r in report.tables[metric].iterrows():
        label = _display_label(r)
        unproven = r["best"] and not r["base"] and not (r["p_holm"] < ALPHA)
        mean = _num(r["mean"]) + (" ★" if r["best"] else "") + (" n.s." if unproven else "")
        ci = f"[{_num(r['ci_low'])}, {_num(r['ci_high'])}]" if not np.isnan(r["ci_low"]) else "–"
        dci = (f"[{_signed(r['diff_ci_low'])}, {_signed(r['diff_ci_high'])}]"
               if not np.isnan(r["diff_ci_low"]) else ("–" if not r["paired"] or r["base"] else r["paired"]))
        rows.append([label, *[format_value(r[a["key"]]) for a in axes], _size(r["n_train"]),
                     f"{r['runs']}/{r['planned']}", mean, _num(r["sd"]), ci,
                     "–" if r["base"] else _signed(r["diff"]), "–" if r["base"] else dci,
                     "–" if r["base"] else _p(r["p_holm"]), r["status"]])
    return header, rows


def _short_axes(axes: list[dict]) -> list[str]:
    return ["train_fraction" if a["key"] == TRAIN_FRACTION else a["key"].split(".")[-1] for a in axes]


def evaluation_rows(report: AblationReport, name: str) -> tuple[list[str], list[list[str]]]:
    """Header and text cells of one evaluation set's table (``report.evaluations[name]``):
    each metric as mean ± sd over repeats, ★ the best mean."""
    axes, t = report.doc["axes"], report.evaluations[name]
    n_common = int(t["n_common"].iloc[0]) if len(t) else 0
    shrunk = n_common > 0 and t["n_test"].dropna().nunique() > 1  # adapt drew different images
    transductive = ("transductive" in t and bool(t["transductive"].astype(bool).any())
                    and not any(a["key"].endswith(".adapt.transductive") for a in axes))  # else an axis says it
    header = ["variant", *_short_axes(axes), *(["transductive"] if transductive else []), "n_train",
              "test images", "runs", *report.metrics,
              *([f"{report.metrics[0]} on the {n_common} common images"] if shrunk else [])]
    best = {m: (t[m].min() if m in LOWER_IS_BETTER else t[m].max()) for m in report.metrics}
    rows = []
    for _, r in t.iterrows():
        scores = [_num(r[m]) + ("" if np.isnan(r[f"{m}_sd"]) else f" ± {r[f'{m}_sd']:.4f}")
                  + (" ★" if r[m] == best[m] else "") for m in report.metrics]
        rows.append([_display_label(r), *[format_value(r[a["key"]]) for a in axes],
                     *([r["transductive"] or "–"] if transductive else []), _size(r["n_train"]),
                     _size(r["n_test"]), str(r["runs"]), *scores, *([_num(r["common"])] if shrunk else [])])
    return header, rows


EVALUATION_NOTES = ("tested on <kind>: each variant's model on that evaluation set (mean ± sd over "
                    "repeats). Its test images are the set minus any images drawn into training "
                    "(evaluate[i].adapt), so variants with different n_per_class are scored on "
                    "different (nested) images and are not paired; the last column, where shown, "
                    "scores every variant on the images all of them tested. A 'transductive' "
                    "column, where shown, names the mode with which a model adapted to the set's "
                    "unlabelled test images before predicting them (evaluate[i].adapt.transductive).")


def _evaluation_heading(report: AblationReport, name: str) -> str:
    return f"{name}: {', '.join(report.metrics)} per variant"


def _display_label(row) -> str:
    """The variant's label; the reference is marked "(base)", and the base variant of named
    settings shows which setting it is."""
    if row["variant"] == "base":
        setting = row.get(SETTINGS)
        return f"base ({setting})" if isinstance(setting, str) and setting != "base" else "base"
    return row["variant"] + (" (base)" if row["base"] else "")


def _best_rows(report: AblationReport, metric: str) -> list[list[str]]:
    part = report.best[report.best["metric"] == metric]
    return [[r["axis"], r["best_value"], _num(r["mean"]), r["base_value"], _signed(r["diff_vs_base_value"]),
             _versus_base(r)] for _, r in part.iterrows()]


def _versus_base(r) -> str:
    """``base`` when the base value is best; ``better (p=...)`` or ``n.s. (p=...)`` (Holm, as
    the leaderboard marks it) for one variant; ``-`` for a value averaged over a grid."""
    if r["best_value"] == r["base_value"]:
        return "base"
    p = r.get("p_holm", np.nan)
    if p is None or np.isnan(p):
        return "-"
    return f"{'better' if p < ALPHA else 'n.s.'} (p={format_p(p)})"


BEST_HEADER = ["axis", "best value", "mean", "base value", "Δ vs base value", "vs base (Holm)"]


def _intro(report: AblationReport) -> list[str]:
    d, f = report.doc, report.facts
    axes = ", ".join(f"{a['key']} ({len(a['values'])} values)" if a["values"] else a["key"] for a in d["axes"])
    lines = [f"Base recipe `{d['base'].get('name')}`; mode {d.get('mode')}; {d.get('repeats')} "
             f"repeat(s) (training seeds); axes: {axes}."]
    if "dataset" in f:
        lines.append(f"Data set {f['dataset']}, {f['n_test']} test images (split {f['split']}, the "
                     "same for every variant).")
    lines.append(f"Runs stored: {f['runs_stored']} of {f['runs_planned']} planned.")
    return lines


NOTES = ("mean and sd: over the repeats (sd = spread between training seeds). 95% CI: stratified "
         "bootstrap (1000 resamples) over the test images of the repeat mean. Δ vs base: "
         "difference of repeat means to the base variant, with a paired bootstrap CI on the shared "
         "test images; p: bootstrap p-value, Holm-corrected over the variants of the table (* below "
         "0.05). ★ best mean; n.s. when it is not significantly better than the base.")


def to_markdown(report: AblationReport, images: bool = True) -> str:
    out = [f"# Ablation `{report.id}`", ""]
    if report.doc.get("description"):
        out += [report.doc["description"], ""]
    out += [" ".join(_intro(report)), ""]
    for metric in report.metrics:
        header, rows = display_rows(report, metric)
        out += [f"## {metric}", "", _md_table(header, rows), ""]
        best = _best_rows(report, metric)
        if best:
            out += [f"Best value per axis ({metric}):", "", _md_table(BEST_HEADER, best), ""]
        if images:
            out += [f"![{metric}]({metric}.png)", ""]
    for name in report.evaluations:
        header, rows = evaluation_rows(report, name)
        out += [f"## {_evaluation_heading(report, name)}", "", _md_table(header, rows), ""]
    out += [f"_{NOTES}_", ""] + ([f"_{EVALUATION_NOTES}_", ""] if report.evaluations else [])
    return "\n".join(out)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(esc(h) for h in header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(esc(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_csv(report: AblationReport) -> str:
    """Long format: one row per (metric, variant), axis values in their own columns."""
    tables = {m: t.drop(columns=["repeat_values"]) for m, t in report.tables.items()}
    return _long_csv(report, tables, "metric")


def evaluations_csv(report: AblationReport) -> str:
    """Long format: one row per (evaluation set, variant), axis values in their own columns."""
    return _long_csv(report, report.evaluations, "evaluation")


def _long_csv(report: AblationReport, tables: dict, column: str) -> str:
    frames = []
    for name, table in tables.items():
        t = table.copy()
        for a in report.axes:
            t[a] = t[a].map(format_value)
        t.insert(0, column, name)
        t.insert(0, "ablation", report.id)
        frames.append(t)
    return pd.concat(frames, ignore_index=True).to_csv(index=False)


def to_html(report: AblationReport, figures: dict[str, bytes]) -> str:
    """The ablation as a page in the run reports' style (bmbench.views.report.html)."""
    body = []
    if report.doc.get("description"):
        body.append(f"<p>{H.prose(report.doc['description'])}</p>")
    body.append(f"<p>{H.prose(' '.join(_intro(report)))}</p>")
    for metric in report.metrics:
        header, rows = display_rows(report, metric)
        parts = [H.table(header, rows)]
        best = _best_rows(report, metric)
        if best:
            parts.append("<h3>Best value per axis</h3>" + H.table(BEST_HEADER, best))
        if metric in figures:
            parts.append(H.image(figures[metric], metric))
        body.append(H.section(metric, metric, "".join(parts)))
    for i, name in enumerate(report.evaluations):
        body.append(H.section(f"evaluation-{i}", _evaluation_heading(report, name),
                              H.table(*evaluation_rows(report, name))))
    body.append(f'<p class="note">{H.prose(NOTES)}</p>')
    if report.evaluations:
        body.append(f'<p class="note">{H.prose(EVALUATION_NOTES)}</p>')
    return H.page(f"Ablation {report.id}", "".join(body), f"{len(report.variants)} variants")


# --- figures ------------------------------------------------------------------------------

BASE_COLOR, SAME_COLOR, BETTER_COLOR, WORSE_COLOR = "#1f5fa8", "#9cc3ea", "#3a9a4f", "#d0653f"


def figure(report: AblationReport, metric: str):
    """A matplotlib Figure (no pyplot): a learning curve when ``train.fraction`` is an axis
    with several values, else horizontal bars with CI error bars per variant."""
    table = report.tables[metric]
    if report.learning_curve and table.loc[table["mean"].notna(), TRAIN_FRACTION].nunique() > 1:
        return _curve(report, metric, table)
    return _bars(report, metric, table)


def _new_figure(width: float, height: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=110, layout="constrained")


def _wrap(text: str, width: int = 34) -> str:
    import textwrap

    return "\n".join(textwrap.wrap(text, width, break_long_words=True)) or text


def _bars(report: AblationReport, metric: str, table: pd.DataFrame):
    t = table[table["mean"].notna()].reset_index(drop=True)
    n = max(len(t), 1)
    labels = [_wrap(_display_label(r)) for _, r in t.iterrows()]
    lines_per_label = max((label.count("\n") + 1 for label in labels), default=1)
    fig = _new_figure(8.5, 1.4 + n * (0.32 + 0.16 * lines_per_label))
    ax = fig.add_subplot()
    if t.empty:
        ax.text(0.5, 0.5, "no completed runs", ha="center", va="center", transform=ax.transAxes)
        ax.set_axis_off()
        return fig
    lower = metric in LOWER_IS_BETTER
    colors = []
    for _, r in t.iterrows():
        if r["base"]:
            colors.append(BASE_COLOR)
        elif not np.isnan(r["p_holm"]) and r["p_holm"] < ALPHA:
            colors.append(BETTER_COLOR if (r["diff"] < 0) == lower else WORSE_COLOR)
        else:
            colors.append(SAME_COLOR)
    y = np.arange(len(t))
    mean = t["mean"].to_numpy(dtype=float)
    low = np.where(t["ci_low"].notna(), mean - t["ci_low"].to_numpy(dtype=float), 0)
    high = np.where(t["ci_high"].notna(), t["ci_high"].to_numpy(dtype=float) - mean, 0)
    ax.barh(y, mean, color=colors, height=0.62, edgecolor="#333", linewidth=0.5)
    ax.errorbar(mean, y, xerr=[np.maximum(low, 0), np.maximum(high, 0)], fmt="none", ecolor="#222",
                capsize=3, linewidth=1)
    for i, values in enumerate(t["repeat_values"]):
        if len(values) > 1:
            ax.plot(values, np.full(len(values), y[i]), "o", color="#111", markersize=2.5, alpha=0.7)
    base_rows = t[t["base"]]
    if not base_rows.empty:
        ax.axvline(float(base_rows["mean"].iloc[0]), color=BASE_COLOR, linestyle="--", linewidth=0.8)
    top = np.nanmax(np.where(t["ci_high"].notna(), t["ci_high"], mean))
    right = 1.0 if (not lower and top <= 1.0) else top * 1.12
    left = min(0.0, float(np.nanmin(np.where(t["ci_low"].notna(), t["ci_low"], mean))) * 1.1)
    span = right - left
    ax.set_xlim(left, right + 0.16 * span)
    for i in range(len(t)):
        x = (t["ci_high"].iloc[i] if not np.isnan(t["ci_high"].iloc[i]) else mean[i]) + 0.01 * span
        ax.text(x, y[i], f"{mean[i]:.3f}", va="center", fontsize=8,
                bbox={"facecolor": "white", "edgecolor": "none", "pad": 0.6, "alpha": 0.85})
    ax.set_yticks(y, labels, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel(f"{metric} ({'lower' if lower else 'higher'} is better); bars: mean over repeats, "
                  "whiskers: 95% CI", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.set_title(f"Ablation {report.id}: {metric}", fontsize=10)
    from matplotlib.patches import Patch

    handles = [Patch(color=BASE_COLOR, label="base"), Patch(color=SAME_COLOR, label="n.s. vs base"),
               Patch(color=BETTER_COLOR, label="better (Holm p<0.05)"),
               Patch(color=WORSE_COLOR, label="worse (Holm p<0.05)")]
    fig.legend(handles=handles, loc="outside lower center", ncol=4, fontsize=7, frameon=False)
    return fig


def _curve(report: AblationReport, metric: str, table: pd.DataFrame):
    others = [a for a in report.axes if a != TRAIN_FRACTION]
    t = table[table["mean"].notna()].copy()
    t["_group"] = [", ".join(f"{a.split('.')[-1]}={format_value(r[a])}" for a in others) or "base settings"
                   for _, r in t.iterrows()]
    fig = _new_figure(8.0, 5.0)
    ax = fig.add_subplot()
    groups = list(t.groupby("_group", sort=False))
    for i, (name, g) in enumerate(groups):
        g = g.sort_values(TRAIN_FRACTION)
        # lines side by side (a small multiplicative dodge) so their whiskers do not overlap
        x = g[TRAIN_FRACTION].to_numpy(dtype=float) * (1 + 0.012 * (i - (len(groups) - 1) / 2))
        m = g["mean"].to_numpy(dtype=float)
        err = [np.where(g["ci_low"].notna(), m - g["ci_low"], 0), np.where(g["ci_high"].notna(), g["ci_high"] - m, 0)]
        ax.errorbar(x, m, yerr=np.maximum(err, 0), marker="o", capsize=3, linewidth=1.4,
                    label=_wrap(name, 40), color=f"C{i % 10}")
    fractions = sorted(t[TRAIN_FRACTION].astype(float).unique())
    n_train = {float(f): t.loc[t[TRAIN_FRACTION].astype(float) == f, "n_train"].dropna() for f in fractions}
    ticks = [f"{f:.0%}" + (f"\nn={n_train[f].iloc[0]:,.0f}" if len(n_train[f]) else "") for f in fractions]
    if fractions[0] > 0 and fractions[-1] / fractions[0] >= 8:
        ax.set_xscale("log")
        ax.minorticks_off()
    ax.set_xticks(fractions, ticks, fontsize=8)
    ax.set_xlabel("share of the training images used (n = training images)", fontsize=9)
    ax.set_ylabel(f"{metric} on the fixed test set", fontsize=9)
    ax.grid(alpha=0.3)
    ax.set_title(f"Learning curve {report.id}: {metric} (mean over repeats, 95% CI)", fontsize=10)
    if t["_group"].nunique() > 1 or others:
        ax.legend(fontsize=8, loc="lower right")
    return fig


# --- writing ------------------------------------------------------------------------------

def write_report(report: AblationReport, results: Path) -> dict[str, Path]:
    """Write every table format and one PNG per metric under ``results/ablations/<id>/``."""
    folder = ablation_folder(results, report.id)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        figures = {m: png_bytes(figure(report, m)) for m in report.metrics}
        paths = {}
        for metric, data in figures.items():
            paths[f"{metric}.png"] = folder / f"{metric}.png"
            write_bytes(paths[f"{metric}.png"], data)
        for name, text in (("summary.md", to_markdown(report)), ("summary.csv", to_csv(report)),
                           ("best_per_axis.csv", report.best.to_csv(index=False)),
                           ("summary.html", to_html(report, figures)),
                           *([("evaluations.csv", evaluations_csv(report))] if report.evaluations else [])):
            write_text(folder / name, text)
            paths[name] = folder / name
    except OSError as exc:
        raise BmbenchError(f"{folder}: cannot write the ablation report ({exc.strerror})") from None
    return paths


def run_and_report(ablation, results: Path, backend: str = "local", jobs: int = 1, scheduler: str | None = None,
                   say=None):
    """Run what of ``ablation`` is not stored yet on ``backend`` (``say(line)`` tells where
    and each run's outcome as it finishes), then build and write its report; returns
    ``(outcome, report, paths)``."""
    from ..runs.backends import make_backend
    from ..runs.sweep import run_ablation

    say = say or (lambda line: None)
    runner = make_backend(backend, jobs, scheduler)
    say(runner.describe())

    def on_result(result, task, done, total):
        say(result_line(results, ablation.metrics[0], result, task, done, total))

    try:
        outcome = run_ablation(ablation, results, runner, on_result)
    finally:
        if hasattr(runner, "close"):
            runner.close()
    say(f"{len(outcome.completed)} run(s) done now, {outcome.skipped} already stored, "
        f"{len(outcome.failed)} failed")
    report = build_report(results, ablation.id, ablation.metrics)
    return outcome, report, write_report(report, results)


def result_line(results: Path, metric: str, result, task, done: int, total: int) -> str:
    """``[3/8] variant (repeat 0): macro_f1=0.9123  RUN_ID  (12.3 s)``, or its failure."""
    where = f"[{done}/{total}] {task.tags['variant']} (repeat {task.tags['repeat']})"
    if not result.ok:
        return f"{where}: FAILED: {result.error}"
    value = load_record(Path(results) / "runs" / result.run_id).metrics.get(metric)
    shown = f"{value:.4f}" if isinstance(value, (int, float)) else value
    return f"{where}: {metric}={shown}  {result.run_id}  ({result.seconds:.1f} s)"


def render(report: AblationReport, fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(report, images=False)
    if fmt == "csv":
        return to_csv(report)
    if fmt == "html":
        return to_html(report, {m: png_bytes(figure(report, m)) for m in report.metrics})
    raise BmbenchError(f"unknown format {fmt!r}; choose from {', '.join(FORMATS)}")
