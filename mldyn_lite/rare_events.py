"""Rare events (chapter 4): one entry point for the committor and quasipotential tools.

The implementations live in two modules, each readable on its own:

* :mod:`mldyn_lite.committor` — the committor :math:`q` solving
  :math:`\\nabla\\cdot(e^{-V/kT}\\nabla q) = 0` with :math:`q|_A = 0,\\ q|_B = 1`
  (Q. Li, B. Lin & W. Ren, J. Chem. Phys. 151, 054112, 2019): potentials,
  the finite-volume reference and the rate, Langevin sampling, the neural
  committor;
* :mod:`mldyn_lite.quasipotential` — the orthogonal decomposition
  :math:`f = -\\nabla U + g,\\ \\nabla U\\cdot g = 0` learned from trajectories
  (B. Lin, Q. Li & W. Ren, MSML 2021) and the minimum-action path.

``from mldyn_lite import rare_events as re`` gives all of them under one name.
"""

from .committor import (
    BoltzmannSampler,
    CommittorFit,
    CommittorNet,
    CommittorOptions,
    Disk,
    FVCommittor,
    committor_errors,
    effective_sample_size,
    evaluate_on_grid,
    extended_mueller_brown,
    fit_committor,
    langevin_samples,
    mueller_brown,
    reaction_rate_of,
    rugged_mueller_brown,
    solve_committor_fv,
    variational_loss,
)
from .quasipotential import (
    DecompositionFit,
    DecompositionNet,
    DecompositionOptions,
    decomposition_loss,
    double_well_potential,
    fit_decomposition,
    geometric_action,
    maier_stein_drift,
    minimum_action_path,
    orthogonality_residual,
    potential_error,
    rotating_double_well_drift,
    simulate_increments,
    uniform_points,
)

__all__ = [
    "BoltzmannSampler", "CommittorFit", "CommittorNet", "CommittorOptions", "Disk", "FVCommittor", "committor_errors",
    "effective_sample_size", "evaluate_on_grid", "extended_mueller_brown", "fit_committor", "langevin_samples",
    "mueller_brown", "reaction_rate_of", "rugged_mueller_brown", "solve_committor_fv", "variational_loss",
    "DecompositionFit", "DecompositionNet", "DecompositionOptions", "decomposition_loss", "double_well_potential",
    "fit_decomposition",
    "geometric_action", "maier_stein_drift", "minimum_action_path", "orthogonality_residual", "potential_error",
    "rotating_double_well_drift", "simulate_increments", "uniform_points",
]
