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
    """Over chapter seeds 0-999, every registered stream and every index it declares: all distinct,
    and selection seeds never equal test seeds."""
    streams = _every_stream()
    assert "test-seeds-example/rate-choice" in streams
    per_stream = []
    for name, s in streams.items():   # vectorised: the packed seeds of all (chapter seed, index)
        base = np.array([derive(c, name, 0) for c in (0, 1)], dtype=np.uint64)
        assert all(derive(c, name, s.max_index - 1) == int(base[c]) + s.max_index - 1 for c in (0, 1))
        chapter = np.arange(1000, dtype=np.uint64)[:, None] << np.uint64(32)
        per_stream.append((s.role, (chapter | (base[0] + np.arange(s.max_index, dtype=np.uint64))).ravel()))
    everything = np.concatenate([v for _, v in per_stream])
    assert np.unique(everything).size == everything.size
    selection = np.concatenate([v for r, v in per_stream if r == "selection"])
    test = np.concatenate([v for r, v in per_stream if r == "test"])
    assert selection.size and test.size and not np.isin(selection, test).any()
    # spot-check the vectorised formula against derive itself
    assert derive(999, "test-seeds-example/probe", 255) == int(
        (np.uint64(999) << np.uint64(32)) | np.uint64(derive(0, "test-seeds-example/probe", 255)))


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
