"""Transductive adaptation (evaluate[i].adapt.transductive, predict --adapt-on): the model adapts
to the statistics of unlabelled target images, never their labels."""

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from PIL import Image

from bmbench.models.alignment import FeatureStats, fit_alignment
from bmbench.runs.runner import run_recipe

RECIPE = """name: shifted_{mode}
dataset: {{kind: folder, root: {a}, image_size: 32,
          label_map: {{lymphocyte: LYT, neutrophil: NGS, blast: BLA, monocyte: null}}}}
evaluate:
  - {{kind: manifest, root: {manifest}, adapt: {{transductive: {mode}}}}}
model: {{family: {family}}}
train: {{epochs: 2, batch_size: 8}}
"""


def read(path):
    return json.loads(path.read_text())


# --- feature alignment -----------------------------------------------------------------------

def _source(n=300, d=5, seed=0):
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(d, d))
    return rng.normal(size=(n, d)) @ mix * np.arange(1, d + 1) + np.arange(d)


def test_standardize_maps_an_affine_lab_shift_back_exactly():
    xs = _source()
    stats = FeatureStats.of(xs)
    xt = xs * np.array([2.0, 0.5, 3.0, 1.0, 0.1]) + np.array([5.0, -1.0, 0.0, 100.0, 2.0])
    for mode in ("standardize", "coral"):  # equal correlations: CORAL is standardisation
        np.testing.assert_allclose(fit_alignment(xt, stats, mode)(xt), xs, rtol=1e-4, atol=1e-3)


def test_coral_recolours_the_target_covariance_with_the_source_one():
    xs, xt = _source(seed=0), _source(seed=1) * 3 + 1
    source = FeatureStats.of(xs)
    a = fit_alignment(xt, source, "coral")
    eye = np.eye(5)
    target = FeatureStats.of(xt)
    # (Ct + I)^-1/2 (Cs + I)^1/2 carries Ct + I onto Cs + I (Sun et al. 2016, identity-regularised)
    np.testing.assert_allclose(a.transform.T @ (target.corr + eye) @ a.transform, source.corr + eye, atol=1e-8)
    assert not np.allclose(a(xt), fit_alignment(xt, source, "standardize")(xt), atol=1e-3)


def test_missing_values_and_unreadable_rows_stay_missing():
    xs = _source()
    xt = _source(seed=2)
    xt[3] = np.nan
    xt[5, 1] = np.nan
    for mode in ("standardize", "coral"):
        out = fit_alignment(xt, FeatureStats.of(xs), mode)(xt)
        assert np.isnan(out[3]).all() and np.isnan(out[5, 1]) and np.isfinite(np.delete(out, 3, 0)[:, [0, 2, 3, 4]]).all()


def test_constant_columns_keep_their_training_value():
    xs, xt = _source(), _source(seed=3)
    xs[:, 2], xt[:, 4] = 7.0, 1.0
    out = fit_alignment(xt, FeatureStats.of(xs), "coral")(xt)
    assert np.allclose(out[:, 2], 7.0, atol=1e-4) and np.isfinite(out).all()


# --- AdaBN ----------------------------------------------------------------------------------

def _context(images):
    from bmbench.data.images import ImageSet

    def load_images(paths, label="", size=None):
        return ImageSet(images, np.ones(len(images), bool), tuple(map(str, range(len(images)))), "k")

    return SimpleNamespace(load_images=load_images, train=SimpleNamespace(batch_size=8), tta=())


def test_adabn_sets_batchnorm_statistics_to_the_target_images_and_keeps_the_original():
    import keras

    from bmbench.models.families.cnn import build_cnn
    from bmbench.models.keras_model import KerasClassifier

    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (20, 16, 16, 3)).astype(np.uint8)
    shifted = np.clip(images * 0.5 + 100, 0, 255).astype(np.uint8)
    model = KerasClassifier(("a", "b"), build_cnn(16, 2, depth=2, width=4), 16)
    before = model.model.get_layer("block1_bn1").moving_mean.numpy().copy()
    paths = np.array([f"{i}.png" for i in range(20)])
    adapted = model.adapted(paths, _context(shifted), "adabn")
    assert adapted.model is not model.model
    np.testing.assert_array_equal(model.model.get_layer("block1_bn1").moving_mean.numpy(), before)
    # the first BatchNorm sees the first convolution's output: its statistics over the target images
    conv = keras.Model(model.model.input, model.model.get_layer("block1_conv1").output)
    out = np.asarray(conv(shifted.astype(np.float32)), np.float64).reshape(-1, 4)
    bn = adapted.model.get_layer("block1_bn1")
    np.testing.assert_allclose(bn.moving_mean.numpy(), out.mean(axis=0), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(bn.moving_variance.numpy(), out.var(axis=0), rtol=1e-3, atol=1e-5)
    assert adapted.details()["transductive"] == {"mode": "adabn", "n_images": 20, "batchnorm_layers": 4}
    on_original = model.adapted(paths, _context(images), "adabn").predict_proba(paths, _context(shifted))
    assert not np.allclose(adapted.predict_proba(paths, _context(shifted)), on_original)


def test_adabn_reaches_the_frozen_batchnorm_layers_of_a_nested_backbone():
    import keras

    from bmbench.deep.adabn import layers_of
    from bmbench.models.keras_model import KerasClassifier

    net = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(32, 32, 3))
    net.trainable = False
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Dropout(0.3)(keras.layers.GlobalAveragePooling2D()(net(inputs, training=False)))
    model = KerasClassifier(("a", "b"), keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(x)), 32,
                            "MobileNetV2")
    images = np.random.default_rng(0).integers(0, 256, (10, 32, 32, 3)).astype(np.uint8)
    adapted = model.adapted(np.array(list("abcdefghij")), _context(images), "adabn")
    old, new = (layers_of(m, keras.layers.BatchNormalization) for m in (model.model, adapted.model))
    assert len(new) == 52 and adapted.details()["transductive"]["batchnorm_layers"] == 52
    assert all(np.all(o.moving_mean.numpy() == 0) for o in old), "the original keeps its statistics"
    assert all(not np.allclose(n.moving_mean.numpy(), 0) for n in new[:3]) and not any(n.trainable for n in new)


def test_adabn_refuses_a_network_without_batchnorm():
    from bmbench.core.errors import BmbenchError
    from bmbench.models.families.cnn import build_cnn
    from bmbench.models.keras_model import KerasClassifier

    model = KerasClassifier(("a", "b"), build_cnn(16, 2, depth=1, width=4, norm="group", norm_groups=2), 16)
    images = np.zeros((4, 16, 16, 3), np.uint8)
    with pytest.raises(BmbenchError, match="transductive adabn: .* has no BatchNormalization layers"):
        model.adapted(np.array(["a"] * 4), _context(images), "adabn")


# --- runs ------------------------------------------------------------------------------------

@pytest.fixture
def shifted_lab(tmp_path, monkeypatch):
    """``(lab A, manifest)``: lab A (synthetic) and a colour-shifted other lab whose manifest
    ``labels.csv`` (and ``shuffled.csv``, the same images with their labels permuted) sits in it."""
    from bmbench.data.synthetic import generate

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    a = generate(tmp_path / "lab_a", 12, seed=1, size=64)
    b = generate(tmp_path / "lab_b_raw", 8, seed=2, size=64, classes=("blast", "lymphocyte", "neutrophil"))
    rows = []
    for path in sorted(b.rglob("*.png")):
        name = {"blast": "BLA", "lymphocyte": "LYT", "neutrophil": "NGS"}[path.parent.name]
        out = tmp_path / "lab_b" / name / path.name
        out.parent.mkdir(parents=True, exist_ok=True)
        pixels = np.asarray(Image.open(path).convert("RGB"), np.float64)
        Image.fromarray(np.clip(pixels * [0.6, 0.8, 1.0] + [70, 30, 0], 0, 255).astype(np.uint8)).save(out)
        rows.append({"path": f"{name}/{path.name}", "label": name})
    frame = pd.DataFrame(rows)
    frame.to_csv(tmp_path / "lab_b" / "labels.csv", index=False)
    frame.assign(label=np.random.default_rng(0).permutation(frame["label"].to_numpy())).to_csv(
        tmp_path / "lab_b" / "shuffled.csv", index=False)
    return a, tmp_path / "lab_b" / "labels.csv"


def _run(tmp_path, a, manifest, mode, family="classical", extra=()):
    recipe = tmp_path / f"{family}_{mode}_{manifest.stem}.yaml"
    recipe.write_text(RECIPE.format(a=a, manifest=manifest, mode=mode, family=family))
    return run_recipe(recipe, tmp_path / "results", ("model.n_estimators=30",) * (family == "classical") + extra)


def _proba(run):
    frame = pd.read_csv(run / "evaluations" / "0-manifest" / "predictions.csv").set_index("path").sort_index()
    return frame[[c for c in frame if c.startswith("p_")]]


def test_tabular_alignment_changes_target_predictions_reads_no_label_and_is_recorded(shifted_lab, tmp_path):
    from bmbench.runs.store import list_runs
    from bmbench.views.leaderboard import build_boards

    a, manifest = shifted_lab
    plain = _run(tmp_path, a, manifest, "none")
    coral = _run(tmp_path, a, manifest, "coral")
    shuffled = _run(tmp_path, a, manifest.with_name("shuffled.csv"), "coral")
    standardize = _run(tmp_path, a, manifest, "standardize")
    assert not np.allclose(_proba(coral), _proba(plain)) and not np.allclose(_proba(standardize), _proba(plain))
    pd.testing.assert_frame_equal(_proba(shuffled), _proba(coral)), "labels permuted, same predictions"
    for run in (coral, standardize):
        in_domain = [pd.read_csv(r / "predictions.csv") for r in (plain, run)]
        pd.testing.assert_frame_equal(*in_domain), "the run's own test images: the model as trained"
    info = read(coral / "evaluations" / "0-manifest" / "run.json")
    assert info["transductive"]["mode"] == "coral" and info["transductive"]["labels_read"] is False
    assert info["transductive"]["models"] == [{"mode": "coral", "n_images": 24, "n_features": info["model"]["n_features"]}]
    assert info["settings"].startswith("transductive coral, ")
    assert read(coral / "run.json")["evaluations"][0]["transductive"] == "coral"
    assert "transductive" not in read(plain / "run.json")["evaluations"][0]
    assert "transductive" not in read(coral / "run.json")["settings"], "the in-domain row is not transductive"
    assert read(plain / "evaluations" / "0-manifest" / "run.json")["split_fingerprint"] == info["split_fingerprint"]
    board = [b for b in build_boards(list_runs(tmp_path / "results")) if "tested on manifest" in b.title
             and "shuffled" not in b.title][0]
    settings = {row["recipe"]: row["settings"] for _, row in board.rows.iterrows()}
    assert settings["shifted_coral"].startswith("transductive coral") and "transductive" not in settings["shifted_none"]


def test_predict_adapt_on_a_folder_matches_the_evaluation_and_says_so(shifted_lab, tmp_path):
    from bmbench.cli import main

    a, manifest = shifted_lab
    run = _run(tmp_path, a, manifest, "coral")
    out = tmp_path / "pred.csv"
    folder = manifest.parent
    result = CliRunner().invoke(main, ["predict", str(run), str(folder), "--out", str(out), "--adapt-on", str(folder),
                                       "--adapt-mode", "coral", "--digits", "0"])
    assert result.exit_code == 0, result.output
    assert f"transductive: adapted with coral to 24 unlabelled images of {folder}" in result.output
    written = pd.read_csv(out)
    assert (written["transductive"] == f"coral on 24 unlabelled images of {folder}").all()
    mine = written.assign(path=[p[len(str(folder)) + 1:] for p in written["path"]]).set_index("path").sort_index()
    np.testing.assert_allclose(mine[_proba(run).columns].to_numpy(), _proba(run).to_numpy(), rtol=1e-6)
    plain = CliRunner().invoke(main, ["predict", str(run), str(folder), "--out", str(tmp_path / "plain.csv")])
    assert plain.exit_code == 0 and "transductive" not in pd.read_csv(tmp_path / "plain.csv")
    bad = CliRunner().invoke(main, ["predict", str(run), str(folder), "--out", str(out), "--adapt-on", str(folder),
                                    "--adapt-mode", "adabn"])
    assert bad.exit_code != 0 and "--adapt-mode adabn: family classical adapts with standardize, coral" in bad.output


def test_cnn_adabn_evaluation_adapts_a_copy_and_predict_adapts_the_same_way(shifted_lab, tmp_path):
    from bmbench.runs.predict import load_run

    a, manifest = shifted_lab
    run = _run(tmp_path, a, manifest, "adabn", "cnn", ("model.depth=2", "model.width=8"))
    info = read(run / "evaluations" / "0-manifest" / "run.json")
    assert info["transductive"]["models"] == [{"mode": "adabn", "n_images": 24, "batchnorm_layers": 4}]
    assert info["settings"].startswith("transductive adabn")
    loaded = load_run(run)
    own = pd.read_csv(run / "predictions.csv")
    p_cols = [c for c in own if c.startswith("p_")]
    root = Path(read(run / "run.json")["dataset"]["root"])
    np.testing.assert_allclose(loaded.predict_proba([str(root / p) for p in own["path"]]), own[p_cols].to_numpy(),
                               rtol=1e-5, atol=1e-6), "the stored model has the trained statistics"
    target = _proba(run)
    paths = [str(manifest.parent / p) for p in target.index]
    assert not np.allclose(loaded.predict_proba(paths), target.to_numpy(), atol=1e-4)
    assert loaded.adapt(manifest.parent) == {"mode": "adabn", "folder": str(manifest.parent), "n_images": 24}
    np.testing.assert_allclose(loaded.predict_proba(paths), target.to_numpy(), rtol=1e-4, atol=1e-5)


def test_missing_or_damaged_feature_statistics_are_one_line(shifted_lab, tmp_path):
    from bmbench.cli import main

    a, manifest = shifted_lab
    run = _run(tmp_path, a, manifest, "none")
    stats = run / "model" / "feature_stats.npz"
    args = ["predict", str(run), str(manifest.parent), "--out", str(tmp_path / "p.csv"), "--adapt-on",
            str(manifest.parent)]
    stats.write_bytes(stats.read_bytes()[:100])
    damaged = CliRunner().invoke(main, args)
    assert damaged.exit_code == 2 and damaged.output.count("\n") == 1 and "feature_stats.npz" in damaged.output
    stats.unlink()
    missing = CliRunner().invoke(main, args)
    assert missing.exit_code == 2 and "saved without the statistics of its training features" in missing.output
    assert not (tmp_path / "p.csv").exists()


def test_ablation_tables_say_which_variants_were_transductive(cross_recipe, tmp_path):
    from bmbench.cli import main
    from bmbench.views.ablation import build_report

    results = tmp_path / "results"
    result = CliRunner().invoke(main, ["ablate", str(cross_recipe()), "--vary",
                                       "evaluate.0.adapt.transductive=none,standardize", "--set",
                                       "model.family=classical", "--set", "model.n_estimators=20", "--id", "td",
                                       "--results-dir", str(results), "-q"])
    assert result.exit_code == 0, result.output
    table = build_report(results, "td", n_resamples=20).evaluations["tested on folder"].set_index("variant")
    assert table["transductive"].to_dict() == {"base": "", "transductive=standardize": "standardize"}
    summary = (results / "ablations" / "td" / "summary.md").read_text()
    assert "| variant | transductive | n_train |" in summary, "the axis names the mode, once"
    assert "| transductive=standardize | standardize |" in summary
    fixed = CliRunner().invoke(main, ["ablate", str(cross_recipe(", adapt: {transductive: coral}")), "--vary",
                                      "model.n_estimators=20,30", "--set", "model.family=classical", "--id", "fixed",
                                      "--results-dir", str(results), "-q"])
    assert fixed.exit_code == 0, fixed.output
    assert "| variant | n_estimators | transductive | n_train |" in \
        (results / "ablations" / "fixed" / "summary.md").read_text(), "a column where no axis says it"
