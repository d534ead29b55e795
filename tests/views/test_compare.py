import json

import numpy as np
import pandas as pd
import pytest

from bmbench.views.compare import align, compare_runs, format_comparison, load_scored
from bmbench.core.errors import BmbenchError, StoreError
from bmbench.metrics.paired import mcnemar_exact
from bmbench.runs.store import load_record

CLASSES = ["a", "b"]


def make_run(root, name, pred, y, split="s1", proba_nan=()):
    folder = root / name
    folder.mkdir()
    info = {"id": name, "name": name, "family": "baseline", "settings": "", "split_fingerprint": split,
            "split": {"strategy": "stratified"},
            "dataset": {"kind": "pbc", "classes": CLASSES, "n_images": 100, "root": str(root)}}
    proba = np.where(np.eye(2, dtype=bool)[pred], 0.8, 0.2)
    proba[list(proba_nan)] = np.nan
    frame = pd.DataFrame({"path": [f"x/{i}.png" for i in range(len(y))],
                          "true_label": np.array(CLASSES)[y],
                          "predicted_label": np.where(np.isnan(proba[:, 0]), "", np.array(CLASSES)[pred])})
    frame["p_a"], frame["p_b"] = proba[:, 0], proba[:, 1]
    frame.iloc[::-1].to_csv(folder / "predictions.csv", index=False)  # order must not matter
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.json").write_text(json.dumps({"classes": CLASSES, "macro_f1": 0.5}))
    return load_record(folder)


def test_pairs_by_path_and_leaves_out_unscored_images(tmp_path):
    y = np.array([0, 1] * 10)
    a = make_run(tmp_path, "a", y.copy(), y, proba_nan=(3,))
    pred_b = y.copy()
    pred_b[:6] = 1 - pred_b[:6]
    b = make_run(tmp_path, "b", pred_b, y)
    sa, sb = load_scored(a), load_scored(b)
    assert len(sa.y) == 19 and len(sb.y) == 20
    yy, pa, pb = align(sa, sb)
    assert len(yy) == 19
    res = compare_runs(a, b, "accuracy", n_resamples=200)
    # A is right everywhere; B is wrong on images 0-5 of which image 3 is unscored by A
    assert res["mcnemar"]["a_only"] == 5 and res["mcnemar"]["b_only"] == 0
    assert res["mcnemar"]["p_value"] == pytest.approx(mcnemar_exact([1] * 5, [0] * 5)["p_value"])
    assert res["n_shared"] == 19 and res["bootstrap"]["better"] == "a"
    text = format_comparison(res)
    assert "A right & B wrong 5" in text and "Verdict: A (a) is better in accuracy" in text


def test_refuses_different_splits_and_inconsistent_records(tmp_path):
    y = np.array([0, 1] * 5)
    a = make_run(tmp_path, "a", y, y)
    other = make_run(tmp_path, "other", y, y, split="s2")
    with pytest.raises(BmbenchError, match="different images.*same data set and split"):
        compare_runs(a, other)
    flipped = make_run(tmp_path, "flipped", y, 1 - y)
    with pytest.raises(BmbenchError, match="disagree on the true labels"):
        align(load_scored(a), load_scored(flipped))
    (tmp_path / "flipped" / "predictions.csv").unlink()
    with pytest.raises(StoreError, match="no predictions.csv"):
        load_scored(load_record(tmp_path / "flipped"))
