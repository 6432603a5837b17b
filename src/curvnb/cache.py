"""An on-disk cache for chapter results, keyed by configuration.

Entries are pickles of plain data (dicts, lists, NumPy arrays) framed by a header that holds
a magic tag, the payload length and its SHA-256. Writes go to a temporary file in the same
folder and are renamed into place, so a reader sees either the old entry or the new one,
never half of one; a truncated or corrupted entry fails the checksum and is recomputed.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import pickle
import tempfile
import warnings
from pathlib import Path
from typing import Any, Callable

MAGIC = b"CURVNB-CACHE-1\n"


class CorruptCacheEntry(Exception):
    """A cache file exists but cannot be trusted (truncated, altered or unreadable)."""


def _jsonable(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float):
        return repr(value)  # exact, and stable across platforms
    if isinstance(value, (str, int, bool)) or value is None:
        return value
    return repr(value)


def cache_key(**parts: Any) -> str:
    """A stable hex digest of ``parts`` (dataclasses, dicts, lists and scalars)."""
    blob = json.dumps(_jsonable(parts), sort_keys=True).encode()
    return hashlib.sha256(blob).hexdigest()[:32]


def write_entry(path: Path, value: Any) -> None:
    """Atomically write ``value`` to ``path`` (temporary file + fsync + rename)."""
    payload = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
    header = MAGIC + len(payload).to_bytes(8, "little") + hashlib.sha256(payload).digest()
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(header)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def read_entry(path: Path) -> Any:
    """Read an entry written by :func:`write_entry`; :class:`CorruptCacheEntry` if it is damaged."""
    data = path.read_bytes()
    n = len(MAGIC)
    if len(data) < n + 40 or data[:n] != MAGIC:
        raise CorruptCacheEntry(f"{path}: bad header")
    length = int.from_bytes(data[n : n + 8], "little")
    digest, payload = data[n + 8 : n + 40], data[n + 40 :]
    if len(payload) != length:
        raise CorruptCacheEntry(f"{path}: truncated ({len(payload)} of {length} bytes)")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptCacheEntry(f"{path}: checksum mismatch")
    try:
        return pickle.loads(payload)
    except Exception as exc:  # pragma: no cover - checksum makes this very unlikely
        raise CorruptCacheEntry(f"{path}: {exc}") from exc


class DiskCache:
    """``cache.get_or_compute(key, fn)``: the stored value for ``key``, or ``fn()`` stored then returned."""

    def __init__(self, folder: Path | str):
        self.folder = Path(folder)

    def path(self, key: str) -> Path:
        return self.folder / f"{key}.pkl"

    def get_or_compute(self, key: str, fn: Callable[[], Any],
                       valid: Callable[[Any], bool] | None = None) -> Any:
        """``valid(entry)`` may reject a sound but stale entry (it is then recomputed)."""
        path = self.path(key)
        if path.exists():
            try:
                value = read_entry(path)
                if valid is None or valid(value):
                    return value
            except (CorruptCacheEntry, OSError) as exc:
                warnings.warn(f"ignoring damaged cache entry, recomputing: {exc}", stacklevel=2)
                path.unlink(missing_ok=True)
        value = fn()
        write_entry(path, value)
        return value
