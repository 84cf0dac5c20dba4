"""Kernel-free slider twins: one precomputed plotly frame per slider value."""

import numpy as np
import plotly.graph_objects as go
import pytest

from mldyn_lite.interactive import kernel_slider, slider_figure

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
