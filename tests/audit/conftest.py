"""Generated data sets with planted duplicates for the audit tests."""

from __future__ import annotations

import io
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from bmbench.data.synthetic import generate


def rotate(a: np.ndarray, degrees: float, shift=(6, -4)) -> np.ndarray:
    """Rotate about the centre and shift, black corners (as augmentation pipelines do)."""
    h, w = a.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    m[:, 2] += shift
    return cv2.warpAffine(a, m, (w, h), flags=cv2.INTER_LINEAR, borderValue=(0, 0, 0))


def crop(a: np.ndarray, top=8, bottom=3, left=4, right=9) -> np.ndarray:
    return np.ascontiguousarray(a[top:a.shape[0] - bottom, left:a.shape[1] - right])


def jpeg(a: np.ndarray, quality: int = 75) -> np.ndarray:
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=quality)
    return np.asarray(Image.open(buf).convert("RGB"))


#: name -> (source file, transform or None for a byte copy, target class folder)
PLANTS = {
    "exact": ("blast/blast_00001.png", None, "blast"),
    "exact_other_label": ("lymphocyte/lymphocyte_00001.png", None, "monocyte"),
    "rot90": ("blast/blast_00002.png", lambda a: np.rot90(a).copy(), "blast"),
    "flip": ("lymphocyte/lymphocyte_00002.png", lambda a: a[:, ::-1].copy(), "lymphocyte"),
    "jpeg": ("monocyte/monocyte_00002.png", jpeg, "monocyte"),
    "crop": ("neutrophil/neutrophil_00002.png", crop, "neutrophil"),
    "rotate20": ("blast/blast_00003.png", lambda a: rotate(a, 20), "blast"),
    "flipcrop_other_label": ("monocyte/monocyte_00003.png", lambda a: crop(a[::-1]), "neutrophil"),
}


def planted_dataset(root: Path, cache: Path, n_per_class: int = 10) -> tuple[Path, dict[str, tuple[str, str]]]:
    """A folder data set of synthetic cells (256 px) with :data:`PLANTS` copies added.

    Returns the root and ``{plant: (original relpath, copy relpath)}``.
    """
    source = generate(cache / f"synthetic-{n_per_class}", n_per_class, seed=11, size=256)
    if root.exists():
        shutil.rmtree(root)
    for path in sorted(source.glob("*/*.png")):
        (root / path.parent.name).mkdir(parents=True, exist_ok=True)
        shutil.copy(path, root / path.parent.name / path.name)
    pairs = {}
    for name, (rel, transform, label) in PLANTS.items():
        suffix = ".jpg" if transform is jpeg else ".png"
        target = root / label / f"copy_{name}{suffix}"
        if transform is None:
            shutil.copy(root / rel, target)
        else:
            Image.fromarray(transform(np.asarray(Image.open(root / rel).convert("RGB")))).save(target)
        pairs[name] = (rel, f"{label}/{target.name}")
    return root, pairs


@pytest.fixture(scope="session")
def planted(tmp_path_factory):
    """``(root, {plant: (original, copy)})`` of a planted folder data set (shared, read-only)."""
    base = tmp_path_factory.mktemp("planted")
    return planted_dataset(base / "data", base)


@pytest.fixture
def audit_env(tmp_path, monkeypatch):
    """A private cache and results folder for the test."""
    monkeypatch.setenv("BMBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("BMBENCH_RESULTS", str(tmp_path / "results"))
    return tmp_path


FAMILY_TRANSFORMS = (lambda a: a[:, ::-1], lambda a: np.rot90(a), lambda a: np.rot90(a, 2)[:, ::-1])


def family_dataset(root: Path, cache: Path, leaky: bool, families: int = 48, seed: int = 5,
                   manifest_split: bool = False) -> Path:
    """Two classes, ``a`` and ``b``, assigned at random: nothing in the images predicts the
    label, so an honest 1-NN scores about 50%.

    leaky: ``families`` originals, each with 3 flipped/rotated copies (same label), so a
    1-NN that sees a copy scores about 100%. Otherwise ``4 * families`` distinct images.
    manifest_split: write ``manifest.csv`` instead of class folders, with the images above
    as ``train`` and ``families`` more distinct images as ``test`` (returns the CSV path).
    """
    n_source = families * (1 if leaky else 4) + (families if manifest_split else 0)
    per_class = -(-n_source // 4)
    source = sorted(generate(cache / f"family-src-{per_class}", per_class, seed=seed, size=64).glob("*/*.png"))
    rng = np.random.default_rng(seed)
    rng.shuffle(source)
    if root.exists():
        shutil.rmtree(root)
    rows = []

    def put(image: np.ndarray, label: str, name: str, split: str = "") -> None:
        rel = f"{label}/{name}.png"
        (root / label).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(image)).save(root / rel)
        rows.append((rel, label, split))

    images = [np.asarray(Image.open(p).convert("RGB")) for p in source]
    if leaky:
        for i in range(families):
            label = "ab"[i % 2]
            put(images[i], label, f"f{i:03d}_0", "train")
            for k, transform in enumerate(FAMILY_TRANSFORMS):
                put(transform(images[i]), label, f"f{i:03d}_{k + 1}", "train")
        used = families
    else:
        for i in range(4 * families):
            put(images[i], "ab"[i % 2], f"u{i:03d}", "train")
        used = 4 * families
    if not manifest_split:
        return root
    for i in range(used, used + families):
        put(images[i], "ab"[i % 2], f"t{i:03d}", "test")
    csv = root / "manifest.csv"
    csv.write_text("path,label,split\n" + "".join(f"{r},{lab},{s}\n" for r, lab, s in rows))
    return csv
