"""One plotting style for the whole book.

Every figure in the book is made with matplotlib after :func:`use_book_style`
and, for the recurring figure types, with the functions below, so that phase
portraits, training curves and convergence plots look the same in every
chapter:

* :func:`figure` — a row of axes at the book's standard size;
* :func:`vector_field` and :func:`phase_portrait` — a planar field and its orbits;
* :func:`trajectories_vs_truth` — learned trajectories against reference ones;
* :func:`training_curves` — loss against iteration (or wall-clock) on a log axis;
* :func:`loglog_convergence` — an error against a parameter with its fitted slope.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from ._checks import check_array, check_callable, check_int
from .measure import loglog_slope

__all__ = [
    "BOOK_STYLE",
    "PALETTE",
    "PANEL_SIZE",
    "committor_map",
    "figure",
    "loglog_convergence",
    "phase_portrait",
    "training_curves",
    "trajectories_vs_truth",
    "trajectory_projection",
    "use_book_style",
    "vector_field",
]

#: Colour cycle shared by all figures (colour-blind safe, Okabe–Ito).
PALETTE = ["#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#F0E442", "#000000"]
#: Width and height of one panel, in inches.
PANEL_SIZE = (4.2, 3.2)

BOOK_STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 100,
    "figure.constrained_layout.use": True,
    "font.size": 10,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8.5,
    "legend.frameon": False,
    "axes.grid": True,
    "grid.alpha": 0.3,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "axes.prop_cycle": mpl.cycler(color=PALETTE),
    "image.cmap": "viridis",
}


def use_book_style() -> None:
    """Apply the book's matplotlib style (idempotent)."""
    mpl.rcParams.update(BOOK_STYLE)


def figure(ncols: int = 1, nrows: int = 1, **subplot_kw):
    """Create ``nrows × ncols`` panels at the book's panel size; returns ``(fig, axes)``.

    ``axes`` is a flat array when there is more than one panel, otherwise a
    single Axes.
    """
    ncols = check_int("ncols", ncols, minimum=1)
    nrows = check_int("nrows", nrows, minimum=1)
    use_book_style()
    fig, axes = plt.subplots(
        nrows, ncols, figsize=(PANEL_SIZE[0] * ncols, PANEL_SIZE[1] * nrows), squeeze=False, subplot_kw=subplot_kw
    )
    axes = axes.ravel()
    return fig, (axes[0] if axes.size == 1 else axes)


def _grid(xlim, ylim, n):
    xs = np.linspace(*xlim, n)
    ys = np.linspace(*ylim, n)
    return np.meshgrid(xs, ys)


def vector_field(ax, field: Callable, xlim=(-2, 2), ylim=(-2, 2), n: int = 20, color: str = "0.6"):
    """Draw the planar field ``field(points) -> velocities`` (arrays of shape ``(k, 2)``) as arrows."""
    check_callable("field", field)
    n = check_int("n", n, minimum=2)
    X, Y = _grid(xlim, ylim, n)
    points = np.stack([X.ravel(), Y.ravel()], axis=1)
    velocity = check_array("field(points)", field(points))
    if velocity.shape != points.shape:
        raise ValueError(f"field must map points of shape (k, 2) to velocities of the same shape, got {velocity.shape}")
    U, V = velocity[:, 0].reshape(X.shape), velocity[:, 1].reshape(X.shape)
    speed = np.hypot(U, V)
    scale = np.where(speed > 0, speed, 1.0)
    ax.quiver(X, Y, U / scale, V / scale, speed, cmap="Greys", alpha=0.6, width=0.003, headwidth=3)
    ax.set_xlim(xlim)
    ax.set_ylim(ylim)
    ax.set_aspect("equal")
    return ax


def phase_portrait(ax, field: Callable, initial_points, t_max: float = 10.0, n_steps: int = 500, **field_kw):
    """Vector field plus orbits from ``initial_points``, integrated with scipy's ``solve_ivp``.

    ``field`` is autonomous and maps arrays of shape ``(k, 2)`` to ``(k, 2)``.
    """
    from scipy.integrate import solve_ivp

    vector_field(ax, field, **field_kw)
    starts = check_array("initial_points", initial_points, ndim=2)
    times = np.linspace(0.0, t_max, n_steps)
    for i, x0 in enumerate(starts):
        sol = solve_ivp(lambda t, x: field(x[None, :])[0], (0.0, t_max), x0, t_eval=times, rtol=1e-8, atol=1e-10)
        ax.plot(sol.y[0], sol.y[1], color=PALETTE[i % len(PALETTE)], lw=1.2)
        ax.plot(*x0, "o", color=PALETTE[i % len(PALETTE)], ms=3)
    return ax


def trajectories_vs_truth(ax, t, truth, learned, labels: Sequence[str] | None = None):
    """Reference trajectories (solid) against learned ones (dashed), one colour per component."""
    t = check_array("t", t, ndim=1)
    truth = check_array("truth", truth)
    learned = check_array("learned", learned)
    truth = truth[:, None] if truth.ndim == 1 else truth
    learned = learned[:, None] if learned.ndim == 1 else learned
    if truth.shape != learned.shape or truth.shape[0] != t.size:
        raise ValueError(f"truth and learned must both have shape (len(t), k), got {truth.shape} and {learned.shape}")
    for j in range(truth.shape[1]):
        name = labels[j] if labels else f"$x_{j + 1}$"
        color = PALETTE[j % len(PALETTE)]
        ax.plot(t, truth[:, j], color=color, label=f"{name} true")
        ax.plot(t, learned[:, j], "--", color=color, label=f"{name} learned")
    ax.set_xlabel("$t$")
    ax.legend(ncol=2)
    return ax


def training_curves(
    ax,
    curves: Mapping[str, Sequence[float]],
    x: Mapping[str, Sequence[float]] | None = None,
    xlabel: str = "iteration",
    ylabel: str = "loss",
):
    """Loss histories on a log axis; ``x`` optionally gives each curve's abscissa (e.g. seconds)."""
    if not isinstance(curves, Mapping) or not curves:
        raise TypeError("curves must be a non-empty mapping from label to a sequence of losses")
    for label, values in curves.items():
        values = check_array(f"curves[{label!r}]", values, ndim=1, finite=False)
        xs = check_array(f"x[{label!r}]", x[label], ndim=1) if x is not None else np.arange(values.size)
        ax.plot(xs, values, label=label)
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return ax


def loglog_convergence(ax, x, y, label: str, xlabel: str, ylabel: str, reference_slope: float | None = None):
    """Plot ``y`` against ``x`` on log-log axes with the fitted slope in the legend.

    If ``reference_slope`` is given, a dotted guide line of that slope is drawn
    through the first point. Returns the fitted slope.
    """
    slope, intercept = loglog_slope(x, y)
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    line = ax.loglog(x, y, "o-", label=f"{label} (slope {slope:.2f})")[0]
    if reference_slope is not None:
        ax.loglog(
            x,
            y[0] * (x / x[0]) ** reference_slope,
            ":",
            color=line.get_color(),
            alpha=0.7,
            label=f"slope {reference_slope:g}",
        )
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend()
    return slope


def trajectory_projection(ax, paths, dims: tuple[int, int] = (0, 1), markers: bool = False, **line_kw):
    """Trajectories projected on the plane of coordinates ``dims`` (a phase portrait of data or a learned ODE).

    ``paths`` has shape ``(time, d)`` (one trajectory) or ``(n, time, d)``; trajectory ``i`` is drawn in
    ``PALETTE[i]`` unless ``color`` is given, as a line, or as dots with ``markers=True``. The axes are
    labelled ``h_{i+1}`` unless ``labels=False``.
    """
    paths = check_array("paths", paths)
    paths = paths[None] if paths.ndim == 2 else paths
    if paths.ndim != 3:
        raise ValueError(f"paths must have shape (time, d) or (n, time, d), got {paths.shape}")
    a, b = (check_int("dims", k, minimum=0, maximum=paths.shape[-1] - 1) for k in dims)
    label_axes = line_kw.pop("labels", True)
    style = "." if markers else "-"
    if markers:
        line_kw.setdefault("ms", 3)
    for i, path in enumerate(paths):
        kw = {"color": PALETTE[i % len(PALETTE)], **line_kw}
        ax.plot(path[:, a], path[:, b], style, **kw)
    if label_axes:
        ax.set(xlabel=f"$h_{a + 1}$", ylabel=f"$h_{b + 1}$")
    return ax


def committor_map(ax, x, y, q, *, compare=None, colorbar: bool = True, alpha: float = 0.8):
    """A committor ``q[iy, ix]`` on the grid ``x`` × ``y``: filled contours (21 levels in [0, 1]) and its
    isocommittor :math:`q = 1/2` in black (chapter 4).

    With ``compare`` (a second committor on the same grid, e.g. the finite-volume reference) its
    :math:`q = 1/2` is drawn in black and that of ``q`` dashed on top. Returns the filled contour set.
    """
    x, y, q = check_array("x", x, ndim=1), check_array("y", y, ndim=1), check_array("q", q, ndim=2)
    if q.shape != (len(y), len(x)):
        raise ValueError(f"q must have shape (len(y), len(x)) = {(len(y), len(x))}, got {q.shape}")
    filled = ax.contourf(x, y, q, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=alpha)
    if compare is None:
        ax.contour(x, y, q, levels=[0.5], colors="k", linewidths=1.5)
    else:
        compare = check_array("compare", compare, ndim=2)
        if compare.shape != q.shape:
            raise ValueError(f"compare must have the shape of q {q.shape}, got {compare.shape}")
        ax.contour(x, y, compare, levels=[0.5], colors="k", linewidths=2.5)
        ax.contour(x, y, q, levels=[0.5], colors=PALETTE[4], linewidths=1.2, linestyles="--")
    if colorbar:
        ax.figure.colorbar(filled, ax=ax, label="$q$")
    ax.set(aspect="equal", xlabel="$x$", ylabel="$y$")
    return filled
