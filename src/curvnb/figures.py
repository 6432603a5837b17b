"""A consistent, readable figure style and saving as PNG + PDF."""
from __future__ import annotations

from pathlib import Path

import matplotlib

STYLE = {
    "figure.dpi": 110,
    "savefig.dpi": 150,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "font.size": 10,
    "axes.titlesize": 11,
    "legend.fontsize": 9,
    "legend.frameon": False,
}


def apply_style() -> None:
    matplotlib.rcParams.update(STYLE)


def save_figure(fig, folder: Path, name: str) -> list[Path]:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf``; returns both paths."""
    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    paths = [folder / f"{name}.{ext}" for ext in ("png", "pdf")]
    for p in paths:
        fig.savefig(p)
    return paths
