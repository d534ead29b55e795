"""The report's explanations: Grad-CAM per class for a CNN run, TreeSHAP tables and
segmentation examples for a classical run, a note (not a failure) when images are gone."""

import json
import re
import shutil

import pytest

from bmbench.runs.runner import run_recipe
from bmbench.views.report import write_report
from bmbench.views.report.explanations import pick_examples

pytestmark = pytest.mark.deep  # trains or builds TensorFlow models: left out of the quick subset

BASE = ("dataset: {kind: synthetic, n_per_class: 12, render_size: 64, image_size: 32}\n"
        "split: {test: 0.25, val: 0.15}\n")
RECIPES = {
    "classical": "model: {family: classical, features: [shape, color], n_estimators: 40}\n",
    "cnn": "model: {family: cnn, depth: 2, width: 8}\ntrain: {epochs: 1, batch_size: 16}\n",
    "forest": "model: {family: classical, features: [shape], classifier: {name: random_forest, n_estimators: 30}}\n",
}


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("explain")
    mp = pytest.MonkeyPatch()
    mp.setenv("BMBENCH_CACHE", str(tmp / "cache"))
    out = {}
    for name, model in RECIPES.items():
        (tmp / f"{name}.yaml").write_text(f"name: x_{name}\n{BASE}{model}")
        out[name] = run_recipe(tmp / f"{name}.yaml", tmp / "results")
    yield out
    mp.undo()


def section(html):
    return re.search(r'<section id="explanations">(.*?)</section>', html, re.S).group(1)


def n_images(fragment):
    return len(re.findall(r'src="data:image/png;base64,', fragment))


def test_cnn_report_shows_grad_cam_per_class(runs, tmp_path):
    html = write_report(runs["cnn"], tmp_path / "r.html").read_text()
    part = section(html)
    assert "Grad-CAM" in part and "block2_relu2" in part and n_images(part) == 1
    assert (runs["cnn"] / "figures" / "explanations.png").is_file()


def test_classical_report_lists_top_features_per_class_with_their_meaning(runs, tmp_path):
    part = section(write_report(runs["classical"], tmp_path / "r.html").read_text())
    classes = json.loads((runs["classical"] / "metrics.json").read_text())["classes"]
    assert "TreeSHAP" in part and n_images(part) == 1
    for cls in classes:
        assert f"<td>{cls}</td>" in part
    assert re.search(r"<td>(shape|color)_\w+</td>", part)
    assert "nucleus:" in part or "cell:" in part  # data-dictionary descriptions


def test_other_classifiers_show_permutation_importance(runs, tmp_path):
    part = section(write_report(runs["forest"], tmp_path / "r.html").read_text())
    assert "Permutation importance" in part and "<td>shape_" in part


def test_missing_images_leave_a_note_and_no_explanation_flag_skips_it(runs, tmp_path):
    work = tmp_path / "moved"
    shutil.copytree(runs["cnn"], work)
    info = json.loads((work / "run.json").read_text())
    info["dataset"]["root"] = str(tmp_path / "gone")
    (work / "run.json").write_text(json.dumps(info))
    part = section(write_report(work).read_text())
    assert "could not be computed" in part
    assert 'id="explanations"' not in write_report(work, tmp_path / "n.html", explain=False).read_text()


def test_examples_are_the_most_confident_right_ones_then_the_worst_mistake():
    import pandas as pd

    frame = pd.DataFrame({"path": list("abcdef"), "true_label": list("xxxxyy"),
                          "predicted_label": ["x", "x", "y", "x", "y", "x"],
                          "confidence": [0.6, 0.9, 0.8, 0.7, 0.5, 0.95]})
    got = pick_examples(frame, ["x", "y"], 2, 1)
    assert got["path"].tolist() == ["b", "d", "c", "e", "f"]
    assert got["kind"].tolist() == ["right", "right", "wrong", "right", "wrong"]
