"""Slider-driven figures for chapters, live in a notebook and precomputed for the static book.

``SliderFigure(draw, alpha=(0.0, 1.0, 0.05, 0.5), depth=[2, 3, 4])`` wraps a plain function
``draw(**values) -> matplotlib.figure.Figure``. In a live notebook (Jupyter, Colab) ``show()``
displays the default figure and ipywidgets controls that redraw it in place.

For the published book, where no kernel runs, ``show()`` also draws every combination of the
controls' values with the same ``draw`` (or a bounded subset: :func:`frame_grid` keeps at most
``max_values`` values per slider, always with its ends and default, and at most ``max_frames``
frames, and the view says what it dropped; a chapter run in the smoke profile, the tests' run,
keeps two values per control: :func:`smoke_axes`), saves the frames as WebP under
``_build/figures/<chapter>/frames/<view>/`` and emits an HTML block of real controls (range
inputs for ordered values, selects for categories) with a small script that shows the frame of
the current combination. ``curvnb build`` copies the frames into the site and keeps that block
instead of the ipywidgets view. Frames are reused while the chapter's configuration, seed and
curvnb sources are unchanged.
"""
from __future__ import annotations

import functools
import html
import io
import itertools
import json
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import matplotlib.pyplot as plt
import numpy as np

from curvnb.figures import figure_image, smallest_text_px

FRAME_FORMAT = "webp"
FRAME_DPI = 150          # crisp at the book's content width, ~20 KB a frame
FRAME_QUALITY = 80
FRAMES_URL = "../frames"  # from a chapter page (book/NN_<id>.html) to the site's frames folder
STATIC_VIEWS_ENV = "CURVNB_STATIC_VIEWS"  # "0": draw no static-view frames (sweep tasks)
LIVE_ONLY = {"curvnb": "live-only"}   # output metadata: shown in a live notebook, dropped from the book


def _control(name: str, spec: Any):
    import ipywidgets as w

    if isinstance(spec, w.ValueWidget):
        return spec
    style = {"description_width": "initial"}
    if isinstance(spec, tuple) and len(spec) == 4 and all(isinstance(v, (int, float)) for v in spec):
        lo, hi, step, default = spec
        if not lo <= default <= hi:
            raise ValueError(f"{name}: default {default} outside [{lo}, {hi}]")
        cls = w.IntSlider if all(isinstance(v, int) for v in spec) else w.FloatSlider
        return cls(value=default, min=lo, max=hi, step=step, description=name, style=style,
                   continuous_update=False)
    if isinstance(spec, (list, tuple)) and spec:
        return w.Dropdown(options=list(spec), value=spec[0], description=name, style=style)
    raise ValueError(f"{name}: a control is (min, max, step, default), a non-empty list of options, "
                     f"or an ipywidgets value widget; got {spec!r}")


# --------------------------------------------------------------------------- frame enumeration
@dataclass(frozen=True)
class Axis:
    """One control of the static view: its name, the values it offers, and whether they are ordered."""

    name: str
    values: tuple
    default_index: int
    ordered: bool
    available: int          # how many values the live control offers


def _slider_values(control) -> list:
    lo, hi, step = control.min, control.max, control.step
    count = int(round((hi - lo) / step)) + 1
    values = [lo + i * step for i in range(count)]
    values = [min(v, hi) for v in values]
    if isinstance(lo, int) and isinstance(step, int):
        return [int(v) for v in values]
    return [float(np.round(v, 10)) for v in values]


def _subset(values: list, default_index: int, keep: int) -> tuple[list, int]:
    """``keep`` evenly spaced values including both ends and the default; the default's new index."""
    if len(values) <= keep:
        return values, default_index
    picks = {0, len(values) - 1, default_index}
    for x in np.linspace(0, len(values) - 1, keep):
        if len(picks) >= keep:
            break
        picks.add(int(round(x)))
    idx = sorted(picks)
    return [values[i] for i in idx], idx.index(default_index)


def frame_grid(controls: dict[str, Any], max_values: int = 7, max_frames: int = 40,
               values: dict[str, Sequence] | None = None) -> list[Axis]:
    """The axes of the static view of ``controls`` (ipywidgets controls by name).

    Sliders keep at most ``max_values`` values (ends and default included), reduced further —
    largest first — until the number of combinations is at most ``max_frames``. ``values``
    names the values to keep for some controls explicitly (each must be one the control offers,
    and the default must be among them)."""
    values = values or {}
    unknown = set(values) - set(controls)
    if unknown:
        raise ValueError(f"static values for unknown controls {sorted(unknown)}")
    axes: list[Axis] = []
    for name, control in controls.items():
        ordered = hasattr(control, "min") and hasattr(control, "max")
        offered = _slider_values(control) if ordered else list(control.options)
        default = offered.index(min(offered, key=lambda v: abs(v - control.value))) if ordered \
            else offered.index(control.value)
        if name in values:
            chosen = list(values[name])
            missing = [v for v in chosen if v not in offered]
            if missing or offered[default] not in chosen:
                raise ValueError(f"{name}: static values must be offered by the control and include its "
                                 f"default {offered[default]!r}; got {chosen}")
            axes.append(Axis(name, tuple(chosen), chosen.index(offered[default]), ordered, len(offered)))
            continue
        kept, index = _subset(offered, default, max_values) if ordered else (offered, default)
        axes.append(Axis(name, tuple(kept), index, ordered, len(offered)))
    stuck: set[str] = set()   # sliders already down to their ends and default
    while int(np.prod([len(a.values) for a in axes])) > max_frames:
        shrinkable = [a for a in axes if a.ordered and a.name not in values and a.name not in stuck]
        if not shrinkable:
            raise ValueError(f"the static view needs {int(np.prod([len(a.values) for a in axes]))} frames "
                             f"(more than max_frames={max_frames}); pass static_values= to choose fewer")
        big = max(shrinkable, key=lambda a: len(a.values))
        full = list(big.values)
        kept, index = _subset(full, big.default_index, len(full) - 1)
        if len(kept) == len(full):
            stuck.add(big.name)
            continue
        axes[axes.index(big)] = Axis(big.name, tuple(kept), index, True, big.available)
    return axes


def smoke_axes(axes: Sequence[Axis]) -> list[Axis]:
    """Each axis cut to its default and one other value (its last, or its first when the default is
    the last): the smoke profile's view, which draws every frame code path and moves every control
    in 2**k frames instead of up to ``max_frames``."""
    out = []
    for a in axes:
        if len(a.values) <= 2:
            out.append(a)
            continue
        other = len(a.values) - 1 if a.default_index != len(a.values) - 1 else 0
        keep = sorted({a.default_index, other})
        out.append(Axis(a.name, tuple(a.values[i] for i in keep), keep.index(a.default_index), a.ordered,
                        a.available))
    return out


def combinations(axes: Sequence[Axis]) -> list[tuple[int, ...]]:
    """Every combination of value indices, in a fixed order (the frame numbering)."""
    return list(itertools.product(*(range(len(a.values)) for a in axes)))


def _format(value: Any) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def frame_label(axes: Sequence[Axis], combo: Sequence[int]) -> str:
    """Alt text of a frame: the combination it shows."""
    return ", ".join(f"{a.name} = {_format(a.values[i])}" for a, i in zip(axes, combo))


def dropped_note(axes: Sequence[Axis]) -> str:
    """What the static view leaves out, for the reader ("" when it shows every value)."""
    parts = [f"{len(a.values)} of the {a.available} values of {a.name}" for a in axes if len(a.values) < a.available]
    return ("This precomputed view shows " + ", ".join(parts) + "; open the chapter in Colab for every value."
            if parts else "")


# --------------------------------------------------------------------------- static HTML
def static_html(view_id: str, frames_url: str, axes: Sequence[Axis], files: Sequence[str]) -> str:
    """Controls + the default frame + a self-contained script mapping each combination to its frame."""
    combos = combinations(axes)
    keyed = {",".join(map(str, c)): (f"{frames_url}/{f}", frame_label(axes, c)) for c, f in zip(combos, files)}
    default = tuple(a.default_index for a in axes)
    src, alt = keyed[",".join(map(str, default))]
    controls = []
    for k, a in enumerate(axes):
        label = f'<span style="min-width:7em;display:inline-block">{html.escape(a.name)}</span>'
        if len(a.values) == 1:   # nothing to choose in this view: the value as text, no control
            widget = (f'<input type="hidden" data-axis="{k}" value="0">'
                      f'<span>{html.escape(_format(a.values[0]))}</span>')
        elif a.ordered:
            widget = (f'<input type="range" data-axis="{k}" min="0" max="{len(a.values) - 1}" step="1" '
                      f'value="{a.default_index}" aria-label="{html.escape(a.name)}" '
                      f'aria-valuetext="{html.escape(_format(a.values[a.default_index]))}" style="width:14em">'
                      f'<output style="margin-left:0.5em">{html.escape(_format(a.values[a.default_index]))}</output>')
        else:
            options = "".join(f'<option value="{i}"{" selected" if i == a.default_index else ""}>'
                              f"{html.escape(_format(v))}</option>" for i, v in enumerate(a.values))
            widget = f'<select data-axis="{k}" aria-label="{html.escape(a.name)}">{options}</select>'
        controls.append(f'<label style="display:block;margin:2px 0">{label}{widget}</label>')
    names = [[_format(v) for v in a.values] for a in axes]
    note = dropped_note(axes)
    script = f"""
(function() {{
  const root = document.getElementById({json.dumps(view_id)});
  const frames = {json.dumps(keyed)};
  const names = {json.dumps(names)};
  const img = root.querySelector('img');
  const inputs = Array.from(root.querySelectorAll('[data-axis]'));
  function show() {{
    const key = inputs.map(e => e.value).join(',');
    inputs.forEach((e, k) => {{
      if (e.type === 'range') {{
        const text = names[k][Number(e.value)];
        e.setAttribute('aria-valuetext', text);
        e.nextElementSibling.textContent = text;
      }}
    }});
    const frame = frames[key];
    if (frame) {{ img.src = frame[0]; img.alt = frame[1]; }}
  }}
  inputs.forEach(e => e.addEventListener('input', show));
  inputs.forEach(e => e.addEventListener('change', show));
}})();"""
    return (f'<div class="curvnb-static-slider" id="{html.escape(view_id)}">'
            f'<img src="{html.escape(src)}" alt="{html.escape(alt)}" loading="lazy" '
            f'style="max-width:100%;height:auto;display:block">'
            f'<div class="curvnb-controls" style="margin:4px 0">{"".join(controls)}</div>'
            + (f'<p style="font-size:0.85em;color:#555;margin:2px 0">{html.escape(note)}</p>' if note else "")
            + f"<script>{script}</script></div>")


def _view_name(draw: Callable) -> str:
    fn = draw.func if isinstance(draw, functools.partial) else draw
    return getattr(fn, "__name__", "view").strip("<>") or "view"


def render_frames(draw: Callable[..., Any], axes: Sequence[Axis], folder: Path,
                  progress: bool = False) -> tuple[list[str], float]:
    """Draw and save every frame of ``axes`` into ``folder``; returns the file names in frame order
    and the smallest text of any frame in px at the book's width (:func:`smallest_text_px`)."""
    folder.mkdir(parents=True, exist_ok=True)
    files, smallest = [], math.inf
    combos = combinations(axes)
    from tqdm.auto import tqdm

    for n, combo in enumerate(tqdm(combos, desc="static view frames", disable=not progress, leave=False)):
        fig = draw(**{a.name: a.values[i] for a, i in zip(axes, combo)})
        buffer = io.BytesIO()
        fig.savefig(buffer, format=FRAME_FORMAT, dpi=FRAME_DPI, pil_kwargs={"quality": FRAME_QUALITY})
        # savefig has drawn the frame: its width is the image's; conservative, since a frame is shown
        # at up to its natural size, larger than figure.dpi assumes
        from PIL import Image

        width_in = Image.open(io.BytesIO(buffer.getvalue())).size[0] / FRAME_DPI
        smallest = min(smallest, smallest_text_px(fig, width_in=width_in))
        plt.close(fig)
        name = f"{n:04d}.{FRAME_FORMAT}"
        (folder / name).write_bytes(buffer.getvalue())
        files.append(name)
    return files, smallest


class SliderFigure:
    """A figure redrawn by ``draw(**values)`` whenever a control changes (see the module docstring)."""

    def __init__(self, draw: Callable[..., Any], *, static_values: dict[str, Sequence] | None = None,
                 max_frames: int = 40, max_values: int = 7, **controls: Any):
        if not controls:
            raise ValueError("SliderFigure needs at least one control")
        self.draw = draw
        self.controls = {name: _control(name, spec) for name, spec in controls.items()}
        self.static_values = static_values
        self.max_frames, self.max_values = max_frames, max_values
        self._handle = None

    @property
    def values(self) -> dict[str, Any]:
        return {name: c.value for name, c in self.controls.items()}

    def render(self, **overrides: Any):
        """The figure for the current control values, with ``overrides`` applied."""
        unknown = set(overrides) - set(self.controls)
        if unknown:
            raise ValueError(f"unknown controls {sorted(unknown)}; known: {sorted(self.controls)}")
        return self.draw(**{**self.values, **overrides})

    def _redraw(self, _change=None) -> None:
        fig = self.render()
        if self._handle is not None:
            self._handle.update(figure_image(fig))
        plt.close(fig)

    def axes(self, smoke: bool = False) -> list[Axis]:
        """The static view's axes; ``smoke``: the smoke profile's 2**k-frame cut (:func:`smoke_axes`)."""
        axes = frame_grid(self.controls, self.max_values, self.max_frames, self.static_values)
        return smoke_axes(axes) if smoke else axes

    def static_view(self, folder: Path, frames_url: str, view_id: str, reuse_key: str | None = None,
                    smoke: bool = False) -> str:
        """Draw (or reuse) the frames into ``folder`` and return the static HTML block (``smoke``: the
        smoke profile's few frames).

        Frames are reused when ``folder/manifest.json`` carries the same ``reuse_key`` and the curvnb
        sources it was drawn with are unchanged."""
        from curvnb.chapter import loaded_sources, sources_unchanged

        axes = self.axes(smoke)
        manifest = folder / "manifest.json"
        spec = [[a.name, [repr(v) for v in a.values], a.default_index] for a in axes]
        files = None
        if reuse_key is not None and manifest.exists():
            try:
                old = json.loads(manifest.read_text())
                if old["key"] == reuse_key and old["axes"] == spec and sources_unchanged(old["sources"]) \
                        and all((folder / f).exists() for f in old["files"]):
                    files = old["files"]
            except (ValueError, KeyError, TypeError):
                files = None
        if files is None:
            if folder.exists():
                shutil.rmtree(folder)
            files, smallest = render_frames(self.draw, axes, folder, progress=True)
            manifest.write_text(json.dumps({"key": reuse_key, "axes": spec, "files": files,
                                            "smallest_text_px": round(smallest, 2),
                                            "sources": loaded_sources()}))
        return static_html(view_id, frames_url, axes, files)

    def show(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        fig = self.render()
        self._handle = display(figure_image(fig), display_id=True, metadata=LIVE_ONLY)
        plt.close(fig)
        box = w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap"))
        bundle = {"text/plain": f"SliderFigure({_view_name(self.draw)})",
                  "application/vnd.jupyter.widget-view+json": {
                      "model_id": box.model_id, "version_major": 2, "version_minor": 0}}
        from curvnb.chapter import Chapter

        chapter = Chapter.current
        # executed as a chapter: precompute the static view for the book (a sweep's task, whose
        # run is not published, sets STATIC_VIEWS_ENV=0 and skips the frames)
        if chapter is not None and os.environ.get(STATIC_VIEWS_ENV, "1") != "0":
            name = chapter.next_view_name(_view_name(self.draw))
            bundle["text/html"] = self.static_view(
                chapter.figure_dir / "frames" / name, f"{FRAMES_URL}/{chapter.name}/{name}",
                view_id=f"curvnb-{chapter.name}-{name}", reuse_key=chapter.reuse_key(f"frames/{name}"),
                smoke=chapter.profile == "smoke")
        display(bundle, raw=True)
        for c in self.controls.values():
            c.observe(self._redraw, names="value")
