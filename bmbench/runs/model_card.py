"""MODEL_CARD.md for every run: what the model is for, what it saw, how well it did, and
what the numbers cannot tell."""

from __future__ import annotations

from ..data.registry import get_kind
from ..metrics.scores import HEADLINE

GENERAL_LIMITS = (
    "Scores come from one held-out split of one data set; a new scanner, stain, lab or "
    "patient population can lower them a lot. Test on your own cells before relying on it.",
    "Macro averages weight every class equally; check the per-class table for rare classes.",
)


def render_model_card(info: dict, metrics: dict, recipe_text: str) -> str:
    """Markdown text of the model card, from ``run.json`` facts, ``metrics.json`` and the
    resolved recipe."""
    d = info["dataset"]
    lines = [f"# Model card: {info['name']} ({info['id']})", "",
             "## Intended use",
             "Research benchmarking of cell-image classification methods with bmbench. "
             "**Not for diagnosis or any clinical decision.**", "",
             "## Model",
             f"- family: `{info['family']}` ({info.get('settings', '')})",
             f"- trained with bmbench {info.get('bmbench_version', '?')}, seed {info.get('seed')}",
             f"- predict with: `bmbench predict {info['id']} IMAGES... --out predictions.csv`",
             *_tuning_lines(info.get("tuning")), "",
             "## Data",
             f"- data set: `{d['kind']}` at `{d['root']}` ({d['n_images']} images, fingerprint `{d['fingerprint']}`)",
             f"- split: {', '.join(f'{k}={v}' for k, v in info['split'].items())} "
             f"(fingerprint `{info['split_fingerprint']}`): "
             f"{info['n_train']} train, {info['n_val']} validation, {info['n_test']} test images",
             *_adaptation_lines(info), *_ensemble_lines(info), "", "| class | images |", "|---|---|"]
    lines += [f"| {c} | {n} |" for c, n in d["class_counts"].items()]
    lines += ["", "## Performance on the test images", "", "| metric | value | 95% CI |", "|---|---|---|"]
    ci = metrics.get("ci", {})
    for name in HEADLINE:
        if metrics.get(name) is not None:
            low_high = ci.get(name)
            shown = f"{low_high[0]:.4f} - {low_high[1]:.4f}" if low_high else "-"
            lines.append(f"| {name} | {metrics[name]:.4f} | {shown} |")
    lines += ["", "| class | precision | recall | F1 | support |", "|---|---|---|---|---|"]
    lines += [f"| {c} | {v['precision']:.3f} | {v['recall']:.3f} | {v['f1']:.3f} | {v['support']} |"
              for c, v in metrics["per_class"].items()]
    lines += _binary_lines(metrics.get("binary"))
    lines += ["", "## Known limitations", *(f"- {t}" for t in _limits(info))]
    lines += ["", "## Training settings", "", "```yaml", recipe_text.rstrip(), "```", ""]
    return "\n".join(lines)


def _tuning_lines(t: dict | None) -> list[str]:
    """How the settings were chosen: the default recipe, or a study and its budget."""
    if not t:
        return []
    params = ", ".join(f"`{k}` = {v}" for k, v in t["best_params"].items())
    default = f" (the recipe's own values: {t['default_value']:.4f})" if t.get("default_value") is not None else ""
    return [f"- tuned: study `{t['study']}`, {t['trials']} trials ({t.get('pruned', 0)} pruned) in "
            f"{t['minutes']:.1f} min, {t['metric']} on the {t['objective']}; best trial {t['best_trial']} "
            f"scored {t['best_value']:.4f}{default}",
            f"- best parameters: {params}"]


def _ensemble_lines(info: dict) -> list[str]:
    """An ensemble run's members and weights (``run.json["ensemble"]``)."""
    e = info.get("ensemble")
    if not e:
        return []
    lines = ["", f"## Ensemble members ({e['method']}; weights fitted on {e['n_validation']} validation "
                 "images only; predicting runs every member)", "",
             "| member run | family | weight | validation macro-F1 | test macro-F1 |", "|---|---|---|---|---|"]
    lines += [f"| `{m['id']}` | {m['family']} | {m['weight']:.3f} | {m['validation_macro_f1']:.4f} "
              f"({m.get('validation_kind') or '?'}) | "
              + (f"{m['test_macro_f1']:.4f} |" if m.get("test_macro_f1") is not None else "- |")
              for m in e["members"]]
    return lines


def _binary_lines(b: dict | None) -> list[str]:
    """The ``dataset.positive_class`` scores (class against the rest), when the recipe asks."""
    if not b:
        return []
    rows = [f"| {k} | {b[k]:.4f} |" if b[k] is not None else f"| {k} | - |"
            for k in ("sensitivity", "specificity", "precision", "npv", "f1", "balanced_accuracy", "roc_auc")]
    return ["", f"`{b['positive_class']}` against the rest ({b['n_positive']} positive, "
            f"{b['n_negative']} negative test images; TP {b['tp']}, FP {b['fp']}, FN {b['fn']}, TN {b['tn']}):",
            "", "| score | value |", "|---|---|", *rows]


def _adaptation_lines(info: dict) -> list[str]:
    """Few-shot adaptation: the training images that came from an evaluation set."""
    return [f"- few-shot adaptation: {a['n_images']} of the {info['n_train']} train images are labelled "
            f"images of `{a['kind']}` ({a['n_per_class']} per class, evaluate[{a['evaluate']}], seed "
            f"{a['seed']}), left out of that evaluation's test images"
            for a in (info.get("adaptation") or {}).get("from", [])]


def _limits(info: dict) -> list[str]:
    out = []
    try:
        notes = get_kind(info["dataset"]["kind"]).notes
    except Exception:  # noqa: BLE001 - a card must not fail because a kind was renamed
        notes = ""
    if notes:
        out.append(notes)
    if info["dataset"]["kind"] == "synthetic":
        out.append("Trained on synthetic images generated by bmbench: a demonstration, not a model of real cells.")
    if info.get("skipped_images"):
        out.append(f"{len(info['skipped_images'])} unreadable image(s) were skipped.")
    flags = info.get("notes", {}).get("segmentation_flags", {})
    if flags:
        out.append("Segmentation fell back to defaults on some images: "
                   + ", ".join(f"{k} {v}" for k, v in flags.items()) + ".")
    return out + list(GENERAL_LIMITS)
