"""Model files are untrusted: every loader refuses crafted, truncated or damaged files with
one line naming the file, and a crafted skops file never runs its code (issue #30, part 1).

The exec case: a ``classifier.skops`` whose pipeline starts with FunctionTransformers over
numpy functions (``full_like`` -> ``take`` -> ``numpy.testing.measure``, which ``exec``s a
string). The loader of bmbench before this change trusted every ``numpy.``/``sklearn.``
type and ran the code on ``bmbench predict``; now only the exact types bmbench saves load.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.core.errors import BmbenchError
from bmbench.core.loaders import load_keras, skops_types
from bmbench.core.untrusted import DamagedFile
from bmbench.models.classifiers import CLASSIFIERS, ClassifierSettings, sklearn_classifier

RECIPES = {
    "baseline": "model: {family: baseline, pixels: 4}",
    "logistic": "model: {family: classical, features: [shape], classifier: logistic_regression}",
    "xgboost": "model: {family: classical, features: [shape], classifier: {name: xgboost, n_estimators: 4, "
               "early_stopping: 0}}",
}
DATASET = ("dataset: {kind: synthetic, n_per_class: 10, render_size: 64, image_size: 32}\n"
           "split: {test: 0.25, val: 0.1}\n")


def invoke(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    """One stored run per model kind (written once), a cache, and an image to predict."""
    root = tmp_path_factory.mktemp("store")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(root / "cache"))
        mp.setenv("BMBENCH_RESULTS", str(root / "results"))
        runs = {}
        for name, model in RECIPES.items():
            (root / f"{name}.yaml").write_text(f"name: {name}\n{DATASET}{model}\n")
            res = invoke("run", root / f"{name}.yaml", "-q")
            assert res.exit_code == 0, res.output
            runs[name] = Path(res.output.split()[0])
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / "cell.png")
    return {"root": root, "runs": runs, "image": root / "cell.png"}


@pytest.fixture
def env(store, tmp_path, monkeypatch):
    """A fresh results folder holding copies of the stored runs; the shared image cache."""
    monkeypatch.setenv("BMBENCH_CACHE", str(store["root"] / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    runs = {}
    for name, folder in store["runs"].items():
        runs[name] = tmp_path / "results" / "runs" / folder.name
        shutil.copytree(folder, runs[name])
    return {"runs": runs, "image": store["image"], "tmp": tmp_path, "cache": store["root"] / "cache"}


def tree_hash(folder: Path) -> str:
    digest = hashlib.sha256()
    for path in sorted(p for p in Path(folder).rglob("*") if p.is_file()):
        digest.update(str(path.relative_to(folder)).encode() + path.read_bytes())
    return digest.hexdigest()


# --- crafting files ---------------------------------------------------------------------------

def craft_exec(path: Path, marker: Path) -> None:
    """Rewrite the skops pipeline at ``path`` so that predicting with it writes ``marker``
    through numpy functions only (the types the old prefix rule trusted)."""
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    model = sio.load(path, trusted=sio.get_untrusted_types(file=path))
    code = f"open({str(marker)!r}, 'w').write('owned')"
    evil = [("a", FunctionTransformer(np.full_like, kw_args={"fill_value": code, "dtype": "U300"})),
            ("b", FunctionTransformer(np.take, kw_args={"indices": 0})),
            ("c", FunctionTransformer(np.testing.measure))]
    sio.dump(Pipeline(evil + list(model.steps)), path)
    assert {"numpy.testing._private.utils.measure", "numpy.take"} <= set(sio.get_untrusted_types(file=path))
    assert all(t.startswith(("sklearn.", "numpy.")) for t in sio.get_untrusted_types(file=path))


def rewrite_zip(path: Path, change) -> None:
    """Rewrite the zip at ``path`` with ``change(name, data) -> data`` applied to every
    member (CRCs stay consistent: the damage is in the content, not the container)."""
    members = {}
    with zipfile.ZipFile(path) as z:
        for name in z.namelist():
            members[name] = z.read(name)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in members.items():
            z.writestr(name, change(name, data))
    path.write_bytes(buf.getvalue())


def swap_class(old: str, module: str, cls: str):
    def change(name, data):
        if name != "schema.json":
            return data
        text = data.decode()
        assert f'"__class__": "{old}"' in text
        return text.replace(f'"__class__": "{old}"', f'"__class__": "{cls}"', 1).replace(
            '"__module__": "sklearn.linear_model._logistic"', f'"__module__": "{module}"', 1).encode()
    return change


def truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def npz(path: Path, **change) -> None:
    with np.load(path, allow_pickle=False) as z:
        arrays = dict(z)
    arrays.update(change)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    with open(path, "wb") as fh:
        np.savez(fh, **arrays)


def edit_json(path: Path, edit) -> None:
    value = json.loads(path.read_text())
    path.write_text(json.dumps(edit(value)))


# --- the exec case ----------------------------------------------------------------------------

def test_a_crafted_skops_file_never_runs_its_code_on_predict(env):
    run, marker = env["runs"]["logistic"], env["tmp"] / "MARKER"
    craft_exec(run / "model" / "classifier.skops", marker)
    before = tree_hash(run)
    out = env["tmp"] / "p.csv"
    out.write_text("previous\n")
    res = invoke("predict", run, env["image"], "--out", out)
    assert not marker.exists()
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert "classifier.skops" in lines[0] and "numpy.full_like" in lines[0] and "Traceback" not in res.output
    assert tree_hash(run) == before and out.read_text() == "previous\n"


def test_a_crafted_skops_file_never_runs_its_code_in_a_report(env):
    run, marker = env["runs"]["logistic"], env["tmp"] / "MARKER"
    craft_exec(run / "model" / "classifier.skops", marker)
    res = invoke("report", run, "--out", env["tmp"] / "report.html")
    assert not marker.exists()
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    html = (env["tmp"] / "report.html").read_text()
    assert "Explanations could not be computed" in html and "numpy.full_like" in html


@pytest.mark.parametrize("manifest", [True, False], ids=["with-manifest", "old-entry-without-manifest"])
def test_a_crafted_cached_fit_is_discarded_and_refitted_never_run(store, env, manifest):
    """The fit cache is as untrusted as a run folder: a crafted entry whose manifest
    matches its files (or an old entry without one) is thrown away and fitted again."""
    cache = env["tmp"] / "cache"
    shutil.copytree(env["cache"], cache)
    (entry,) = [p.parent for p in (cache / "fits").rglob("classifier.skops")]
    marker = env["tmp"] / "MARKER"
    craft_exec(entry / "classifier.skops", marker)
    digest = hashlib.sha256((entry / "classifier.skops").read_bytes()).hexdigest()
    if manifest:
        edit_json(entry / "manifest.json", lambda m: {**m, "classifier.skops": digest})
    else:
        (entry / "manifest.json").unlink()
    shutil.rmtree(entry / "proba", ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(cache))
        res = invoke("run", store["root"] / "logistic.yaml", "-q")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    assert not marker.exists()
    log = (Path(res.output.splitlines()[-1].split()[0]) / "run.log").read_text()
    assert "discarding a damaged cached fit" in log and "numpy.full_like" in log
    assert "numpy.full_like" not in skops_types(entry / "classifier.skops")  # replaced by the refit
    old = json.loads((store["runs"]["logistic"] / "metrics.json").read_text())["macro_f1"]
    assert f"macro_f1={old:.4f}" in res.output  # the same numbers as the first fit


def test_a_cached_fit_found_damaged_only_when_loaded_is_refitted(store, env):
    """An XGBoost entry whose manifest matches a file XGBoost refuses: reused lazily, it is
    discarded when its model is first needed and fitted again, with the same numbers."""
    cache = env["tmp"] / "cache"
    shutil.copytree(env["cache"], cache)
    # every entry: the run's fit and the cross-fits of its validation probabilities
    entries = [p.parent for p in (cache / "fits").rglob("xgboost.json")]
    bad = b'{"learner": {"gradient_booster": {"name": "gbtree"}}, "version": [3, 2, 0]}'
    for entry in entries:
        (entry / "xgboost.json").write_bytes(bad)
        edit_json(entry / "manifest.json", lambda m: {**m, "xgboost.json": hashlib.sha256(bad).hexdigest()})
        shutil.rmtree(entry / "proba", ignore_errors=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(cache))
        res = invoke("run", store["root"] / "xgboost.yaml", "-q")
    assert res.exit_code == 0 and "Traceback" not in res.output, res.output
    run = Path(res.output.splitlines()[-1].split()[0])
    assert "discarding a damaged cached fit" in (run / "run.log").read_text()
    old = json.loads((store["runs"]["xgboost"] / "metrics.json").read_text())["macro_f1"]
    assert f"macro_f1={old:.4f}" in res.output
    assert all((entry / "xgboost.json").read_bytes() != bad for entry in entries)


def test_a_cache_manifest_cannot_name_files_outside_its_entry(store, env):
    cache = env["tmp"] / "cache"
    shutil.copytree(env["cache"], cache)
    (entry,) = [p.parent for p in (cache / "fits").rglob("classifier.skops")]
    outside = env["tmp"] / "outside.txt"
    outside.write_text("secret")
    edit_json(entry / "manifest.json", lambda m: {**m, "../../../../outside.txt":
                                                   hashlib.sha256(b"secret").hexdigest()})
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BMBENCH_CACHE", str(cache))
        res = invoke("run", store["root"] / "logistic.yaml", "-q")
    assert res.exit_code == 0, res.output
    run = Path(res.output.splitlines()[-1].split()[0])
    assert "not a file of this entry" in (run / "run.log").read_text()
    assert sorted(p.name for p in (run / "model").iterdir()) == sorted(
        p.name for p in (store["runs"]["logistic"] / "model").iterdir())


# --- damaged and crafted model files through `bmbench predict` --------------------------------

CASES = [
    # (run, file in model/, damage, words in the one line)
    ("logistic", "classifier.skops", lambda p: rewrite_zip(p, swap_class("LogisticRegression", "subprocess", "Popen")),
     "subprocess.Popen"),
    ("logistic", "classifier.skops", lambda p: rewrite_zip(p, swap_class("LogisticRegression", "builtins", "eval")),
     "builtins.eval"),
    ("logistic", "classifier.skops", truncate, "truncated or not a skops file"),
    ("logistic", "classifier.skops", lambda p: rewrite_zip(p, lambda n, d: d[:-40] if n == "schema.json" else d),
     "is not valid JSON"),
    ("logistic", "classifier.skops", lambda p: rewrite_zip(p, lambda n, d: d if n == "schema.json" else d[::-1]),
     "cannot be loaded"),
    ("logistic", "classifier.skops", lambda p: rewrite_zip(
        p, lambda n, d: (b"[" * 100_000 + b"]" * 100_000) if n == "schema.json" else d), "classifier.skops"),
    ("logistic", "classifier.skops", lambda p: p.write_bytes(b"PK\x03\x04" + bytes(64)), "not a skops file"),
    ("logistic", "classical.json", lambda p: edit_json(p, lambda v: {**v, "feature_names": "area"}),
     "field 'feature_names'"),
    ("logistic", "classical.json", lambda p: edit_json(p, lambda v: {**v, "feature_names": v["feature_names"][:2]}),
     "names 2 features, but the classifier beside it takes"),
    ("xgboost", "classical.json", lambda p: edit_json(p, lambda v: {**v, "classes": v["classes"][:2]}),
     "names 2 classes, but the classifier beside it predicts"),
    ("xgboost", "xgboost.json", truncate, "not valid JSON"),
    ("xgboost", "xgboost.json", lambda p: p.write_text('{"weights": [1, 2, 3]}'), "not an XGBoost model"),
    ("xgboost", "xgboost.json", lambda p: edit_json(p, lambda v: {**v, "learner": {**v["learner"],
                                                                  "gradient_booster": {"name": "gbtree"}}}),
     "XGBoost cannot load it"),
    ("xgboost", "xgboost.json", lambda p: p.unlink(), "missing"),
    ("baseline", "baseline.npz", truncate, "baseline.npz"),
    ("baseline", "baseline.npz", lambda p: npz(p, coef=np.array([{"x": 1}], dtype=object)), "baseline.npz"),
    ("baseline", "baseline.npz", lambda p: npz(p, coef=np.zeros((3, 48))), "array 'coef'"),
    ("baseline", "baseline.npz", lambda p: npz(p, intercept=np.array([np.nan, 0, 0, 0])), "NaN"),
    ("baseline", "baseline.npz", lambda p: npz(p, mean=None), "expected ['coef', 'intercept', 'mean', 'scale']"),
    ("baseline", "baseline.npz", lambda p: npz(p, scale=np.zeros(48)), "holds zeros"),
    ("baseline", "baseline.json", lambda p: edit_json(p, lambda v: {**v, "pixels": "4"}), "field 'pixels'"),
    ("baseline", "baseline.json", lambda p: edit_json(p, lambda v: {**v, "classes": []}), "field 'classes'"),
    ("baseline", "baseline.json", lambda p: p.write_bytes(b"\xff\xfe{"), "baseline.json"),
]


@pytest.mark.parametrize("run, name, damage, words", CASES,
                         ids=[f"{c[0]}-{c[1]}-{i}" for i, c in enumerate(CASES)])
def test_a_damaged_model_file_is_one_line_naming_it(env, run, name, damage, words):
    folder = env["runs"][run]
    damage(folder / "model" / name)
    before = tree_hash(folder)
    out = env["tmp"] / "p.csv"
    out.write_text("previous\n")
    res = invoke("predict", folder, env["image"], "--out", out)
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert name in lines[0] and words in lines[0] and "Traceback" not in res.output, lines[0]
    assert tree_hash(folder) == before and out.read_text() == "previous\n"


def test_the_undamaged_copies_still_predict(env):
    """The cases above fail because of their damage: the same runs load and predict."""
    for folder in env["runs"].values():
        res = invoke("predict", folder, env["image"], "--out", env["tmp"] / "p.csv")
        assert res.exit_code == 0, res.output


# --- the contract: what each classifier saves is what it trusts -------------------------------

def _tiny(n_classes: int, d: int, seed: int):
    rng = np.random.default_rng(seed)
    y = np.arange(12 * n_classes) % n_classes
    x = rng.normal(size=(len(y), d)) + y[:, None]
    x[0, 1] = np.nan
    return x, y


def _options(entry):
    small = {"n_estimators": 5}
    names = {f.name for f in dataclasses.fields(entry.Options)}
    return entry.Options(**{k: v for k, v in small.items() if k in names})


@pytest.mark.parametrize("name", CLASSIFIERS.names())
@pytest.mark.parametrize("n_classes, d", [(2, 3), (3, 30)])
def test_every_classifier_saves_only_types_it_trusts_and_loads_them_back(tmp_path, name, n_classes, d):
    """Every registered classifier (plug-ins included): fit on tiny data, save, and the
    saved file holds only its declared types; loading through the safe loader gives the
    same probabilities."""
    entry = CLASSIFIERS.get(name)
    x, y = _tiny(n_classes, d, seed=n_classes)
    fitted = entry.fit(_options(entry), ClassifierSettings(0, 1), x, y, np.ones(len(y)), None, None, n_classes)
    entry.save(fitted, tmp_path)
    skops_file = tmp_path / "classifier.skops"
    if skops_file.exists():
        types = skops_types(skops_file)
        assert types <= entry.trusted, f"{name} saves undeclared types {sorted(types - entry.trusted)}"
        assert not any(t.startswith(("numpy.testing", "builtins.eval", "builtins.exec")) for t in entry.trusted)
    entry.verify(tmp_path)
    again = entry.load(tmp_path)
    rows = ~np.isnan(x).any(axis=1)
    np.testing.assert_allclose(again.predict_proba(x[rows]), fitted.predict_proba(x[rows]))


def test_a_plug_in_that_does_not_declare_its_types_fails_when_saving(tmp_path):
    def build(options, settings):
        from sklearn.tree import DecisionTreeClassifier
        return DecisionTreeClassifier(random_state=0)

    entry = sklearn_classifier("tree", "a tree", build)
    x, y = _tiny(2, 3, 0)
    fitted = entry.fit(entry.Options(), ClassifierSettings(0, 1), x, y, np.ones(len(y)), None, None, 2)
    with pytest.raises(BmbenchError, match=r"sklearn.tree._classes.DecisionTreeClassifier.*trusted="):
        entry.save(fitted, tmp_path)


# --- Keras ------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def keras_file(tmp_path_factory):
    keras = pytest.importorskip("keras")
    inputs = keras.Input((4,))
    model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(inputs))
    path = tmp_path_factory.mktemp("keras") / "model.keras"
    model.save(path)
    lam = keras.Model(inputs, keras.layers.Lambda(lambda t: t * 2)(inputs))
    lam.save(path.with_name("lambda.keras"))
    return path


@pytest.mark.parametrize("damage, words", [
    (truncate, "not a zip archive"),
    (lambda p: rewrite_zip(p, lambda n, d: d[:len(d) // 2] if n.endswith(".h5") else d), "Keras cannot load it"),
    (lambda p: rewrite_zip(p, lambda n, d: b"{" if n == "config.json" else d), "Keras cannot load it"),
    (lambda p: shutil.copyfile(p.with_name("lambda.keras"), p), "Keras cannot load it"),
], ids=["truncated", "weights-cut", "config-broken", "lambda-layer"])
def test_a_damaged_keras_file_is_one_line_naming_it(keras_file, tmp_path, damage, words):
    path = tmp_path / "model.keras"
    shutil.copyfile(keras_file, path)
    shutil.copyfile(keras_file.with_name("lambda.keras"), tmp_path / "lambda.keras")
    assert load_keras(path) is not None
    damage(path)
    with pytest.raises(DamagedFile) as caught:
        load_keras(path)
    line = str(caught.value)
    assert "\n" not in line and str(path) in line and words in line


def as_cnn_run(folder: Path, model_json: dict, keras_bytes: bytes, name: str = "model.keras") -> None:
    """Turn a stored run into a ``cnn`` run whose ``model/`` holds ``model.json`` and a
    ``.keras`` file of the given bytes (a shared run folder can hold anything)."""
    import yaml

    recipe = yaml.safe_load((folder / "recipe.yaml").read_text())
    recipe["model"] = {"family": "cnn"}
    (folder / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    for path in (folder / "model").iterdir():
        path.unlink()
    (folder / "model" / "model.json").write_text(json.dumps(model_json))
    (folder / "model" / name).write_bytes(keras_bytes)


KERAS_META = {"classes": ["blast", "lymphocyte", "monocyte", "neutrophil"], "image_size": 32, "backbone": None}


@pytest.mark.parametrize("meta, data, words, name", [
    (KERAS_META, b"PK\x03\x04" + bytes(100), "not a zip archive", "model.keras"),
    ({**KERAS_META, "image_size": "32"}, b"", "field 'image_size'", "model.json"),
    ({**KERAS_META, "frozen_backbone": {"weights": "imagenet"}}, b"", "lacks the field", "model.json"),
], ids=["truncated-keras", "model-json-type", "model-json-frozen"])
def test_a_damaged_keras_run_is_one_line_naming_the_file(env, meta, data, words, name):
    folder = env["runs"]["baseline"]
    as_cnn_run(folder, meta, data)
    before = tree_hash(folder)
    res = invoke("predict", folder, env["image"], "--out", env["tmp"] / "p.csv")
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 2 and len(lines) == 1 and lines[0].startswith("Error: "), res.output
    assert name in lines[0] and words in lines[0] and "Traceback" not in res.output, lines[0]
    assert tree_hash(folder) == before and not (env["tmp"] / "p.csv").exists()
