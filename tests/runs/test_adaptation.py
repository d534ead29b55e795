"""Few-shot adaptation: images drawn from an evaluation set into training (evaluate[i].adapt)."""

import hashlib
import json
from collections import Counter

import numpy as np
import pandas as pd
import pytest

from bmbench.config.recipe import load_recipe
from bmbench.core.errors import DatasetError
from bmbench.data import load_dataset
from bmbench.models.families.baseline import Baseline
from bmbench.runs.adaptation import draw_adaptations, draw_rows
from bmbench.runs.runner import run_recipe
from bmbench.runs.store import list_runs
from bmbench.views.leaderboard import build_boards


def read(folder, name="run.json"):
    return json.loads((folder / name).read_text())


@pytest.fixture
def fits(monkeypatch):
    """The training images of every ``fit`` call: a list of ``(paths, labels)``."""
    calls = []
    fit = Baseline.fit

    def spy(self, train, val, ctx):
        calls.append((list(train.paths), list(train.labels)))
        return fit(self, train, val, ctx)

    monkeypatch.setattr(Baseline, "fit", spy)
    return calls


def test_draw_rows_is_stratified_seeded_and_nested():
    labels = np.random.default_rng(3).permutation(np.array(["a"] * 10 + ["b"] * 7 + ["c"] * 5, dtype=object))
    rows = draw_rows(labels, ["a", "b"], 3, seed=0)
    assert rows.dtype == np.int64 and rows.shape == (6,) and (np.diff(rows) > 0).all()
    assert Counter(labels[rows]) == {"a": 3, "b": 3}, "exactly k per class, none of the others"
    assert (draw_rows(labels, ["a", "b"], 3, seed=0) == rows).all(), "same seed, same rows"
    assert set(draw_rows(labels, ["a", "b"], 3, seed=1)) != set(rows), "another seed, other rows"
    assert set(draw_rows(labels, ["a", "b"], 2, seed=0)) < set(rows), "a smaller k draws a subset"


def test_adapted_run_trains_on_the_drawn_images_and_tests_on_the_rest(cross_recipe, tmp_path, fits):
    run = run_recipe(cross_recipe(", adapt: {n_per_class: 2, seed: 1}"), tmp_path / "results")
    info = read(run)
    evaluation = run / "evaluations" / "0-folder"
    drawn = read(evaluation)["adaptation"]
    assert (drawn["n_per_class"], drawn["seed"], drawn["n_images"]) == (2, 1, 6)
    assert Counter(p.split("/")[0] for p in drawn["relpaths"]) == {"BLA": 2, "LYT": 2, "NGS": 2}
    tested = set(pd.read_csv(evaluation / "predictions.csv")["path"])
    assert len(tested) == 18 and not tested & set(drawn["relpaths"]), "drawn images are not test images"
    assert read(evaluation)["n_test"] == 18 and read(evaluation)["dataset"]["class_counts"] == \
        {"BLA": 6, "LYT": 6, "NGS": 6}
    (paths, labels), = fits
    lab_b = str(tmp_path / "lab_b")
    assert len(paths) == info["n_train"] == info["adaptation"]["n_train_in_domain"] + 6
    added = {p[len(lab_b) + 1:]: y for p, y in zip(paths, labels) if p.startswith(lab_b)}
    classes = info["dataset"]["classes"]
    assert {p: classes[y] for p, y in added.items()} == {p: p.split("/")[0] for p in drawn["relpaths"]}, \
        "the drawn images train with the training class indices"
    assert info["adaptation"]["from"] == [{"evaluate": 0, "kind": "folder", "root": lab_b,
                                           "n_per_class": 2, "seed": 1, "n_images": 6}]
    assert "adapted with 2 labelled target images per class (seed 1)" in read(evaluation)["title"]
    assert info["evaluations"][0]["adaptation"]["n_images"] == 6 and info["n_test"] == 8, \
        "the in-domain test split is unchanged"


def test_every_fold_trains_on_the_drawn_images(cross_recipe, tmp_path, fits):
    run = run_recipe(cross_recipe(", adapt: {n_per_class: 1}", "split: {folds: 2}"), tmp_path / "results")
    drawn = {str(tmp_path / "lab_b" / p) for p in read(run / "evaluations" / "0-folder")["adaptation"]["relpaths"]}
    assert len(fits) == 2 and all(drawn <= set(paths) for paths, _ in fits)


def test_k_zero_is_exactly_the_run_without_adapt(cross_recipe, tmp_path):
    plain, zero = cross_recipe(), cross_recipe(", adapt: {n_per_class: 0, seed: 5}")
    assert load_recipe(plain).fingerprint() == load_recipe(zero).fingerprint()
    runs = [run_recipe(p, tmp_path / "results") for p in (plain, zero)]
    infos = [read(r) for r in runs]
    evals = [read(r / "evaluations" / "0-folder") for r in runs]
    assert "adaptation" not in infos[1] and "adaptation" not in evals[1]
    assert "adaptation" not in infos[1]["evaluations"][0]
    assert sorted(infos[0]) == sorted(infos[1]) and sorted(evals[0]) == sorted(evals[1])
    stored = [[line for line in (r / "recipe.yaml").read_text().splitlines() if not line.startswith("source:")]
              for r in runs]
    assert stored[0] == stored[1]
    assert evals[0]["title"] == evals[1]["title"] and "adapted" not in evals[1]["title"]
    # the evaluation split fingerprint keeps its pre-adapt formula, so stored runs keep ranking
    table = load_dataset(load_recipe(plain).evaluate[0])
    key = json.dumps({"trained_on": infos[0]["split_fingerprint"], "tested_on": table.fingerprint,
                      "classes": infos[0]["dataset"]["classes"]}, sort_keys=True)
    assert evals[1]["split_fingerprint"] == evals[0]["split_fingerprint"] == \
        hashlib.sha256(key.encode()).hexdigest()[:16]


def test_each_draw_gets_its_own_table_and_the_in_domain_one_is_shared(cross_recipe, tmp_path):
    for entry in ("", ", adapt: {n_per_class: 1}", ", adapt: {n_per_class: 2}", ", adapt: {n_per_class: 2, seed: 1}"):
        run_recipe(cross_recipe(entry), tmp_path / "results")
    boards = build_boards(list_runs(tmp_path / "results"), n_resamples=20)
    evaluation = [b for b in boards if b.title.startswith("trained on")]
    assert len(evaluation) == 4 and len(boards) == 5, "one in-domain table, one per (k, seed)"
    assert len({b.split_fingerprint for b in evaluation}) == 4
    titles = sorted(b.title for b in evaluation)
    assert sum("adapted with 2 labelled target images per class (seed 1)" in t for t in titles) == 1
    assert sum("adapted with 1 labelled" in t for t in titles) == 1
    assert sum("adapted" not in t for t in titles) == 1


def test_the_draw_is_deterministic_per_seed(cross_recipe):
    path = cross_recipe(", adapt: {n_per_class: 3}")
    recipe = load_recipe(path)
    table = load_dataset(recipe.dataset)
    first, again = draw_adaptations(recipe, table)[0], draw_adaptations(recipe, table)[0]
    other = draw_adaptations(load_recipe(path, ["evaluate.0.adapt.seed=1"]), table)[0]
    assert first.relpaths == again.relpaths and first.relpaths != other.relpaths
    assert Counter(first.table.frame["label"].iloc[first.rows]) == {"BLA": 3, "LYT": 3, "NGS": 3}


def test_a_class_too_small_for_k_names_the_key(cross_recipe, tmp_path):
    with pytest.raises(DatasetError) as exc:  # lab B has 8 images per class: 8 leave none to test
        run_recipe(cross_recipe(", adapt: {n_per_class: 8}"), tmp_path / "results")
    message = str(exc.value)
    assert "evaluate[0].adapt.n_per_class: 8 images per class" in message and "\n" not in message
    assert "only 8 BLA, 8 LYT, 8 NGS" in message
    assert not list((tmp_path / "results" / "runs").glob("[!.]*")), "nothing stored"


def test_adaptation_images_are_resampled_from_their_own_pixel_size(cross_recipe, tmp_path, monkeypatch):
    """With dataset.target_microns_per_pixel, drawn images of the other lab are brought to the
    run's pixel size from that lab's own, the in-domain ones from the training set's."""
    seen = []
    fit = Baseline.fit

    def spy(self, train, val, ctx):
        seen.append({p: ctx.images.read(p).shape for p in train.paths})
        return fit(self, train, val, ctx)

    monkeypatch.setattr(Baseline, "fit", spy)
    p = cross_recipe(", adapt: {n_per_class: 2}, microns_per_pixel: 0.5")
    p.write_text(p.read_text().replace("image_size: 32,", "image_size: 32, microns_per_pixel: 1.0, "
                                       "target_microns_per_pixel: 1.0,").replace("pixels: 8}", "pixels: 8}\n"))
    monkeypatch.setattr("bmbench.data.images.ImageSource.read",
                        lambda self, path, data=None: self.decode(path, data))  # native size, after scaling
    run_recipe(p, tmp_path / "results")
    (shapes,) = seen
    lab_b = str(tmp_path / "lab_b")
    assert {s for q, s in shapes.items() if q.startswith(lab_b)} == {(32, 32, 3)}, "0.5 µm/px -> 1: halved"
    assert {s for q, s in shapes.items() if not q.startswith(lab_b)} == {(64, 64, 3)}
    info = read(next((tmp_path / "results" / "runs").iterdir()))
    assert info["adaptation"]["n_images"] == 6


def test_repeat_oversamples_the_drawn_images_only(cross_recipe, tmp_path, fits):
    run = run_recipe(cross_recipe(", adapt: {n_per_class: 2, repeat: 3}"), tmp_path / "results")
    (paths, _), = fits
    lab_b = str(tmp_path / "lab_b")
    drawn = [p for p in paths if p.startswith(lab_b)]
    assert len(drawn) == 18 and set(Counter(drawn).values()) == {3}
    assert len(paths) - len(drawn) == len(set(paths) - set(drawn)), "in-domain images once each"
    info = read(run)
    assert info["adaptation"]["from"][0]["repeat"] == 3 and info["n_train"] == len(set(paths))
    assert "+2/class of folder x3" in info["settings"]
    plain = load_recipe(cross_recipe(", adapt: {n_per_class: 2}"))
    assert "repeat" not in plain.to_dict()["evaluate"][0]["adapt"]
