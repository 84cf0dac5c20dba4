"""mldyn_lite — the helper package of the course book *Machine Learning and Dynamical Systems*.

One module per topic, each readable on its own:

* :mod:`mldyn_lite.runtime` — device, seeding, threads (:func:`setup`);
* :mod:`mldyn_lite.plotting` — the book's one plotting style;
* :mod:`mldyn_lite.training` — a training loop that stops on NaN/Inf;
* :mod:`mldyn_lite.measure` — slopes and rates from experiments;
* :mod:`mldyn_lite.datasets` — generated data sets;
* :mod:`mldyn_lite.supervised` — ERM vs PRM and the generalisation gap (chapter 1);
* :mod:`mldyn_lite.flows` — residual networks as discretised flows (chapters 1–2).
"""

from .measure import loglog_slope
from .runtime import get_device, set_seed, set_threads, setup
from .training import TrainingDivergedError, fit

__version__ = "0.1.0"

__all__ = [
    "TrainingDivergedError",
    "fit",
    "get_device",
    "loglog_slope",
    "set_seed",
    "set_threads",
    "setup",
]
