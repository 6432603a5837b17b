import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402

from curvnb.studies import intro  # noqa: E402
from curvnb.widgets import SliderFigure  # noqa: E402


def test_slider_figure_controls_and_render():
    seen = []

    def draw(a, b, kind):
        seen.append((a, b, kind))
        fig, ax = plt.subplots()
        ax.plot([0, 1], [a, b])
        return fig

    view = SliderFigure(draw, a=(0.0, 1.0, 0.1, 0.5), b=(1, 10, 1, 3), kind=["x", "y"])
    assert view.values == {"a": 0.5, "b": 3, "kind": "x"}
    assert type(view.controls["b"]).__name__ == "IntSlider"
    fig = view.render(b=7)
    assert seen[-1] == (0.5, 7, "x")
    assert fig.axes[0].lines[0].get_ydata().tolist() == [0.5, 7]
    view.controls["kind"].value = "y"
    view.render()
    assert seen[-1] == (0.5, 3, "y")
    with pytest.raises(ValueError, match="unknown controls"):
        view.render(c=1)
    plt.close("all")


def test_slider_figure_rejects_bad_specs():
    with pytest.raises(ValueError, match="outside"):
        SliderFigure(lambda a: None, a=(0.0, 1.0, 0.1, 2.0))
    with pytest.raises(ValueError, match="control is"):
        SliderFigure(lambda a: None, a={"x": 1})
    with pytest.raises(ValueError, match="at least one"):
        SliderFigure(lambda: None)


def test_redraw_updates_display_handle():
    updates = []

    class Handle:
        def update(self, image):
            updates.append(image.data)

    view = SliderFigure(intro.draw_interactive, step_ratio=(0.1, 1.2, 0.01, 0.9))
    view._handle = Handle()
    view.controls["step_ratio"].value = 1.1
    view._redraw()
    assert len(updates) == 1 and updates[0][:8] == b"\x89PNG\r\n\x1a\n"


def test_intro_widget_callback_headless():
    """Above 2/λ_max the plotted GD loss grows; below it falls."""
    for ratio, grows in ((0.9, False), (1.1, True)):
        fig = intro.draw_interactive(step_ratio=ratio, condition=50.0, steps=100)
        loss = fig.axes[0].lines[0].get_ydata()
        assert (loss[-1] > loss[0]) == grows
        plt.close(fig)
