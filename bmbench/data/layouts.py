"""Loaders for the published layouts of each data set kind (registered in one table)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Literal, Optional

import pandas as pd

from ..core.errors import DatasetError
from ..config.schema import MAX_SEED, option
from .ids_file import parse_ids_file
from .imageio import is_image_file
from .registry import register_kind

log = logging.getLogger(__name__)

MATEK_CLASSES = (
    ("ABE", "abnormal eosinophil"), ("ART", "artefact"), ("BAS", "basophil"), ("BLA", "blast"),
    ("EBO", "erythroblast"), ("EOS", "eosinophil"), ("FGC", "faggot cell"), ("HAC", "hairy cell"),
    ("KSC", "smudge cell"), ("LYI", "immature lymphocyte"), ("LYT", "lymphocyte"),
    ("MMZ", "metamyelocyte"), ("MON", "monocyte"), ("MYB", "myelocyte"),
    ("NGB", "band neutrophil"), ("NGS", "segmented neutrophil"), ("NIF", "not identifiable"),
    ("OTH", "other cell"), ("PEB", "proerythroblast"), ("PLM", "plasma cell"),
    ("PMO", "promyelocyte"),
)
MATEK_CITATION = ("Matek C, Krappe S, Muenzenmayer C, Haferlach T, Marr C. Highly accurate "
                  "differentiation of bone marrow cell morphologies using deep neural networks on a "
                  "large image data set. Blood 2021;138(20):1917-1927. CC BY 4.0.")
MATEK_URL = "https://doi.org/10.7937/TCIA.AXH3-T579"
PBC_CLASSES = (
    ("basophil", "basophil"), ("eosinophil", "eosinophil"), ("erythroblast", "erythroblast"),
    ("ig", "immature granulocyte (promyelocyte, myelocyte, metamyelocyte)"),
    ("lymphocyte", "lymphocyte"), ("monocyte", "monocyte"), ("neutrophil", "neutrophil"),
    ("platelet", "platelet"),
)
PBC_FINE = {"BA": "basophil", "EO": "eosinophil", "ERB": "erythroblast", "LY": "lymphocyte",
            "MO": "monocyte", "PLATELET": "platelet", "SNE": "segmented_neutrophil",
            "BNE": "band_neutrophil", "MY": "myelocyte", "MMY": "metamyelocyte",
            "PMY": "promyelocyte"}
WBC5 = (("Basophil", "basophil"), ("Eosinophil", "eosinophil"), ("Lymphocyte", "lymphocyte"),
        ("Monocyte", "monocyte"), ("Neutrophil", "neutrophil"))
AML_CLASSES = (
    ("BAS", "basophil"), ("EBO", "erythroblast"), ("EOS", "eosinophil"), ("KSC", "smudge cell"),
    ("LYA", "atypical lymphocyte"), ("LYT", "typical lymphocyte"), ("MMZ", "metamyelocyte"),
    ("MOB", "monoblast"), ("MON", "monocyte"), ("MYB", "myeloblast"), ("MYO", "myelocyte"),
    ("NGB", "band neutrophil"), ("NGS", "segmented neutrophil"), ("PMB", "promyelocyte (bilobed)"),
    ("PMO", "promyelocyte"),
)


def walk_images(root: Path) -> list[str]:
    """Relative POSIX paths of every image file under ``root`` (recursive, sorted).

    Symbolic links to folders are not followed, so link loops cannot hang a scan.
    """
    found = []
    top = os.fspath(root)
    for folder, dirs, files in os.walk(top, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        rel = Path(folder).relative_to(top).as_posix()
        prefix = "" if rel == "." else rel + "/"  # strings, not a Path per file (100,000s of files)
        found += [prefix + f for f in sorted(files) if is_image_file(f) and not f.startswith(".")]
    return found


def class_folders(root: Path, recursive: bool = True) -> pd.DataFrame:
    """Rows ``relpath, label`` where the label is the first folder under ``root``."""
    paths = [p for p in walk_images(root) if "/" in p]
    if not recursive:
        paths = [p for p in paths if p.count("/") == 1]
    labels = [p.split("/", 1)[0] for p in paths]
    for empty in sorted(_class_dirs(root) - set(labels)):
        log.warning("%s: class folder has no images; class '%s' is left out", root / empty, empty)
    return pd.DataFrame({"relpath": paths, "label": labels})


def _class_dirs(root: Path) -> set[str]:
    try:
        return {d.name for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")}
    except OSError:
        return set()


def require_dir(root: Path | None, kind: str) -> Path:
    if root is None:
        raise DatasetError(f"dataset.root is required for dataset kind '{kind}'; set it in the "
                           "recipe or with --set dataset.root=PATH")
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: dataset.root does not exist or is not a folder")
    return root


def descend(root: Path, *names: str) -> Path:
    """Accept the data set's own top folder or the folder above it (as unpacked archives are)."""
    for name in names:
        if (root / name).is_dir():
            return root / name
    return root


# --- Matek 2021 bone marrow -------------------------------------------------------------

@register_kind(
    name="matek_bm", title="Bone marrow cytomorphology (Matek et al. 2021)",
    classes=MATEK_CLASSES, citation=MATEK_CITATION, url=MATEK_URL,
    layout="ROOT/<CLASS>/<range e.g. 0001-1000>/<CLASS>_<5 digits>.jpg",
    images="250x250 JPEG; 171,374 images from 945 patients; some classes have fewer than 50",
    notes="No patient ids are published with the images.")
def load_matek(root, spec):
    root = descend(require_dir(root, "matek_bm"), "bone_marrow_cell_dataset")
    return root, class_folders(root)


@register_kind(
    name="matek_bm4", title="Matek 2021 bone marrow, 4-class subset from images_IDs.txt",
    classes=(("BLA", "blast"), ("EBO", "erythroblast"), ("MMZ", "metamyelocyte"),
             ("NGS", "segmented neutrophil")),
    citation=MATEK_CITATION, url=MATEK_URL, predefined_split=True,
    layout="as matek_bm; the images and their train/test split are listed in dataset.ids "
           "(default: images_IDs.txt)",
    images="250x250 JPEG; 1,000 train/val and 25 test images per class by default")
def load_matek4(root, spec):
    root = descend(require_dir(root, "matek_bm4"), "bone_marrow_cell_dataset")
    ids = Path(spec.ids) if spec.ids else default_ids_file(root)
    entries = parse_ids_file(ids)
    rows = pd.DataFrame({"relpath": [e.relpath for e in entries], "label": [e.label for e in entries],
                         "split": [e.split for e in entries]})
    for rel in rows["relpath"]:
        if not (root / rel).is_file():
            raise DatasetError(f"{root / rel}: listed in {ids} but missing; "
                               "fix dataset.root or edit the ID file")
    return root, rows


def default_ids_file(root: Path) -> Path:
    """images_IDs.txt in the working directory, the data set root, or bmbench's repository."""
    here = Path(__file__).resolve().parents[2]
    for folder in (Path.cwd(), root, here):
        if (folder / "images_IDs.txt").is_file():
            return folder / "images_IDs.txt"
    raise DatasetError("images_IDs.txt not found in the working directory, the data set root or "
                       "the bmbench repository; set dataset.ids to its path")


# --- PBC (Acevedo 2020) -----------------------------------------------------------------

@dataclass(frozen=True)
class PbcOptions:
    labels: Literal["coarse", "fine"] = option(
        "coarse", doc="coarse: the 8 folders; fine: 11 classes from the file-name prefixes "
                      "(neutrophils split into band/segmented, ig into promyelocyte, myelocyte, "
                      "metamyelocyte; images without a sub-type prefix are dropped)")


@register_kind(
    name="pbc", title="Normal peripheral blood cells (Acevedo et al. 2020)",
    classes=PBC_CLASSES, options=PbcOptions,
    citation="Acevedo A, Merino A, Alferez S, Molina A, Boldu L, Rodellar J. A dataset of "
             "microscopic peripheral blood cell images for development of automatic recognition "
             "systems. Data in Brief 2020;30:105474. CC BY 4.0.",
    url="https://data.mendeley.com/datasets/snkd93bnjr/1",
    layout="ROOT/PBC_dataset_normal_DIB/<class>/<PREFIX>_<id>.jpg",
    images="360x363 JPEG (a few 366x369); 17,092 images, 8 classes",
    notes="Contains 17 pairs of byte-identical images, one across two classes.")
def load_pbc(root, spec):
    root = descend(require_dir(root, "pbc"), "PBC_dataset_normal_DIB")
    rows = class_folders(root, recursive=False)
    if spec.options.labels == "fine":
        prefix = rows["relpath"].str.rsplit("/", n=1).str[-1].str.split("_", n=1).str[0].str.upper()
        rows = rows.assign(label=prefix.map(PBC_FINE))
        dropped = prefix[rows["label"].isna()]
        if len(dropped):
            counts = ", ".join(f"{p}_ ({n})" for p, n in dropped.value_counts().sort_index().items())
            log.warning(
                "pbc with labels=fine: %d images have no sub-type prefix and are left out: %s",
                len(dropped), counts)
        rows = rows.dropna(subset=["label"])
    return root, rows


# --- Raabin, AML, C-NMC, bloodcells4 ------------------------------------------------------

@register_kind(
    name="raabin", title="Raabin-WBC (Kouzehkanan et al. 2022)", classes=WBC5,
    predefined_split=True,
    citation="Kouzehkanan ZM, Saghari S, Tavakoli S, et al. A large dataset of white blood cells "
             "containing cell locations and types, along with segmented nuclei and cytoplasm. "
             "Sci Rep 2022;12:1123.",
    url="https://raabindata.com/free-data/",
    layout="ROOT/Train|TestA/<Class>/*.jpg (Train -> train, TestA -> test)",
    images="575x575 JPEG crops, 5 classes")
def load_raabin(root, spec):
    root = require_dir(root, "raabin")
    parts = []
    for folder, split in (("Train", "train"), ("TestA", "test")):
        if (root / folder).is_dir():
            sub = class_folders(root / folder)
            parts.append(sub.assign(relpath=folder + "/" + sub["relpath"], split=split))
    if not parts:
        raise DatasetError(f"{root}: expected Train/ and TestA/ folders for dataset kind 'raabin'")
    return root, pd.concat(parts, ignore_index=True)


@register_kind(
    name="aml_matek", title="AML cytomorphology LMU (Matek et al. 2019)", classes=AML_CLASSES,
    citation="Matek C, Schwarz S, Spiekermann K, Marr C. Human-level recognition of blast cells "
             "in acute myeloid leukaemia with convolutional neural networks. Nat Mach Intell "
             "2019;1:538-544. CC BY 3.0.",
    url="https://doi.org/10.7937/tcia.2019.36f5o9ld",
    layout="ROOT/<CLASS>/*.tiff", images="400x400 TIFF, 18,365 images, 15 classes")
def load_aml(root, spec):
    root = descend(require_dir(root, "aml_matek"), "AML-Cytomorphology_LMU", "AML_Cytomorphology_LMU")
    return root, class_folders(root)


_CNMC_PATIENT = re.compile(r"^UID_(H?\d+)_", re.IGNORECASE)


@register_kind(
    name="cnmc", title="C-NMC 2019 leukaemia challenge (Gupta et al.)",
    classes=(("all", "acute lymphoblastic leukaemia blast"), ("hem", "normal (haematogone)")),
    groups="patient id from the file name: UID_<pid>_... (ALL) or UID_H<pid>_... (normal)",
    citation="Gupta A, Gupta R. ALL Challenge dataset of ISBI 2019. The Cancer Imaging Archive, "
             "2019. doi:10.7937/tcia.2019.dc64i46r",
    url="https://doi.org/10.7937/tcia.2019.dc64i46r",
    layout="ROOT/fold_0|fold_1|fold_2/all|hem/*.bmp",
    images="450x450 BMP, segmented single cells on black",
    notes="Splits must be grouped by patient (the default here).")
def load_cnmc(root, spec):
    root = descend(require_dir(root, "cnmc"), "C-NMC_training_data", "training_data")
    paths = [p for p in walk_images(root) if re.match(r"fold_\d+/(all|hem)/", p)]
    names = [PurePosixPath(p).name for p in paths]
    groups = [(_CNMC_PATIENT.match(n) or [None, None])[1] for n in names]
    return root, pd.DataFrame({"relpath": paths, "label": [p.split("/")[1] for p in paths],
                               "group": groups})


@dataclass(frozen=True)
class BloodCells4Options:
    test_set: Literal["TEST", "TEST_SIMPLE"] = option(
        "TEST", doc="official test folder to evaluate on (TEST_SIMPLE holds un-augmented originals)")


@register_kind(
    name="bloodcells4", title="Blood Cell Images, 4-class augmented BCCD derivative",
    classes=(("EOSINOPHIL", "eosinophil"), ("LYMPHOCYTE", "lymphocyte"),
             ("MONOCYTE", "monocyte"), ("NEUTROPHIL", "neutrophil")),
    options=BloodCells4Options, predefined_split=True, augmented=True,
    citation="BCCD Dataset (MIT licence); 4-class augmented derivative from the "
             "wbc-classification project ('Blood Cell Images').",
    url="https://github.com/Shenggan/BCCD_Dataset",
    layout="ROOT/images/TRAIN|TEST|TEST_SIMPLE/<CLASS>/*.jpeg (TRAIN -> train, TEST -> test)",
    images="320x240 JPEG",
    notes="TRAIN and TEST are augmented copies of a few hundred original smears: images within "
          "TRAIN are near-duplicates, so a random re-split of TRAIN leaks and scores are "
          "optimistic. Evaluate on the official TEST.")
def load_bloodcells4(root, spec):
    root = descend(require_dir(root, "bloodcells4"), "images", "dataset2-master/images")
    parts = []
    for folder, split in (("TRAIN", "train"), (spec.options.test_set, "test")):
        if not (root / folder).is_dir():
            raise DatasetError(f"{root / folder}: missing; dataset kind 'bloodcells4' expects "
                               "images/TRAIN and images/TEST folders")
        sub = class_folders(root / folder)
        parts.append(sub.assign(relpath=folder + "/" + sub["relpath"], split=split))
    return root, pd.concat(parts, ignore_index=True)


# --- generic layouts ----------------------------------------------------------------------

@dataclass(frozen=True)
class FolderOptions:
    group_pattern: Optional[str] = option(
        None, doc="regular expression applied to the file name; its first group is the "
                  "patient/smear id used by grouped splits (e.g. 'BloodImage_(\\d+)_')")


@register_kind(
    name="folder", title="Any class-per-folder tree", options=FolderOptions,
    citation="(your data)", url="",
    groups="optional: dataset.group_pattern, a regex on the file name",
    layout="ROOT/<class>/**/*.(jpg|png|bmp|tif)  (recursive; the first folder is the label)",
    images="any size; jpg, png, bmp, tif")
def load_folder(root, spec):
    root = require_dir(root, "folder")
    rows = class_folders(root)
    pattern = spec.options.group_pattern
    if pattern:
        rows["group"] = [_group_of(pattern, p) for p in rows["relpath"]]
    return root, rows


def _group_of(pattern: str, relpath: str) -> str:
    try:
        m = re.search(pattern, PurePosixPath(relpath).name)
    except re.error as exc:
        raise DatasetError(f"dataset.group_pattern: invalid regular expression ({exc})") from None
    if not m:
        raise DatasetError(f"{relpath}: file name does not match dataset.group_pattern {pattern!r}")
    return m.group(1) if m.groups() else m.group(0)


@register_kind(
    name="manifest", title="A CSV manifest", citation="(your data)", url="",
    groups="optional column 'patient'", predefined_split=True,
    layout="dataset.root is a CSV with columns path,label[,patient][,split]; paths relative "
           "to the CSV's folder and never outside it",
    images="any size; jpg, png, bmp, tif")
def load_manifest(root, spec):
    from .manifest import read_manifest

    return read_manifest(root)


# --- synthetic ---------------------------------------------------------------------------

@dataclass(frozen=True)
class SyntheticOptions:
    n_per_class: int = option(60, ge=2, le=100_000, doc="images generated per class")
    generator_seed: int = option(0, ge=0, le=MAX_SEED, doc="seed of the image generator (not of the split)")
    render_size: int = option(128, ge=32, le=1024, doc="side of the generated images, px")


@register_kind(
    name="synthetic", title="Synthetic smear-like cells generated by bmbench",
    classes=(("blast", "blast: large round nucleus, fine chromatin, scant cytoplasm"),
             ("lymphocyte", "lymphocyte: small very dark round nucleus"),
             ("monocyte", "monocyte: kidney/indented nucleus, ample cytoplasm"),
             ("neutrophil", "segmented neutrophil: 3-5 connected lobes")),
    options=SyntheticOptions, citation="generated by bmbench (no download)", url="",
    layout="generated into dataset.root (default: the bmbench cache folder) as "
           "<class>/<class>_<5 digits>.png with ground_truth.csv",
    images="render_size x render_size PNG; deterministic from generator_seed")
def load_synthetic(root, spec):
    from ..core.cache import default_root as default_cache_dir
    from .synthetic import generate

    o = spec.options
    if root is not None and Path(root).exists() and not Path(root).is_dir():
        raise DatasetError(f"{root}: dataset.root of kind synthetic is a file; give a folder to "
                           "generate the images into, or leave root out (the cache folder)")
    if root is None:
        root = default_cache_dir() / "synthetic" / f"n{o.n_per_class}-s{o.generator_seed}-px{o.render_size}"
    root = generate(root, o.n_per_class, seed=o.generator_seed, size=o.render_size)
    return Path(root), class_folders(Path(root))
