"""Where the book's sources and build outputs live."""
from __future__ import annotations

import os
from pathlib import Path


def project_root() -> Path:
    """The repository root: ``$CURVNB_ROOT``, else the nearest folder above the working
    directory that holds ``_config.yml`` and ``book/``, else the working directory (Colab)."""
    env = os.environ.get("CURVNB_ROOT")
    if env:
        return Path(env).resolve()
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / "_config.yml").is_file() and (folder / "book").is_dir():
            return folder
    return here


def build_dir() -> Path:
    """``_build`` under the project root (``$CURVNB_BUILD`` overrides it)."""
    env = os.environ.get("CURVNB_BUILD")
    return Path(env).resolve() if env else project_root() / "_build"


def book_dir() -> Path:
    return project_root() / "book"
