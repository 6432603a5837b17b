import importlib
import pkgutil

import numpy as np
import pytest
import torch

import curvnb.studies
from curvnb import seeds
from curvnb.seeds import declare_streams, derive, numpy_generator, registered, torch_generator

# A stand-in chapter with the shapes the studies need (units, probes, rate selection).
EXAMPLE = declare_streams("test-seeds-example", {"init": ("test", 64), "probe": ("test", 256),
                                                 "rate-choice": ("selection", 64)})


def _every_stream() -> dict[str, seeds.Stream]:
    """Every stream of every study (their modules declare them at import), plus the example."""
    for module in pkgutil.iter_modules(curvnb.studies.__path__):
        importlib.import_module(f"curvnb.studies.{module.name}")
    return registered()


def test_no_two_triples_share_a_seed():
    """Every (chapter seed, stream, index) triple gets its own seed, and selection seeds never equal
    test seeds, for all 2^32 chapter seeds: a seed is ``chapter·2^32 + low`` with ``low < 2^32`` the
    (stream, index) part, so distinct lows under one chapter seed (checked over every registered
    stream and every index it declares) are distinct under all of them."""
    streams = _every_stream()
    assert "test-seeds-example/rate-choice" in streams
    lows = {}
    for name, s in streams.items():
        first, last = derive(0, name, 0), derive(0, name, s.max_index - 1)
        assert last == first + s.max_index - 1 < 2**32
        for chapter in (1, 999, 2**32 - 1):   # the chapter seed only fills the high 32 bits
            assert derive(chapter, name, 0) == chapter << 32 | first
            assert derive(chapter, name, s.max_index - 1) == chapter << 32 | last
        lows[name] = np.arange(first, last + 1, dtype=np.uint64)
    everything = np.concatenate(list(lows.values()))
    assert np.unique(everything).size == everything.size
    selection = np.concatenate([v for n, v in lows.items() if streams[n].role == "selection"])
    test = np.concatenate([v for n, v in lows.items() if streams[n].role == "test"])
    assert selection.size and test.size and not np.isin(selection, test).any()


def test_ranges_are_validated():
    with pytest.raises(ValueError, match="chapter seed"):
        EXAMPLE.seed(2**32, "init", 0)
    with pytest.raises(ValueError, match="chapter seed"):
        EXAMPLE.seed(-1, "init", 0)
    with pytest.raises(ValueError, match="index"):
        EXAMPLE.seed(0, "init", 64)
    with pytest.raises(KeyError, match="declares no stream"):
        EXAMPLE.seed(0, "nope", 0)
    with pytest.raises(KeyError, match="not declared"):
        derive(0, "nobody/nothing", 0)
    with pytest.raises(ValueError, match="role"):
        declare_streams("test-seeds-bad", {"x": ("training", 4)})
    with pytest.raises(ValueError, match="max_index"):
        declare_streams("test-seeds-bad", {"y": ("test", 2**16 + 1)})
    with pytest.raises(ValueError, match="already declared"):   # same name, other role
        declare_streams("test-seeds-example", {"init": ("selection", 64)})
    declare_streams("test-seeds-example", {"init": ("test", 64)})   # identical: fine (re-import)
    assert EXAMPLE.role("rate-choice") == "selection" and EXAMPLE.role("bootstrap") == "test"


def test_hash_clash_is_refused(monkeypatch):
    monkeypatch.setattr(seeds, "stream_number", lambda name: 7)
    monkeypatch.setattr(seeds, "_REGISTRY", {})
    monkeypatch.setattr(seeds, "_BY_NUMBER", {})
    seeds.register("a/x", "test", 4)
    with pytest.raises(ValueError, match="taken by 'a/x'"):
        seeds.register("a/y", "test", 4)


def test_torch_generator_uses_all_64_bits():
    """torch.manual_seed keeps only 32 bits on the CPU; the derived generators do not collide."""
    low, high = EXAMPLE.seed(0, "init", 3), EXAMPLE.seed(1, "init", 3)
    assert (high - low) % 2**32 == 0        # the two seeds agree in their low 32 bits
    a = torch.rand(4, generator=torch_generator(low))
    assert torch.equal(a, torch.rand(4, generator=torch_generator(low)))      # deterministic
    assert not torch.equal(a, torch.rand(4, generator=torch_generator(high)))
    assert torch_generator(high).initial_seed() == high
    g = EXAMPLE.torch(0, "init", 3)
    assert torch.equal(torch.rand(4, generator=g), a)
    seeds.seed_torch(high)
    b = torch.rand(4)
    seeds.seed_torch(high)
    assert torch.equal(b, torch.rand(4)) and torch.equal(b, torch.rand(4, generator=torch_generator(high)))
    x = numpy_generator(low).random(3)
    assert np.array_equal(x, EXAMPLE.numpy(0, "init", 3).random(3))
    assert not np.array_equal(x, numpy_generator(high).random(3))
