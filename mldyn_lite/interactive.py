"""Sliders that work both with a kernel and on the static web page.

An ipywidgets slider needs a running kernel: in the static HTML book it is
frozen. Every key slider of the book therefore has a *kernel-free twin*: a
plotly figure whose frames are precomputed for each slider value, so dragging
it in the browser needs only JavaScript.

* :func:`slider_figure` builds that twin from a function ``traces(value)``
  that returns the plotly traces for one slider value.
* :func:`kernel_slider` wraps ``ipywidgets.interact`` for the live version
  (its output is widget state, so the notebook cell carries the nbval ignore
  marker).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ._checks import check_callable
from .plotting import PALETTE

FIGURE_WIDTH, FIGURE_HEIGHT = 720, 420


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def slider_figure(traces: Callable, values: Sequence, *, slider_label: str, title: str = "",
                  xaxis: dict | None = None, yaxis: dict | None = None, height: int = FIGURE_HEIGHT):
    """A plotly figure with one precomputed frame per slider value.

    Parameters
    ----------
    traces
        ``traces(value) -> list`` of plotly traces (e.g. ``go.Scatter``) for one
        value. Every value must give the same number of traces.
    values
        The slider positions, in order.
    slider_label
        Shown in front of the current value, e.g. ``"flow time t = "``.
    xaxis, yaxis
        Plotly axis settings; give fixed ``range`` values so that frames are comparable.
    """
    import plotly.graph_objects as go

    check_callable("traces", traces)
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one slider position")
    if not isinstance(slider_label, str):
        raise TypeError(f"slider_label must be a string, got {type(slider_label).__name__}")
    frames_data = [list(traces(v)) for v in values]
    counts = {len(data) for data in frames_data}
    if len(counts) != 1 or 0 in counts:
        raise ValueError("traces(value) must return the same, non-zero number of traces for every value")
    frames = [go.Frame(data=data, name=_label(v)) for v, data in zip(values, frames_data)]
    jump = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    steps = [{"label": _label(v), "method": "animate", "args": [[_label(v)], jump]} for v in values]
    layout = go.Layout(
        title=title, width=FIGURE_WIDTH, height=height, template="simple_white", colorway=PALETTE,
        xaxis=xaxis or {}, yaxis=yaxis or {}, margin={"t": 50, "b": 40},
        sliders=[{"active": 0, "steps": steps, "currentvalue": {"prefix": slider_label}, "pad": {"t": 40}}],
    )
    return go.Figure(data=frames_data[0], layout=layout, frames=frames)


def kernel_slider(update: Callable, values: Sequence, description: str = "value"):
    """Live ipywidgets slider over ``values`` calling ``update(value)`` (needs a kernel).

    ``update`` takes the slider value as its single positional argument; its
    parameter may have any name.
    """
    import ipywidgets

    check_callable("update", update)
    values = list(values)
    if not values:
        raise ValueError("values must hold at least one slider position")
    slider = ipywidgets.SelectionSlider(options=values, value=values[0], description=description,
                                        continuous_update=False)
    return ipywidgets.interact(lambda value: update(value), value=slider)
