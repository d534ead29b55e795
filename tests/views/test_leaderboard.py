import json

import numpy as np
import pandas as pd

import pytest

from bmbench.core.errors import BmbenchError
from bmbench.views.leaderboard import TableView, build_boards, check_filters, render, settings_text
from bmbench.runs.store import RunRecord


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


def test_filters_that_match_no_known_name_are_errors_with_the_nearest_one(tmp_path):
    runs = [record(1, "quickstart", kind="pbc"), record(2, "xgb_handcrafted", kind="matek_bm", family="classical")]
    for key, value, hint in (("dataset", "pcb", "'pbc'"), ("family", "cnnn", "'cnn'"),
                             ("recipe", "quickstrat", "'quickstart'")):
        with pytest.raises(BmbenchError) as err:
            check_filters(runs, tmp_path, **{key: value})
        text = str(err.value)
        assert f"--{key} {value}" in text and hint in text and str(tmp_path) in text


def test_known_filters_that_match_nothing_say_what_is_stored(tmp_path):
    runs = [record(1, "quickstart", kind="pbc"), record(2, "xgb_handcrafted", kind="matek_bm", family="classical")]
    assert check_filters(runs, tmp_path, dataset="pbc", family="baseline") is None
    text = check_filters(runs, tmp_path, dataset="bloodcells4")
    assert "No stored run matches --dataset bloodcells4" in text and "2 runs stored" in text
    assert "matek_bm, pbc" in text and "quickstart, xgb_handcrafted" in text
    text = check_filters(runs, tmp_path, dataset="pbc", recipe="xgb_handcrafted")
    assert "--dataset pbc, --recipe xgb_handcrafted" in text
    assert str(tmp_path) in check_filters([], tmp_path) and "No runs stored yet" in check_filters([], tmp_path)


def test_ablation_variants_show_their_varied_values_in_settings():
    runs = []
    for i, pixels in enumerate((8, 16, 32)):
        r = record(i, "quickstart")
        r.info["tags"] = {"ablation": "px", "variant": f"pixels={pixels}", "values": {"model.pixels": pixels}}
        runs.append(r)
    (board,) = build_boards(runs)
    assert sorted(board.rows["settings"]) == [f"64px [px: model.pixels={p}]" for p in (16, 32, 8)]
    assert settings_text({"settings": "64px"}) == "64px"
    assert settings_text({"settings": "", "tags": {"ablation": "f", "values": {"model.features": ["shape", "color"]}}}
                         ) == "[f: model.features=[shape,color]]"


def test_the_terminal_table_is_compact_and_fits_the_width_unless_wide():
    runs = [RunRecord(f"20261206T19092{i}Z-recipe-ab12c{i}", None, r.info, r.metrics)
            for i, r in enumerate(record(i, f"recipe_with_a_long_name_{i}", f1=0.5 + i / 10) for i in range(3))]
    for r in runs:
        r.info["settings"] = "DenseNet121 ImageNet, fine-tune top 30, 224px, augment flip+rotate90+hed"
        r.metrics["per_class"] = {"a": {"f1": 0.91, "recall": 0.9}, "b": {"f1": 0.5, "recall": 0.25}}
    boards = build_boards(runs)
    text = render(boards, "table", TableView(width=120))
    assert max(len(line) for line in text.splitlines()) <= 120
    header = text.splitlines()[1].split()
    assert header[:4] == ["rank", "id", "recipe", "settings"] and "accuracy" not in header and "n_test" in header
    assert "seeds" not in header  # no run was repeated: the default view leaves the empty column out
    assert "…" in text and "20261206T" not in text and "  ab12c2  " in text  # the id column is the id's end
    wide = render(boards, "table", TableView(wide=True, width=120))
    assert "accuracy" in wide and "fit_s" in wide and "…" not in wide
    chosen = render(boards, "table", TableView(columns=("rank", "id", "macro_f1", "fit_s"))).splitlines()[1].split()
    assert chosen == ["rank", "id", "macro_f1", "[95%", "CI]", "fit_s"]
    with pytest.raises(BmbenchError, match="--columns: unknown column 'nope'; choose from rank, id"):
        render(boards, "table", TableView(columns=("rank", "nope")))
    per_class = render(boards, "table", TableView(per_class=True)).splitlines()
    assert per_class[1].split() == ["rank", "id", "recipe", "macro_f1", "a", "b"] and "0.91/0.90" in per_class[3]


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


# --- intervals, paired tests against the leader, html -------------------------------------

def stored_run(root, name, accuracy, seed, split="s1", n_per_class=80, predictions=True,
               drop_ci=False):
    """A run folder with predictions.csv and metrics from the shared module."""
    from bmbench.metrics.scores import compute_metrics
    from bmbench.metrics.summary import add_statistics
    from bmbench.runs.store import load_record

    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    y = np.repeat(np.arange(3), n_per_class)
    right = rng.random(len(y)) < accuracy
    pred = np.where(right, y, (y + rng.integers(1, 3, len(y))) % 3)
    proba = np.full((len(y), 3), 0.15)
    proba[np.arange(len(y)), pred] = 0.7
    metrics = compute_metrics(y, proba, classes)
    add_statistics(metrics, y, proba, classes, n_resamples=300)
    if drop_ci:
        del metrics["ci"]
    info = record(seed, name, split).info | {
        "dataset": {"kind": "pbc", "classes": classes, "n_images": 1000, "root": str(root)}}
    folder = root / "runs" / f"2026-{name}-{seed}"
    folder.mkdir(parents=True)
    (folder / "run.json").write_text(json.dumps(info))
    (folder / "metrics.json").write_text(json.dumps(metrics))
    if predictions:
        frame = pd.DataFrame({"path": [f"img{i}.png" for i in range(len(y))],
                              "true_label": np.array(classes)[y],
                              "predicted_label": np.array(classes)[pred]})
        for j, c in enumerate(classes):
            frame[f"p_{c}"] = proba[:, j]
        frame.sample(frac=1, random_state=seed).to_csv(folder / "predictions.csv", index=False)
    return load_record(folder)


def test_leader_ties_are_marked_with_holm_corrected_paired_tests(tmp_path):
    runs = [stored_run(tmp_path, "far", 0.55, 1), stored_run(tmp_path, "best", 0.92, 2),
            stored_run(tmp_path, "close", 0.88, 3), stored_run(tmp_path, "nopreds", 0.5, 4,
                                                                predictions=False)]
    (board,) = build_boards(runs, n_resamples=400)
    rows = board.rows.set_index("recipe")
    assert rows.loc["best", "vs_leader"] == "leader" and rows.loc["best", "rank"] == 1
    assert rows.loc["close", "vs_leader"] == "n.s." and rows.loc["close", "p_vs_leader"] >= 0.05
    assert rows.loc["far", "vs_leader"] == "worse" and rows.loc["far", "p_vs_leader"] < 0.05
    assert pd.isna(rows.loc["nopreds", "vs_leader"]) and pd.isna(rows.loc["nopreds", "p_vs_leader"])
    assert "Holm-corrected over 2 comparison(s)" in board.test and "240 shared" in board.test
    low, high = rows.loc["best", ["macro_f1_ci_low", "macro_f1_ci_high"]]
    assert low <= rows.loc["best", "macro_f1"] <= high
    text = render([board], "table")
    assert "n.s. (p=" in text and "worse (p=" in text and "leader" in text
    assert f"[{low:.4f}, {high:.4f}]" in text


def test_holm_adjusts_for_the_number_of_comparisons(tmp_path):
    from bmbench.views.compare import align, load_scored
    from bmbench.metrics.paired import mcnemar_exact

    runs = [stored_run(tmp_path, "best", 0.90, 2), stored_run(tmp_path, "other", 0.84, 5),
            stored_run(tmp_path, "far", 0.5, 1)]
    (board,) = build_boards(runs, metric="accuracy")  # McNemar for accuracy
    rows = board.rows.set_index("recipe")
    y, pa, pb = align(load_scored(runs[0]), load_scored(runs[1]))
    raw = mcnemar_exact(pa.argmax(1) == y, pb.argmax(1) == y)["p_value"]
    far = mcnemar_exact(*(p.argmax(1) == y for p in align(load_scored(runs[0]), load_scored(runs[2]))[1:]))
    assert far["p_value"] < raw  # so "other" is the second-smallest p: multiplied by 1, then max
    assert rows.loc["other", "p_vs_leader"] == pytest.approx(max(raw, 2 * far["p_value"]))
    assert "exact McNemar" in board.test


def test_interval_is_computed_for_runs_stored_without_one(tmp_path):
    from bmbench.views.compare import load_scored
    from bmbench.metrics.bootstrap import bootstrap_ci

    run = stored_run(tmp_path, "old", 0.8, 6, drop_ci=True)
    (board,) = build_boards([run], n_resamples=300)
    s = load_scored(run)
    want = bootstrap_ci(s.y, s.proba, s.classes, ("macro_f1",), 300)["macro_f1"]
    assert [board.rows.loc[0, "macro_f1_ci_low"], board.rows.loc[0, "macro_f1_ci_high"]] == want


def test_every_headline_metric_and_the_issue_columns_are_in_every_format(tmp_path):
    from bmbench.metrics.scores import HEADLINE

    runs = [stored_run(tmp_path, "x", 0.8, 7), stored_run(tmp_path, "y", 0.7, 8)]
    boards = build_boards(runs, n_resamples=300)
    columns = list(boards[0].rows.columns)
    for c in ("rank", "recipe", "family", "settings", "macro_f1_ci_low", "macro_f1_ci_high",
              "vs_leader", "p_vs_leader", "fit_s", "img_per_s", "n_train", "n_test", *HEADLINE):
        assert c in columns, c
    csv_header = render(boards, "csv").splitlines()[0].split(",")
    assert "macro_f1_ci_low" in csv_header and "vs_leader" in csv_header and "ece" in csv_header
    data = json.loads(render(boards, "json"))[0]
    assert data["metric"] == "macro_f1" and "Holm" in data["test"]
    assert data["rows"][0]["vs_leader"] == "leader"
    md = render(boards, "markdown")
    assert "macro_f1 [95% CI]" in md and "Holm" in md


def test_html_page_has_a_chart_and_a_table_per_split(tmp_path):
    import base64
    import io
    import re

    from PIL import Image

    runs = [stored_run(tmp_path, "x", 0.8, 7), stored_run(tmp_path, "y", 0.7, 8),
            stored_run(tmp_path, "z", 0.75, 9, split="s2")]
    page = render(build_boards(runs, n_resamples=300), "html")
    assert page.startswith("<!DOCTYPE html>") and page.count('<section id="board-') == 2
    pngs = re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    assert len(pngs) == 2
    for data in pngs:
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        assert im.format == "PNG" and im.size[0] > 500
    assert page.count('<table class="sortable">') == 6 and 'class="leader"' in page  # 3 views per split
    assert page.count("<details>") == 4 and "per class: F1/recall" in page and "<script>" in page
    assert "split s1" in page and "split s2" in page
    assert "No runs stored yet" in render([], "html")
    linked = render(build_boards(runs, n_resamples=50), "html", report_href=lambda run: f"runs/{run}/report.html")
    assert all(f'href="runs/{r.id}/report.html"' in linked for r in runs)


def test_leaderboard_chart_bars_and_whiskers_follow_the_rows(tmp_path):
    from bmbench.views.report.plots import LEADER, SAME, WORSE, leaderboard_figure

    runs = [stored_run(tmp_path, "far", 0.55, 1), stored_run(tmp_path, "best", 0.92, 2),
            stored_run(tmp_path, "close", 0.88, 3)]
    (board,) = build_boards(runs, n_resamples=300)
    ax = leaderboard_figure(board).axes[0]
    bars = ax.patches[:3]
    assert [round(b.get_width(), 6) for b in bars] == [round(v, 6) for v in board.rows["macro_f1"]]
    import matplotlib.colors as mc
    assert [mc.to_hex(b.get_facecolor()) for b in bars] == [LEADER, SAME, WORSE]
    ticks = dict(zip(ax.get_yticks(), (t.get_text() for t in ax.get_yticklabels())))
    assert [ticks[i] for i in (2, 1, 0)] == ["best", "close", "far"]  # the leader on top
    assert "whiskers: 95%" in ax.get_xlabel()


def test_a_single_run_or_untestable_runs_get_no_misleading_test_line(tmp_path):
    (board,) = build_boards([stored_run(tmp_path, "alone", 0.8, 11)], n_resamples=200)
    assert board.test == "" and board.rows.loc[0, "vs_leader"] == "leader"
    (board,) = build_boards([record(1, "a", f1=0.7), record(2, "b", f1=0.6)])
    assert "not testable" in board.test and pd.isna(board.rows.loc[1, "vs_leader"])


def _generated_store(root):
    from benchmarks.make_runs import generate

    return generate(root, runs=9, splits=2, n_test=40, pool=4)


def _boards_text(store, index=None, **kw):
    from bmbench.runs.store import list_runs

    records = list_runs(store, index)
    boards = build_boards(records, index=index, **kw)
    return render(boards, "table", TableView(wide=True, width=10_000)) + render(boards, "csv")


def test_the_index_remembers_the_paired_tests_until_a_predictions_file_changes(tmp_path, monkeypatch):
    from bmbench.runs.index import StoreIndex
    from bmbench.views import leaderboard

    store = _generated_store(tmp_path)
    plain = _boards_text(store)
    assert "worse (p=" in plain or "n.s. (p=" in plain
    for metric in ("macro_f1", "accuracy"):
        with StoreIndex(store) as index:
            assert _boards_text(store, index, metric=metric) == _boards_text(store, metric=metric)
    calls = []
    real = leaderboard._pair_test
    monkeypatch.setattr(leaderboard, "_pair_test", lambda *a: calls.append((a[1].id, a[2].id)) or real(*a))
    with StoreIndex(store) as index:
        assert _boards_text(store, index) == plain
    assert calls == []  # every test against the leader came from the index
    runs = sorted((store / "runs").iterdir())
    changed = runs[-1] / "predictions.csv"
    text = changed.read_text().splitlines()
    changed.write_text("\n".join(text[:1] + text[1:][::-1]) + "\n")  # same rows, other order: new stamp
    with StoreIndex(store) as index:
        assert _boards_text(store, index) == plain
    # only the tests involving the changed run: itself against its leader, or (it leads) its board's 4 others
    assert calls and all(runs[-1].name in pair for pair in calls) and len(calls) in (1, 4)


def test_leaderboard_cli_imports_no_model_library_and_no_pandas(tmp_path):
    import subprocess
    import sys

    store = _generated_store(tmp_path)
    code = ("import sys; from bmbench.cli import main\n"
            "for args in (['--help'], ['leaderboard', '--results-dir', sys.argv[1]], ['leaderboard', '--results-dir', "
            "sys.argv[1], '--per-class', '--metric', 'log_loss']):\n"
            "    try: main(args)\n"
            "    except SystemExit as e: assert not e.code, e.code\n"
            "print('MODULES', ' '.join(sorted(sys.modules)))")
    for _ in range(2):  # without, then with, the index filled
        out = subprocess.run([sys.executable, "-c", code, str(store)], capture_output=True, text=True, check=True).stdout
        modules = set(out.rsplit("MODULES ", 1)[1].split())
        assert "bmbench.views.leaderboard" in modules and "sqlite3" in modules
        heavy = {m.split(".")[0] for m in modules} & {"pandas", "scipy", "sklearn", "xgboost", "tensorflow", "keras",
                                                      "torch", "matplotlib", "cv2", "skimage", "PIL", "yaml"}
        assert heavy == set(), heavy


@pytest.mark.parametrize("metric", ["balanced_accuracy", "weighted_f1"])
@pytest.mark.parametrize("fmt", ["table", "markdown", "csv", "json", "html"])
def test_the_probe_protocol_metrics_rank_every_view(metric, fmt):
    runs = [record(1, "a", f1=0.6), record(2, "b", f1=0.8)]
    for r, value in zip(runs, (0.9, 0.7)):
        r.metrics["weighted_f1"] = value
    (board,) = build_boards(runs, metric=metric)
    assert board.rows["recipe"].tolist() == (["b", "a"] if metric == "balanced_accuracy" else ["a", "b"])
    assert metric in render([board], fmt)
