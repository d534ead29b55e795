import json

import pandas as pd

from bmbench.data.duplicates import exact_duplicates
from bmbench.data.table import make_table


def test_finds_identical_files_and_label_conflicts(tmp_path, make_image):
    a = make_image(tmp_path / "x" / "a.png", seed=1)
    make_image(tmp_path / "x" / "b.png", seed=2)
    (tmp_path / "y").mkdir()
    (tmp_path / "y" / "a_copy.png").write_bytes(a.read_bytes())
    (tmp_path / "x" / "a_again.png").write_bytes(a.read_bytes())
    make_image(tmp_path / "y" / "c.png", seed=3)
    rows = pd.DataFrame({"relpath": ["x/a.png", "x/b.png", "y/a_copy.png", "x/a_again.png", "y/c.png"],
                         "label": ["x", "x", "y", "x", "y"]})
    table = make_table("folder", tmp_path, rows)
    (group,) = exact_duplicates(table)
    assert sorted(table.frame["relpath"][list(group.rows)]) == ["x/a.png", "x/a_again.png", "y/a_copy.png"]
    assert group.conflicting


def test_run_warns_about_label_noise_and_leaks(tmp_path, monkeypatch, caplog):
    from bmbench.data.synthetic import generate
    from bmbench.runs.runner import run_recipe

    root = generate(tmp_path / "cells", 10, size=48)
    blast = sorted((root / "blast").glob("*.png"))
    (root / "monocyte" / "copied_blast.png").write_bytes(blast[0].read_bytes())
    for i in range(6):
        (root / "blast" / f"dup_{i}.png").write_bytes(blast[1].read_bytes())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: d\ndataset: {{kind: folder, root: {root}, image_size: 16}}\n"
                      "model: {family: baseline, pixels: 4}\n")
    run = run_recipe(recipe, tmp_path / "results")
    notes = json.loads((run / "run.json").read_text())["notes"]["duplicates"]
    assert notes["groups"] == 2 and notes["label_conflicts"] == 1
    assert notes["test_images_with_train_copy"] >= 1
    assert "label noise" in caplog.text and "copied_blast.png" in caplog.text
    assert "scores are optimistic" in caplog.text


def test_on_leak_error_stops_the_run(tmp_path):
    import pytest
    from bmbench.data.synthetic import generate
    from bmbench.core.errors import DatasetError
    from bmbench.runs.runner import run_recipe

    root = generate(tmp_path / "cells", 10, size=48)
    lymph = sorted((root / "lymphocyte").glob("*.png"))[0]
    for i in range(8):
        (root / "lymphocyte" / f"copy_{i}.png").write_bytes(lymph.read_bytes())
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"name: d\ndataset: {{kind: folder, root: {root}, image_size: 16}}\n"
                      "model: {family: baseline, pixels: 4}\nsplit: {on_leak: error}\n")
    with pytest.raises(DatasetError, match="split.on_leak: error"):
        run_recipe(recipe, tmp_path / "results")
    assert not [p for p in (tmp_path / "results" / "runs").iterdir() if not p.name.startswith(".")]
