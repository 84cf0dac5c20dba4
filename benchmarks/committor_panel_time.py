"""Time the 4.4 committor panel's update function directly.

    .venv/bin/python benchmarks/committor_panel_time.py

``benchmarks/slider_updates.py``'s kernel harness stalls on notebooks/ch4/03 (kernel idle, no error), so this
script rebuilds what the live kT panel's ``show_committor_at`` needs, in a plain process with matplotlib's Agg
backend, and times it at each slider position (process CPU time and wall time, 3 repeats): the finite-volume
committor on a 101 x 101 grid and the figure drawn to PNG, as the inline backend does. The widget dispatch
itself is not timed. Budget: 1 s of compute per update on two cores.
"""

import io
import statistics
import time

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

import mldyn_lite as ml  # noqa: E402
from mldyn_lite import committor as cm  # noqa: E402

POSITIONS = [7.5, 10.0, 15.0, 20.0, 30.0, 50.0]  # the slider's positions other than its start (5.0)
LEVELS = np.arange(0, 200, 15)


def landscape():
    (xmin, xmax), (ymin, ymax) = cm.MB_BOX
    X, Y = np.meshgrid(np.linspace(xmin, xmax, 250), np.linspace(ymin, ymax, 250))
    V = cm.mueller_brown(np.stack([X, Y], -1))
    return X, Y, V - V.min()


def show_committor_at(kT, X, Y, V):
    """As on the page: solve, contour the landscape and q, draw the figure to PNG."""
    solution = cm.solve_committor_fv(cm.mueller_brown, kT, 101)
    fig, ax = ml.plotting.figure()
    ax.contour(X, Y, V, levels=LEVELS, colors="0.6", linewidths=0.6)
    for state in (cm.MB_STATE_A, cm.MB_STATE_B):
        ax.add_patch(plt.Circle(state.center, state.radius, fc="none", ec="k", lw=1.2))
    contour = ax.contourf(solution.x, solution.y, solution.q, levels=np.linspace(0, 1, 21), cmap="RdBu_r", alpha=0.8)
    ax.contour(solution.x, solution.y, solution.q, levels=[0.5], colors="k", linewidths=1.5)
    fig.colorbar(contour, ax=ax, label="$q$")
    ax.set_title(f"kT = {kT:g}: k_AB = {solution.rate_constant:.3g}")
    fig.savefig(io.BytesIO(), format="png")
    plt.close(fig)


def main(repeats: int = 3) -> None:
    ml.setup(seed=0)
    X, Y, V = landscape()
    cpu, wall = [], []
    for _ in range(repeats):
        for kT in POSITIONS:
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            show_committor_at(kT, X, Y, V)
            wall.append(time.perf_counter() - start_wall)
            cpu.append(time.process_time() - start_cpu)
    print(
        f"CPU time median {statistics.median(cpu):.3f} s [{min(cpu):.3f}-{max(cpu):.3f}], "
        f"wall median {statistics.median(wall):.3f} s [{min(wall):.3f}-{max(wall):.3f}] "
        f"({len(POSITIONS)} positions x {repeats} repeats)"
    )


if __name__ == "__main__":
    main()
