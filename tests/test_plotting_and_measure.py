"""The shared plotting style and the slope measurement."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

import mldyn_lite as ml  # noqa: E402
from mldyn_lite import plotting  # noqa: E402


def test_loglog_slope_recovers_power_laws():
    x = np.logspace(0, 3, 10)
    slope, intercept = ml.loglog_slope(x, 5.0 * x**-1.5)
    assert slope == pytest.approx(-1.5, abs=1e-12)
    assert np.exp(intercept) == pytest.approx(5.0)


@pytest.mark.parametrize(
    "x, y, error",
    [([1, 2], [1, -1], ValueError), ([1], [1], ValueError), ([1, 2, 3], [1, 2], ValueError), ("ab", [1, 2], TypeError)],
)
def test_loglog_slope_rejects_bad_input(x, y, error):
    with pytest.raises(error):
        ml.loglog_slope(x, y)


def test_figure_has_book_panel_size():
    fig, axes = plotting.figure(ncols=3)
    width, height = fig.get_size_inches()
    assert (width, height) == pytest.approx((3 * plotting.PANEL_SIZE[0], plotting.PANEL_SIZE[1]))
    assert len(axes) == 3
    plt.close(fig)


def test_loglog_convergence_reports_slope_in_legend():
    fig, ax = plotting.figure()
    slope = plotting.loglog_convergence(ax, [1, 2, 4, 8], [1, 0.5, 0.25, 0.125], "Euler", "h", "error", reference_slope=-1)
    assert slope == pytest.approx(-1.0)
    assert "slope -1.00" in ax.get_legend().get_texts()[0].get_text()
    plt.close(fig)


def test_vector_field_and_phase_portrait_draw_and_validate():
    fig, ax = plotting.figure()
    rotation = lambda x: np.stack([-x[:, 1], x[:, 0]], axis=1)  # noqa: E731
    plotting.phase_portrait(ax, rotation, [[1.0, 0.0]], t_max=2 * np.pi, n_steps=200)
    x, y = ax.lines[0].get_data()
    assert np.hypot(x, y) == pytest.approx(1.0, abs=1e-6)  # orbits of a rotation are circles
    with pytest.raises(ValueError, match="field"):
        plotting.vector_field(ax, lambda x: x[:, :1])
    with pytest.raises(TypeError, match="field"):
        plotting.vector_field(ax, "not callable")
    plt.close(fig)


def test_training_curves_and_trajectories_validate():
    fig, ax = plotting.figure()
    plotting.training_curves(ax, {"a": [1.0, 0.1, 0.01]})
    assert ax.get_yscale() == "log"
    with pytest.raises(TypeError, match="curves"):
        plotting.training_curves(ax, [1.0, 0.1])
    t = np.linspace(0, 1, 5)
    plotting.trajectories_vs_truth(ax, t, np.ones((5, 2)), np.ones((5, 2)))
    with pytest.raises(ValueError, match="truth and learned"):
        plotting.trajectories_vs_truth(ax, t, np.ones((5, 2)), np.ones((4, 2)))
    plt.close(fig)
