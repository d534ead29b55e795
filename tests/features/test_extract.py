import json
import re

import numpy as np
import pytest
from PIL import Image

from bmbench.core.cache import ArrayCache
from bmbench.data.images import ImageSource
from bmbench.features import extract
from bmbench.features.extract import (
    FEATURE_VERSION, FeatureSettings, data_dictionary, extract_many, extract_one, feature_names,
    write_data_dictionary,
)
from bmbench.features.registry import FEATURE_FAMILIES as FAMILIES

NAME = re.compile(r"^(shape|color|texture|radial)_(nucleus|cytoplasm|cell|field)_[A-Za-z0-9_]+$")


def test_names_are_unique_well_formed_and_documented():
    names = feature_names()
    assert len(names) == len(set(names)) == 353
    assert all(NAME.match(n) for n in names)
    counts = {f: sum(n.startswith(f + "_") for n in names) for f in FAMILIES}
    assert counts == {"shape": 25, "color": 204, "texture": 54, "radial": 70}
    entries = data_dictionary()
    assert [e["name"] for e in entries] == names
    for e in entries:
        assert set(e) == {"name", "family", "region", "unit", "description"}
        assert all(isinstance(v, str) and v for v in e.values())
        assert e["name"].startswith(f"{e['family']}_{e['region']}_")


def test_names_are_stable():
    names = feature_names()
    assert names[:3] == ["shape_nucleus_area", "shape_nucleus_perimeter", "shape_nucleus_equivalent_diameter"]
    assert names[22:25] == ["shape_nucleus_cell_area_ratio", "shape_nucleus_lobes", "shape_nucleus_indentation"]
    assert names[25] == "color_nucleus_rgb_r_mean"
    assert names[204] == "color_cell_hed_d_p90"
    assert names[205] == "color_cell_rgb_r_nucleus_minus_cytoplasm_mean"
    assert names[228] == "color_cell_hed_d_nucleus_minus_cytoplasm_p50"
    assert names[282] == "texture_cytoplasm_clump_fraction"
    assert names[283] == "radial_nucleus_fraction_ring0" and names[-1] == "radial_field_nucleus_score_ring9"
    assert "texture_nucleus_glcm_contrast_d1" in names and "texture_nucleus_lbp_9" in names


def test_write_data_dictionary(tmp_path):
    path = write_data_dictionary(tmp_path, FeatureSettings(families=("shape",)))
    assert path.name == "features.json"
    doc = json.loads(path.read_text())
    assert doc["feature_version"] == FEATURE_VERSION
    assert doc["settings"]["families"] == ["shape"]
    assert len(doc["features"]) == 25


def test_settings_validation():
    with pytest.raises(ValueError, match="known: shape, color, texture"):
        FeatureSettings(families=("shape", "wavelets"))
    with pytest.raises(ValueError, match="known: otsu, watershed, none"):
        FeatureSettings(segmentation="kmeans")
    with pytest.raises(ValueError):
        FeatureSettings(families=())
    with pytest.raises(ValueError):
        FeatureSettings(image_size=0)
    assert FeatureSettings(families=["color"]).families == ("color",)


def test_extract_one_and_family_subsets(synthetic_cells):
    image = synthetic_cells["neutrophil"][0].image
    full, seg = extract_one(image)
    assert full.dtype == np.float32 and full.shape == (353,)
    assert np.isfinite(full).all()
    assert seg.nucleus.shape == image.shape[:2]
    names = feature_names()
    for family in FAMILIES:
        part, _ = extract_one(image, FeatureSettings(families=(family,)))
        idx = [i for i, n in enumerate(names) if n.startswith(family + "_")]
        np.testing.assert_array_equal(part, full[idx])
    swapped, _ = extract_one(image, FeatureSettings(families=("texture", "shape")))
    assert swapped.shape == (25 + 54,)


def test_image_size_resizes_before_extraction(synthetic_cells):
    image = synthetic_cells["blast"][0].image  # 128 px
    vec, seg = extract_one(image, FeatureSettings(families=("shape",), image_size=256))
    assert seg.cell.shape == (256, 256)
    native, _ = extract_one(image, FeatureSettings(families=("shape",)))
    assert vec[0] == pytest.approx(4 * native[0], rel=0.1)  # nucleus area scales with size^2


def test_blank_image_gives_flags_and_nan_nucleus():
    vec, seg = extract_one(np.full((64, 64, 3), 240, np.uint8))
    assert "nucleus_empty" in seg.flags
    names = feature_names()
    assert np.isnan(vec[names.index("shape_nucleus_area")])
    assert np.isfinite(vec[names.index("color_cell_rgb_r_mean")])


@pytest.fixture(scope="module")
def image_files(tmp_path_factory, synthetic_cells):
    root = tmp_path_factory.mktemp("images")
    paths = []
    for label, cells in synthetic_cells.items():
        for i, c in enumerate(cells[:3]):
            path = root / f"{label}_{i}.png"
            Image.fromarray(c.image).save(path)
            paths.append(path)
    blank = root / "blank.png"
    Image.fromarray(np.full((50, 60, 3), 250, np.uint8)).save(blank)
    return paths + [blank]


def read_png(path):
    return np.asarray(Image.open(path).convert("RGB"))


class PngSource(ImageSource):
    """The image stage with a test decoder; ``calls`` records what it decoded."""

    def __init__(self, skip=None):
        super().__init__()
        self.calls, self.skip = [], skip

    def read(self, path, data=None):
        self.calls.append(path)
        return None if path == self.skip else read_png(path)


def test_extract_many_matches_extract_one_and_jobs(image_files, monkeypatch):
    monkeypatch.setattr(extract, "CHUNK_SIZE", 4)
    done = []
    X1, flags1 = extract_many(image_files, source=PngSource(), jobs=1, progress=done.append)
    assert X1.shape == (len(image_files), 353) and X1.dtype == np.float32
    assert done[-1] == len(image_files) and done == sorted(done) and len(done) == 4
    X2, flags2 = extract_many(image_files, source=PngSource(), jobs=2)
    np.testing.assert_array_equal(X1, X2)
    assert flags1 == flags2
    assert flags1[-1] and "nucleus_empty" in flags1[-1] and flags1[0] == ()
    np.testing.assert_array_equal(X1[5], extract_one(read_png(image_files[5]))[0])


def test_cache_hit_skips_decoding_and_is_identical(image_files, tmp_path):
    cache = ArrayCache(tmp_path / "cache")
    settings = FeatureSettings(families=("shape", "texture"))
    counting_reader = PngSource()
    calls = counting_reader.calls
    fresh, fresh_flags = extract_many(image_files, settings, counting_reader, cache=cache)
    assert len(calls) == len(image_files)
    cached, cached_flags = extract_many(image_files, settings, counting_reader, cache=cache)
    assert len(calls) == len(image_files)  # nothing decoded the second time
    np.testing.assert_array_equal(cached, fresh)
    assert cached_flags == fresh_flags
    # Other settings are other keys; a corrupt entry is recomputed, not trusted.
    extract_many(image_files[:1], FeatureSettings(families=("shape",)), counting_reader, cache=cache)
    assert len(calls) == len(image_files) + 1
    key = extract.image_key(image_files[0].read_bytes(), settings, counting_reader)
    cache.path(key).write_bytes(b"garbage")
    again, _ = extract_many(image_files[:1], settings, counting_reader, cache=cache)
    assert len(calls) == len(image_files) + 2
    np.testing.assert_array_equal(again[0], fresh[0])
    assert cache.get(key) is not None


def test_partly_cached_set_with_workers_keeps_order_and_a_cached_set_starts_none(image_files, tmp_path,
                                                                                 monkeypatch):
    import joblib

    cache = ArrayCache(tmp_path / "cache")
    settings = FeatureSettings(families=("shape",))
    expected, _ = extract_many(image_files, settings, PngSource())
    extract_many(image_files[1::2], settings, PngSource(), cache=cache)  # every other one cached
    done = []
    mixed, _ = extract_many(image_files, settings, PngSource(), jobs=2, cache=cache, progress=done.append)
    np.testing.assert_array_equal(mixed, expected)
    assert done[0] == len(image_files[1::2]) and done[-1] == len(image_files)
    monkeypatch.setattr(joblib, "Parallel", lambda *a, **k: pytest.fail("started workers"))
    cached, _ = extract_many(image_files, settings, PngSource(), jobs=2, cache=cache)
    np.testing.assert_array_equal(cached, expected)


def test_reader_returning_none_gives_a_nan_row(image_files, tmp_path):
    X, flags = extract_many(image_files[:3], source=PngSource(skip=image_files[1]), cache=ArrayCache(tmp_path))
    assert np.isnan(X[1]).all() and flags[1] == ("unreadable",)
    assert np.isfinite(X[0]).all() and flags[0] == ()
    assert len(list(tmp_path.rglob("*.npy"))) == 2  # the skipped file is not cached
