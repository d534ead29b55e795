import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from bmbench.views.report import plots


def text_boxes(fig, texts):
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig).draw()
    renderer = fig.canvas.get_renderer()
    return [t.get_window_extent(renderer) for t in texts if t.get_visible() and t.get_text()]


def assert_no_overlap(boxes):
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            a, b = boxes[i], boxes[j]
            overlap_w = min(a.x1, b.x1) - max(a.x0, b.x0)
            overlap_h = min(a.y1, b.y1) - max(a.y0, b.y0)
            assert overlap_w <= 0.5 or overlap_h <= 0.5, (i, j, a, b)


def decodes(png: bytes) -> tuple[int, int]:
    im = Image.open(io.BytesIO(png))
    im.load()
    return im.size


@pytest.mark.parametrize("k", [2, 8, 21])
def test_confusion_matrix_labels_never_overlap(k):
    classes = [f"class-with-a-long-name-{i}" for i in range(k)]
    rng = np.random.default_rng(k)
    cm = rng.integers(0, 30, (k, k)) + np.eye(k, dtype=int) * 50
    cm[-1] = 0  # a class without test images
    fig = plots.confusion_matrix_figure(cm, classes)
    ax = fig.axes[0]
    assert [t.get_text().replace("\n", "") for t in ax.get_xticklabels()] == classes
    assert ax.get_xlabel() == "predicted class" and ax.get_ylabel() == "true class" and ax.get_title()
    for ticks in (ax.get_xticklabels(), ax.get_yticklabels()):
        assert_no_overlap(text_boxes(fig, ticks))
    # x tick labels stay clear of the axis label below them
    assert_no_overlap(text_boxes(fig, [*ax.get_xticklabels(), ax.xaxis.label]))
    width, height = decodes(plots.png_bytes(fig))
    assert width > 400 and height > 400


def test_confusion_matrix_cells_show_row_shares():
    fig = plots.confusion_matrix_figure([[3, 1], [0, 4]], ["a", "b"])
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert cells == ["75%\n(3)", "25%\n(1)", "0%\n(0)", "100%\n(4)"]


def test_reliability_figure_has_both_panels_and_labels():
    from bmbench.metrics.calibration import reliability

    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.ones(3), 200)
    rel = reliability(rng.integers(0, 3, 200), p)
    fig = plots.reliability_figure(rel)
    top, bottom = fig.axes
    assert "ECE" in top.get_title() and top.get_ylabel() == "accuracy"
    assert bottom.get_xlabel().startswith("confidence") and bottom.get_ylabel() == "images"
    decodes(plots.png_bytes(fig))


def test_training_curves_pair_train_and_validation_per_fold():
    h = pd.DataFrame({"epoch": [0, 1, 2] * 2, "fold": [0] * 3 + [1] * 3,
                      "loss": [1.0, 0.7, 0.5] * 2, "val_loss": [1.1, 0.8, 0.7] * 2,
                      "accuracy": [0.5, 0.6, 0.7] * 2, "val_accuracy": [0.4, 0.5, 0.6] * 2,
                      "learning_rate": [0.001] * 6})
    fig = plots.training_curves_figure(h)
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["loss", "accuracy"]
    assert len(panels[0].lines) == 4 and all(ax.get_xlabel() == "epoch" for ax in panels)
    labels = [line.get_label() for line in panels[0].lines]
    assert "validation (fold 1)" in labels
    ticks = panels[0].get_xticks()
    assert np.allclose(ticks, np.round(ticks)), ticks  # whole epochs only


def test_feature_importances_show_the_top_features_by_share():
    frame = pd.DataFrame({"feature": [f"color_nucleus_hematoxylin_percentile_{i}" for i in range(30)],
                          "gain": np.arange(30, 0, -1, dtype=float)})
    fig = plots.feature_importance_figure(frame, top=20)
    ax = fig.axes[0]
    labels = [t.get_text().replace("\n", "") for t in ax.get_yticklabels()]
    assert len(labels) == 20 and labels[-1] == frame["feature"][0]  # largest at the top
    assert_no_overlap(text_boxes(fig, ax.get_yticklabels()))


def test_mistakes_titles_do_not_collide_across_rows():
    items = [{"image": np.full((40, 40, 3), 200, np.uint8) if i % 3 else None,
              "true": "segmented neutrophil", "predicted": "band neutrophil",
              "probability": 0.9, "path": f"NGS/0001-1000/NGS_{i:05d}.jpg"} for i in range(9)]
    fig = plots.mistakes_figure(items)
    visible = [ax for ax in fig.axes if ax.get_visible()]
    assert len(visible) == 9 and "image not found" in visible[0].texts[0].get_text()
    titles = [ax.title for ax in visible]
    boxes = text_boxes(fig, titles)
    renderer = fig.canvas.get_renderer()
    boxes += [ax.get_window_extent(renderer) for ax in visible]
    assert_no_overlap(boxes)


def test_training_curves_of_a_staged_deep_run_as_the_deep_families_write_them():
    # history.csv columns written by bmbench.deep.training
    rows = []
    for fold in (0,):
        for stage, epochs in (("head", 3), ("finetune", 2)):
            for e in range(1, epochs + 1):
                rows.append({"fold": fold, "stage": stage, "epoch": e, "loss": 1 / e,
                             "accuracy": 0.5, "val_loss": 1.1 / e, "val_accuracy": 0.45,
                             "learning_rate": 1e-3, "seconds": 2.0})
    fig = plots.training_curves_figure(pd.DataFrame(rows))
    panels = [ax for ax in fig.axes if ax.get_visible()]
    assert [ax.get_title() for ax in panels] == ["loss", "accuracy"]  # no 'seconds' panel
    x = panels[0].lines[0].get_xdata()
    assert list(x) == [1, 2, 3, 4, 5]  # epochs counted on across the stages
    stage_marks = [t.get_text() for t in panels[0].texts]
    assert stage_marks == ["head", "finetune"]
