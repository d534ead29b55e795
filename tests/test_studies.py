"""Every recipe of recipes/studies/ runs end to end through the CLI on tiny generated cells
written in its study's own folder layout and file names (1 epoch, the smallest input size
the backbone accepts): the layouts, ID files and label maps the studies use are proven."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from click.testing import CliRunner

from bmbench.cli import main
from bmbench.data.synthetic import SYNTHETIC_CLASSES, render_cell

REPO = Path(__file__).resolve().parents[1]
STUDIES = REPO / "recipes" / "studies"
FAST = ("train.epochs=1", "train.batch_size=8", "train.patience=1")


def write_cells(root: Path, files_by_class: dict[str, list[str]], size: int = 32) -> Path:
    """Draw one synthetic cell per relpath (format from the suffix). Study classes take the
    synthetic classes in turn, so every class has its own morphology."""
    from PIL import Image

    for i, (label, files) in enumerate(files_by_class.items()):
        drawn = SYNTHETIC_CLASSES[i % len(SYNTHETIC_CLASSES)]
        for j, rel in enumerate(files):
            path = root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            cell = render_cell(drawn, np.random.default_rng([i, j]), size)
            Image.fromarray(cell.image).save(path)
    return root


@pytest.fixture
def cli(tmp_path, monkeypatch):
    """``cli(recipe, *overrides)`` -> (run folder, metrics, run.json) after ``bmbench run``."""
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    results = tmp_path / "results"

    def run(recipe: str, *overrides: str):
        args = ["run", str(STUDIES / recipe), "--results-dir", str(results), "-q"]
        for o in (*FAST, *overrides):
            args += ["--set", o]
        res = CliRunner().invoke(main, args, catch_exceptions=False)
        assert res.exit_code == 0, res.output
        folder = Path(next(line for line in res.output.splitlines() if "  macro_f1=" in line).split()[0])
        return (folder, json.loads((folder / "metrics.json").read_text()),
                json.loads((folder / "run.json").read_text()), res.output)

    return run


# --- 1. Pandolfi: Matek 2021 BLA/EBO/MMZ/NGS, images_IDs.txt, EfficientNetB3 from scratch ---

BM4 = ("BLA", "EBO", "MMZ", "NGS")


@pytest.fixture
def bm4_tree(tmp_path):
    """A Matek tree with 0001-1000 and 2001-3000 folders and a small ID file in the format of
    images_IDs.txt (5 train/val and 2 test images listed per class, one more of each not)."""
    ids = ["For train_set and val_set:"]
    for c in BM4:
        ids += [f"    folder {c}", "    subfolder 0001-1000", f"    {c}_00001.jpg - {c}_00005.jpg"]
    ids.append("For test_set:")
    for c in BM4:
        ids += [f"    folder {c}", "    subfolder 2001-3000", f"    {c}_02001.jpg - {c}_02002.jpg"]
    (tmp_path / "ids.txt").write_text("\n".join(ids) + "\n")
    files = {c: [f"{c}/0001-1000/{c}_{n:05d}.jpg" for n in range(1, 7)]
             + [f"{c}/2001-3000/{c}_{n:05d}.jpg" for n in (2001, 2002, 2003)] for c in BM4}
    write_cells(tmp_path / "bone_marrow_cell_dataset", files)
    return (f"dataset.root={tmp_path}", f"dataset.ids={tmp_path / 'ids.txt'}", "dataset.image_size=32")


def assert_bm4_protocol(metrics, info):
    assert info["dataset"]["classes"] == list(BM4)
    assert info["split"]["strategy"] == "predefined"
    assert metrics["n"] == 8 and info["n_train"] + info["n_val"] == 20  # unlisted files left out


def test_bm4_recipe_reads_the_ids_file_layout(bm4_tree, cli):
    _, metrics, info, _ = cli("bm4_efficientnetb3.yaml", *bm4_tree, "model.family=baseline", "model.pixels=8")
    assert_bm4_protocol(metrics, info)


@pytest.mark.slow
def test_bm4_efficientnetb3_from_scratch_end_to_end(bm4_tree, cli):
    _, metrics, info, _ = cli("bm4_efficientnetb3.yaml", *bm4_tree)
    assert_bm4_protocol(metrics, info)
    assert info["settings"].endswith("EfficientNetB3 from scratch")


# --- 2. Kaggle: Matek 2021, 21 classes, conv/max-pool CNN with dense + dropout head ---------

def test_bm21_kaggle_cnn_on_the_matek_layout(tmp_path, cli):
    classes = ("ABE", "BLA", "EBO", "NGS")
    write_cells(tmp_path, {c: [f"{c}/0001-1000/{c}_{n:05d}.jpg" for n in range(1, 9)] for c in classes})
    folder, metrics, info, _ = cli("bm21_kaggle_cnn.yaml", f"dataset.root={tmp_path}",
                                   "dataset.image_size=32", "model.depth=2")
    assert info["dataset"]["classes"] == list(classes)
    assert metrics["n"] == info["n_test"] == 7 and "dense 256-128" in info["settings"]
    import keras

    layers = [layer.name for layer in keras.saving.load_model(folder / "model" / "model.keras", compile=False).layers]
    assert [n for n in layers if n.startswith("dense")] == ["dense1", "dense1_dropout", "dense2", "dense2_dropout"]


# --- 3. Leukopy: PBC 8 and 11, Raabin-WBC, AML 2019, PBC + Raabin merged ---------------------

PBC = {"basophil": ["BA"], "eosinophil": ["EO"], "erythroblast": ["ERB"], "ig": ["MY", "MMY", "PMY"],
       "lymphocyte": ["LY"], "monocyte": ["MO"], "neutrophil": ["SNE", "BNE"], "platelet": ["PLATELET"]}


def write_pbc(root: Path, per_prefix: int = 10) -> Path:
    return write_cells(root / "PBC_dataset_normal_DIB", {
        f"{folder}:{p}": [f"{folder}/{p}_{100 * i + n}.jpg" for n in range(per_prefix)]
        for i, (folder, prefixes) in enumerate(PBC.items()) for p in prefixes})


def write_raabin(root: Path) -> Path:
    classes = ("Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil")
    return write_cells(root, {c: [f"{part}/{c}/{c[:2]}_{part}_{n}.jpg" for part, k in (("Train", 5), ("TestA", 2))
                                  for n in range(k)] for c in classes})


@pytest.mark.parametrize("recipe, n_classes", [("leukopy_pbc8.yaml", 8), ("leukopy_pbc11.yaml", 11)])
def test_leukopy_pbc_8_and_11_classes(tmp_path, cli, recipe, n_classes):
    write_pbc(tmp_path)
    _, metrics, info, _ = cli(recipe, f"dataset.root={tmp_path}", "dataset.image_size=32",
                              "model.weights=none", "model.backbone=VGG16")
    assert len(info["dataset"]["classes"]) == n_classes
    if n_classes == 11:
        assert {"band_neutrophil", "segmented_neutrophil", "myelocyte", "metamyelocyte",
                "promyelocyte", "platelet"} <= set(info["dataset"]["classes"])
    assert info["dataset"]["n_images"] == 11 * 10 and metrics["n"] == info["n_test"] == 22


def test_leukopy_raabin_train_to_testa(tmp_path, cli):
    write_raabin(tmp_path)
    _, metrics, info, _ = cli("leukopy_raabin.yaml", f"dataset.root={tmp_path}", "dataset.image_size=32",
                              "model.weights=none", "model.backbone=VGG16")
    assert info["dataset"]["classes"] == ["Basophil", "Eosinophil", "Lymphocyte", "Monocyte", "Neutrophil"]
    assert metrics["n"] == 10 and info["split"]["strategy"] == "predefined"


def test_leukopy_aml_15_class_tiff_layout(tmp_path, cli):
    from bmbench.data.layouts import AML_CLASSES

    codes = [c for c, _ in AML_CLASSES]
    write_cells(tmp_path / "AML-Cytomorphology_LMU", {c: [f"{c}/{c}_{n:04d}.tiff" for n in range(12)] for c in codes})
    _, metrics, info, _ = cli("leukopy_aml.yaml", f"dataset.root={tmp_path}", "dataset.image_size=32",
                              "model.weights=none", "model.backbone=VGG16")
    assert info["dataset"]["classes"] == codes and metrics["n"] == 36


def test_leukopy_pbc_raabin_merges_classes_named_alike(tmp_path, cli):
    write_pbc(tmp_path / "pbc")
    write_raabin(tmp_path / "raabin")
    _, metrics, info, _ = cli("leukopy_pbc_raabin.yaml", f"dataset.parts.0.root={tmp_path / 'pbc'}",
                              f"dataset.parts.1.root={tmp_path / 'raabin'}", "dataset.image_size=32",
                              "model.weights=none", "model.backbone=VGG16")
    counts = info["dataset"]["class_counts"]
    assert sorted(counts) == ["BA", "BNE", "EO", "ERB", "LY", "MMY", "MO", "MY", "PLT", "PMY", "SNE"]
    # PBC's 10 per prefix, plus Raabin's 7 of each shared class; Raabin's neutrophils left out
    assert counts["BA"] == counts["EO"] == counts["LY"] == counts["MO"] == 10 + 7
    assert counts["SNE"] == counts["BNE"] == counts["PLT"] == 10
    assert info["dataset"]["n_images"] == 11 * 10 + 4 * 7
    assert info["split"]["strategy"] == "stratified"


# --- 4. C-NMC 2019: fold_0..2, patient-grouped folds, binary scores of ALL -------------------

def test_cnmc_grouped_folds_and_binary_scores(tmp_path, cli):
    files: dict[str, list[str]] = {"all": [], "hem": []}
    for p in range(9):
        fold = f"fold_{p % 3}"
        files["all"] += [f"{fold}/all/UID_{p + 1}_{n}_1_all.bmp" for n in range(3)]
        files["hem"] += [f"{fold}/hem/UID_H{p + 1}_{n}_1_hem.bmp" for n in range(3)]
    write_cells(tmp_path / "C-NMC_training_data", files)
    folder, metrics, info, output = cli("cnmc_all_vs_hem.yaml", f"dataset.root={tmp_path}",
                                        "dataset.image_size=32", "model.weights=none",
                                        "model.backbone=VGG16")
    assert info["n_folds"] == 3 and info["split"]["strategy"] == "grouped"
    split = json.loads((folder.parents[1] / "splits" / f"{info['split_fingerprint']}.json").read_text())
    for fold in split["folds"]:
        def patients(part):
            return {Path(p).name.split("_")[1] for p in fold[part]}
        assert not patients("test") & (patients("train") | patients("val"))
    b = metrics["binary"]
    assert b["positive_class"] == "all" and b["n_positive"] == 27 and b["n_negative"] == 27
    assert b["tp"] + b["fn"] == 27 and b["sensitivity"] == b["tp"] / 27
    assert all("binary" in f for f in metrics["folds"])
    assert "all vs rest: sensitivity=" in output
    assert "`all` against the rest" in (folder / "MODEL_CARD.md").read_text()


# --- 5. Leukocyte transfer vs scratch: 8 backbones x 2, one ablation file, dask backend ------

ABLATION = STUDIES / "ablations" / "leukocyte4_transfer_vs_scratch.yaml"


def test_transfer_vs_scratch_ablation_lists_the_studys_16_runs():
    res = CliRunner().invoke(main, ["ablate", str(ABLATION), "--dry-run"], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "16 variant(s) x 1 repeat(s) = 16 run(s), all valid" in res.output
    for backbone in ("ResNet50", "VGG16", "VGG19", "InceptionV3", "Xception", "DenseNet121",
                     "DenseNet169", "DenseNet201"):
        for setting in ("transfer", "scratch"):
            assert f"{setting}, backbone={backbone}" in res.output


@pytest.mark.slow
def test_transfer_vs_scratch_ablation_runs_on_a_dask_cluster(tmp_path, monkeypatch):
    """The shipped file's settings with a weights file standing in for ImageNet, one backbone,
    run on a two-worker dask cluster through ``bmbench ablate --backend dask``."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    from bmbench.models.backbones import build_backbone

    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    weights = tmp_path / "VGG16.weights.h5"
    build_backbone("VGG16", "none", 32, seed=3).save_weights(weights)
    classes = ("EOSINOPHIL", "LYMPHOCYTE", "MONOCYTE", "NEUTROPHIL")
    write_cells(tmp_path / "images", {c: [f"{part}/{c}/_{k}_{n}.jpeg" for part, k in
                                          (("TRAIN", 0), ("TRAIN", 1), ("TEST", 2)) for n in range(5)]
                                      for c in classes})
    raw = yaml.safe_load(ABLATION.read_text())
    raw["base"] = str(STUDIES / "leukocyte4_transfer.yaml")
    raw["vary"] = {"model.backbone": ["VGG16"]}
    raw["settings"]["transfer"]["model.weights"] = str(weights)
    raw["set"] = {"dataset.root": str(tmp_path), "dataset.image_size": 32, "model.fine_tune_epochs": 1,
                  **{k: yaml.safe_load(v) for k, v in (o.split("=") for o in FAST)}}
    small = tmp_path / "ablation.yaml"
    small.write_text(yaml.safe_dump(raw))
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                      dashboard_address=None, scheduler_kwargs={"dashboard_address": "127.0.0.1:0"}) as lc:
        res = CliRunner().invoke(main, ["ablate", str(small), "--backend", "dask", "--scheduler",
                                        lc.scheduler_address, "--results-dir", str(tmp_path / "results")],
                                 catch_exceptions=False)
    assert res.exit_code == 0, res.output
    assert "2 run(s) done now, 0 already stored, 0 failed" in res.output
    runs = [json.loads(p.read_text()) for p in (tmp_path / "results" / "runs").glob("*/run.json")]
    assert sorted(r["tags"]["variant"] for r in runs) == ["scratch, backbone=VGG16", "transfer, backbone=VGG16"]
    assert {r["n_test"] for r in runs} == {20}  # the official TEST folder
    stages = {r["tags"]["variant"].split(",")[0]: set(r["model"]["stages"]) for r in runs}
    assert stages == {"transfer": {"head", "fine_tune"}, "scratch": {"scratch"}}
