import io

import numpy as np
import pytest
from PIL import Image

from bmbench.audit import descriptors as D
from bmbench.audit.neighbours import hash_distance
from bmbench.core.cache import ArrayCache
from bmbench.core.errors import DatasetError


def cell(seed=0, size=96):
    from bmbench.data.synthetic import render_cell

    return render_cell("monocyte", np.random.default_rng(seed), size).image


def test_dihedral_lists_the_8_flips_and_rotations_identity_first():
    x = np.arange(9).reshape(3, 3)
    d = D.dihedral(x)
    assert d.shape == (8, 3, 3)
    assert (d[0] == x).all()
    seen = {tuple(t.ravel()) for t in d}
    expected = {tuple(np.rot90(v, k).ravel()) for v in (x, x.T) for k in range(4)}
    assert seen == expected


@pytest.mark.parametrize("transform", [
    lambda a: a[:, ::-1], lambda a: a[::-1], lambda a: np.rot90(a), lambda a: np.rot90(a, 2),
    lambda a: np.rot90(a, 3), lambda a: a.transpose(1, 0, 2), lambda a: np.rot90(a)[::-1]])
def test_hash_distance_is_flip_and_rotation_invariant(transform):
    a = cell(1)
    hashes = np.stack([D.describe(a).phash, D.describe(np.ascontiguousarray(transform(a))).phash])
    assert hash_distance(hashes, [0], [0]) == 0
    assert hash_distance(hashes, [0], [1]) <= 4  # resampling may flip a bit or two
    assert hash_distance(hashes, [1], [0]) <= 4
    plain = np.bitwise_count(hashes[0, 0] ^ hashes[1, 0]).sum()  # without the 8 transforms
    assert plain >= 40


def test_hash_tolerates_reencoding_but_separates_different_cells():
    a = cell(2)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="JPEG", quality=60)
    recoded = np.asarray(Image.open(buf).convert("RGB"))
    brighter = np.clip(a.astype(int) + 15, 0, 255).astype(np.uint8)
    others = [cell(s) for s in range(10, 16)]
    h = np.stack([D.describe(x).phash for x in [a, recoded, brighter, *others]])
    assert hash_distance(h, [1, 2], [0, 0]).max() <= 8
    far = hash_distance(h, [0] * 6, list(range(3, 9)))
    assert far.min() >= 40, far


def test_colour_histogram_ignores_black_padding_and_is_normalised():
    a = cell(3)
    padded = np.zeros((a.shape[0] + 40, a.shape[1] + 40, 3), np.uint8)
    padded[20:-20, 20:-20] = a
    h, hp = D.colour_histogram(a), D.colour_histogram(padded)
    assert np.isclose((h ** 2).sum(), 1.0, atol=1e-5)
    assert np.sqrt(((h - hp) ** 2).sum() / 2) < 0.05
    assert np.isclose((D.colour_histogram(np.zeros((8, 8, 3), np.uint8)) ** 2).sum(), 1.0)


def test_keypoints_exist_for_image_and_mirror():
    d = D.describe(cell(4, 128))
    assert d.hist.shape == (D.HIST_BINS ** 3,)
    assert d.phash.shape == (8, D.HASH_WORDS) and d.phash.dtype == np.uint64
    for pts, des in zip(d.points, d.descriptors):
        assert len(pts) > 20 and pts.shape[1] == 2 and des.shape == (len(pts), 32)
        assert pts.max() <= D.WORK_SIDE


def test_pack_unpack_round_trip_and_rejects_foreign_records():
    d = D.describe(cell(5))
    back = D.unpack(D.pack(d))
    assert back.shape == d.shape
    assert np.array_equal(back.hist, d.hist) and np.array_equal(back.phash, d.phash)
    for o in (0, 1):
        assert np.array_equal(back.points[o], d.points[o])
        assert np.array_equal(back.descriptors[o], d.descriptors[o])
    record = D.pack(d)
    assert D.unpack(record[:-1]) is None
    assert D.unpack(record[:10]) is None
    wrong = record.copy()
    wrong[:4] = np.array([D.DESCRIPTOR_VERSION + 1], np.int32).view(np.uint8)
    assert D.unpack(wrong) is None


def test_the_audit_source_shrinks_large_jpegs_but_keeps_the_work_side(tmp_path):
    big = np.tile(cell(6, 256), (4, 6, 1))  # 1024 x 1536
    buf = io.BytesIO()
    Image.fromarray(big).save(buf, format="JPEG", quality=90)
    small = D.audit_source().decode("big.jpg", buf.getvalue())
    assert max(small.shape[:2]) < 1536 / 2 and max(small.shape[:2]) >= D.WORK_SIDE
    with pytest.raises(DatasetError, match="bad.png: cannot decode"):
        D.audit_source().decode("bad.png", b"not an image")
    with pytest.raises(DatasetError, match="above the limit"):
        D.audit_source(max_pixels=1000).decode("big.jpg", buf.getvalue())
    assert D.audit_source().identity != D.audit_source().at(64).identity


def write(path, image):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(image).save(path)
    return str(path)


def test_describe_files_records_unreadable_files_and_uses_the_cache(tmp_path, monkeypatch):
    paths = [write(tmp_path / f"c/{i}.png", cell(i)) for i in range(3)]
    bad = tmp_path / "c" / "bad.png"
    bad.write_bytes(b"broken")
    paths.append(str(bad))
    paths.append(str(tmp_path / "c" / "missing.png"))
    cache = ArrayCache(tmp_path / "cache")
    first = D.describe_files(paths, cache=cache)
    assert first.ok.tolist() == [True, True, True, False, False]
    assert set(first.errors) == {3, 4} and "cannot decode" in first.errors[3]
    assert np.isnan(first.hist[3]).all() and first.keys[4] == ""
    assert len(set(first.keys[:3])) == 3

    def fail(*a, **k):
        raise AssertionError("decoded although cached")

    monkeypatch.setattr(D.ImageSource, "decode", lambda self, name, data=None: fail() if "bad" not in str(name)
                        else (_ for _ in ()).throw(DatasetError(f"{name}: cannot decode image (x)")))
    again = D.describe_files(paths, cache=cache)
    assert np.array_equal(again.hist[:3], first.hist[:3])
    assert np.array_equal(again.phash, first.phash)
    assert np.array_equal(again.kp_descriptors, first.kp_descriptors)
    assert np.array_equal(again.kp_offsets, first.kp_offsets)
    write(tmp_path / "c/0.png", cell(9))  # changed content: a miss, decoded again
    with pytest.raises(AssertionError, match="decoded although cached"):
        D.describe_files(paths, cache=cache)


def test_parallel_description_equals_serial(tmp_path):
    paths = [write(tmp_path / f"{i}.png", cell(i, 64)) for i in range(70)]
    serial = D.describe_files(paths, jobs=1)
    parallel = D.describe_files(paths, jobs=2)
    assert np.array_equal(serial.hist, parallel.hist)
    assert np.array_equal(serial.phash, parallel.phash)
    assert np.array_equal(serial.kp_points, parallel.kp_points)
    assert serial.keys == parallel.keys


def _fake(k0: int, k1: int, seed: int) -> "D.ImageDescriptors":
    rng = np.random.default_rng(seed)
    pts = [rng.random((k, 2), dtype=np.float32) for k in (k0, k1)]
    des = [rng.integers(0, 256, (k, 32), dtype=np.uint8) for k in (k0, k1)]
    return D.ImageDescriptors(rng.random(D.HIST_BINS ** 3, dtype=np.float32),
                              rng.integers(0, 2**63, (8, D.HASH_WORDS), dtype=np.uint64),
                              (pts[0], pts[1]), (des[0], des[1]), (40, 50))


def test_stacked_descriptors_keep_every_keypoint_even_beyond_orbs_limit():
    """Rows fill preallocated buffers; a record with more keypoints than ORB returns (ties,
    a record from elsewhere) grows them instead of losing any."""
    items = [_fake(3, 2, 0), None, _fake(D.ORB_FEATURES * 3, 1, 1), _fake(0, 4, 2)]
    stack = D._Stack(len(items))
    for i, d in enumerate(items):
        stack.add(d, "bad" if d is None else None, f"k{i}")
    out = stack.result()
    assert out.ok.tolist() == [True, False, True, True] and out.errors == {1: "bad"}
    assert out.keys == ["k0", "k1", "k2", "k3"] and np.isnan(out.hist[1]).all()
    assert len(out.kp_points) == sum(len(p) for d in items if d for p in d.points)
    for i, d in enumerate(items):
        for o in (0, 1):
            pts, des = out.keypoints(i, o)
            if d is None:
                assert len(pts) == len(des) == 0
            else:
                assert np.array_equal(pts, d.points[o]) and np.array_equal(des, d.descriptors[o])
        if d is not None:
            assert np.array_equal(out.hist[i], d.hist) and np.array_equal(out.phash[i], d.phash)
            assert tuple(out.shapes[i]) == (40, 50)
