"""Kernel-free slider twins (one precomputed plotly frame per value) and panels defined once (SliderPanel)."""

import base64

import numpy as np
import plotly.graph_objects as go
import pytest

from mldyn_lite.interactive import SliderPanel, kernel_slider, render_png, slider_figure

X = np.linspace(0, 1, 20)


def sine(a):
    return [go.Scatter(x=X, y=np.sin(a * X), mode="lines")]


def test_slider_figure_has_one_frame_and_step_per_value():
    fig = slider_figure(sine, [1.0, 2.0, 3.0], slider_label="a = ")
    assert [f.name for f in fig.frames] == ["1", "2", "3"]
    assert len(fig.layout.sliders[0].steps) == 3
    np.testing.assert_allclose(fig.frames[2].data[0].y, np.sin(3.0 * X))
    np.testing.assert_allclose(fig.data[0].y, np.sin(X))  # initial view is the first value


def test_slider_figure_validates():
    with pytest.raises(ValueError, match="values"):
        slider_figure(sine, [], slider_label="a")
    with pytest.raises(TypeError, match="traces"):
        slider_figure("sine", [1.0], slider_label="a")
    with pytest.raises(ValueError, match="same, non-zero number"):
        slider_figure(lambda a: sine(a) * (1 if a < 2 else 2), [1.0, 2.0], slider_label="a")
    with pytest.raises(TypeError, match="slider_label"):
        slider_figure(sine, [1.0], slider_label=3)


def test_kernel_slider_validates():
    with pytest.raises(TypeError, match="update"):
        kernel_slider(None, [1, 2])
    with pytest.raises(ValueError, match="values"):
        kernel_slider(print, [])


# --- SliderPanel: one definition, two views -------------------------------------------------------


def counted_traces():
    calls = []

    def traces(a, shift=0.0):
        calls.append((a, shift))
        z = np.sin(a * X[None, :]) * np.cos(X[:, None])
        return [
            go.Scatter(x=X, y=np.sin(a * X) + shift, mode="lines", name="sine", line={"dash": "dot"}),
            go.Bar(x=X[::4], y=a * X[::4], width=0.05, name="bars"),
            go.Contour(x=X, y=X, z=z, zmin=-1, zmax=1, colorscale="RdBu_r"),
            go.Contour(x=X, y=X, z=z, contours={"start": -1, "end": 1, "size": 0.5, "coloring": "none"}),
        ]

    return traces, calls


def test_panel_twin_is_the_slider_figure_of_the_same_traces():
    traces, _ = counted_traces()
    panel = SliderPanel(traces, [1.0, 2.0], slider_label="a = ", title="demo", xaxis={"range": [0, 1]})
    twin = panel.twin()
    reference = slider_figure(traces, [1.0, 2.0], slider_label="a = ", title="demo", xaxis={"range": [0, 1]})
    assert twin.to_dict() == reference.to_dict()
    np.testing.assert_allclose(panel.figure(2.0).data[0].y, twin.frames[1].data[0].y)


def test_live_panel_computes_only_the_chosen_values():
    ipywidgets = pytest.importorskip("ipywidgets")
    traces, calls = counted_traces()
    panel = SliderPanel(traces, [1.0, 2.0, 3.0, 4.0], slider_label="a = ")
    box = panel.live(shift=[0.0, 0.5])
    assert calls == [(1.0, 0.0)]  # only the starting value, not every frame
    slider, shift = box.children[:2]
    assert isinstance(slider, ipywidgets.SelectionSlider) and slider.description == "a"
    slider.value = 3.0
    shift.value = 0.5
    assert calls == [(1.0, 0.0), (3.0, 0.0), (3.0, 0.5)]
    assert isinstance(box.children[-1], ipywidgets.Output)


def test_live_bundle_has_plotly_json_and_a_png_that_changes_with_the_value():
    traces, _ = counted_traces()
    panel = SliderPanel(traces, [1.0, 3.0], slider_label="a = ", title="demo")
    one, three = panel.bundle(1.0), panel.bundle(3.0)
    assert one["application/vnd.plotly.v1+json"]["layout"]["title"]["text"] == "demo (a = 1)"
    png = base64.b64decode(one["image/png"])
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert one["image/png"] != three["image/png"]


def test_render_png_draws_the_axes_settings():
    fig = go.Figure(
        [go.Scatter(x=[1, 10, 100], y=[1, 2, 3], mode="lines+markers", line={"color": "rgb(0,0,255)"})],
        layout={"xaxis": {"type": "log", "range": [0, 2], "title": "x"}},
    )
    assert render_png(fig)[:4] == b"\x89PNG"
    with pytest.raises(TypeError, match="scatter3d"):
        render_png(go.Figure([go.Scatter3d(x=[0], y=[0], z=[0])]))


def test_live_panel_prints_caught_errors_and_validates(capsys):
    def failing(a):
        raise ArithmeticError(f"diverged at {a}")

    panel = SliderPanel(failing, [1, 2], slider_label="a = ")
    panel.live(catch=(ArithmeticError,))  # printed in the panel (here: no kernel, so stdout), not a traceback
    assert "ArithmeticError: diverged at 1" in capsys.readouterr().out
    with pytest.raises(TypeError, match="catch"):
        panel.live(catch=ArithmeticError)
    with pytest.raises(TypeError, match="controls"):
        SliderPanel(sine, [1.0], slider_label="a").live(shift=[0, 1])
    with pytest.raises(ValueError, match="values"):
        SliderPanel(sine, [], slider_label="a")
    with pytest.raises(TypeError, match="traces"):
        SliderPanel(None, [1], slider_label="a")
    with pytest.raises(TypeError, match="slider_label"):
        SliderPanel(sine, [1], slider_label=None)
