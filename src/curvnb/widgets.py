"""Slider-driven figures for chapters.

``SliderFigure(draw, alpha=(0.0, 1.0, 0.05, 0.5), depth=[2, 3, 4])`` wraps a plain function
``draw(**values) -> matplotlib.figure.Figure``. In a live notebook (Jupyter, Colab) ``show()``
displays the default figure and sliders that redraw it in place; the static HTML book shows
the default state. Tests call ``draw`` / ``render`` headless.
"""
from __future__ import annotations

from typing import Any, Callable

import matplotlib.pyplot as plt

from curvnb.figures import figure_image


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


class SliderFigure:
    """A figure redrawn by ``draw(**values)`` whenever a control changes."""

    def __init__(self, draw: Callable[..., Any], **controls: Any):
        if not controls:
            raise ValueError("SliderFigure needs at least one control")
        self.draw = draw
        self.controls = {name: _control(name, spec) for name, spec in controls.items()}
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

    def show(self) -> None:
        import ipywidgets as w
        from IPython.display import display

        fig = self.render()
        self._handle = display(figure_image(fig), display_id=True)
        plt.close(fig)
        display(w.HBox(list(self.controls.values()), layout=w.Layout(flex_flow="row wrap")))
        for c in self.controls.values():
            c.observe(self._redraw, names="value")
