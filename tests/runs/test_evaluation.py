import json

import pandas as pd
import pytest

from bmbench.core.errors import DatasetError
from bmbench.views.leaderboard import TableView, build_boards, render
from bmbench.runs.runner import run_recipe, run_repeats
from bmbench.runs.store import list_runs


@pytest.fixture
def two_sets(tmp_path, monkeypatch):
    """Two synthetic 'labs' (different generator seeds) with different class names."""
    from bmbench.data.synthetic import generate
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    a = generate(tmp_path / "lab_a", 12, seed=1, size=64)
    b = generate(tmp_path / "lab_b", 8, seed=2, size=64)
    for cls, new in (("lymphocyte", "LYT"), ("neutrophil", "NGS"), ("blast", "BLA"), ("monocyte", "MON")):
        (b / cls).rename(b / new)
    return a, b


def recipe(tmp_path, a, b, extra=""):
    p = tmp_path / "cross.yaml"
    p.write_text(f"""name: cross
dataset: {{kind: folder, root: {a}, image_size: 32,
          label_map: {{lymphocyte: LYT, neutrophil: NGS, blast: BLA, monocyte: null}}}}
evaluate:
  - {{kind: folder, root: {b}{extra}}}
model: {{family: baseline, pixels: 8}}
""")
    return p


def test_cross_dataset_run_has_its_own_table(two_sets, tmp_path, caplog):
    a, b = two_sets
    run = run_recipe(recipe(tmp_path, a, b), tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    (summary,) = info["evaluations"]
    assert summary["excluded_classes"] == {"MON": 8} and summary["untested_classes"] == []
    assert summary["n_images"] == 24
    folder = run / summary["folder"]
    preds = pd.read_csv(folder / "predictions.csv")
    assert len(preds) == 24 and set(preds["true_label"]) == {"BLA", "LYT", "NGS"}
    assert "excluded classes not seen in training: MON (8)" in caplog.text
    records = list_runs(tmp_path / "results")
    assert len(records) == 2
    titles = sorted(b.title for b in build_boards(records, n_resamples=50))
    assert titles[1].startswith("trained on folder") and "tested on folder (24 images, 3 shared classes)" in titles[1]


def test_evaluation_label_map_and_no_shared_class(two_sets, tmp_path):
    a, b = two_sets
    extra = ", label_map: {LYT: lymphocyte_b, NGS: x, BLA: y, MON: z}"
    with pytest.raises(DatasetError, match=r"evaluate\[0\].*no class in common"):
        run_recipe(recipe(tmp_path, a, b, extra), tmp_path / "results")


def test_repeats_use_consecutive_seeds_on_one_split(two_sets, tmp_path):
    a, _ = two_sets
    p = tmp_path / "r.yaml"
    p.write_text(f"name: rep\nseed: 5\nrepeats: 3\ndataset: {{kind: folder, root: {a}, image_size: 16}}\n"
                 "model: {family: baseline, pixels: 4}\n")
    runs = run_repeats(p, tmp_path / "results")
    infos = [json.loads((r / "run.json").read_text()) for r in runs]
    assert [i["seed"] for i in infos] == [5, 6, 7]
    assert len({i["split_fingerprint"] for i in infos}) == 1 and len({i["seed_group"] for i in infos}) == 1
    (board,) = build_boards(list_runs(tmp_path / "results"), n_resamples=50)
    assert board.rows["across_seeds"].str.endswith("(n=3)").all()
    assert "across seeds" in render([board], "table", TableView(width=120)).splitlines()[1]


def test_reruns_with_the_same_seed_are_one_result_not_a_spread_across_seeds(two_sets, tmp_path):
    a, _ = two_sets
    p = tmp_path / "r.yaml"
    p.write_text(f"name: rep\nseed: 5\ndataset: {{kind: folder, root: {a}, image_size: 16}}\n"
                 "model: {family: baseline, pixels: 4}\n")
    for _ in range(2):
        run_recipe(p, tmp_path / "results")
    (board,) = build_boards(list_runs(tmp_path / "results"), n_resamples=50)
    assert len(board.rows) == 2 and (board.rows["across_seeds"] == "").all()
    run_recipe(p, tmp_path / "results", ("seed=6",))
    (board,) = build_boards(list_runs(tmp_path / "results"), n_resamples=50)
    assert board.rows["across_seeds"].str.endswith("(n=2)").all()  # seeds 5 and 6, not 3 runs


def test_each_evaluation_set_is_resampled_from_its_own_pixel_size(two_sets, tmp_path):
    """Lab A photographed again at twice the resolution: declared at 0.5 µm/px it is brought
    back to the run's 1 µm/px and predicted like the originals; declared wrongly (1 µm/px)
    the cells look twice as large to the shape features."""
    import cv2
    import numpy as np

    a, _ = two_sets
    a2 = tmp_path / "lab_a_2x"
    for src in sorted(a.rglob("*.png")):
        out = a2 / src.relative_to(a)
        out.parent.mkdir(parents=True, exist_ok=True)
        im = cv2.imread(str(src))
        cv2.imwrite(str(out), cv2.resize(im, None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC))
    p = tmp_path / "scaled.yaml"
    p.write_text(f"""name: scaled
dataset: {{kind: folder, root: {a}, microns_per_pixel: 1.0, target_microns_per_pixel: 1.0}}
evaluate:
  - {{kind: folder, root: {a}, microns_per_pixel: 1.0}}
  - {{kind: folder, root: {a2}, microns_per_pixel: 0.5}}
  - {{kind: folder, root: {a2}, microns_per_pixel: 1.0}}
model: {{family: classical, features: [shape]}}
""")
    run = run_recipe(p, tmp_path / "results")
    info = json.loads((run / "run.json").read_text())
    preds = [pd.read_csv(run / e["folder"] / "predictions.csv").set_index("path")["predicted_label"]
             for e in info["evaluations"]]
    same = float(np.mean(preds[0] == preds[1].loc[preds[0].index]))
    wrong = float(np.mean(preds[0] == preds[2].loc[preds[0].index]))
    assert same >= 0.9 and wrong < same - 0.2, (same, wrong)
