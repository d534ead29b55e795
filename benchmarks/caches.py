"""Caches: the second run of a recipe against the first, same process command, same data.

* Feature cache: ``recipes/xgb_handcrafted.yaml`` as shipped (240 synthetic cells), on the
  real PBC subset, and on 10,000 synthetic cells. Target: the second run at least 20x
  faster end to end.
* Embedding cache: ``recipes/densenet_tl.yaml`` frozen (``fine_tune_layers=0``, head only)
  with DenseNet121 weights from a local file (the air-gapped path; this benchmark writes a
  randomly initialised one, which costs the same to run as ImageNet's), on the real Matek
  subset and on 4,000 synthetic cells. Target: the second head-training run at least 10x
  faster.

A second run still pays for starting Python and importing its libraries (about 1.5 s for
the classical family, about 7 s for TensorFlow here), hashing the image files and reading
the cache, so the ratio grows with the number of images; synthetic cells are drawn
before timing.

Each pair runs with a fresh, empty cache (``BMBENCH_CACHE``) and results store; the
first run fills the cache, the second reads it. Times come from the process (wall) and
from each run's ``run.json`` timings (fit = training incl. features/embeddings of the
training images; predict = the test images).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from .common import bmbench, machine, measure, write_section

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "datasets"
FROZEN = "model.fine_tune_layers=0"
#: (section, recipe, label, --set overrides, synthetic images per class to draw beforehand)
CASES = (
    ("Feature cache", "xgb_handcrafted", "its synthetic cells (240, as shipped)", (), 0),
    ("Feature cache", "xgb_handcrafted", "pbc (1,600 real images)",
     ("dataset.kind=pbc", f"dataset.root={SHARED / 'pbc'}"), 0),
    ("Feature cache", "xgb_handcrafted", "10,000 synthetic cells", (), 2500),
    ("Embedding cache", "densenet_tl", "matek_bm (1,400 real images), frozen, head only",
     ("dataset.kind=matek_bm", f"dataset.root={SHARED / 'matek_bm'}", FROZEN), 0),
    ("Embedding cache", "densenet_tl", "4,000 synthetic cells, frozen, head only", (FROZEN,), 1000),
)
#: section -> (target ratio, what it applies to)
TARGETS = {"Feature cache": (20.0, "end to end (wall ratio)"),
           "Embedding cache": (10.0, "the head-training run (fit ratio)")}


def _weights_file(folder: Path) -> Path:
    """A DenseNet121 (no top) weights file, as an air-gapped lab would place one."""
    import keras

    path = folder / "DenseNet121.weights.h5"
    keras.applications.DenseNet121(weights=None, include_top=False, input_shape=(128, 128, 3)).save_weights(path)
    return path


def _synthetic(root: Path, per_class: int) -> tuple[str, ...]:
    """Draw the cells before timing (a user's images exist before their first run)."""
    from bmbench.data.synthetic import generate

    generate(root, per_class, seed=0, size=128)
    return (f"dataset.root={root}", f"dataset.n_per_class={per_class}", "dataset.render_size=128")


def _last_timings(store: Path) -> dict:
    runs = sorted((store / "runs").glob("*/run.json"))
    return json.loads(runs[-1].read_text())["timings"]


def _pair(recipe: str, sets: tuple[str, ...], tmp: Path) -> list[tuple[float, dict]]:
    cache, store = tmp / "cache", tmp / "results"
    args = ["run", str(REPO / "recipes" / f"{recipe}.yaml"), "-q", "--results-dir", str(store)]
    for s in sets:
        args += ["--set", s]
    out = []
    for _ in range(2):
        wall, _ = measure(bmbench(*args), env={"BMBENCH_CACHE": str(cache), "TF_CPP_MIN_LOG_LEVEL": "3"})
        out.append((wall, _last_timings(store)))
    return out


def run(argv: list[str] | None = None) -> str:
    parser = argparse.ArgumentParser(prog="python -m benchmarks caches")
    parser.add_argument("--only", choices=("features", "embeddings"), help="one of the two caches")
    only = {"features": "Feature cache", "embeddings": "Embedding cache", None: None}[
        parser.parse_args(argv or []).only]
    sections: dict[str, list[str]] = {}
    with tempfile.TemporaryDirectory(prefix="bmbench-cache-") as tmp:
        weights = None
        for i, (section, recipe, label, sets, per_class) in enumerate(CASES):
            if (only and section != only) or (any("shared" in s for s in sets) and not SHARED.is_dir()):
                continue
            if per_class:
                sets = sets + _synthetic(Path(tmp) / f"cells{per_class}", per_class)
            if recipe == "densenet_tl":
                weights = weights or _weights_file(Path(tmp))
                sets = sets + (f"model.weights={weights}",)
            (first, t1), (second, t2) = _pair(recipe, sets, Path(tmp) / str(i))
            fit = t1["fit_seconds"] / max(t2["fit_seconds"], 1e-9)
            sections.setdefault(section, []).append(
                f"| `{recipe}` on {label} | {first:.1f} / {second:.1f} | **{first / second:.1f}x** | "
                f"{t1['fit_seconds']:.1f} / {t2['fit_seconds']:.2f} | **{fit:.0f}x** | "
                f"{t1['predict_seconds']:.1f} / {t2['predict_seconds']:.2f} |")
    body = []
    for section, rows in sections.items():
        target, applies = TARGETS[section]
        text = (f"Machine: {machine()}\n\nTarget: the second run at least {target:g}x faster, "
                f"{applies}. Wall = the whole `bmbench run` process (Python and library start-up, "
                "data set scan and hashing, split, training, test predictions, report, storing); "
                "fit (training, libraries already imported) and predict (test images) from "
                "run.json; first / second run.\n\n"
                "| recipe | wall s | wall ratio | fit s | fit ratio | predict s |\n"
                "|---|---|---|---|---|---|\n" + "\n".join(rows))
        write_section(section, text)
        body.append(f"## {section}\n\n{text}")
    return "\n\n".join(body)
