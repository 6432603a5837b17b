"""One seed derivation for the whole book: (chapter seed, stream, index) → a generator's seed.

Every random quantity of a chapter — an initialisation, a data order, a probe, a perturbation,
a bootstrap — comes from a generator seeded by :func:`derive`::

    seed = chapter_seed · 2³² + stream_number · 2¹⁶ + index

with ``chapter_seed`` in [0, 2³²), ``index`` in [0, 2¹⁶) and a 16-bit ``stream_number`` per
registered stream, so the map is injective by construction: two different triples never give the
same seed, across chapter seeds, streams and units. A chapter declares its streams once, each with
a role — ``"selection"`` (choosing a rate, validating) or ``"test"`` (the units a claim is tested
on) — and the largest index any profile uses::

    STREAMS = declare_streams("huh2020", {"init": ("test", 64), "rate-choice": ("selection", 16)})
    g = STREAMS.torch(ch.seed, "init", unit)          # torch.Generator
    rng = STREAMS.numpy(ch.seed, "rate-choice", 0)    # numpy Generator

Stream numbers come from a hash of ``"<chapter>/<stream>"`` (stable whatever else is declared);
a declaration whose number is taken by another stream is refused with a clear error (rename it).

Why not ``torch.manual_seed(seed)``: torch's CPU generator (mt19937) keeps only the low 32 bits of
its seed, so seeds that differ in the chapter seed would collide. :func:`torch_generator` fills the
generator's whole state from the 64-bit seed instead (CUDA's Philox generator takes all 64 bits).
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Mapping

import numpy as np
import torch

CHAPTER_SEEDS = 2**32
STREAMS_MAX = 2**16
INDEX_LIMIT = 2**16
ROLES = ("selection", "test")


@dataclass(frozen=True)
class Stream:
    """A registered stream: full name ``<chapter>/<stream>``, role, indices ``0 .. max_index - 1``."""

    name: str
    role: str
    max_index: int
    number: int


_REGISTRY: dict[str, Stream] = {}
_BY_NUMBER: dict[int, str] = {}


def stream_number(name: str) -> int:
    """The 16-bit number of the stream called ``name`` (a hash: independent of other streams)."""
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % STREAMS_MAX


def register(name: str, role: str, max_index: int) -> Stream:
    """Register one stream (idempotent for an identical declaration); refuse clashes."""
    if role not in ROLES:
        raise ValueError(f"stream {name!r}: role must be one of {ROLES}, got {role!r}")
    if isinstance(max_index, bool) or not isinstance(max_index, int) or not 1 <= max_index <= INDEX_LIMIT:
        raise ValueError(f"stream {name!r}: max_index must be an integer in [1, {INDEX_LIMIT}], got {max_index!r}")
    stream = Stream(name, role, max_index, stream_number(name))
    if name in _REGISTRY and _REGISTRY[name] != stream:
        raise ValueError(f"stream {name!r} is already declared as {_REGISTRY[name]}")
    other = _BY_NUMBER.get(stream.number)
    if other is not None and other != name:
        raise ValueError(f"stream {name!r} hashes to number {stream.number}, taken by {other!r}: rename one")
    _REGISTRY[name], _BY_NUMBER[stream.number] = stream, name
    return stream


def registered() -> dict[str, Stream]:
    """Every stream declared so far (by the modules imported), by full name."""
    return dict(_REGISTRY)


def _check_int(value: object, limit: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not 0 <= value < limit:
        raise ValueError(f"{what} must be an integer in [0, {limit}), got {value!r}")
    return int(value)


def derive(chapter_seed: int, stream: str, index: int) -> int:
    """The generator seed of unit ``index`` of registered ``stream`` under ``chapter_seed``."""
    chapter_seed = _check_int(chapter_seed, CHAPTER_SEEDS, "chapter seed")
    if stream not in _REGISTRY:
        raise KeyError(f"stream {stream!r} is not declared (declare_streams); declared: {sorted(_REGISTRY)}")
    s = _REGISTRY[stream]
    index = _check_int(index, s.max_index, f"index of stream {stream!r}")
    return (chapter_seed << 32) | (s.number << 16) | index


def numpy_generator(seed: int) -> np.random.Generator:
    """A NumPy generator from a derived seed (all 64 bits enter its SeedSequence)."""
    return np.random.default_rng(_check_int(seed, 2**64, "seed"))


def _mt19937_state(seed: int) -> torch.Tensor:
    """A full torch CPU generator state (mt19937, 624 words) filled from all 64 bits of ``seed``."""
    state = torch.Generator().manual_seed(0).get_state().numpy().copy()   # the layout, freshly seeded
    words = np.random.SeedSequence(seed).generate_state(624, np.uint32).astype(np.uint64)
    state[0:8] = np.frombuffer(np.uint64(seed).tobytes(), np.uint8)        # initial_seed() reports it
    state[24:24 + 624 * 8] = np.frombuffer(words.tobytes(), np.uint8)      # the 624 state words
    return torch.from_numpy(state)


def torch_generator(seed: int, device: str | torch.device = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` from a derived seed, using all of its 64 bits."""
    seed = _check_int(seed, 2**64, "seed")
    device = torch.device(device)
    g = torch.Generator(device=device)
    if device.type == "cpu":
        g.set_state(_mt19937_state(seed))
    else:
        g.manual_seed(seed)
    return g


def cpu_generator(seed: int) -> torch.Generator:
    """The CPU generator a library function should build from an integer ``seed`` it is given.

    Seeds below 2³² give exactly ``torch.Generator().manual_seed(seed)`` (earlier results are
    unchanged); larger ones — the derived seeds of :func:`derive` — use all 64 bits
    (:func:`torch_generator`), since ``manual_seed`` keeps only the low 32 and two chapter seeds would
    then share every draw."""
    seed = _check_int(seed, 2**64, "seed")
    return torch.Generator().manual_seed(seed) if seed < 2**32 else torch_generator(seed)


def seed_torch(seed: int) -> None:
    """Seed torch's global generators (what ``nn.Module`` initialisation draws from) from a derived
    seed, all 64 bits (use in place of ``torch.manual_seed``)."""
    seed = _check_int(seed, 2**64, "seed")
    torch.default_generator.set_state(_mt19937_state(seed))
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


class ChapterStreams:
    """The streams one chapter declared; short names, chapter-qualified in the registry."""

    def __init__(self, chapter: str, streams: Mapping[str, tuple[str, int]]):
        if not chapter or "/" in chapter:
            raise ValueError(f"chapter must be a non-empty name without '/', got {chapter!r}")
        self.chapter = chapter
        self.streams = {name: register(f"{chapter}/{name}", role, max_index)
                        for name, (role, max_index) in streams.items()}

    def seed(self, chapter_seed: int, name: str, index: int = 0) -> int:
        if name not in self.streams:
            raise KeyError(f"{self.chapter} declares no stream {name!r}; it has {sorted(self.streams)}")
        return derive(chapter_seed, f"{self.chapter}/{name}", index)

    def numpy(self, chapter_seed: int, name: str, index: int = 0) -> np.random.Generator:
        return numpy_generator(self.seed(chapter_seed, name, index))

    def torch(self, chapter_seed: int, name: str, index: int = 0,
              device: str | torch.device = "cpu") -> torch.Generator:
        return torch_generator(self.seed(chapter_seed, name, index), device)

    def role(self, name: str) -> str:
        return self.streams[name].role


BOOTSTRAP = ("test", 1024)   # every chapter's "bootstrap" stream: one index per claim


def declare_streams(chapter: str, streams: Mapping[str, tuple[str, int]]) -> ChapterStreams:
    """Declare a chapter's streams ``{name: (role, max_index)}``; a ``"bootstrap"`` test stream
    (for the claims engine's resampling, index = the claim's position) is added unless declared."""
    return ChapterStreams(chapter, {"bootstrap": BOOTSTRAP, **streams})
