"""An on-disk cache for chapter results, keyed by configuration and kept valid by compute code.

A result is looked up by configuration, seed, device type and arguments (:func:`cache_key`) and
reused only while the source of the code that computed it is unchanged (:func:`compute_sources`):
the module defining the cached function and the ``curvnb`` modules it imports, transitively. Report
code (prose, figures, claims, widgets, the chapter object) is not part of it, so editing those
reuses every cached result, while editing a study's compute module or a library module it imports
recomputes.

Entries are pickles of plain data (dicts, lists, NumPy arrays) framed by a header that holds
a magic tag, the payload length and its SHA-256. Writes go to a temporary file in the same
folder and are renamed into place, so a reader sees either the old entry or the new one,
never half of one; a truncated or corrupted entry fails the checksum and is recomputed.
"""
from __future__ import annotations

import ast
import dataclasses
import functools
import hashlib
import inspect
import json
import os
import pickle
import sys
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


#: Packages whose modules count as compute code when imported (name -> folder). Only ``curvnb``;
#: tests add a throw-away package here.
PACKAGES: dict[str, Path] = {"curvnb": Path(__file__).resolve().parent}
_PARSED: dict[tuple[str, str], frozenset[str]] = {}   # (module, source SHA-256) -> imported modules


def _module_file(name: str) -> Path | None:
    """The source file of module ``name`` of a package in :data:`PACKAGES` (a package's
    ``__init__.py``), found without importing it; ``None`` for any other module."""
    top, *parts = name.split(".")
    if top not in PACKAGES:
        return None
    base = PACKAGES[top].joinpath(*parts)
    candidates = ([base.with_suffix(".py")] if parts else []) + [base / "__init__.py"]
    return next((c for c in candidates if c.is_file()), None)


def _imports(name: str, path: Path, source: bytes, digest: str) -> frozenset[str]:
    """The modules of :data:`PACKAGES` that module ``name`` (file ``path``) imports, anywhere in
    the file (function-level imports too): ``import a.b`` gives ``a.b``; ``from a import b`` gives
    the submodule ``a.b`` when there is one, else ``a`` itself (whose ``__init__`` defines ``b``).
    Parsed once per source version."""
    if (name, digest) in _PARSED:
        return _PARSED[name, digest]
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(source, filename=str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:   # relative: from .x import y, from .. import z
                base = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            for alias in node.names:
                sub = f"{module}.{alias.name}"
                found.add(sub if alias.name != "*" and _module_file(sub) is not None else module)
    result = frozenset(m for m in found if _module_file(m) is not None)
    _PARSED[name, digest] = result
    return result


def _digests(start: str, path: Path) -> dict[str, str]:
    """SHA-256 of module ``start`` (file ``path``) and of every module of :data:`PACKAGES` it
    imports, transitively, keyed by path relative to the package's parent folder.

    A package's ``__init__`` counts only when something is imported from the package itself (its
    ``__init__`` then defines the name), not as the parent of an imported submodule; a top-level
    ``__init__`` (``curvnb/__init__.py``) never counts: it re-exports the reader-facing ``Chapter``
    and ``Claim``, not compute code."""
    digests: dict[str, str] = {}
    seen: set[str] = set()
    todo = [(start, path)]
    while todo:
        name, file = todo.pop()
        if name in seen or name in PACKAGES:
            continue
        seen.add(name)
        source = file.read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        top = PACKAGES.get(name.split(".")[0])
        digests[str(file.relative_to(top.parent)) if top else str(file)] = digest
        todo.extend((m, _module_file(m)) for m in _imports(name, file, source, digest))
    return dict(sorted(digests.items()))


def compute_sources(fn: Callable[..., Any]) -> dict[str, str]:
    """SHA-256 of the source of the code that computes ``fn(...)``: the module defining ``fn`` and
    the ``curvnb`` modules it imports, transitively, found by reading its ``import`` statements
    (see :func:`_digests`). Keys are paths such as ``curvnb/studies/huh2020/compute.py``.

    This is what a cached result depends on besides its configuration, seed and device type. A
    study's compute module therefore imports what it runs, and never its report code, claims,
    figures or widgets: editing those must not invalidate results. A function defined outside
    ``curvnb`` (a test, a notebook cell) counts its own module's file, or its source when it has
    no file (a notebook), and the ``curvnb`` modules that file imports."""
    while isinstance(fn, functools.partial):
        fn = fn.func
    fn = inspect.unwrap(fn)
    module = getattr(fn, "__module__", None) or ""
    path = _module_file(module)
    if path is None:
        file = getattr(sys.modules.get(module), "__file__", None)
        path = Path(file).resolve() if file and Path(file).is_file() else None
    if path is not None:
        return _digests(module, path)
    return {f"<{module}.{getattr(fn, '__qualname__', '?')}>": source_sha256(fn)}


def source_sha256(fn: Callable[..., Any]) -> str:
    """SHA-256 of a function's own source (its code object's repr where it has none, e.g. a lambda
    typed at a prompt)."""
    try:
        source = inspect.getsource(fn)
    except (OSError, TypeError):
        source = repr(getattr(fn, "__code__", fn))
    return hashlib.sha256(source.encode()).hexdigest()


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
