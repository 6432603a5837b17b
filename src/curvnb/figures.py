"""The book's figure house style, panel layout, and saving as PNG + PDF.

The rendered book shows figures at about ``CONTENT_WIDTH_PX`` = 680 px. Figures are drawn
``CONTENT_WIDTH_IN`` inches wide (so one inch is shown as ~100 px) with fonts of at least
``MIN_FONT_PT``: every text is then at least ~9 px tall on the page. Multi-panel figures use
:func:`panels`, which wraps to at most three panels per row at that width.
"""
from __future__ import annotations

import json
import math
from pathlib import Path

import matplotlib
from cycler import cycler

CONTENT_WIDTH_PX = 680
CONTENT_WIDTH_IN = 6.8
MIN_FONT_PT = 7.0
# Okabe–Ito: distinguishable under the common colour-vision deficiencies, all clearly visible on white.
COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#000000", "#F0E442")

STYLE = {
    "figure.dpi": 100,
    "figure.figsize": (CONTENT_WIDTH_IN, 3.4),
    "savefig.dpi": 200,
    "savefig.bbox": "tight",
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.prop_cycle": cycler(color=list(COLORS)),
    "lines.linewidth": 1.6,
    "font.size": 9,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "legend.fontsize": 8,
    "legend.frameon": False,
    "figure.titlesize": 10,
}


def panels(n: int, ncols: int | None = None, row_height: float = 2.6, **subplot_kw):
    """``(fig, axes)`` for ``n`` panels at the book's content width, at most three per row.

    ``axes`` is a flat list of ``n`` axes (unused grid cells are removed). Extra keyword
    arguments go to :func:`matplotlib.pyplot.subplots` (``sharex``, ``sharey`` ...)."""
    import matplotlib.pyplot as plt

    if n < 1:
        raise ValueError(f"need at least one panel, got {n}")
    ncols = min(n, 3) if ncols is None else ncols
    if not 1 <= ncols <= 3:
        raise ValueError(f"at most three panels per row at the book's width, got ncols={ncols}")
    nrows = math.ceil(n / ncols)
    fig, grid = plt.subplots(nrows, ncols, figsize=(CONTENT_WIDTH_IN, row_height * nrows), squeeze=False,
                             layout="constrained", **subplot_kw)
    axes = list(grid.ravel())
    for ax in axes[n:]:
        ax.remove()
    return fig, axes[:n]


def _saved_box(fig):
    """``(bbox_inches, width_in)`` for saving ``fig`` as ``savefig`` would with the current settings,
    after one draw without rendering (which runs the figure's layout engine): with
    ``savefig.bbox = "tight"`` the padded tight box in inches, else ``None`` (the whole figure)."""
    fig.draw_without_rendering()   # layout and text extents, no pixels
    pad = matplotlib.rcParams["savefig.pad_inches"]
    if matplotlib.rcParams["savefig.bbox"] != "tight":
        return None, float(fig.get_size_inches()[0])
    if not isinstance(pad, (int, float)):   # "layout": savefig's own rule, measured on its output
        return "tight", float(fig.get_tightbbox().width)
    box = fig.get_tightbbox().padded(float(pad))
    return box, float(box.width)


def shown_width_in(fig) -> float:
    """Width in inches of the image ``savefig`` writes (``bbox="tight"`` crops or grows the figure)."""
    return _saved_box(fig)[1]


def smallest_text_px(fig, display_width_px: float = CONTENT_WIDTH_PX, *, width_in: float | None = None) -> float:
    """Height in px of the figure's smallest visible text as the book shows it.

    A chapter shows a figure at ``figure.dpi`` pixels per inch (:func:`figure_image`), scaled
    down to ``display_width_px`` when wider than that. ``width_in``: the saved image's width in
    inches, for a figure ``savefig`` has just drawn (skips drawing it again)."""
    if width_in is None:   # its draw also gives tick labels their text
        width_in = shown_width_in(fig)
    px_per_in = min(display_width_px / width_in, float(fig.get_dpi()))
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    if not texts:
        return math.inf
    return min(t.get_fontsize() for t in texts) / 72.0 * px_per_in


def apply_style() -> None:
    matplotlib.rcParams.update(STYLE)


def figure_image(fig, png: bytes | None = None):
    """A PNG ``IPython.display.Image`` of ``fig``, rendered at ``savefig.dpi`` and shown at
    ``figure.dpi`` (crisp at the book's content width; works under any backend).

    ``png``: the bytes ``fig.savefig`` already wrote with the current settings (e.g. the file
    :func:`save_figure` just saved), shown as they are instead of rendering the figure again."""
    import io
    import struct

    from IPython.display import Image

    if png is None:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
        png = buffer.getvalue()
    width_px = struct.unpack(">I", png[16:20])[0]   # PNG IHDR width
    saved_dpi = matplotlib.rcParams["savefig.dpi"]
    scale = fig.get_dpi() / (fig.get_dpi() if saved_dpi == "figure" else float(saved_dpi))
    return Image(data=png, format="png", width=max(1, round(width_px * scale)))


def figure_facts(fig, width_in: float) -> dict:
    """What the book's tests read of a saved figure (drawn already, shown ``width_in`` inches wide):
    its shown and drawn widths, its smallest text in px at the book's width, and how many of its
    axes lack an x or a y label (colorbars and axes switched off are not counted)."""
    axes = [ax for ax in fig.axes if ax.axison and not hasattr(ax, "_colorbar")]
    return {"width_in": round(width_in, 3), "figure_width_in": round(float(fig.get_size_inches()[0]), 3),
            "smallest_text_px": round(smallest_text_px(fig, width_in=width_in), 2), "axes": len(axes),
            "axes_without_xlabel": sum(not ax.get_xlabel() for ax in axes),
            "axes_without_ylabel": sum(not ax.get_ylabel() for ax in axes)}


def save_figure(fig, folder: Path, name: str) -> bytes:
    """Save ``fig`` as ``<folder>/<name>.png`` and ``.pdf``, with ``<name>.json`` recording its shown
    width, smallest text size in px and unlabelled axes (:func:`figure_facts`). Returns the PNG's bytes (what
    :func:`figure_image` shows): rendered once, in memory, then written, so a caller never reads
    back a file that another process may be rewriting.

    The figure is laid out and measured once: both files are cropped to that one padded tight box
    and drawn with the layout engine paused (``savefig`` with ``bbox_inches="tight"`` would lay out
    and draw every format twice; drawing is most of a chapter's figure time)."""
    import io

    if not name or any(c in name for c in "/\\ "):
        raise ValueError(f"figure name must be a plain file stem, got {name!r}")
    folder.mkdir(parents=True, exist_ok=True)
    box, width_in = _saved_box(fig)
    engine = fig.get_layout_engine()
    pause = engine is not None and not isinstance(box, str)   # laid out by the draw above
    if pause:
        fig.set_layout_engine("none")   # else savefig would lay it out again, for each file
    try:
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", bbox_inches=box)
        png = buffer.getvalue()
        fig.savefig(folder / f"{name}.pdf", bbox_inches=box)
    finally:
        if pause:
            fig.set_layout_engine(engine)
    (folder / f"{name}.png").write_bytes(png)
    # What the book's legibility test reads: the smallest text as the reader sees it (the figure is
    # drawn by now: the text sizes are read without another draw).
    (folder / f"{name}.json").write_text(json.dumps(figure_facts(fig, width_in)))
    return png
