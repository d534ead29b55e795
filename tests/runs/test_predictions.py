"""predictions.csv is read with the csv module (no pandas on the leaderboard's path): the
same arrays as pandas reads, and clear errors for damaged files."""

import numpy as np
import pandas as pd
import pytest

from bmbench.core.errors import StoreError
from bmbench.runs.predictions import FILE, predictions_frame, read_scored, write_predictions

CLASSES = ["a", "b, with comma", "c"]


def pandas_read(folder, classes):
    """What read_scored returned when it used pandas."""
    columns = [f"p_{c}" for c in classes]
    frame = pd.read_csv(folder / FILE, dtype={"path": str, "true_label": str, "predicted_label": str},
                        keep_default_na=False, na_values={c: ["", "nan", "NaN"] for c in columns})
    proba = frame[columns].to_numpy(dtype=np.float64)
    ok = np.isfinite(proba).all(axis=1)
    return frame["path"].to_numpy()[ok], pd.Index(classes).get_indexer(frame["true_label"].to_numpy()[ok]), proba[ok]


@pytest.mark.parametrize("folds", [False, True])
def test_reads_what_pandas_reads(tmp_path, folds):
    rng = np.random.default_rng(0)
    n = 500
    y = rng.integers(0, 3, n)
    proba = rng.dirichlet(np.ones(3), n) ** rng.uniform(1, 30)
    proba[[3, 17]] = np.nan
    paths = [f'dir/"quoted" {i}, é.png' if i % 7 == 0 else f"x/{i}.png" for i in range(n)]
    write_predictions(tmp_path, predictions_frame(paths, CLASSES, y, proba, np.arange(n) % 3 if folds else None))
    got, expected = read_scored(tmp_path, CLASSES), pandas_read(tmp_path, CLASSES)
    assert got[0].tolist() == expected[0].tolist() and len(got[0]) == n - 2
    assert got[1].dtype == np.int64 and got[1].tolist() == expected[1].tolist() == y[np.isfinite(proba).all(1)].tolist()
    assert got[2].dtype == np.float64 and np.array_equal(got[2], expected[2])  # bit for bit


def test_no_rows_and_damaged_files(tmp_path):
    (tmp_path / FILE).write_text("path,true_label,predicted_label,p_a\n")
    paths, y, proba = read_scored(tmp_path, ["a"])
    assert len(paths) == len(y) == 0 and proba.shape == (0, 1)
    for text, message in (("path,true_label\nx,a\n", "missing columns p_a"),
                          ("", "missing columns path, true_label, p_a"),
                          ("path,true_label,p_a\nx,a\ny,a,0.5\n", "line 2 has 2 fields"),
                          ("path,true_label,p_a\nx,a,oops\n", "damaged predictions"),
                          ("path,true_label,p_a\nx,zz,0.5\n", "not among the run's classes")):
        (tmp_path / FILE).write_text(text)
        with pytest.raises(StoreError, match=message) as err:
            read_scored(tmp_path, ["a"])
        assert str(tmp_path / FILE) in str(err.value)
    with pytest.raises(StoreError, match="no predictions.csv"):
        read_scored(tmp_path / "nowhere", ["a"])
