"""The API conventions of CONTRIBUTING.md ("API conventions and glossary"), checked on the whole package.

1. **Everything imports**: every public module, and every name of its ``__all__``; every public function or
   class a module defines is in its ``__all__`` (a function appended without export is caught here).
2. **Numerics written once** (source): no module but ``numerics.py`` builds its own generator
   (``torch.Generator()``), device rule (``def _device(``), RK4 stage (``k4 =``) or MLP builder
   (``def _mlp(``); no module but ``runtime.py`` asks for CUDA or reseeds a global random number generator.
3. **Trainers and simulators** (run, with tiny arguments, each on CPU input): they leave the global random
   state of torch, numpy and Python untouched; they never ask whether CUDA exists (``ml.setup`` alone
   chooses the device: the test makes ``torch.cuda.is_available`` report the calls from the package); every
   tensor they return lives on the CPU, the device of their input; trainers return a dataclass or a
   ``NamedTuple``.

Other helpers convert modules to these conventions; an entry that fails names the rule it breaks.
"""

from __future__ import annotations

import dataclasses
import importlib
import inspect
import pkgutil
import random
import re
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import mldyn_lite

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mldyn_lite"
MODULES = sorted(m.name for m in pkgutil.iter_modules(mldyn_lite.__path__) if not m.name.startswith("_"))


# --- 1. imports and __all__ ----------------------------------------------------------------------


@pytest.mark.parametrize("name", MODULES)
def test_module_imports_and_exports_what_it_defines(name):
    module = importlib.import_module(f"mldyn_lite.{name}")
    assert module.__doc__ and module.__doc__.strip(), f"mldyn_lite.{name} has no module docstring"
    exported = getattr(module, "__all__", None)
    assert exported is not None, f"mldyn_lite.{name} has no __all__"
    assert len(set(exported)) == len(exported), f"mldyn_lite.{name}.__all__ repeats a name"
    missing = [n for n in exported if not hasattr(module, n)]
    assert not missing, f"mldyn_lite.{name}.__all__ names what the module does not have: {missing}"
    defined = [
        n
        for n, obj in vars(module).items()
        if not n.startswith("_") and (inspect.isfunction(obj) or inspect.isclass(obj)) and obj.__module__ == module.__name__
    ]
    unexported = sorted(set(defined) - set(exported))
    assert not unexported, f"mldyn_lite.{name} defines public names that are not in __all__: {unexported}"


# --- 2. shared numerics, written once (a source search) -------------------------------------------

# (pattern, what it means, the only file allowed to have it)
FORBIDDEN = [
    (r"torch\.Generator\(", "its own torch.Generator (use numerics.generator(seed, device))", "numerics.py"),
    (r"def _generator\(", "its own generator helper (use numerics.generator)", "numerics.py"),
    (r"def _device\(", "its own device rule (use numerics.device_of)", "numerics.py"),
    (r"\bk4 =", "its own RK4 step (use numerics.integrate)", "numerics.py"),
    (r"def _?mlp\(", "its own MLP builder (use numerics.mlp)", "numerics.py"),
    (r"cuda\.is_available", "a device choice (only ml.setup chooses CUDA)", "runtime.py"),
    (
        r"torch\.manual_seed\(|np\.random\.seed\(|(?<![\w.])random\.seed\(|torch\.cuda\.manual_seed",
        "a reseed of a global random number generator (take seed= or a torch.Generator)",
        "runtime.py",
    ),
]


def package_sources() -> list[Path]:
    # coursework_problems holds the code of graded notebook cells as text: not the package's own code
    return sorted(p for p in PACKAGE.rglob("*.py") if "coursework_problems" not in p.parts)


@pytest.mark.parametrize("pattern, meaning, allowed", FORBIDDEN, ids=[f[1].split(" (")[0] for f in FORBIDDEN])
def test_numerics_are_written_once(pattern, meaning, allowed):
    offenders = []
    for path in package_sources():
        if path.name == allowed and path.parent == PACKAGE:
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            code = line.split("#")[0]
            if re.search(pattern, code) and not re.match(r"\s*(\"|'|[A-Za-z ].*``)", code):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, f"{meaning}:\n" + "\n".join(offenders)


def test_the_source_search_finds_what_it_looks_for(tmp_path):
    """The patterns match the code they forbid (the search above can fail)."""
    samples = [
        "g = torch.Generator().manual_seed(0)",
        "def _device(device, *inputs):",
        "    k4 = f(t + h, x + h * k3)",
        "def _mlp(sizes):",
        "if torch.cuda.is_available():",
        "torch.manual_seed(seed)",
        "np.random.seed(0)",
        "def _generator(seed, device):",
    ]
    for sample in samples:
        assert any(re.search(pattern, sample) for pattern, _, _ in FORBIDDEN), sample


# --- 3. trainers and simulators on CPU input ------------------------------------------------------


def _moons(n=16):
    from mldyn_lite import datasets

    with torch.random.fork_rng():  # the test's inputs; their drawing is not what is checked
        return datasets.two_moons(n, seed=1)


def _flows_classifier():
    from mldyn_lite import flows

    x, labels = _moons()
    return lambda: flows.train_classifier(flows.ResNetClassifier(width=4, layers=2), x, labels, steps=2)


def _flows_regressor():
    from mldyn_lite import flows

    x = torch.linspace(-1, 1, 8).reshape(-1, 1)
    return lambda: flows.train_regressor(flows.ContinuousResNet(dim=1, width=4, pieces=2), x, x**2, steps=2)


def _discrete_msa():
    from mldyn_lite import control

    x, labels = _moons()
    return lambda: control.train_discrete_mlp(x, labels, [2, 4, 2], steps=2)


def _ste():
    from mldyn_lite import control

    x, labels = _moons()
    return lambda: control.train_ste_mlp(x, labels, [2, 4, 2], steps=2)


def _gradient_training():
    from mldyn_lite import control

    x, labels = _moons()
    return lambda: control.gradient_training(x, labels.float(), iterations=2, layers=2)


def _adversarial():
    from mldyn_lite import flows, robustness

    x, labels = _moons()
    return lambda: robustness.adversarial_training(
        flows.ResNetClassifier(width=4, layers=2), x, labels, 0.1, [(1, 0.05)], seed=0
    )


def _pgd():
    from mldyn_lite import flows, robustness

    x, labels = _moons()
    model = flows.ResNetClassifier(width=4, layers=2)
    return lambda: robustness.pgd(model, x, labels, 0.1, 0.05, 2, random_start=True, seed=0)


def _lorenz_data():
    from mldyn_lite import onsager

    return lambda: onsager.lorenz63_data(n_trajectories=2, t_final=0.05, n_snapshots=3, seed=0)


def _onsager_fit():
    from mldyn_lite import onsager

    states = np.linspace(-1, 1, 96).reshape(4, 8, 3)
    data = onsager.VectorFieldData("derivatives", states, -states)
    return lambda: onsager.fit_vector_field(
        onsager.OnsagerNet(3, width=4, seed=0), data, onsager.FitOptions(steps=2, batch_size=8, eval_every=1)
    )


def _onsager_train():
    from mldyn_lite import onsager

    states = torch.linspace(-1, 1, 96).reshape(32, 3)
    return lambda: onsager.train_vector_field(
        onsager.OnsagerNet(3, width=4, seed=0), states, -states, steps=2, batch_size=8, eval_every=1
    )


def _autoencoder():
    from mldyn_lite import onsager

    data = torch.linspace(-1, 1, 160).reshape(20, 8).sin()
    return lambda: onsager.train_autoencoder(
        onsager.Autoencoder(onsager.PCA(data, 3), width=4, seed=0), data, steps=2, batch_size=8
    )


def _rollout():
    from mldyn_lite import onsager

    return lambda: onsager.rollout(onsager.lorenz63, torch.ones(2, 3), T=0.03, dt=0.01)


def _boussinesq():
    from mldyn_lite import boussinesq

    return lambda: boussinesq.generate_data(n_trajectories=2, t_final=0.01, n_snapshots=2, modes=2, seed=0)


def _committor():
    from mldyn_lite import committor as cm

    options = cm.CommittorOptions(width=4, steps=2, batch_size=16, boundary_batch_size=8)
    return lambda: cm.fit_committor(cm.BoltzmannSampler(cm.mueller_brown, 20.0), options, seed=0)


def _decomposition():
    from mldyn_lite import quasipotential as qp

    x = torch.linspace(-1, 1, 32).reshape(16, 2)
    return lambda: qp.fit_decomposition(x, -x, qp.DecompositionOptions(width=4, steps=2, batch_size=8), seed=0)


def _increments():
    from mldyn_lite import quasipotential as qp

    return lambda: qp.simulate_increments(lambda x: -x, n_trajectories=4, steps=2, seed=0)


def _plateau():
    from mldyn_lite import rnn

    return lambda: rnn.train_plateau([2.0], seeds=[0], options=rnn.PlateauOptions(m=2, steps=3))


def _diagonal_rnn():
    from mldyn_lite import rnn

    return lambda: rnn.train_diagonal_rnn([2.0], m=2, steps=3)


def _linear_rnn_kernel():
    from mldyn_lite import rnn

    s = np.linspace(0, 4, 17)
    return lambda: rnn.train_linear_rnn_kernel(s, np.exp(-s), m=2, steps=2)


def _tanh_rnn():
    from mldyn_lite import rnn

    return lambda: rnn.train_tanh_rnn(1.0, hidden=2, steps=2, batch=2, length=6)


def _sequence_model():
    from mldyn_lite import rnn

    class Outputs(torch.nn.Module):  # (n, length, 1) -> (n, length)
        def __init__(self):
            super().__init__()
            self.rnn = torch.nn.RNN(1, 2, batch_first=True)

        def forward(self, x):
            return self.rnn(x)[0][..., 0]

    model, x = Outputs(), torch.linspace(-1, 1, 24).reshape(4, 6, 1)
    return lambda: rnn.train_sequence_model(model, x, x[..., 0], steps=2)


def _lorenz_forecasting():
    from mldyn_lite import memory

    return lambda: memory.lorenz_forecasting(2, length=5, seed=0)


def _shallow_net():
    from mldyn_lite import supervised

    x = torch.linspace(-1, 1, 8)
    return lambda: supervised.fit_shallow_net(x, x**2, width=4, steps=2)


def _shallow_nets():
    from mldyn_lite import supervised

    x = torch.linspace(-1, 1, 8).reshape(2, 4)  # (runs, N)
    return lambda: supervised.fit_shallow_nets(x, x**2, width=4, steps=2)


def _sgd_paths():
    from mldyn_lite import sme

    problem = sme.toy_problem("additive_bernoulli")
    return lambda: sme.sgd_paths(problem.stochastic_gradient, torch.tensor([1.0], dtype=torch.float64), 0.1, 3, n_paths=4)


def _bngd():
    from mldyn_lite import batchnorm

    H, u = batchnorm.least_squares_problem([1.0, 2.0], seed=0)[:2]
    return lambda: batchnorm.bngd_least_squares(H, u, 0.1, 2)


def _softmax():
    from mldyn_lite import momentum

    X = torch.linspace(-1, 1, 32).reshape(16, 2)
    y = (X[:, 0] > 0).long()
    return lambda: momentum.train_softmax(X, y, lr=0.1, batch_size=4, steps=2)


def _steer():
    from mldyn_lite import interpolation

    x0 = torch.tensor([[-0.5], [0.5]])
    return lambda: interpolation.steer(x0, 2 * x0, pieces=2)


def _train_averaged():
    from mldyn_lite import training

    model = torch.nn.Linear(2, 1)
    x = torch.linspace(-1, 1, 8).reshape(4, 2)
    return lambda: training.train_averaged(model, lambda k: model(x).pow(2).mean(), steps=2, lr=0.01, final_lr=0.001)


def _fit():
    from mldyn_lite import training

    model = torch.nn.Linear(2, 1)
    x = torch.linspace(-1, 1, 8).reshape(4, 2)
    return lambda: training.fit(model, lambda: model(x).pow(2).mean(), steps=2)


def _two_moons():
    from mldyn_lite import datasets

    return lambda: datasets.two_moons(16, seed=1)


# (id, prepare, is a trainer: must return a dataclass or NamedTuple); prepare() builds the inputs (not measured)
# and returns the call that is measured
CALLS = [
    ("flows.train_classifier", _flows_classifier, True),
    ("flows.train_regressor", _flows_regressor, True),
    ("control.train_discrete_mlp", _discrete_msa, True),
    ("control.train_ste_mlp", _ste, True),
    ("control.gradient_training", _gradient_training, True),
    ("robustness.adversarial_training", _adversarial, True),
    ("robustness.pgd", _pgd, False),
    ("onsager.lorenz63_data", _lorenz_data, False),
    ("onsager.fit_vector_field", _onsager_fit, True),
    ("onsager.train_vector_field", _onsager_train, True),
    ("onsager.train_autoencoder", _autoencoder, True),
    ("onsager.rollout", _rollout, False),
    ("boussinesq.generate_data", _boussinesq, False),
    ("committor.fit_committor", _committor, True),
    ("quasipotential.fit_decomposition", _decomposition, True),
    ("quasipotential.simulate_increments", _increments, False),
    ("rnn.train_plateau", _plateau, True),
    ("rnn.train_diagonal_rnn", _diagonal_rnn, True),
    ("rnn.train_linear_rnn_kernel", _linear_rnn_kernel, True),
    ("rnn.train_tanh_rnn", _tanh_rnn, True),
    ("rnn.train_sequence_model", _sequence_model, True),
    ("memory.lorenz_forecasting", _lorenz_forecasting, False),
    ("supervised.fit_shallow_net", _shallow_net, True),
    ("supervised.fit_shallow_nets", _shallow_nets, True),
    ("sme.sgd_paths", _sgd_paths, False),
    ("batchnorm.bngd_least_squares", _bngd, True),
    ("momentum.train_softmax", _softmax, True),
    ("interpolation.steer", _steer, True),
    ("training.train_averaged", _train_averaged, True),
    ("training.fit", _fit, False),  # the generic loop: returns the loss history
    ("datasets.two_moons", _two_moons, False),
]


def tensors_in(value, seen=None):
    """Every tensor inside a result: tensors, modules' parameters and buffers, containers, dataclasses."""
    seen = set() if seen is None else seen
    if id(value) in seen:
        return
    seen.add(id(value))
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, torch.nn.Module):
        yield from value.parameters()
        yield from value.buffers()
    elif dataclasses.is_dataclass(value) and not isinstance(value, type):
        for field in dataclasses.fields(value):
            yield from tensors_in(getattr(value, field.name), seen)
    elif isinstance(value, dict):
        for item in value.values():
            yield from tensors_in(item, seen)
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from tensors_in(item, seen)


def is_result(value) -> bool:
    named_tuple = isinstance(value, tuple) and hasattr(type(value), "_fields")
    return named_tuple or (dataclasses.is_dataclass(value) and not isinstance(value, type))


@pytest.fixture()
def cuda_queries(monkeypatch):
    """Records every call of torch.cuda.is_available made from the package (outside runtime.py)."""
    calls, real = [], torch.cuda.is_available

    def is_available():
        caller = sys._getframe(1).f_globals.get("__name__", "")
        if caller.startswith("mldyn_lite") and caller != "mldyn_lite.runtime":
            calls.append(caller)
        return real()

    monkeypatch.setattr(torch.cuda, "is_available", is_available)
    return calls


@pytest.mark.parametrize("call, trainer", [c[1:] for c in CALLS], ids=[c[0] for c in CALLS])
def test_trainer_follows_the_conventions(call, trainer, cuda_queries):
    with torch.random.fork_rng():
        call = call()  # the inputs
    torch.manual_seed(1234)  # the test's global state, which the call must leave as it is
    np.random.seed(1234)
    random.seed(1234)
    before = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    result = call()
    after = (torch.get_rng_state(), np.random.get_state()[1].copy(), random.getstate())
    problems = []
    if not torch.equal(before[0], after[0]):
        problems.append("changes torch's global random state (take seed= or a torch.Generator)")
    if not np.array_equal(before[1], after[1]):
        problems.append("changes numpy's global random state (use np.random.default_rng(seed))")
    if before[2] != after[2]:
        problems.append("changes Python's global random state")
    if cuda_queries:
        problems.append(f"asks whether CUDA exists ({sorted(set(cuda_queries))}): only ml.setup chooses the device")
    devices = {t.device.type for t in tensors_in(result)}
    if devices - {"cpu"}:
        problems.append(f"returns tensors on {sorted(devices)} for CPU input")
    if trainer and not is_result(result):
        problems.append(f"returns a {type(result).__name__}, not a dataclass or NamedTuple")
    assert not problems, "; ".join(problems)
