"""Scores memoised by their exact inputs, and what that buys: a rerun of a classical recipe
on cached features imports neither scikit-learn, XGBoost nor scikit-image and stores the
same files."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from bmbench.runs import scoring
from bmbench.runs.scoring import score_predictions

REPO = Path(__file__).resolve().parents[2]
CLASSES = ["a", "b", "c"]


def predictions(seed=0, n=90):
    rng = np.random.default_rng(seed)
    y = np.arange(n) % 3
    proba = rng.dirichlet(np.ones(3), n)
    return y, proba, np.arange(n) % 2


def test_scores_are_read_back_for_the_same_inputs_only(tmp_path, monkeypatch):
    y, proba, folds = predictions()
    plain = score_predictions(y, proba, CLASSES, folds, 2, None)
    assert len(plain[0]["folds"]) == 2 and "ci" in plain[0] and "fold_summary" in plain[0]
    first = score_predictions(y, proba, CLASSES, folds, 2, tmp_path)
    assert json.dumps(first, sort_keys=True) == json.dumps(plain, sort_keys=True, default=float)
    calls = []
    real = scoring._score
    monkeypatch.setattr(scoring, "_score", lambda *a: calls.append(1) or real(*a))
    assert score_predictions(y, proba, CLASSES, folds, 2, tmp_path) == first and calls == []
    other = proba.copy()
    other[0, [0, 1]] = other[0, [1, 0]]
    score_predictions(y, other, CLASSES, folds, 2, tmp_path)
    score_predictions(y, proba, CLASSES, folds, 1, tmp_path)
    score_predictions(y, proba, ["a", "b", "x"], folds, 2, tmp_path)
    assert len(calls) == 3
    (entry,) = [p for p in (tmp_path / "scores").rglob("*.json")][:1]
    entry.write_text("{damaged")  # a damaged entry is recomputed
    assert len([p for p in (tmp_path / "scores").rglob("*.json")]) == 4


RUN = """
import sys
from bmbench.cli import main
try:
    main(sys.argv[1:])
except SystemExit as e:
    assert not e.code, e.code
# (scipy is left out: the synthetic data set's module imports it; on real images it is not imported)
heavy = {m.split(".")[0] for m in sys.modules} & {"sklearn", "xgboost", "skimage", "skops", "tensorflow", "keras"}
print("HEAVY", ",".join(sorted(heavy)))
"""


def test_a_cached_classical_rerun_imports_no_model_library_and_stores_the_same_files(tmp_path):
    env = {**os.environ, "BMBENCH_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    args = [sys.executable, "-c", RUN, "run", str(REPO / "recipes" / "xgb_handcrafted.yaml"), "-q",
            "--results-dir", str(tmp_path / "results"), "--set", "dataset.n_per_class=20"]
    heavy = [subprocess.run(args, env=env, capture_output=True, text=True, check=True).stdout.rsplit("HEAVY ", 1)[1]
             .strip() for _ in range(2)]
    assert "xgboost" in heavy[0] and heavy[1] == ""
    first, second = sorted((tmp_path / "results" / "runs").iterdir())
    for name in ("metrics.json", "predictions.csv", "reliability.json", "model/xgboost.json",
                 "model/classical.json", "model/feature_importances.csv"):
        assert (first / name).read_bytes() == (second / name).read_bytes(), name
    info = [json.loads((f / "run.json").read_text()) for f in (first, second)]
    assert info[0]["model"] == info[1]["model"]
    image = next((Path(info[0]["dataset"]["root"])).rglob("*.png"))
    out = subprocess.run([sys.executable, "-m", "bmbench.cli", "predict", str(second), str(image), "--out",
                          str(tmp_path / "p.csv")], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert (tmp_path / "p.csv").read_text().count("\n") == 2
