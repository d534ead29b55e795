"""Generate a results store of many run folders for the leaderboard benchmark.

``python -m benchmarks.make_runs OUT [--runs 5000] [--splits 5] [--test 300] [--pool 100]``

Each run folder holds what a real run stores and the leaderboard reads: ``run.json``,
``metrics.json`` (scores, per-class results and bootstrap intervals computed by bmbench
from the predictions) and ``predictions.csv``. Runs are spread over ``--splits`` data sets
and splits (one leaderboard table each) of ``--test`` test images; per split a pool of
``--pool`` distinct prediction sets (skills drawn at random) is scored once and each run
takes one of them, under its own id, recipe name, seed and timings.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import numpy as np

RECIPES = (("xgb_handcrafted", "classical"), ("rf_handcrafted", "classical"), ("quickstart", "baseline"),
           ("small_cnn", "cnn"), ("densenet_tl", "transfer"), ("efficientnet_tl", "transfer"))
CLASSES = ("basophil", "eosinophil", "erythroblast", "lymphocyte", "monocyte", "neutrophil")


def _pool(rng, n_test: int, size: int) -> tuple[list[str], np.ndarray, list[tuple[str, dict]]]:
    """Test image paths, their labels and ``size`` (predictions.csv text, metrics) pairs."""
    from bmbench.metrics.scores import compute_metrics
    from bmbench.metrics.summary import add_statistics
    from bmbench.runs.predictions import predictions_frame

    y = np.arange(n_test) % len(CLASSES)
    paths = [f"{CLASSES[c]}/{CLASSES[c]}_{i:05d}.jpg" for i, c in enumerate(y)]
    out = []
    for _ in range(size):
        skill = rng.uniform(0.5, 4.0)
        logits = rng.normal(size=(n_test, len(CLASSES))) + skill * np.eye(len(CLASSES))[y]
        proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        metrics = compute_metrics(y, proba, CLASSES)
        add_statistics(metrics, y, proba, CLASSES)
        out.append((predictions_frame(paths, CLASSES, y, proba).to_csv(index=False), metrics))
    return paths, y, out


def generate(out: Path, runs: int = 5000, splits: int = 5, n_test: int = 300, pool: int = 100,
             seed: int = 0) -> Path:
    """Write ``runs`` run folders under ``out/runs``; returns ``out``."""
    rng = np.random.default_rng(seed)
    (out / "runs").mkdir(parents=True, exist_ok=True)
    start = datetime(2026, 1, 1, tzinfo=timezone.utc)
    pools = [_pool(rng, n_test, pool) for _ in range(splits)]
    for i in range(runs):
        s = i % splits
        name, family = RECIPES[int(rng.integers(len(RECIPES)))]
        text, metrics = pools[s][2][int(rng.integers(pool))]
        run_id = f"{(start + timedelta(minutes=i)).strftime('%Y%m%dT%H%M%SZ')}-{name}-{i:06x}"
        folder = out / "runs" / run_id
        folder.mkdir()
        info = {"id": run_id, "name": name, "family": family, "settings": f"generated, variant {i % 7}",
                "seed": int(i // splits % 5), "seed_group": f"group{s}-{name}",
                "dataset": {"kind": f"generated{s}", "fingerprint": f"{s:016x}", "n_images": 5 * n_test,
                            "classes": list(CLASSES)},
                "split_fingerprint": f"{s + 1:016x}", "split": {"strategy": "stratified", "test": 0.2, "seed": 0},
                "n_folds": 1, "n_train": 4 * n_test, "n_test": n_test,
                "timings": {"fit_seconds": round(float(rng.uniform(1, 500)), 3),
                            "inference_images_per_s": round(float(rng.uniform(50, 5000)), 2)},
                "bmbench_version": "0.1.0"}
        (folder / "run.json").write_text(json.dumps(info, indent=2) + "\n")
        (folder / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
        (folder / "predictions.csv").write_text(text)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.make_runs")
    parser.add_argument("out", type=Path)
    parser.add_argument("--runs", type=int, default=5000)
    parser.add_argument("--splits", type=int, default=5)
    parser.add_argument("--test", type=int, default=300)
    parser.add_argument("--pool", type=int, default=100)
    args = parser.parse_args(argv)
    generate(args.out, args.runs, args.splits, args.test, args.pool)
    print(f"{args.runs} runs in {args.out / 'runs'}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
