"""The benchmark harness (benchmarks/): command line, RESULTS.md sections, the reference
build's command list. The benchmarks themselves run with `python -m benchmarks`."""

import importlib
from pathlib import Path

import pytest

from benchmarks import __main__ as cli
from benchmarks import common, reference
from bmbench.features.extract import FeatureSettings, feature_names

REPO = Path(__file__).resolve().parents[1]


def test_every_benchmark_module_has_a_run_taking_options():
    for name in cli.BENCHMARKS:
        module = importlib.import_module(f"benchmarks.{name}")
        assert callable(module.run) and module.__doc__, name
    assert "reference" not in cli.QUICK and "bigdata" not in cli.QUICK


def test_unknown_benchmark_is_refused_before_anything_runs(capsys, monkeypatch):
    monkeypatch.setattr(importlib, "import_module", lambda name: pytest.fail(f"ran {name}"))
    assert cli.main(["statistics", "nope"]) == 2
    assert "unknown benchmark 'nope'" in capsys.readouterr().err


def test_write_section_replaces_its_own_section_only(tmp_path, monkeypatch):
    monkeypatch.setattr(common, "RESULTS", tmp_path / "RESULTS.md")
    common.write_section("A", "first a")
    common.write_section("B", "first b")
    common.write_section("A", "second a")
    text = (tmp_path / "RESULTS.md").read_text()
    assert text.startswith("# bmbench benchmarks")
    assert "second a" in text and "first a" not in text and "first b" in text
    assert text.index("## A") < text.index("## B")


def test_reference_build_runs_every_shipped_recipe_on_every_set_with_three_seeds():
    commands = dict(reference.commands())
    assert len(commands) == len(reference.RECIPES) * len(reference.SETS) + len(reference.CROSS)
    for key, args in commands.items():
        assert (REPO / args[1]).is_file(), args[1]
        assert args[args.index("--repeats") + 1] == "3"
        assert "--results-dir" in args and not Path(args[args.index("--results-dir") + 1]).is_absolute()
    assert set(dict(reference.commands(("small_cnn",)))) == {f"small_cnn@{s}" for s in reference.SETS}
    assert set(dict(reference.commands(("small_cnn",), ("pbc",)))) == {"small_cnn@pbc"}


def test_reference_scratch_stores_are_not_committed():
    ignored = (REPO / ".gitignore").read_text().split()
    assert "results/reference/runs/" in ignored and "results/reference/cross_runs/" in ignored


def test_feature_benchmark_times_both_extractors_through_the_current_api(tmp_path, make_image):
    from benchmarks import features

    paths = [str(make_image(tmp_path / f"{i}.png", size=(48, 40), seed=i)) for i in range(3)]
    rate, n_features = features.bmbench_rate(paths, jobs=1)
    assert rate > 0 and n_features == len(feature_names())
    rate, n_core = features.bmbench_rate(paths, jobs=1, families=features.CORE_FAMILIES)
    assert rate > 0 and n_core == len(feature_names(FeatureSettings(families=features.CORE_FAMILIES))) < n_features
    assert features.fresh_process_rate(paths, jobs=1) > 0
    if features._have_radiomics():
        rate, n = features.radiomics_rate(features.radiomics_extractor(), features.radiomics_inputs(paths))
        assert rate > 0 and n > 0


def test_bigdata_scan_step_reports_the_tables_fingerprint_and_split(tmp_path, load):
    from benchmarks import bigdata
    from bmbench.data.synthetic_tree import generate_matek_tree

    root = generate_matek_tree(tmp_path / "tree", 40, size=32)
    res = bigdata.scan_and_split(root)
    assert res["n"] == 40 and res["fingerprint"] == load(kind="matek_bm", root=root).fingerprint
    assert len(res["split"]) == 16 and res["seconds"] > 0


def test_bigdata_peak_rss_sees_a_short_lived_allocation():
    import numpy as np

    from benchmarks.bigdata import PeakRss

    with PeakRss(0.001) as rss:
        block = np.ones(64 * 2**20, np.uint8)  # 64 MiB, touched
        import time
        time.sleep(0.05)
        del block
    assert rss.growth > 50


def test_bigdata_refuses_unknown_steps():
    from benchmarks import bigdata

    with pytest.raises(SystemExit):
        bigdata.run(["--skip", "nope"])


@pytest.mark.slow
def test_bigdata_benchmark_end_to_end_on_a_small_tree(tmp_path, monkeypatch):
    from benchmarks import bigdata

    monkeypatch.setattr(bigdata, "write_section", lambda name, body: None)
    body = bigdata.run(["--n", "200", "--small", "40", "--size", "48", "--scratch", str(tmp_path)])
    assert "| 200 |" in body and "| 40 |" in body
    assert "Tables identical, cell by cell: **yes**" in body
    assert "Within the documented bound at every size: **yes**" in body
    assert list(tmp_path.iterdir()) == []  # the trees and caches are gone


def test_cross_selection_dev_half_is_fixed_half_of_each_class_and_seeded():
    from benchmarks.cross_selection import dev_half

    rel = [f"{c}/{i}.jpg" for c in "ab" for i in range(9)]
    labels = [r[0] for r in rel]
    dev = dev_half(rel, labels)
    assert dev == dev_half(list(reversed(rel)), list(reversed(labels)))  # order of listing is irrelevant
    assert sum(r.startswith("a/") for r in dev) == sum(r.startswith("b/") for r in dev) == 4
    assert dev != dev_half(rel, labels, seed=1)


def test_cross_selection_commands_are_valid_recipes():
    from benchmarks.cross_selection import DIRECTIONS, REPO, SETUPS
    from bmbench.config.recipe import load_recipe

    for setup in SETUPS:
        for direction in DIRECTIONS:
            args = setup.argv(direction, 1)
            recipe = load_recipe(REPO / args[1], [args[i + 1] for i, a in enumerate(args) if a == "--set"])
            assert recipe.model.family == setup.family and recipe.seed == 1
            if setup.sources == "multi":
                assert recipe.dataset.options.leave_out == direction.target
            else:
                assert recipe.evaluate[0].adapt.n_per_class == setup.k
                assert recipe.dataset.target_microns_per_pixel is None


def test_cross_selection_chooses_on_the_dev_half_and_reports_the_other(tmp_path, monkeypatch):
    """Setup 'a' is better on the dev half, 'b' on the report half: 'a' is chosen, and the
    figure given for it is its report-half score."""
    import json

    import pandas as pd

    from benchmarks import cross_selection as cs

    direction = cs.DIRECTIONS[0]
    images = {f"{c}/{i}.jpg": c for c in cs.CLASSES for i in range(10)}
    dev = cs.dev_half(list(images), list(images.values()))
    a = cs.Setup("a", "classical", "single", ())
    b = cs.Setup("b", "classical", "multi", ())
    monkeypatch.setattr(cs, "RUNS", tmp_path)
    monkeypatch.setattr(cs, "SETUPS", (a, b))
    monkeypatch.setattr(cs, "DIRECTIONS", (direction,))
    monkeypatch.setattr(cs, "_target_images", lambda d: images)

    def write(setup, right_on_dev: bool):
        run = tmp_path / setup.key(direction, 0) / "runs" / "r1"
        folder = run / "evaluations" / "0-matek_bm" if setup.sources == "single" else run
        folder.mkdir(parents=True)
        (run / "run.json").write_text("{}")
        (run / "metrics.json").write_text(json.dumps({"macro_f1": 0.9}))
        prefix = "" if setup.sources == "single" else "matek_bm/"
        wrong = {"EOS": "LYT", "LYT": "MON", "MON": "NGS", "NGS": "EOS"}
        pred = [c if (r in dev) == right_on_dev else wrong[c] for r, c in images.items()]
        pd.DataFrame({"path": [prefix + r for r in images], "true_label": list(images.values()),
                      "predicted_label": pred}).to_csv(folder / "predictions.csv", index=False)

    write(a, right_on_dev=True)
    write(b, right_on_dev=False)
    logged = {s.key(direction, 0): {"command": "bmbench run", "wall_s": 1.0} for s in (a, b)}
    (tmp_path / "commands.json").write_text(json.dumps(logged))
    text = cs.tables()
    assert "**a** (other lab) - report half 0.000" in text
    assert "| PBC -> Matek | classical | zero-shot | every other lab | b | 0.000 | 1.000" in text
