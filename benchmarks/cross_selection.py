"""Cross-lab setups chosen without peeking: select on a dev half of the target, report on the other.

PBC <-> Matek 2021 (4 shared classes). Every setup of :data:`SETUPS` runs once per seed in each
direction (training on one lab, or on every lab but the target through
``recipes/cross_leave_one_lab_out.yaml``); its predictions on the target's images are then cut
in two fixed halves per class (:func:`dev_half`, seed :data:`DEV_SEED`): the setup of each
direction and regime (zero-shot, k labelled target cells per class) with the best mean dev
macro-F1 is the one chosen, and its figure is the mean on the *report* half, with a 95% CI
(t over seeds where the seed moves the result, else a bootstrap over the report images).
Images drawn into training by ``adapt`` leave both halves. Runs go to
``results/reference/cross_selection_runs/<key>/`` (git-ignored); a key already there is
skipped, so an interrupted study resumes. The table replaces the generated section of
``results/reference/cross.md``.

    python -m benchmarks cross_selection [--families classical cnn] [--sources single multi] [--only TEXT] [--tables]

New setups (``model.norm``, transductive ``adapt`` modes, encoders) are new rows of
:data:`SETUPS`: a name, the family, the sources and the ``--set`` overrides.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .common import HERE, bmbench, machine, measure, require_checkout_with_data

REPO = HERE.parent
SHARED = REPO.parent / "shared" / "datasets"
OUT = REPO / "results" / "reference"
RUNS = OUT / "cross_selection_runs"
CROSS_MD = OUT / "cross.md"
DEV_SEED = 20261207
BOOT = 2000
CLASSES = ("EOS", "LYT", "MON", "NGS")
BEGIN, END = "<!-- cross_selection: begin (generated) -->", "<!-- cross_selection: end -->"


@dataclass(frozen=True)
class Direction:
    name: str
    target: str           # lab name in cross_leave_one_lab_out.yaml (its test lab)
    single: str           # recipe training on the other lab alone
    single_sets: tuple[str, ...]


DIRECTIONS = (
    Direction("PBC -> Matek", "Matek", "recipes/cross_pbc_to_matek.yaml",
              ("dataset.microns_per_pixel=null", "dataset.target_microns_per_pixel=null",
               "dataset.field_um=null", "evaluate.0.microns_per_pixel=null")),
    Direction("Matek -> PBC", "PBC", "recipes/cross_matek_to_pbc.yaml",
              ("dataset.microns_per_pixel=null", "dataset.target_microns_per_pixel=null",
               "dataset.field_um=null", "evaluate.0.microns_per_pixel=null")),
)
MULTI = "recipes/cross_leave_one_lab_out.yaml"
CLASSICAL = ("model.family=classical",)
CNN = ("model.family=cnn", "model.depth=4", "model.width=32", "model.dropout=0.3", "train.epochs=40",
       "train.patience=8", "train.batch_size=32", "train.learning_rate=0.001",
       "train.augment=[flip,rotate90,hed,hsv,rescale]")
PREPROCESS = {"none": "[]", "white_balance": "[white_balance]", "reinhard": "[reinhard]",
              "white_balance + reinhard": "[white_balance,reinhard]"}


@dataclass(frozen=True)
class Setup:
    """One row: ``sources`` single (the other lab) or multi (every lab but the target);
    ``k`` labelled target cells per class (single only); ``seeds`` runs, seed s sets the
    training seed and the draw seed (the classical family ignores the training seed)."""

    name: str
    family: str
    sources: str
    sets: tuple[str, ...]
    k: int = 0
    seeds: int = 1
    transductive: str = ""  # evaluate.0.adapt.transductive: the target's unlabelled images adapt the model

    @property
    def regime(self) -> str:
        shots = f"k = {self.k}" if self.k else "zero-shot"
        return f"{shots}, transductive" if self.transductive else shots

    def key(self, direction: Direction, seed: int) -> str:
        mode = f" {self.transductive}" if self.transductive else ""
        slug = re.sub(r"[^a-z0-9]+", "_", f"{self.family} {self.sources} {self.name}{mode} k{self.k}".lower())
        return f"{direction.target.lower()}-{slug}-s{seed}"

    def argv(self, direction: Direction, seed: int) -> list[str]:
        recipe, sets = (direction.single, direction.single_sets) if self.sources == "single" else (
            MULTI, (f"dataset.leave_out={direction.target}",))
        sets = (*sets, *self.sets, f"seed={seed}")
        if self.k:
            sets += (f"evaluate.0.adapt.n_per_class={self.k}", f"evaluate.0.adapt.seed={seed}")
        if self.transductive:
            sets += (f"evaluate.0.adapt.transductive={self.transductive}",)
        return ["run", recipe, *[a for s in sets for a in ("--set", s)], "-q"]


def _setups() -> tuple[Setup, ...]:
    rows = [Setup(name, "classical", "single", CLASSICAL + (f"dataset.preprocess={steps}",))
            for name, steps in PREPROCESS.items()]
    rows += [Setup(name, "classical", "multi", CLASSICAL + (f"dataset.preprocess={PREPROCESS[name]}",))
             for name in ("none", "white_balance + reinhard")]
    # every draw refits the steps on other training images, so a draw re-extracts every image's
    # features; without steps the features are cached and five draws cost little
    for name, seeds in (("none", 5), ("white_balance + reinhard", 3)):
        rows.append(Setup(name, "classical", "single", CLASSICAL + (f"dataset.preprocess={PREPROCESS[name]}",),
                          k=10, seeds=seeds))
    # transductive: the target's features aligned on its unlabelled images (labels never read)
    rows += [Setup(f"{name}, {mode}", "classical", "single", CLASSICAL + (f"dataset.preprocess={PREPROCESS[name]}",),
                   transductive=mode)
             for name in ("none", "white_balance") for mode in ("standardize", "coral")]
    rows.append(Setup("white_balance + reinhard, hed/hsv/rescale augmentation", "cnn", "single",
                      CNN + (f"dataset.preprocess={PREPROCESS['white_balance + reinhard']}",), seeds=5))
    return tuple(rows)


SETUPS = _setups()


# --- running ---------------------------------------------------------------------------------

def _log() -> dict:
    path = RUNS / "commands.json"
    return json.loads(path.read_text()) if path.exists() else {}


def build(families: tuple[str, ...], sources: tuple[str, ...] = ("single", "multi"), only: str = "") -> None:
    RUNS.mkdir(parents=True, exist_ok=True)
    for setup in sorted(SETUPS, key=_cost):
        if setup.family not in families or setup.sources not in sources:
            continue
        for direction in DIRECTIONS:
            for seed in range(setup.seeds):
                if only in setup.key(direction, seed):
                    _run_one(setup.key(direction, seed), setup.argv(direction, seed))


def _cost(setup: Setup) -> tuple:
    """Cheap and central first: single-source zero-shot, k-shot without steps (its features are
    cached), several sources, then k-shot with fitted steps (every draw re-extracts features)."""
    fitted_k = bool(setup.k) and "dataset.preprocess=[]" not in setup.sets
    return (setup.family != "classical", fitted_k, setup.sources == "multi", setup.k)


def _run_one(key: str, args: list[str]) -> None:
    if key in _log() or not _claim(key):
        return
    try:
        _run_claimed(key, args)
    finally:
        (RUNS / f"{key}.lock").unlink(missing_ok=True)


def _claim(key: str) -> bool:
    """Two studies may run side by side (e.g. ``--sources multi`` beside the rest): a key runs
    in one of them; a lock whose process is gone is taken over."""
    lock = RUNS / f"{key}.lock"
    try:
        fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
        try:
            os.kill(int(lock.read_text() or 0), 0)
            return False
        except (ProcessLookupError, ValueError, FileNotFoundError):
            lock.unlink(missing_ok=True)
            return _claim(key)
    with os.fdopen(fd, "w") as f:
        f.write(str(os.getpid()))
    return True


def _run_claimed(key: str, args: list[str]) -> None:
    store = RUNS / key
    shutil.rmtree(store, ignore_errors=True)  # a run interrupted before it was logged
    args = [*args, "--results-dir", str(store.relative_to(REPO))]
    print(f"[cross_selection] bmbench {' '.join(args)}", flush=True)
    wall, _ = measure(bmbench(*args), env={"TF_CPP_MIN_LOG_LEVEL": "3"})
    log = _log()
    log[key] = {"command": "bmbench " + " ".join(args), "wall_s": round(wall, 1),
                "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}
    (RUNS / "commands.json").write_text(json.dumps(log, indent=2) + "\n")


# --- scoring ---------------------------------------------------------------------------------

def dev_half(relpaths: list[str], labels: list[str], seed: int = DEV_SEED) -> set[str]:
    """The dev half of a target: per class, the first half of one random order (from ``seed``)
    of its relpaths sorted by name; the rest is the report half."""
    rng = np.random.default_rng(seed)
    dev: set[str] = set()
    for c in sorted(set(labels)):
        members = sorted(r for r, lab in zip(relpaths, labels) if lab == c)
        order = rng.permutation(len(members))
        dev.update(members[i] for i in order[: len(members) // 2])
    return dev


def _target_images(direction: Direction) -> dict[str, str]:
    """relpath (to the target's folder) -> shared class, every image of the target's 4 classes."""
    from bmbench.config.recipe import load_recipe

    from bmbench.data import load_dataset

    spec = load_recipe(REPO / direction.single).evaluate[0]
    table = load_dataset(spec)
    frame = table.frame[table.frame["label"].isin(CLASSES)]
    return dict(zip(frame["relpath"], frame["label"]))


def _run_dirs(key: str) -> list[Path]:
    return sorted(p.parent for p in (RUNS / key).glob("runs/*/run.json"))


def _scored(setup: Setup, direction: Direction, seed: int, images: dict[str, str]):
    """``(relpaths, true, predicted, own test macro-F1 or None)`` on the target for one run."""
    import pandas as pd

    (run,) = _run_dirs(setup.key(direction, seed))
    if setup.sources == "single":
        (folder,) = list(run.glob("evaluations/0-*"))
        own = json.loads((run / "metrics.json").read_text())["macro_f1"]
    else:
        folder, own = run, None
    frame = pd.read_csv(folder / "predictions.csv", keep_default_na=False)
    rel = [_target_key(p, images) for p in frame["path"]]
    unknown = [p for p, r in zip(frame["path"], rel) if r is None]
    if unknown:
        raise SystemExit(f"{folder}: {unknown[0]} is not an image of the target {direction.target}")
    return np.array(rel), frame["true_label"].to_numpy(str), frame["predicted_label"].to_numpy(str), own


def _target_key(path: str, images: dict[str, str]) -> str | None:
    """``path`` as the target's own relpath: a merged run's paths start with the part's folder
    (``pbc/PBC_dataset_normal_DIB/...``) under the parts' common folder."""
    parts = path.split("/")
    return next(("/".join(parts[i:]) for i in range(len(parts)) if "/".join(parts[i:]) in images), None)


def _macro_f1(y: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Macro-F1 over :data:`CLASSES` along the last axis: ``(..., n)`` labels -> ``(...)``
    (a class absent from both sides scores 0, as scikit-learn's ``zero_division=0``)."""
    scores = []
    for c in CLASSES:
        tp = ((y == c) & (p == c)).sum(axis=-1)
        wrong = ((y == c) != (p == c)).sum(axis=-1)
        scores.append(np.where(2 * tp + wrong > 0, 2 * tp / np.maximum(2 * tp + wrong, 1), 0.0))
    return np.mean(scores, axis=0)


def _ci(values: list[float], y=None, p=None) -> tuple[float, float]:
    """95% CI of the mean: t over seeds, or (one run) a bootstrap over the report images."""
    if len(values) > 1:
        from scipy import stats

        half = stats.t.ppf(0.975, len(values) - 1) * np.std(values, ddof=1) / np.sqrt(len(values))
        return float(np.mean(values) - half), float(np.mean(values) + half)
    idx = np.random.default_rng(0).integers(0, len(y), size=(BOOT, len(y)))
    boots = _macro_f1(y[idx], p[idx])
    return float(np.percentile(boots, 2.5)), float(np.percentile(boots, 97.5))


def score(setup: Setup, direction: Direction, images: dict[str, str], dev: set[str]) -> dict | None:
    log = _log()  # a run still going (not logged yet) is not scored
    runs = [s for s in range(setup.seeds) if setup.key(direction, s) in log]
    if len(runs) < setup.seeds:
        return None
    dev_f1, rep_f1, own, last = [], [], [], None
    for s in runs:
        rel, y, p, own_f1 = _scored(setup, direction, s, images)
        in_dev = np.isin(rel, list(dev))
        dev_f1.append(float(_macro_f1(y[in_dev], p[in_dev])))
        rep_f1.append(float(_macro_f1(y[~in_dev], p[~in_dev])))
        last = (y[~in_dev], p[~in_dev])
        if own_f1 is not None:
            own.append(own_f1)
    return {"dev": float(np.mean(dev_f1)), "report": float(np.mean(rep_f1)), "ci": _ci(rep_f1, *last),
            "report_sd": float(np.std(rep_f1, ddof=1)) if len(rep_f1) > 1 else None,
            "own": float(np.mean(own)) if own else None, "n_report": int(len(last[0])), "runs": len(runs)}


def tables() -> str:
    rows, chosen = [], {}
    for direction in DIRECTIONS:
        images = _target_images(direction)
        dev = dev_half(list(images), list(images.values()))
        for setup in SETUPS:
            result = score(setup, direction, images, dev)
            if result is None:
                continue
            rows.append((direction, setup, result))
            best = chosen.get((direction.name, setup.family, setup.regime))
            if best is None or result["dev"] > best[1]["dev"]:
                chosen[(direction.name, setup.family, setup.regime)] = (setup, result)
    return _markdown(rows, chosen)


def _fmt_row(direction, setup, r, mark: str) -> str:
    own = "-" if r["own"] is None else f"{r['own']:.3f}"
    sd = f" ± {r['report_sd']:.3f}" if r["report_sd"] is not None else ""
    sources = "other lab" if setup.sources == "single" else "every other lab"
    return (f"| {direction.name} | {setup.family} | {setup.regime} | {sources} | {setup.name} | "
            f"{r['dev']:.3f} | {r['report']:.3f}{sd} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] | {own} | "
            f"{r['runs']} | {mark} |")


def _markdown(rows, chosen) -> str:
    picked = {id(v[1]) for v in chosen.values()}
    head = ("| direction | family | regime | training labs | setup | dev macro-F1 | report macro-F1 "
            "[95% CI of the mean] | own test | runs | chosen on dev |\n|---|---|---|---|---|---|---|---|---|---|")
    body = [_fmt_row(d, s, r, "**chosen**" if id(r) in picked else "") for d, s, r in rows]
    summary = [f"- {d}, {fam}, {reg}: **{s.name}** ({'other lab' if s.sources == 'single' else 'every other lab'})"
               f" - report half {r['report']:.3f} [{r['ci'][0]:.3f}, {r['ci'][1]:.3f}] on {r['n_report']} images"
               for (d, fam, reg), (s, r) in chosen.items()]
    missing = [f"{s.family} {s.sources} {s.name} ({s.regime})" for s in SETUPS
               if not any(s is row[1] for row in rows)]
    log = _log()
    total = sum(e["wall_s"] for e in log.values()) / 60
    text = (f"Generated by `python -m benchmarks cross_selection` ({machine()}; {len(log)} runs, "
            f"{total:.0f} min of wall time on a shared machine).\n\n"
            + head + "\n" + "\n".join(body) + "\n\nChosen on the dev half (the report half's figure is "
            "the one to quote):\n\n" + "\n".join(summary) + "\n")
    if missing:
        text += "\nNot run (no runs in the study's store): " + "; ".join(missing) + ".\n"
    return text


def write_cross(section: str) -> None:
    text = CROSS_MD.read_text()
    block = f"{BEGIN}\n{section.rstrip()}\n{END}"
    if BEGIN in text:
        text = re.sub(re.escape(BEGIN) + r".*?" + re.escape(END), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    CROSS_MD.write_text(text)


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks cross_selection")
    parser.add_argument("--families", nargs="+", default=["classical"], choices=("classical", "cnn"),
                        help="families to run (the CNN rows take about 4 minutes a run on 2 cores)")
    parser.add_argument("--sources", nargs="+", default=["single", "multi"], choices=("single", "multi"),
                        help="only the setups trained on the other lab (single) or every other lab (multi)")
    parser.add_argument("--only", default="", metavar="TEXT",
                        help="only the runs whose key contains TEXT (e.g. _k10-: the k = 10 draws)")
    parser.add_argument("--tables", action="store_true", help="only rebuild the table from stored runs")
    opts = parser.parse_args(argv or [])
    require_checkout_with_data(REPO, SHARED)
    if not opts.tables:
        build(tuple(opts.families), tuple(opts.sources), opts.only)
    section = tables()
    write_cross(section)
    return section
