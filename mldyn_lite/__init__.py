"""mldyn_lite — the helper package of the course book *Machine Learning and Dynamical Systems*.

One module per topic, each readable on its own:

* :mod:`mldyn_lite.runtime` — device, seeding, threads (:func:`setup`);
* :mod:`mldyn_lite.numerics` — the shared numerics: ODE integrator, MLP builder, seeded generator, device rule;
* :mod:`mldyn_lite.plotting` — the book's one plotting style;
* :mod:`mldyn_lite.training` — a training loop that stops on NaN/Inf;
* :mod:`mldyn_lite.measure` — slopes and rates from experiments;
* :mod:`mldyn_lite.datasets` — generated data sets;
* :mod:`mldyn_lite.supervised` — ERM vs PRM and the generalisation gap (chapter 1);
* :mod:`mldyn_lite.flows` — residual networks as discretised flows (chapters 1–2);
* :mod:`mldyn_lite.interpolation` — flows as approximators in 1-D, universal interpolation by control (chapter 2);
* :mod:`mldyn_lite.memory` — sequence functionals, memory kernels, exponential sums, Mori–Zwanzig (chapters 1, 3);
* :mod:`mldyn_lite.rnn` — RNNs, closed-form white-noise risk, training plateaus (chapter 3);
* :mod:`mldyn_lite.cnn` — dilated causal CNNs and tensorisation ranks (chapter 3);
* :mod:`mldyn_lite.vector_fields` — vector fields fitted to trajectories (chapter 1);
* :mod:`mldyn_lite.control` — deep learning as optimal control: PMP and costate, MSA, discrete weights, HJB, LQR (chapter 2);
* :mod:`mldyn_lite.robustness` — FGSM/PGD attacks and the closed-loop control defence (chapter 2);
* :mod:`mldyn_lite.sme` — SGD as a stochastic differential equation, weak approximation, cSGD (chapter 2);
* :mod:`mldyn_lite.momentum` — momentum SGD as an SDE, controlled momentum, linear scaling (chapter 2);
* :mod:`mldyn_lite.batchnorm` — batch normalisation on least squares (chapter 2);
* :mod:`mldyn_lite.onsager` — OnsagerNet, baselines, Lorenz '63 data, PCA and autoencoder (chapter 4);
* :mod:`mldyn_lite.boussinesq` — a Rayleigh–Bénard Galerkin solver whose 3-mode truncation is Lorenz '63 (chapter 4);
* :mod:`mldyn_lite.committor` — committor functions: reference solver, rates, neural-network committor (chapter 4);
* :mod:`mldyn_lite.quasipotential` — quasipotentials by orthogonal decomposition, minimum action paths (chapter 4);
* :mod:`mldyn_lite.interactive` — sliders with kernel-free twins for the static book;
* :mod:`mldyn_lite.selfcheck` — self-checks for the code exercises;
* :mod:`mldyn_lite.coursework` — student and instructor editions (``python -m mldyn_lite.coursework``), with
  the graded problems of :mod:`mldyn_lite.coursework_problems`.

The book's *API reference* documents every module.
"""

from importlib import metadata as _metadata

from .measure import loglog_slope
from .runtime import get_device, set_seed, set_threads, setup
from .training import TrainingDivergedError, fit

try:  # the version is written once, in pyproject.toml
    __version__ = _metadata.version("mldyn_lite")
except _metadata.PackageNotFoundError:  # imported from a source tree that was never installed
    __version__ = "0+unknown"

__all__ = [
    "TrainingDivergedError",
    "fit",
    "get_device",
    "loglog_slope",
    "set_seed",
    "set_threads",
    "setup",
]
