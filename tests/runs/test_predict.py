import json

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

import bmbench
from bmbench.cli import main
from bmbench.data.imageio import read_rgb

# One tiny synthetic recipe per landed family; new families add an entry here.
FAMILY_RECIPES = {
    "baseline": "model: {family: baseline, pixels: 8}",
    "classical": "model: {family: classical, features: [shape, color], n_estimators: 60}",
    "cnn": "model: {family: cnn, depth: 2, width: 8}\ntrain: {epochs: 1, batch_size: 16}",
    "transfer": "model: {family: transfer, backbone: MobileNetV2, weights: none, fine_tune_layers: 2, "
                "fine_tune_epochs: 1}\ntrain: {epochs: 1, batch_size: 16}",
    "hybrid": "model: {family: hybrid, features: [shape], backbone: MobileNetV2, weights: none, "
              "n_estimators: 30}",
}


def write_recipe(tmp_path, family):
    p = tmp_path / f"{family}.yaml"
    p.write_text(f"name: p_{family}\ndataset: {{kind: synthetic, n_per_class: 12, render_size: 64, "
                 f"image_size: 32}}\nsplit: {{test: 0.25, val: 0.15}}\n{FAMILY_RECIPES[family]}\n")
    return p


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


def stored(run):
    preds = pd.read_csv(run / "predictions.csv")
    root = json.loads((run / "run.json").read_text())["dataset"]["root"]
    return preds, [f"{root}/{p}" for p in preds["path"]]


@pytest.mark.parametrize("family", [pytest.param(f, marks=pytest.mark.deep) if f in ("cnn", "transfer", "hybrid")
                                    else f for f in sorted(FAMILY_RECIPES)])
def test_predict_reproduces_the_stored_predictions(env, family):
    run = bmbench.run_recipe(write_recipe(env, family))
    preds, paths = stored(run)
    expected = preds.filter(like="p_").to_numpy()
    loaded = bmbench.load_run(run.name)
    assert loaded.classes == tuple(c[2:] for c in preds.filter(like="p_").columns)
    assert np.array_equal(loaded.predict_proba(paths), expected)
    assert (loaded.predict(paths) == preds["predicted_label"].to_numpy()).all()
    arrays = [read_rgb(p) for p in paths[:3]]
    assert np.array_equal(loaded.predict_proba(arrays), expected[:3])
    out = env / "cli.csv"
    res = CliRunner().invoke(main, ["predict", "latest", *paths, "--out", str(out), "-q", "--top-k", "3",
                                    "--digits", "0"])
    assert res.exit_code == 0, res.output
    cli = pd.read_csv(out)
    assert np.array_equal(cli.filter(like="p_").to_numpy(), expected)
    assert (cli["predicted_label"] == preds["predicted_label"]).all()
    assert list(cli.columns[:7]) == ["path", "predicted_label", "probability", "top2_label",
                                     "top2_probability", "top3_label", "top3_probability"]
    assert (cli["probability"] >= cli["top2_probability"]).all()
    assert (cli["top2_probability"] >= cli["top3_probability"]).all()
    CliRunner().invoke(main, ["predict", "latest", *paths, "--out", str(out), "-q"])
    short = pd.read_csv(out, dtype=str)
    mantissas = [v.split("e")[0].replace(".", "").lstrip("0") for v in short.filter(like="p_").values.ravel()]
    assert max(len(m) for m in mantissas) <= 6
    assert np.allclose(short.filter(like="p_").astype(float).to_numpy(), expected, rtol=1e-5, atol=1e-9)


def test_corrupt_image_is_reported_and_the_rest_predicted(env):
    run = bmbench.run_recipe(write_recipe(env, "baseline"))
    _, paths = stored(run)
    folder = env / "new images"
    (folder / "sub").mkdir(parents=True)
    for i, p in enumerate(paths[:4]):
        (folder / "sub" / f"cell {i}.png").write_bytes(open(p, "rb").read())
    (folder / "broken.png").write_bytes(b"\x89PNG truncated")
    out = env / "p.csv"
    res = CliRunner().invoke(main, ["predict", str(run), str(folder), "--out", str(out), "-q"])
    assert res.exit_code == 0, res.output
    assert "skipped" in res.output and "broken.png" in res.output
    skipped = [line for line in res.output.splitlines() if "broken.png" in line]
    assert len(skipped) == 1, res.output
    assert "on_bad_image" not in res.output and "cannot decode image" in skipped[0]
    assert len(pd.read_csv(out)) == 4
    only_bad = CliRunner().invoke(main, ["predict", str(run), str(folder / "broken.png"), "--out", str(out)])
    assert only_bad.exit_code == 2 and "no image could be predicted" in only_bad.output


def test_manifest_input_and_missing_input(env):
    run = bmbench.run_recipe(write_recipe(env, "baseline"))
    _, paths = stored(run)
    manifest = env / "m.csv"
    pd.DataFrame({"path": paths[:2]}).to_csv(manifest, index=False)
    out = env / "p.csv"
    assert CliRunner().invoke(main, ["predict", "latest", str(manifest), "--out", str(out)]).exit_code == 0
    assert len(pd.read_csv(out)) == 2
    res = CliRunner().invoke(main, ["predict", "latest", str(env / "nope.png"), "--out", str(out)])
    assert res.exit_code == 2 and "nope.png: no such file or folder" in res.output
    res = CliRunner().invoke(main, ["predict", "zzz-no-run", paths[0], "--out", str(out)])
    assert res.exit_code == 2 and "no run matches" in res.output


def test_kfold_run_predicts_with_the_mean_of_its_fold_models(env):
    run = bmbench.run_recipe(write_recipe(env, "baseline"), overrides=("split.folds=3",))
    loaded = bmbench.load_run(run).model  # the loaded models (bmbench.runs.predict.LoadedRun)
    assert len(loaded.models) == 3
    _, paths = stored(run)
    mean = np.mean([m.predict_proba(np.array(paths[:2]), loaded._context()) for m in loaded.models], axis=0)
    assert np.allclose(loaded.predict_proba(paths[:2]), mean)


def test_every_run_has_a_model_card(env):
    run = bmbench.run_recipe(write_recipe(env, "classical"))
    card = (run / "MODEL_CARD.md").read_text()
    for section in ("## Intended use", "Not for diagnosis", "## Data", "## Performance on the test images",
                    "| macro_f1 |", "## Known limitations", "synthetic images", "## Training settings",
                    json.loads((run / "run.json").read_text())["split_fingerprint"]):
        assert section in card


@pytest.mark.parametrize("family", ["classical", "cnn"])
def test_a_resampled_run_predicts_new_images_at_their_own_pixel_size(env, family):
    """Trained at 0.5 µm/px with one 40 µm field: new images at 0.25 µm/px (twice the
    pixels) give the stored probabilities once their pixel size is declared."""
    import cv2

    p = write_recipe(env, family)
    p.write_text(p.read_text().replace("image_size: 32}", "image_size: 32, microns_per_pixel: 0.5, "
                                       "target_microns_per_pixel: 0.5, field_um: 40}"))
    run = bmbench.run_recipe(p)
    preds, paths = stored(run)
    expected = preds.filter(like="p_").to_numpy()
    loaded = bmbench.load_run(run.name)
    assert np.array_equal(loaded.predict_proba(paths), expected)
    big = [cv2.resize(read_rgb(x), None, fx=2, fy=2, interpolation=cv2.INTER_CUBIC) for x in paths]
    loaded.set_pixel_size(0.25)
    agree = np.mean(loaded.predict_proba(big).argmax(axis=1) == expected.argmax(axis=1))
    assert agree >= 0.9


def test_a_model_needing_a_feature_this_bmbench_lacks_stops_with_one_line(env):
    run = bmbench.run_recipe(write_recipe(env, "classical"))
    meta_path = run / "model" / "classical.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"][1] = "shape_nucleus_gone"
    meta_path.write_text(json.dumps(meta))
    _, paths = stored(run)
    out = env / "p.csv"
    res = CliRunner().invoke(main, ["predict", str(run), paths[0], "--out", str(out)])
    assert res.exit_code == 2
    lines = res.output.strip().splitlines()
    assert len(lines) == 1, res.output
    message = lines[0]
    assert f"{run / 'model'}: the saved model uses 1 feature(s)" in message
    assert "(first: shape_nucleus_gone); re-run its recipe to retrain it" in message
    assert not out.exists()


def test_without_out_the_csv_goes_to_stdout_and_a_misspelt_run_gets_a_did_you_mean(env):
    from bmbench.runs.runner import run_recipe

    run = run_recipe(write_recipe(env, "baseline"), env / "results")
    _, paths = stored(run)
    res = CliRunner().invoke(main, ["predict", "p_baseline", *paths[:2], "-q"])
    assert res.exit_code == 0, res.output
    table = pd.read_csv(__import__("io").StringIO(res.stdout))
    assert len(table) == 2 and table.columns[0] == "path"
    assert "predicted 2 image(s), 0 skipped" in res.stderr
    dash = CliRunner().invoke(main, ["predict", "p_baseline", *paths[:2], "-q", "--out", "-"])
    assert dash.stdout == res.stdout
    typo = CliRunner().invoke(main, ["predict", "p_baselien", *paths[:2]])
    assert typo.exit_code == 2 and "(did you mean 'p_baseline'?)" in typo.output
    assert "--dataset" not in typo.output
