import os
import pickle

import numpy as np
import pytest

from curvnb.cache import MAGIC, CorruptCacheEntry, DiskCache, cache_key, read_entry, write_entry


def test_roundtrip_plain_data(tmp_path):
    value = {"a": np.arange(5.0), "b": [1, 2.5, "x"], "c": {"n": None}}
    write_entry(tmp_path / "e.pkl", value)
    back = read_entry(tmp_path / "e.pkl")
    np.testing.assert_array_equal(back["a"], value["a"])
    assert back["b"] == value["b"] and back["c"] == value["c"]


def test_key_is_stable_and_sensitive():
    assert cache_key(x=1, y=(0.1, 2)) == cache_key(y=(0.1, 2), x=1)
    assert cache_key(x=1.0) != cache_key(x=1.0000000001)
    assert cache_key(x=1) != cache_key(x=2)


def test_get_or_compute_caches(tmp_path):
    cache, calls = DiskCache(tmp_path), []
    f = lambda: calls.append(1) or {"v": 42}  # noqa: E731
    assert cache.get_or_compute("k", f) == {"v": 42}
    assert cache.get_or_compute("k", f) == {"v": 42}
    assert len(calls) == 1


@pytest.mark.parametrize("damage", ["truncate", "flip", "header", "empty"])
def test_damaged_entry_is_detected_and_recomputed(tmp_path, damage):
    cache = DiskCache(tmp_path)
    cache.get_or_compute("k", lambda: {"v": np.ones(100)})
    path = cache.path("k")
    data = bytearray(path.read_bytes())
    if damage == "truncate":
        data = data[: len(data) - 10]
    elif damage == "flip":
        data[-5] ^= 0xFF
    elif damage == "header":
        data[:3] = b"XXX"
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptCacheEntry):
        read_entry(path)
    with pytest.warns(UserWarning, match="damaged cache entry"):
        value = cache.get_or_compute("k", lambda: {"v": np.zeros(3)})
    np.testing.assert_array_equal(value["v"], np.zeros(3))  # recomputed, never the damaged value
    np.testing.assert_array_equal(read_entry(path)["v"], np.zeros(3))  # and stored again


def test_failed_write_leaves_old_entry_and_no_temporary_files(tmp_path):
    path = tmp_path / "e.pkl"
    write_entry(path, {"old": 1})

    class Unpicklable:
        def __reduce__(self):
            raise pickle.PicklingError("no")

    with pytest.raises(pickle.PicklingError):
        write_entry(path, {"new": Unpicklable()})
    assert read_entry(path) == {"old": 1}
    assert os.listdir(tmp_path) == ["e.pkl"]


def test_write_is_atomic_rename(tmp_path, monkeypatch):
    """An interruption between writing and renaming leaves the previous entry readable."""
    path = tmp_path / "e.pkl"
    write_entry(path, {"old": 1})

    def interrupted(src, dst):
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_entry(path, {"new": 2})
    monkeypatch.undo()
    assert read_entry(path) == {"old": 1}
    assert sorted(os.listdir(tmp_path)) == ["e.pkl"]
    assert path.read_bytes().startswith(MAGIC)


def test_valid_callback_rejects_stale_entries(tmp_path):
    cache, calls = DiskCache(tmp_path), []
    compute = lambda: calls.append(1) or {"v": len(calls)}  # noqa: E731
    cache.get_or_compute("k", compute)
    assert cache.get_or_compute("k", compute, valid=lambda e: True) == {"v": 1}
    assert cache.get_or_compute("k", compute, valid=lambda e: False) == {"v": 2}
    assert read_entry(cache.path("k")) == {"v": 2}


def test_chapter_results_are_recomputed_when_their_code_changes(tmp_path, monkeypatch):
    from curvnb import Chapter
    from curvnb.cache import compute_sources

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path))
    calls = []

    def compute(config, *, device, seed):
        calls.append(seed)
        return {"n": len(calls)}

    ch = Chapter("intro", verbose=False)
    assert ch.cached(compute, key="demo") == {"n": 1}
    assert ch.cached(compute, key="demo") == {"n": 1}  # cached
    (entry_path,) = (tmp_path / "cache" / "intro").glob("*.pkl")
    entry = read_entry(entry_path)
    assert entry["sources"] == compute_sources(compute) and "curvnb/cache.py" in entry["sources"]
    entry["sources"]["curvnb/cache.py"] = "0" * 64  # as if cache.py (imported by this file) had been edited since
    write_entry(entry_path, entry)
    assert ch.cached(compute, key="demo") == {"n": 2}
    assert Chapter("intro", seed=1, verbose=False).cached(compute, key="demo") == {"n": 3}  # other key
