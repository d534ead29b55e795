import json

import pytest

from bmbench.errors import BmbenchError
from bmbench.leaderboard import build_boards, render
from bmbench.store import RunRecord


def record(i, name, split="s1", kind="pbc", family="baseline", f1=0.5, loss=1.0):
    info = {"name": name, "family": family, "settings": "64px", "split_fingerprint": split,
            "split": {"strategy": "stratified", "test": 0.2},
            "dataset": {"kind": kind, "classes": ["a", "b"], "n_images": 100},
            "timings": {"fit_seconds": 1.0, "inference_images_per_s": 50.0},
            "n_train": 80, "n_test": 20}
    metrics = {"macro_f1": f1, "accuracy": f1, "balanced_accuracy": f1, "mcc": f1, "log_loss": loss}
    return RunRecord(f"run{i}", None, info, metrics)


def test_runs_on_different_splits_are_never_mixed():
    boards = build_boards([record(1, "a", "s1"), record(2, "b", "s2"), record(3, "c", "s1")])
    assert sorted(len(b.rows) for b in boards) == [1, 2]
    assert {b.split_fingerprint for b in boards} == {"s1", "s2"}


def test_ranking_ties_and_lower_is_better():
    runs = [record(1, "a", f1=0.7, loss=0.3), record(2, "b", f1=0.9, loss=0.5),
            record(3, "c", f1=0.7, loss=0.1)]
    (board,) = build_boards(runs)
    assert board.rows["recipe"].tolist() == ["b", "a", "c"]
    assert board.rows["rank"].tolist() == [1, 2, 2]
    (board,) = build_boards(runs, metric="log_loss")
    assert board.rows["recipe"].tolist() == ["c", "a", "b"]


def test_filters_and_best_per_recipe():
    runs = [record(1, "a", f1=0.6), record(2, "a", f1=0.8), record(3, "b", family="cnn", f1=0.7)]
    (board,) = build_boards(runs, best_per_recipe=True)
    assert board.rows[["recipe", "macro_f1"]].values.tolist() == [["a", 0.8], ["b", 0.7]]
    (board,) = build_boards(runs, family="cnn")
    assert board.rows["recipe"].tolist() == ["b"]
    assert build_boards(runs, dataset="matek_bm") == []


def test_formats():
    boards = build_boards([record(1, "a", f1=0.75), record(2, "b", f1=0.5)])
    text = render(boards, "table")
    assert "pbc (2 classes, 100 images)" in text and "0.7500" in text
    md = render(boards, "markdown")
    assert md.count("\n| ") >= 3 and "|---|" in md
    csv = render(boards, "csv")
    assert csv.splitlines()[0].startswith("rank,run,recipe")
    data = json.loads(render(boards, "json"))
    assert data[0]["rows"][0]["recipe"] == "a"


def test_unknown_metric_is_a_clear_error():
    with pytest.raises(BmbenchError, match="did you mean 'macro_f1'"):
        build_boards([record(1, "a")], metric="macro_f")
