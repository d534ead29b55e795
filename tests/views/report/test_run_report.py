import base64
import io
import json
import re
import shutil

import pandas as pd
import pytest
from PIL import Image

from bmbench.views.report import write_report
from bmbench.runs.runner import run_recipe

RECIPE = """
name: tiny
description: "baseline <b>demo</b>"
dataset: {kind: synthetic, n_per_class: 12, render_size: 64, image_size: 32}
split: {test: 0.25, val: 0.15}
model: {family: baseline, pixels: 8}
"""
SECTIONS = ("summary", "metrics", "per-class", "confusion-matrix", "reliability",
            "training-curves", "feature-importances", "mistakes", "explanations", "environment")


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("BMBENCH_CACHE", str(tmp / "cache"))
    (tmp / "tiny.yaml").write_text(RECIPE)
    single = run_recipe(tmp / "tiny.yaml", tmp / "results")
    kfold = run_recipe(tmp / "tiny.yaml", tmp / "results", ("split.folds=3", "name=tiny-cv"))
    mp.undo()
    return single, kfold


def sections(html):
    return dict(re.findall(r'<section id="([^"]+)">(.*?)</section>', html, re.S))


def images(fragment):
    out = []
    for data in re.findall(r'src="data:image/png;base64,([^"]+)"', fragment):
        im = Image.open(io.BytesIO(base64.b64decode(data)))
        im.load()
        out.append(im)
    return out


def add_deep_and_classical_artifacts(folder):
    pd.DataFrame({"epoch": range(4), "loss": [1.2, 0.9, 0.7, 0.6], "val_loss": [1.3, 1.0, 0.9, 0.85],
                  "accuracy": [0.4, 0.6, 0.7, 0.75], "val_accuracy": [0.35, 0.55, 0.6, 0.62]}
                 ).to_csv(folder / "history.csv", index=False)
    pd.DataFrame({"feature": ["shape_nucleus_area", "color_cell_h_mean", "texture_nucleus_glcm_contrast"],
                  "gain": [5.0, 3.0, 2.0]}).to_csv(folder / "model" / "feature_importances.csv", index=False)


def test_report_has_every_section_with_images_that_decode(runs, tmp_path):
    folder = runs[0]
    work = tmp_path / folder.name
    shutil.copytree(folder, work)
    add_deep_and_classical_artifacts(work)
    out = write_report(work)
    assert out == work / "report.html"
    html = out.read_text()
    found = sections(html)
    assert list(found) == list(SECTIONS)
    expected_images = {"metrics": 1, "confusion-matrix": 1, "reliability": 1, "training-curves": 1,
                       "feature-importances": 1, "mistakes": 1}
    for name, count in expected_images.items():
        ims = images(found[name])
        assert len(ims) == count, name
        assert all(im.format == "PNG" and im.size[0] > 300 and im.size[1] > 150 for im in ims), name
    metrics = json.loads((work / "metrics.json").read_text())
    lo, hi = metrics["ci"]["macro_f1"]
    assert f"[{lo:.4f}, {hi:.4f}]" in found["metrics"]
    for name in ("ece", "brier", "log_loss", "roc_auc_ovr_macro"):
        assert f"<td>{name}</td>" in found["metrics"]
    for cls in metrics["classes"]:
        assert f"<td>{cls}</td>" in found["per-class"]
    assert "numpy" in found["environment"] and "python" in found["environment"]
    assert "could not be found" not in found["mistakes"]
    # self-contained and escaped
    assert not re.search(r'(src|href)="(https?:|file:|/)', html)
    assert "baseline &lt;b&gt;demo&lt;/b&gt;" in found["summary"] and "<b>demo</b>" not in html
    # the same figures as PNG files in the run folder
    pngs = {p.stem for p in (work / "figures").glob("*.png")}
    assert pngs == {"metrics", "confusion_matrix", "reliability", "training_curves",
                    "feature_importances", "mistakes"}
    for p in (work / "figures").glob("*.png"):
        Image.open(p).verify()


def test_report_leaves_out_what_a_run_does_not_have_and_tells_missing_images(runs, tmp_path):
    folder = runs[0]
    work = tmp_path / folder.name
    shutil.copytree(folder, work)
    info = json.loads((work / "run.json").read_text())
    info["dataset"]["root"] = str(tmp_path / "moved-away")
    (work / "run.json").write_text(json.dumps(info))
    out = write_report(work, tmp_path / "elsewhere" / "r.html", n_mistakes=3)
    found = sections(out.read_text())
    assert "training-curves" not in found and "feature-importances" not in found
    assert "3 could not be found" in found["mistakes"]
    assert len(images(found["mistakes"])) == 1


def test_kfold_report_shows_fold_mean_and_std(runs, tmp_path):
    out = write_report(runs[1], tmp_path / "cv.html")
    found = sections(out.read_text())
    metrics = json.loads((runs[1] / "metrics.json").read_text())
    spread = metrics["fold_summary"]["accuracy"]
    assert "fold mean" in found["metrics"] and "fold std" in found["metrics"]
    assert f"{spread['mean']:.4f}" in found["metrics"] and f"{spread['std']:.4f}" in found["metrics"]
    assert "3 folds" in found["summary"]


def test_report_of_a_run_stored_before_intervals_recomputes_them(runs, tmp_path):
    work = tmp_path / runs[0].name
    shutil.copytree(runs[0], work)
    metrics = json.loads((work / "metrics.json").read_text())
    expected = metrics.pop("ci")
    metrics.pop("ci_method")
    (work / "metrics.json").write_text(json.dumps(metrics))
    (work / "reliability.json").unlink()
    found = sections(write_report(work).read_text())
    lo, hi = expected["accuracy"]
    assert f"[{lo:.4f}, {hi:.4f}]" in found["metrics"]
    assert len(images(found["reliability"])) == 1


def test_durations_are_rounded_as_in_the_leaderboard_and_long_ones_in_minutes():
    from bmbench.views.report.run_report import _duration
    assert [_duration(s) for s in (0.868, 12.34, 927.913)] == ["0.87 s", "12.3 s", "928 s (15.5 min)"]


def test_an_unwritable_out_is_refused_before_anything_is_computed(runs, tmp_path, monkeypatch):
    from bmbench.core.errors import BmbenchError
    from bmbench.views.report import run_report

    single, _ = runs
    (tmp_path / "afile").write_text("x")
    monkeypatch.setattr(run_report, "_scored", lambda record: pytest.fail("computed before checking --out"))
    with pytest.raises(BmbenchError, match="cannot write the report"):
        write_report(single, tmp_path / "afile" / "report.html", explain=False)
