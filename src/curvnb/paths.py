"""Where the book's sources and build outputs live."""
from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent


def _is_project(folder: Path) -> bool:
    return (folder / "_config.yml").is_file() and (folder / "book").is_dir()


def find_project_root() -> Path | None:
    """The repository root: ``$CURVNB_ROOT``, else the nearest folder above the working directory
    that holds ``_config.yml`` and ``book/``, else the checkout this package was installed from
    (editable installs); ``None`` when there is none."""
    env = os.environ.get("CURVNB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents, *PACKAGE_DIR.parents):
        if _is_project(folder):
            return folder
    return None


def project_root() -> Path:
    """:func:`find_project_root`, or the working directory (a chapter run on Colab)."""
    return find_project_root() or Path.cwd().resolve()


def require_project_root() -> Path:
    """The repository root, or a clear error saying how to point curvnb at it."""
    root = find_project_root()
    if root is None or not _is_project(root):
        where = f"$CURVNB_ROOT={os.environ['CURVNB_ROOT']} is" if os.environ.get("CURVNB_ROOT") else \
            f"{Path.cwd()} is"
        raise FileNotFoundError(
            f"no curvnb book found: {where} not inside a curvnb repository (a folder with _config.yml and "
            "book/). Run the command inside the repository, or set CURVNB_ROOT=/path/to/curvnb.")
    return root


def build_dir() -> Path:
    """``_build`` under the project root; ``$CURVNB_BUILD`` overrides it (the test suite uses
    ``_build/test``, so `make test` never touches what `make book` built; a sweep task uses a
    temporary folder of its own)."""
    env = os.environ.get("CURVNB_BUILD")
    return Path(env).resolve() if env else project_root() / "_build"


def book_dir() -> Path:
    return project_root() / "book"
