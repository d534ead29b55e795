import multiprocessing
from pathlib import Path

import numpy as np
import pytest

from bmbench.core.cache import ENV_VAR, ArrayCache, default_root, key_for


def test_key_for_is_stable_and_sensitive():
    k = key_for("features", 1, {"b": 2, "a": [1, 2]}, b"\x00bytes")
    assert k == key_for("features", 1, {"a": [1, 2], "b": 2}, b"\x00bytes")
    assert len(k) == 64 and int(k, 16) >= 0
    assert k != key_for("features", 2, {"b": 2, "a": [1, 2]}, b"\x00bytes")
    assert key_for("ab", "c") != key_for("a", "bc")
    assert key_for(b"x") != key_for("x")
    assert key_for((1, 2)) == key_for([1, 2])
    with pytest.raises(TypeError):
        key_for(object())


def test_round_trip_is_exact(tmp_path):
    cache = ArrayCache(tmp_path)
    key = key_for("v")
    assert cache.get(key) is None
    for array in (np.array([1.5, np.nan, -np.inf], np.float32), np.arange(12, dtype=np.int64).reshape(3, 4),
                  np.array(["a", "bc"])):
        cache.put(key, array)
        got = cache.get(key)
        assert got.dtype == array.dtype and got.shape == array.shape
        np.testing.assert_array_equal(got, array)
    assert cache.path(key) == tmp_path / key[:2] / f"{key}.npy"
    assert [p.name for p in cache.path(key).parent.iterdir()] == [f"{key}.npy"]  # no temp files left


def test_many(tmp_path):
    cache = ArrayCache(tmp_path)
    items = {key_for(i): np.full(3, i, np.float32) for i in range(20)}
    cache.put_many(items)
    got = cache.get_many(list(items) + [key_for("missing")])
    assert set(got) == set(items)
    assert all(np.array_equal(got[k], v) for k, v in items.items())
    assert key_for(3) in cache and key_for("missing") not in cache


@pytest.mark.parametrize("damage", ["truncate", "garbage", "trailing", "empty"])
def test_corrupt_entry_is_a_miss_and_is_removed(tmp_path, damage):
    cache = ArrayCache(tmp_path)
    key = key_for("x")
    cache.put(key, np.arange(100, dtype=np.float64))
    path = cache.path(key)
    data = path.read_bytes()
    path.write_bytes({"truncate": data[: len(data) // 2], "garbage": b"not a numpy file at all",
                      "trailing": data + b"junk", "empty": b""}[damage])
    assert cache.get(key) is None
    assert not path.exists()
    cache.put(key, np.arange(3))
    np.testing.assert_array_equal(cache.get(key), np.arange(3))


def test_pickles_are_refused(tmp_path):
    cache = ArrayCache(tmp_path)
    with pytest.raises(ValueError):
        cache.put(key_for("o"), np.array([{"a": 1}], dtype=object))
    key = key_for("p")
    cache.path(key).parent.mkdir(parents=True, exist_ok=True)
    np.save(cache.path(key), np.array([{"a": 1}], dtype=object), allow_pickle=True)
    assert cache.get(key) is None  # never unpickled


def test_bad_keys_are_refused(tmp_path):
    with pytest.raises(ValueError):
        ArrayCache(tmp_path).get("../../etc/passwd")


def test_default_root(monkeypatch, tmp_path):
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "c"))
    assert default_root() == tmp_path / "c"
    assert ArrayCache().root == tmp_path / "c"
    monkeypatch.delenv(ENV_VAR)
    assert default_root() == Path.home() / ".cache" / "bmbench"


def _writer(root, key, value, n):
    cache = ArrayCache(root)
    for _ in range(n):
        cache.put(key, np.full(1000, value, np.float64))


def test_concurrent_writers_of_one_key(tmp_path):
    key = key_for("shared")
    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(str(tmp_path), key, 7.0, 30)) for _ in range(2)]
    for p in procs:
        p.start()
    reader = ArrayCache(tmp_path)
    seen = 0
    while any(p.is_alive() for p in procs):
        got = reader.get(key)
        if got is not None:
            assert got.shape == (1000,) and (got == 7.0).all()
            seen += 1
    for p in procs:
        p.join()
        assert p.exitcode == 0
    np.testing.assert_array_equal(reader.get(key), np.full(1000, 7.0))
    assert len(list(reader.path(key).parent.iterdir())) == 1


def test_json_cache_round_trip_miss_and_corrupt_entry(tmp_path):
    from bmbench.core.cache import JsonCache

    cache = JsonCache(tmp_path / "j")
    key = key_for("json", 1)
    assert cache.get(key) is None
    cache.put(key, {"a": np.float32(0.5), "b": [1, 2], "c": np.arange(2)})
    assert cache.get(key) == {"a": 0.5, "b": [1, 2], "c": [0, 1]}
    cache.path(key).write_text('{"a": ')
    assert cache.get(key) is None and not cache.path(key).exists()
