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
* :class:`SliderPanel` defines a panel **once**, from one ``traces(value)``
  function: :meth:`SliderPanel.twin` is the precomputed plotly figure above,
  :meth:`SliderPanel.live` the ipywidgets panel that computes the same traces on
  demand, only for the value the reader picks (it may retrain a model), and shows
  them as a plotly figure (JupyterLab, Colab) with a PNG drawn by matplotlib from
  the same traces (static pages, the PDF edition).

A panel in a notebook::

    panel = SliderPanel(traces, values, slider_label="learning rate = ", title="...",
                        xaxis={"range": [0, 1]}, yaxis={"range": [0, 2]})
    panel.twin()   # its own cell: works on the static page
    panel.live()   # its own cell, with the nbval ignore marker: needs a kernel

No equation or paper: this module is presentation only.
"""

from __future__ import annotations

import base64
import inspect
import io
import re
from collections.abc import Callable, Sequence

import numpy as np

from ._checks import check_callable
from .plotting import PALETTE

__all__ = ["FIGURE_HEIGHT", "FIGURE_WIDTH", "SliderPanel", "kernel_slider", "render_png", "slider_figure"]

#: Size of every slider figure, in pixels (the PNG of a live panel has the same size at 100 dpi).
FIGURE_WIDTH, FIGURE_HEIGHT = 720, 420


def _label(value) -> str:
    return f"{value:.3g}" if isinstance(value, float) else str(value)


def slider_figure(
    traces: Callable,
    values: Sequence,
    *,
    slider_label: str,
    title: str = "",
    xaxis: dict | None = None,
    yaxis: dict | None = None,
    height: int = FIGURE_HEIGHT,
):
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
    layout = _layout(title, xaxis, yaxis, height)
    layout.sliders = [{"active": 0, "steps": steps, "currentvalue": {"prefix": slider_label}, "pad": {"t": 40}}]
    return go.Figure(data=frames_data[0], layout=layout, frames=frames)


def _layout(title: str, xaxis: dict | None, yaxis: dict | None, height: int):
    import plotly.graph_objects as go

    return go.Layout(
        title=title,
        width=FIGURE_WIDTH,
        height=height,
        template="simple_white",
        colorway=PALETTE,
        xaxis=xaxis or {},
        yaxis=yaxis or {},
        margin={"t": 50, "b": 40},
    )


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
    slider = ipywidgets.SelectionSlider(options=values, value=values[0], description=description, continuous_update=False)
    return ipywidgets.interact(lambda value: update(value), value=slider)


# --- one panel, two views ------------------------------------------------------------------------

_DASHES = {"solid": "-", "dot": ":", "dash": "--", "longdash": "--", "dashdot": "-.", "longdashdot": "-."}


def _colour(value, default=None):
    """A plotly colour (name, hex, ``rgb(...)``/``rgba(...)``) as matplotlib understands it."""
    if value is None:
        return default
    match = re.fullmatch(r"\s*rgba?\(([^)]*)\)\s*", str(value))
    if match:
        parts = [float(p) for p in match.group(1).split(",")]
        return tuple(p / 255 for p in parts[:3]) + tuple(parts[3:4])
    return value


def _colormap(colorscale):
    from matplotlib import colormaps
    from matplotlib.colors import LinearSegmentedColormap

    if colorscale is None:
        return "viridis"
    if isinstance(colorscale, str):
        return colorscale if colorscale in colormaps else colorscale.lower()
    return LinearSegmentedColormap.from_list("plotly", [(float(p), _colour(c)) for p, c in colorscale])


def _array(values):
    return None if values is None else np.asarray(values, dtype=float)


def _draw_scatter(ax, trace, label, colour):
    x, y = _array(trace.x), _array(trace.y)
    x = np.arange(len(y)) if x is None else x
    mode = trace.mode or ("lines+markers" if len(y) < 20 else "lines")
    alpha = trace.opacity
    if "lines" in mode:
        colour = _colour(trace.line.color, colour)
        ax.plot(
            x,
            y,
            _DASHES.get(trace.line.dash or "solid", "-"),
            color=colour,
            lw=trace.line.width or 1.6,
            label=label,
            alpha=alpha,
        )
        label = "_nolegend_"
    if "markers" in mode:
        colour = _colour(trace.marker.color if isinstance(trace.marker.color, str) else None, colour)
        ax.scatter(x, y, s=(trace.marker.size or 6) ** 2 / 2, color=colour, label=label, alpha=alpha, lw=0)


def _draw_bar(ax, trace, label, colour):
    colour = _colour(trace.marker.color if isinstance(trace.marker.color, str) else None, colour)
    ax.bar(
        _array(trace.x),
        _array(trace.y),
        width=trace.width if trace.width is not None else 0.8,
        color=colour,
        alpha=trace.opacity,
        label=label,
    )


def _draw_contour(ax, trace, label, colour):
    z = _array(trace.z)
    x = np.arange(z.shape[1]) if trace.x is None else _array(trace.x)
    y = np.arange(z.shape[0]) if trace.y is None else _array(trace.y)
    contours = trace.contours
    if contours.start is not None and contours.end is not None and contours.size:
        levels = np.arange(contours.start, contours.end + 0.5 * contours.size, contours.size)
    else:
        low = np.nanmin(z) if trace.zmin is None else trace.zmin
        high = np.nanmax(z) if trace.zmax is None else trace.zmax
        levels = np.linspace(low, high, (trace.ncontours or 15) + 1)
    if contours.coloring == "none":
        ax.contour(x, y, z, levels=levels, colors=[_colour(trace.line.color, "0.5")], linewidths=trace.line.width or 1)
        return None
    return ax.contourf(x, y, z, levels=levels, cmap=_colormap(trace.colorscale), alpha=trace.opacity)


def _draw_heatmap(ax, trace, label, colour):
    z = _array(trace.z)
    x = np.arange(z.shape[1]) if trace.x is None else _array(trace.x)
    y = np.arange(z.shape[0]) if trace.y is None else _array(trace.y)
    return ax.pcolormesh(x, y, z, cmap=_colormap(trace.colorscale), vmin=trace.zmin, vmax=trace.zmax, shading="auto")


_DRAW = {"scatter": _draw_scatter, "bar": _draw_bar, "contour": _draw_contour, "heatmap": _draw_heatmap}


def _axis(ax, which: str, axis) -> None:
    log = axis.type == "log"
    if log:
        getattr(ax, f"set_{which}scale")("log")
    if axis.range is not None:
        low, high = axis.range
        getattr(ax, f"set_{which}lim")((10**low, 10**high) if log else (low, high))
    if axis.title is not None and axis.title.text:
        getattr(ax, f"set_{which}label")(axis.title.text)


def render_png(figure, dpi: int = 100) -> bytes:
    """Draw a plotly figure with matplotlib and return the PNG (for pages and PDFs without JavaScript).

    Covers the trace types the book's panels use: ``Scatter`` (lines, markers, dashes), ``Bar``,
    ``Contour`` (filled, or lines when ``contours.coloring == "none"``) and ``Heatmap``, with the
    layout's title, axis titles, ranges and log axes. Other trace types raise ``TypeError``.
    """
    import matplotlib as mpl
    from matplotlib.figure import Figure

    from .plotting import BOOK_STYLE

    layout = figure.layout
    width, height = layout.width or FIGURE_WIDTH, layout.height or FIGURE_HEIGHT
    with mpl.rc_context(BOOK_STYLE):
        fig = Figure(figsize=(width / dpi, height / dpi), dpi=dpi)
        ax = fig.add_subplot()
        colourbar, legend = None, False
        for i, trace in enumerate(figure.data):
            draw = _DRAW.get(trace.type)
            if draw is None:
                raise TypeError(f"traces: render_png cannot draw plotly {trace.type!r} traces; use one of {sorted(_DRAW)}")
            shown = trace.name and trace.showlegend is not False and trace.type in ("scatter", "bar")
            legend = legend or bool(shown)
            before = set(ax.get_children())
            mappable = draw(ax, trace, trace.name if shown else "_nolegend_", PALETTE[i % len(PALETTE)])
            for artist in set(ax.get_children()) - before:  # later traces on top, as in plotly
                artist.set_zorder(1 + i / 100)
            if mappable is not None and trace.showscale is not False and colourbar is None:
                colourbar = fig.colorbar(mappable, ax=ax)
                if trace.colorbar.title is not None and trace.colorbar.title.text:
                    colourbar.set_label(trace.colorbar.title.text)
        _axis(ax, "x", layout.xaxis)
        _axis(ax, "y", layout.yaxis)
        if layout.title is not None and layout.title.text:
            ax.set_title(layout.title.text)
        if legend:
            ax.legend()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png", dpi=dpi)
    return buffer.getvalue()


class SliderPanel:
    """A slider panel defined once: the kernel-free twin and the live panel draw the same traces.

    Parameters
    ----------
    traces
        ``traces(value, **controls) -> list`` of plotly traces for one slider value. Keyword
        arguments, if any, are the live panel's extra controls (see :meth:`live`); the twin calls
        ``traces(value)`` with their defaults.
    values
        The slider positions, in order; the first is where both views start.
    slider_label
        Shown in front of the current value, e.g. ``"flow time t = "``.
    title, xaxis, yaxis, height
        The figure's title and plotly axis settings (give fixed ``range`` values so that the
        pictures for different values are comparable), as for :func:`slider_figure`.
    description
        The live slider's label; by default ``slider_label`` without its trailing ``" = "``.
    """

    def __init__(
        self,
        traces: Callable,
        values: Sequence,
        *,
        slider_label: str,
        title: str = "",
        xaxis: dict | None = None,
        yaxis: dict | None = None,
        height: int = FIGURE_HEIGHT,
        description: str | None = None,
    ):
        check_callable("traces", traces)
        self.values = list(values)
        if not self.values:
            raise ValueError("values must hold at least one slider position")
        if not isinstance(slider_label, str):
            raise TypeError(f"slider_label must be a string, got {type(slider_label).__name__}")
        if description is not None and not isinstance(description, str):
            raise TypeError(f"description must be a string or None, got {type(description).__name__}")
        self.traces, self.slider_label, self.title = traces, slider_label, title
        self.xaxis, self.yaxis, self.height = xaxis, yaxis, height
        self.description = description if description is not None else (slider_label.strip(" =:") or "value")

    def figure(self, value, **controls):
        """The plotly figure for one value (and control settings), computed now; no slider."""
        import plotly.graph_objects as go

        data = list(self.traces(value, **controls))
        if not data:
            raise ValueError("traces(value) must return at least one trace")
        label = f"{self.slider_label}{_label(value)}" if self.slider_label else _label(value)
        title = f"{self.title} ({label})" if self.title else label
        return go.Figure(data=data, layout=_layout(title, self.xaxis, self.yaxis, self.height))

    def twin(self):
        """The kernel-free twin: :func:`slider_figure`, one precomputed frame per value."""
        return slider_figure(
            self.traces,
            self.values,
            slider_label=self.slider_label,
            title=self.title,
            xaxis=self.xaxis,
            yaxis=self.yaxis,
            height=self.height,
        )

    def bundle(self, value, **controls) -> dict:
        """What the live panel displays for one value: plotly JSON, a PNG of the same traces, and text."""
        import plotly.io as pio

        fig = self.figure(value, **controls)
        bundle = pio.renderers["plotly_mimetype"].to_mimebundle(fig.to_dict())
        bundle["image/png"] = base64.b64encode(render_png(fig)).decode("ascii")
        bundle["text/plain"] = f"<figure: {fig.layout.title.text}>"
        return bundle

    def live(self, catch: tuple = (), **controls):
        """The live ipywidgets panel (needs a kernel): computes ``traces`` only for the chosen value.

        ``controls`` are extra widgets passed to ``traces`` as keyword arguments: an ipywidgets
        widget, or a list of options (shown as a selection slider). Exceptions of the types in
        ``catch`` (e.g. ``ml.TrainingDivergedError``) are printed in the panel instead of raised.
        The panel's cell carries ``# NBVAL_IGNORE_OUTPUT`` (its output is widget state).

        Returns an ``ipywidgets.interactive`` (the slider, the controls, and the output area that
        shows :meth:`bundle` for the current settings), as :func:`kernel_slider` does, so that
        ``benchmarks/slider_updates.py`` and ``tests/test_live_sliders.py`` drive it like any panel.
        """
        import ipywidgets
        from IPython.display import display

        if not isinstance(catch, tuple) or not all(isinstance(c, type) and issubclass(c, BaseException) for c in catch):
            raise TypeError("catch must be a tuple of exception types")
        parameters = inspect.signature(self.traces).parameters
        for name in controls:
            if name not in parameters and not any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
                raise TypeError(f"controls: traces() takes no keyword argument {name!r}")
        widgets = {
            "value": ipywidgets.SelectionSlider(
                options=self.values, value=self.values[0], description=self.description, continuous_update=False
            )
        }
        for name, control in controls.items():
            if isinstance(control, ipywidgets.Widget):
                widgets[name] = control
            elif isinstance(control, (list, tuple)) and len(control) > 0:
                widgets[name] = ipywidgets.SelectionSlider(
                    options=list(control), value=control[0], description=name, continuous_update=False
                )
            else:
                raise TypeError(f"controls: {name} must be an ipywidgets widget or a non-empty list of options")

        def show(**settings):
            value = settings.pop("value")
            try:
                display(self.bundle(value, **settings), raw=True)
            except catch as error:
                print(f"{type(error).__name__}: {error}")

        # an ipywidgets.interactive, like kernel_slider's: benchmarks/slider_updates.py times its controls
        return ipywidgets.interactive(show, **widgets)
