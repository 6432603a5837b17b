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


def _counting_draw(calls):
    def draw(a, kind):
        calls.append((a, kind))
        fig, ax = plt.subplots(figsize=(2, 1.5))
        ax.plot([0, 1], [0, a])
        ax.set_title(kind)
        return fig
    return draw


def test_frame_grid_bounds_and_keeps_defaults():
    from curvnb.widgets import combinations, dropped_note, frame_grid

    view = SliderFigure(intro.draw_interactive, step_ratio=(0.1, 1.2, 0.01, 0.9),
                        condition=(2.0, 1000.0, 1.0, 100.0), steps=(50, 1000, 50, 200))
    axes = frame_grid(view.controls, max_values=7, max_frames=40)
    assert len(combinations(axes)) <= 40
    for a, default in zip(axes, (0.9, 100.0, 200)):
        assert a.ordered and a.values[a.default_index] == pytest.approx(default)
        assert len(a.values) >= 2
    step_ratio = axes[0]
    assert step_ratio.values[0] == pytest.approx(0.1) and step_ratio.values[-1] == pytest.approx(1.2)
    assert step_ratio.available == 111 and axes[1].available == 999 and axes[2].available == 20
    assert "of the 111 values of step_ratio" in dropped_note(axes)
    # categories keep every option; a small grid is shown whole, with nothing dropped
    small = SliderFigure(lambda a, kind: None, a=(0, 4, 1, 2), kind=["x", "y", "z"])
    axes = frame_grid(small.controls)
    assert [a.values for a in axes] == [(0, 1, 2, 3, 4), ("x", "y", "z")]
    assert [a.default_index for a in axes] == [2, 0] and dropped_note(axes) == ""
    assert combinations(axes)[:2] == [(0, 0), (0, 1)] and len(combinations(axes)) == 15
    # explicit values, checked against the control
    axes = frame_grid(small.controls, values={"a": [0, 2, 4]})
    assert axes[0].values == (0, 2, 4) and axes[0].default_index == 1
    with pytest.raises(ValueError, match="include its default"):
        frame_grid(small.controls, values={"a": [0, 4]})
    with pytest.raises(ValueError, match="more than max_frames"):
        frame_grid(SliderFigure(lambda k: None, k=list(range(50))).controls, max_frames=40)


def test_static_view_html_frames_and_reuse(tmp_path):
    import json
    import re

    calls = []
    view = SliderFigure(_counting_draw(calls), a=(0.0, 1.0, 0.5, 0.5), kind=["x", "y"])
    block = view.static_view(tmp_path / "v", "../frames/ch/v", "curvnb-ch-v", reuse_key="k1")
    assert len(calls) == 6 and len(list((tmp_path / "v").glob("*.webp"))) == 6
    assert calls[0] == (0.0, "x") and calls[-1] == (1.0, "y")
    # the default frame is shown first, named by its combination; controls are real inputs
    assert 'src="../frames/ch/v/0002.webp"' in block and 'alt="a = 0.5, kind = x"' in block
    assert '<input type="range" data-axis="0" min="0" max="2" step="1" value="1"' in block
    assert '<select data-axis="1"' in block and "<option value=\"0\" selected>x</option>" in block
    frames = json.loads(re.search(r"const frames = (\{.*?\});", block).group(1))
    assert frames["2,1"] == ["../frames/ch/v/0005.webp", "a = 1, kind = y"]
    assert len(frames) == 6 and "http" not in block
    # the manifest records the smallest text over the frames, as the book's legibility test reads it
    from curvnb.figures import smallest_text_px
    expected = min(smallest_text_px(_counting_draw([])(a, k)) for a in (0.0, 0.5, 1.0) for k in "xy")
    assert json.loads((tmp_path / "v" / "manifest.json").read_text())["smallest_text_px"] == round(expected, 2)
    # a rebuild with the same key draws nothing; another key redraws
    view.static_view(tmp_path / "v", "../frames/ch/v", "curvnb-ch-v", reuse_key="k1")
    assert len(calls) == 6
    view.static_view(tmp_path / "v", "../frames/ch/v", "curvnb-ch-v", reuse_key="k2")
    assert len(calls) == 12
    plt.close("all")


def test_a_control_with_one_value_in_the_static_view_is_text_not_a_control():
    from curvnb.widgets import Axis, static_html

    axes = [Axis("a", (0.0, 1.0), 0, True, 2), Axis("metric", ("accuracy",), 0, False, 2)]
    block = static_html("v", "f", axes, ["0000.webp", "0001.webp"])
    assert '<input type="hidden" data-axis="1" value="0"><span>accuracy</span>' in block
    assert "<select" not in block and block.count('type="range"') == 1
    assert "1 of the 2 values of metric" in block   # the note says what the static view leaves out


def test_frame_grid_stops_when_sliders_cannot_shrink():
    """Sliders down to their ends and an interior default cannot shrink further: a clear error,
    not an endless loop."""
    from curvnb.widgets import frame_grid

    view = SliderFigure(lambda a, b, kind: None, a=(0, 2, 1, 1), b=(0, 2, 1, 1), kind=list("abcdefgh"))
    with pytest.raises(ValueError, match="static_values"):
        frame_grid(view.controls, max_frames=40)
    assert len(frame_grid(view.controls, max_frames=72)[2].values) == 8


def test_smoke_axes_keep_the_default_and_one_more_value_per_control():
    """The smoke profile's static view: 2**k frames, every control still movable, defaults kept."""
    from curvnb.widgets import Axis, combinations, dropped_note, frame_grid, smoke_axes

    view = SliderFigure(intro.draw_interactive, step_ratio=(0.1, 1.2, 0.01, 0.9),
                        condition=(2.0, 1000.0, 1.0, 100.0), steps=(50, 1000, 50, 200))
    full = frame_grid(view.controls, values={"step_ratio": [0.5, 0.9, 1.1], "condition": [10.0, 100.0, 1000.0],
                                             "steps": [200, 1000]})
    smoke = smoke_axes(full)
    assert [a.values for a in smoke] == [(0.9, 1.1), (100.0, 1000.0), (200, 1000)]
    assert [a.values[a.default_index] for a in smoke] == [0.9, 100.0, 200]
    assert len(combinations(smoke)) == 8 and "2 of the 111 values of step_ratio" in dropped_note(smoke)
    last = Axis("k", ("a", "b", "c"), 2, False, 3)        # a default at the end keeps the first value
    assert smoke_axes([last]) == [Axis("k", ("a", "c"), 1, False, 3)]
    one = Axis("n", (4,), 0, True, 1)
    assert smoke_axes([one]) == [one]


def test_a_smoke_chapter_draws_the_smoke_view(tmp_path, monkeypatch):
    """SliderFigure.show inside a chapter run in the smoke profile saves 2**k frames."""
    import json

    from curvnb.chapter import Chapter

    monkeypatch.setenv("CURVNB_BUILD", str(tmp_path))
    calls = []
    Chapter("intro", profile="smoke", device="cpu", verbose=False)
    try:
        SliderFigure(_counting_draw(calls), a=(0.0, 1.0, 0.25, 0.5), kind=["x", "y", "z"]).show()
    finally:
        Chapter.current = None
    manifest = json.loads((tmp_path / "figures" / "intro" / "frames" / "draw" / "manifest.json").read_text())
    assert [values for _, values, _ in manifest["axes"]] == [["0.5", "1.0"], ["'x'", "'z'"]]
    assert len(manifest["files"]) == 4 and sorted(calls)[-1] == (1.0, "z")
    plt.close("all")
