"""Lengths in µm once the pixel size is known; relative scale from median nucleus sizes."""

from __future__ import annotations

import cv2
import pytest

from bmbench.features.extract import FeatureSettings, data_dictionary, extract_one, feature_names
from bmbench.features.scale import SizeSummary, estimate_scale, nucleus_sizes


def test_lengths_and_areas_are_reported_in_microns(synthetic_cells):
    image = synthetic_cells["neutrophil"][0].image
    px_settings = FeatureSettings(families=("shape",))
    um_settings = FeatureSettings(families=("shape",), microns_per_pixel=0.25)
    px, _ = extract_one(image, px_settings)
    um, _ = extract_one(image, um_settings)
    units = {d["name"]: d["unit"] for d in data_dictionary(um_settings)}
    for i, name in enumerate(feature_names(px_settings)):
        factor = {"µm": 0.25, "µm^2": 0.0625}.get(units[name], 1.0)
        assert um[i] == pytest.approx(px[i] * factor, rel=1e-5, abs=1e-6), name
    assert units["shape_cell_area"] == "µm^2" and units["shape_cell_perimeter"] == "µm"
    assert {d["unit"] for d in data_dictionary(px_settings)} >= {"px", "px^2"}
    assert "microns_per_pixel" not in px_settings.as_dict()  # cache keys of px runs unchanged


def test_microns_refuse_a_per_crop_resize():
    with pytest.raises(ValueError, match="feature_size"):
        FeatureSettings(image_size=128, microns_per_pixel=0.1)


def _tree(root, cells, factor):
    for label, items in cells.items():
        (root / label).mkdir(parents=True)
        for i, cell in enumerate(items[:8]):
            im = cv2.resize(cell.image, None, fx=factor, fy=factor, interpolation=cv2.INTER_LINEAR)
            cv2.imwrite(str(root / label / f"{i}.png"), cv2.cvtColor(im, cv2.COLOR_RGB2BGR))
    return root


def test_relative_scale_of_a_set_photographed_at_higher_resolution(tmp_path, synthetic_cells, load):
    here = load(kind="folder", root=_tree(tmp_path / "b", synthetic_cells, 1.5))
    ref = load(kind="folder", root=_tree(tmp_path / "a", synthetic_cells, 1.0))
    estimate = estimate_scale(nucleus_sizes(here, 8), nucleus_sizes(ref, 8))
    assert estimate.shared and set(estimate.per_class) == set(synthetic_cells)
    assert estimate.ratio == pytest.approx(1.5, rel=0.08)
    text = estimate.text(0.1)
    assert "1.5" in text and f"{0.1 / estimate.ratio:.4g}" in text


def test_classes_match_on_full_names_then_on_their_last_word():
    here = SizeSummary("matek_bm", {"NGS": (140.0, 10), "LYT": (120.0, 10), "BLA": (150.0, 5)})
    ref = SizeSummary("pbc", {"neutrophil": (100.0, 10), "lymphocyte": (100.0, 10), "platelet": (40.0, 5)})
    estimate = estimate_scale(here, ref)
    assert estimate.per_class == {"LYT": pytest.approx(1.2), "NGS": pytest.approx(1.4)}
    assert estimate.ratio == pytest.approx(1.3)
    none_shared = estimate_scale(SizeSummary("folder", {"x": (50.0, 3)}), SizeSummary("folder", {"y": (25.0, 3)}))
    assert not none_shared.shared and none_shared.ratio == pytest.approx(2.0)
    assert "no class in common" in none_shared.text()
