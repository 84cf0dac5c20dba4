r"""Deep learning as (mean-field) optimal control: PMP, back-propagation, MSA, HJB and LQR.

Population risk minimisation with a continuous-depth network is the *mean-field* optimal control
problem (E, Han & Li, Res. Math. Sci. 2019)

.. math::  \inf_{\theta}\ J(\theta) = \mathbb{E}_{(x_0, y)\sim\mu}\Big[\Phi(x_T, y)
           + \int_0^T R(x_t, \theta_t)\,dt\Big], \qquad \dot x_t = f(x_t, \theta_t):

one control :math:`\theta_t` steers a whole distribution of inputs. Its discrete version is a
residual network. Here the layer map is

.. math::  x_{n+1} = g(x_n, \theta_n) = x_n + \delta \tanh(W_n x_n + b_n), \qquad n = 0, \dots, N-1,

on a batch :math:`x_0^1, \dots, x_0^S`, with objective
:math:`J = \frac1S\sum_i \Phi(x_N^i, y^i) + \lambda \sum_n (\|W_n\|^2 + \|b_n\|^2)`.

**Pontryagin's maximum principle (discrete, batch form; Li, Chen, Tai & E, JMLR 2018).** With the
Hamiltonian :math:`H_n(x, p, \theta) = p\cdot g(x, \theta) - \frac1S L_n(\theta)`, the costate runs
backwards,

.. math::  p_N^i = -\tfrac1S \nabla\Phi(x_N^i, y^i), \qquad p_n^i = \nabla_x H_n(x_n^i, p_{n+1}^i, \theta_n),

and an optimal :math:`\theta_n` maximises :math:`\sum_i H_n(x_n^i, p_{n+1}^i, \theta)`. The costate
*is* back-propagation: :math:`p_n^i = -\partial J/\partial x_n^i` and
:math:`\sum_i \partial_\theta H_n = -\partial J/\partial\theta_n` (:func:`costates`, :func:`hamiltonian`).

**Method of successive approximations.** Basic MSA alternates: forward states, backward costates,
then maximise :math:`\sum_i H_n` layer by layer. The extended MSA (E-MSA) maximises the augmented
Hamiltonian

.. math::  \tilde H_n = \sum_i \Big[H_n(x_n^i, p_{n+1}^i, \theta) - \tfrac\rho2 \|x_{n+1}^i - g(x_n^i, \theta)\|^2
           - \tfrac\rho2 \|p_n^i - \nabla_x H_n(x_n^i, p_{n+1}^i, \theta)\|^2\Big],

whose penalties keep the update where the frozen states and costates stay valid
(:func:`extended_msa`).

**Discrete weights (Li & Hao, ICML 2018).** For weights in :math:`\{\pm 1\}` (or :math:`\{-1, 0, 1\}`)
the Hamiltonian is maximised on the discrete set using an exponential moving average :math:`M` of
:math:`\partial H/\partial W`; a weight changes only where the gain is large
(:func:`discrete_msa_update`).

**Dynamic programming.** The value function solves the Hamilton–Jacobi–Bellman equation
:math:`\partial_t V + \min_u [f(x, u)\cdot\nabla V + r(x, u)] = 0`, solved here on a grid
(:func:`solve_hjb_1d`); for linear dynamics and quadratic cost it is :math:`V = x^\top P(t) x` with
the Riccati equation (:func:`lqr_riccati`), and the PMP two-point problem is
:func:`lq_pmp_solution`. The feedback :math:`u = -K(t) x` is a *closed-loop* control;
:func:`simulate_linear` compares it with open-loop controls under perturbed initial states.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .numerics import device_of, generator, integrate
from .runtime import get_device
from .training import raise_if_nonfinite

__all__ = [
    "DISCRETE_SETS",
    "GRADIENT_METHODS",
    "DiscreteTraining",
    "ResNetTraining",
    "augmented_hamiltonian",
    "basic_msa",
    "costates",
    "discrete_msa_update",
    "extended_msa",
    "gradient_training",
    "hamiltonian",
    "hamiltonian_x_gradient",
    "layer_map",
    "lq_pmp_solution",
    "lqr_riccati",
    "mlp_logits",
    "objective",
    "random_sign_weights",
    "resnet_states",
    "simulate_linear",
    "sin_toy_data",
    "solve_hjb_1d",
    "sum_readout_loss",
    "teacher_classification_data",
    "terminal_costate",
    "train_discrete_mlp",
    "train_ste_mlp",
]


class ResNetTraining(NamedTuple):
    """What :func:`basic_msa`, :func:`extended_msa` and :func:`gradient_training` return.

    A named tuple, so ``weights, biases, history = extended_msa(...)`` still reads naturally.
    ``history`` holds ``"loss"`` (:math:`J` after each iteration), ``"seconds"`` and, for MSA, ``"evaluations"``.
    """

    weights: torch.Tensor
    biases: torch.Tensor
    history: dict

    @property
    def final_loss(self) -> float:
        """The last recorded objective :math:`J`."""
        return self.history["loss"][-1]


class DiscreteTraining(NamedTuple):
    """What :func:`train_discrete_mlp` and :func:`train_ste_mlp` return: ``(weights, history)``."""

    weights: list
    history: dict

    @property
    def final_loss(self) -> float:
        """The last recorded training loss."""
        return self.history["loss"][-1]


# --------------------------------------------------------------------------------------------------
# Residual network, costate, Hamiltonian
# --------------------------------------------------------------------------------------------------


def _check_params(weights, biases, dim: int | None = None) -> int:
    check_tensor("weights", weights, ndim=3)
    check_tensor("biases", biases, ndim=2)
    layers, d, d2 = weights.shape
    if d != d2:
        raise ValueError(f"weights must have shape (layers, d, d), got {tuple(weights.shape)}")
    if biases.shape != (layers, d):
        raise ValueError(f"biases must have shape (layers, d) = {(layers, d)} to match weights, got {tuple(biases.shape)}")
    if layers == 0:
        raise ValueError("weights must hold at least one layer")
    if dim is not None and d != dim:
        raise ValueError(f"weights act on dimension {d} but the states have dimension {dim}")
    return layers


def _check_batch(name: str, x) -> torch.Tensor:
    check_tensor(name, x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch; it must hold at least one sample")
    return x


def layer_map(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, delta: float) -> torch.Tensor:
    r"""One residual block :math:`g(x, \theta) = x + \delta\tanh(W x + b)` on a batch ``x`` of shape ``(S, d)``."""
    return x + delta * torch.tanh(x @ weight.T + bias)


def _forward(x0, weights, biases, delta):
    states = [x0]
    for n in range(weights.shape[0]):
        states.append(layer_map(states[-1], weights[n], biases[n], delta))
    return torch.stack(states)


def _hamiltonian_value(x, p, weight, bias, delta, regularization):
    return (p * layer_map(x, weight, bias, delta)).sum() - regularization * (weight.pow(2).sum() + bias.pow(2).sum())


def _augmented_value(x, p, x_next, p_here, weight, bias, delta, rho, regularization):
    activation = torch.tanh(x @ weight.T + bias)
    next_state = x + delta * activation
    x_gradient = p + delta * ((1.0 - activation**2) * p) @ weight
    h = (p * next_state).sum() - regularization * (weight.pow(2).sum() + bias.pow(2).sum())
    return h - 0.5 * rho * ((x_next - next_state).pow(2).sum() + (p_here - x_gradient).pow(2).sum())


def resnet_states(x0: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor, delta: float = 0.25) -> torch.Tensor:
    r"""Forward pass :math:`x_{n+1} = x_n + \delta\tanh(W_n x_n + b_n)`; returns all states, shape ``(N+1, S, d)``.

    ``weights`` has shape ``(N, d, d)`` and ``biases`` ``(N, d)``.
    """
    _check_batch("x0", x0)
    _check_params(weights, biases, x0.shape[1])
    return _forward(x0, weights, biases, check_float("delta", delta, positive=True))


def hamiltonian_x_gradient(
    x: torch.Tensor, p: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor, delta: float
) -> torch.Tensor:
    r""":math:`\nabla_x H(x, p, \theta) = p + \delta\, W^\top\big((1 - \tanh^2(Wx + b)) \odot p\big)`, per sample.

    This is the costate recursion :math:`p_n = \nabla_x H_n(x_n, p_{n+1}, \theta_n)` written out by hand
    (the regulariser does not depend on :math:`x`). Shapes: ``x, p`` are ``(S, d)``.
    """
    slope = 1.0 - torch.tanh(x @ weight.T + bias) ** 2
    return p + delta * (slope * p) @ weight


def costates(
    states: torch.Tensor, weights: torch.Tensor, biases: torch.Tensor, terminal_costate: torch.Tensor, delta: float = 0.25
) -> torch.Tensor:
    r"""Backward costate recursion :math:`p_N =` ``terminal_costate``, :math:`p_n = \nabla_x H_n(x_n, p_{n+1}, \theta_n)`.

    ``states`` is the output of :func:`resnet_states`, shape ``(N+1, S, d)``; returns costates of the
    same shape. With ``terminal_costate`` :math:`= -\partial J/\partial x_N` (see
    :func:`terminal_costate`) every :math:`p_n` equals :math:`-\partial J/\partial x_n`, i.e. what
    back-propagation computes.
    """
    check_tensor("states", states, ndim=3)
    layers = _check_params(weights, biases, states.shape[2])
    if states.shape[0] != layers + 1:
        raise ValueError(f"states must hold N+1 = {layers + 1} layers of states, got {states.shape[0]}")
    check_tensor("terminal_costate", terminal_costate, ndim=2)
    if terminal_costate.shape != states.shape[1:]:
        raise ValueError(
            f"terminal_costate must have the shape of one state, {tuple(states.shape[1:])}, "
            f"got {tuple(terminal_costate.shape)}"
        )
    delta = check_float("delta", delta, positive=True)
    p = [terminal_costate]
    for n in reversed(range(layers)):
        p.append(hamiltonian_x_gradient(states[n], p[-1], weights[n], biases[n], delta))
    return torch.stack(p[::-1])


def terminal_costate(loss_fn: Callable, final_state: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r""":math:`p_N = -\partial/\partial x_N` of the batch loss ``loss_fn(final_state, y)`` (a mean over the batch).

    For a mean loss this is :math:`-\frac1S\nabla\Phi(x_N^i, y^i)` for each sample :math:`i`.
    """
    check_callable("loss_fn", loss_fn)
    _check_batch("final_state", final_state)
    xN = final_state.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(xN, y)
        if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
            raise TypeError("loss_fn must return a scalar torch.Tensor")
        (grad,) = torch.autograd.grad(loss, xN)
    return -grad


def hamiltonian(
    x: torch.Tensor,
    p: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    delta: float = 0.25,
    regularization: float = 0.0,
) -> torch.Tensor:
    r"""Batch-summed Hamiltonian :math:`\sum_i p^i\cdot g(x^i, \theta) - \lambda(\|W\|^2 + \|b\|^2)` of one layer.

    ``x`` are the states :math:`x_n^i` and ``p`` the costates :math:`p_{n+1}^i`, both ``(S, d)``;
    ``regularization`` is :math:`\lambda`. Its gradient in :math:`(W, b)` is :math:`-\partial J/\partial\theta_n`.
    """
    _check_batch("x", x)
    check_tensor("p", p, ndim=2)
    if p.shape != x.shape:
        raise ValueError(f"p must have the shape of x, {tuple(x.shape)}, got {tuple(p.shape)}")
    check_tensor("weight", weight, ndim=2)
    check_tensor("bias", bias, ndim=1)
    if weight.shape != (x.shape[1], x.shape[1]) or bias.shape != (x.shape[1],):
        raise ValueError(
            f"weight and bias must have shapes {(x.shape[1], x.shape[1])} and {(x.shape[1],)}, "
            f"got {tuple(weight.shape)} and {tuple(bias.shape)}"
        )
    delta = check_float("delta", delta, positive=True)
    regularization = check_float("regularization", regularization, nonnegative=True)
    return _hamiltonian_value(x, p, weight, bias, delta, regularization)


def augmented_hamiltonian(
    x: torch.Tensor,
    p: torch.Tensor,
    x_next: torch.Tensor,
    p_here: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor,
    delta: float,
    rho: float,
    regularization: float = 0.0,
) -> torch.Tensor:
    r"""E-MSA objective of one layer: :math:`\sum_i H - \frac\rho2\|x_{n+1} - g\|^2 - \frac\rho2\|p_n - \nabla_x H\|^2`.

    ``x`` = :math:`x_n`, ``p`` = :math:`p_{n+1}`, ``x_next`` = :math:`x_{n+1}`, ``p_here`` = :math:`p_n`, all
    frozen at the current parameters; only ``weight``/``bias`` vary. ``rho`` must be > 0.
    """
    rho = check_float("rho", rho, positive=True)
    hamiltonian(x, p, weight, bias, delta, regularization)  # validates the shared arguments
    for name, value in (("x_next", x_next), ("p_here", p_here)):
        check_tensor(name, value, ndim=2)
        if value.shape != x.shape:
            raise ValueError(f"{name} must have the shape of x, {tuple(x.shape)}, got {tuple(value.shape)}")
    return _augmented_value(x, p, x_next, p_here, weight, bias, float(delta), rho, float(regularization))


def objective(
    x0: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable,
    weights: torch.Tensor,
    biases: torch.Tensor,
    delta: float = 0.25,
    regularization: float = 0.0,
) -> torch.Tensor:
    r""":math:`J(\theta) =` ``loss_fn(x_N, y)`` :math:`+ \lambda\sum_n(\|W_n\|^2 + \|b_n\|^2)`."""
    check_callable("loss_fn", loss_fn)
    regularization = check_float("regularization", regularization, nonnegative=True)
    xN = resnet_states(x0, weights, biases, delta)[-1]
    return loss_fn(xN, y) + regularization * (weights.pow(2).sum() + biases.pow(2).sum())


# --------------------------------------------------------------------------------------------------
# The sin toy of Li, Chen, Tai & E (2018)
# --------------------------------------------------------------------------------------------------


def sin_toy_data(n: int = 100, dim: int = 5, seed: int = 0, dtype=torch.float64, device=None):
    r"""The published MSA toy: :math:`x \sim U[-\pi, \pi]`, target :math:`\sin x`, input replicated to ``dim`` nodes.

    Returns ``(x0, y)`` with ``x0`` of shape ``(n, dim)`` (every column equal to :math:`x`) and ``y`` of shape ``(n,)``.
    """
    n = check_int("n", n, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    device = torch.device("cpu") if device is None else get_device(device)
    gen = generator(check_int("seed", seed, minimum=0))
    x = (2 * torch.rand(n, generator=gen, dtype=torch.float64) - 1) * np.pi
    return x[:, None].repeat(1, dim).to(dtype=dtype, device=device), torch.sin(x).to(dtype=dtype, device=device)


def sum_readout_loss(final_state: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Mean squared error of the read-out "sum of nodes": :math:`\frac1S\sum_i (\mathbf 1^\top x_N^i - y^i)^2`."""
    return (final_state.sum(dim=1) - y).pow(2).mean()


def _timed_history(history, times, loss, start):
    history.append(float(loss))
    times.append(time.perf_counter() - start)


def _init_params(weights, biases, layers, dim, dtype, device):
    if weights is None:
        weights = torch.zeros(layers, dim, dim, dtype=dtype, device=device)
    if biases is None:
        biases = torch.zeros(layers, dim, dtype=dtype, device=device)
    _check_params(weights, biases, dim)
    return weights.detach().clone().to(device), biases.detach().clone().to(device)


def _msa(x0, y, loss_fn, iterations, layers, delta, regularization, rho, inner_iterations, weights, biases, device):
    _check_batch("x0", x0)
    device = device_of(x0) if device is None else get_device(device)
    check_callable("loss_fn", loss_fn)
    iterations = check_int("iterations", iterations, minimum=1)
    layers = check_int("layers", layers, minimum=1)
    delta = check_float("delta", delta, positive=True)
    regularization = check_float("regularization", regularization, nonnegative=True)
    inner_iterations = check_int("inner_iterations", inner_iterations, minimum=1)
    x0, y = x0.to(device), y.to(device)
    weights, biases = _init_params(weights, biases, layers, x0.shape[1], x0.dtype, device)
    history, times, evaluations = [], [], []
    start = time.perf_counter()
    for k in range(iterations + 1):
        # 1. forward: states; 2. backward: costates (both frozen during the layer-wise maximisation)
        states = _forward(x0, weights, biases, delta)
        loss = loss_fn(states[-1], y) + regularization * (weights.pow(2).sum() + biases.pow(2).sum())
        raise_if_nonfinite(
            loss.detach(),
            k,
            "MSA objective",
            "the Hamiltonian maximisation jumped too far; basic MSA often does this — use a penalty rho > 0",
        )
        _timed_history(history, times, loss, start)
        if k == iterations:
            break
        p = costates(states, weights, biases, terminal_costate(loss_fn, states[-1], y), delta)
        evaluations.append(0)
        # 3. maximise the (augmented) Hamiltonian of each layer separately, L-BFGS from the current value
        for n in range(layers):
            w = weights[n].clone().requires_grad_(True)
            b = biases[n].clone().requires_grad_(True)
            opt = torch.optim.LBFGS([w, b], lr=1.0, max_iter=inner_iterations, line_search_fn="strong_wolfe")

            def closure(n=n, w=w, b=b, opt=opt):
                evaluations[-1] += 1
                opt.zero_grad()
                if rho is None:
                    value = -_hamiltonian_value(states[n], p[n + 1], w, b, delta, regularization)
                else:
                    value = -_augmented_value(states[n], p[n + 1], states[n + 1], p[n], w, b, delta, rho, regularization)
                value.backward()
                return value

            opt.step(closure)
            weights[n], biases[n] = w.detach(), b.detach()
    return ResNetTraining(weights, biases, {"loss": history, "seconds": times, "evaluations": evaluations})


def basic_msa(
    x0: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable = sum_readout_loss,
    *,
    iterations: int = 10,
    layers: int = 20,
    delta: float = 0.25,
    regularization: float = 1e-3,
    inner_iterations: int = 10,
    weights: torch.Tensor | None = None,
    biases: torch.Tensor | None = None,
    device=None,
):
    r"""Basic MSA: forward states, backward costates, then maximise :math:`\sum_i H_n` in each layer.

    Each layer's maximisation is ``inner_iterations`` L-BFGS iterations started from the current
    parameters. Parameters start at ``weights``/``biases`` (default zero). Computes on ``device``,
    by default the device of ``x0``. Returns a :class:`ResNetTraining`
    ``(weights, biases, history)`` where ``history["loss"][k]`` is :math:`J` after ``k`` iterations and
    ``history["seconds"][k]`` the wall-clock time at which it was recorded; ``history["evaluations"][k]``
    counts the layer-Hamiltonian evaluations (with gradient) of iteration ``k`` summed over layers. The objective is not
    guaranteed to decrease; a :class:`~mldyn_lite.training.TrainingDivergedError` is raised if it
    becomes NaN or Inf.
    """
    return _msa(x0, y, loss_fn, iterations, layers, delta, regularization, None, inner_iterations, weights, biases, device)


def extended_msa(
    x0: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable = sum_readout_loss,
    *,
    iterations: int = 10,
    rho: float = 1.0,
    layers: int = 20,
    delta: float = 0.25,
    regularization: float = 1e-3,
    inner_iterations: int = 10,
    weights: torch.Tensor | None = None,
    biases: torch.Tensor | None = None,
    device=None,
):
    r"""Extended MSA (Li, Chen, Tai & E, 2018): maximise the augmented Hamiltonian (penalty ``rho`` > 0) per layer.

    Same arguments and return value as :func:`basic_msa`; the defaults are the published sin toy
    (20 layers, :math:`\delta = 0.25`, :math:`\lambda = 10^{-3}`, :math:`\rho = 1`, 10 L-BFGS iterations per layer).
    """
    rho = check_float("rho", rho, positive=True)
    return _msa(x0, y, loss_fn, iterations, layers, delta, regularization, rho, inner_iterations, weights, biases, device)


#: Optimisers :func:`gradient_training` knows, with the learning rates of the published comparison.
GRADIENT_METHODS = {"sgd": 0.1, "adagrad": 0.1, "adam": 5e-3}


def gradient_training(
    x0: torch.Tensor,
    y: torch.Tensor,
    loss_fn: Callable = sum_readout_loss,
    *,
    method: str = "adam",
    lr: float | None = None,
    iterations: int = 100,
    layers: int = 20,
    delta: float = 0.25,
    regularization: float = 1e-3,
    weights: torch.Tensor | None = None,
    biases: torch.Tensor | None = None,
    device=None,
):
    r"""Full-batch gradient training of the same residual network with SGD, Adagrad or Adam.

    ``lr`` defaults to the published value for the method (:data:`GRADIENT_METHODS`). Returns
    a :class:`ResNetTraining` ``(weights, biases, history)`` like :func:`extended_msa`, recording :math:`J`
    before each step.
    """
    _check_batch("x0", x0)
    device = device_of(x0) if device is None else get_device(device)
    check_callable("loss_fn", loss_fn)
    check_choice("method", method, GRADIENT_METHODS)
    lr = GRADIENT_METHODS[method] if lr is None else check_float("lr", lr, positive=True)
    iterations = check_int("iterations", iterations, minimum=1)
    layers = check_int("layers", layers, minimum=1)
    delta = check_float("delta", delta, positive=True)
    regularization = check_float("regularization", regularization, nonnegative=True)
    x0, y = x0.to(device), y.to(device)
    weights, biases = _init_params(weights, biases, layers, x0.shape[1], x0.dtype, device)
    weights.requires_grad_(True)
    biases.requires_grad_(True)
    makers = {"sgd": torch.optim.SGD, "adagrad": torch.optim.Adagrad, "adam": torch.optim.Adam}
    opt = makers[method]([weights, biases], lr=lr)
    history, times = [], []
    start = time.perf_counter()
    for k in range(iterations + 1):
        opt.zero_grad()
        loss = loss_fn(_forward(x0, weights, biases, delta)[-1], y) + regularization * (
            weights.pow(2).sum() + biases.pow(2).sum()
        )
        raise_if_nonfinite(loss.detach(), k)
        _timed_history(history, times, loss.detach(), start)
        if k == iterations:
            break
        loss.backward()
        opt.step()
    return ResNetTraining(weights.detach(), biases.detach(), {"loss": history, "seconds": times})


# --------------------------------------------------------------------------------------------------
# Discrete weights (Li & Hao, 2018)
# --------------------------------------------------------------------------------------------------

#: Weight sets :func:`discrete_msa_update` knows.
DISCRETE_SETS = ("binary", "ternary")


def discrete_msa_update(
    weight: torch.Tensor,
    hamiltonian_grad: torch.Tensor,
    average: torch.Tensor,
    *,
    values: str = "binary",
    decay: float = 0.5,
    rho: float = 0.1,
    sparsity: float = 0.0,
):
    r"""One MSA step for weights in :math:`\{\pm1\}` (``"binary"``) or :math:`\{-1,0,1\}` (``"ternary"``).

    1. Moving average of the Hamiltonian gradient:
       :math:`M \leftarrow \text{decay}\, M + (1-\text{decay})\,\partial H/\partial W`.
    2. Maximise the linearised Hamiltonian :math:`M\cdot w - \text{sparsity}\,|w|` entrywise over the set:
       :math:`w^\star = \mathrm{sign}(M)` (binary) or :math:`\mathrm{sign}(M)\,\mathbf 1[|M| > \text{sparsity}]` (ternary).
    3. Error control: an entry changes to :math:`w^\star` only where its gain
       :math:`(M w^\star - s|w^\star|) - (M w - s|w|)` exceeds ``rho`` times the largest gain over the entries
       that would change. (For binary weights the gain is :math:`2|M|` on the wrong-sign entries.)

    Returns ``(new_weight, new_average)``. The new weights lie in the set whenever the old ones do;
    ``weight`` must already lie in it.
    """
    check_tensor("weight", weight)
    check_tensor("hamiltonian_grad", hamiltonian_grad)
    check_tensor("average", average)
    if hamiltonian_grad.shape != weight.shape or average.shape != weight.shape:
        raise ValueError(
            f"hamiltonian_grad and average must have the shape of weight, {tuple(weight.shape)}, "
            f"got {tuple(hamiltonian_grad.shape)} and {tuple(average.shape)}"
        )
    check_choice("values", values, DISCRETE_SETS)
    decay = check_float("decay", decay, minimum=0.0, maximum=1.0)
    rho = check_float("rho", rho, minimum=0.0, maximum=1.0)
    sparsity = check_float("sparsity", sparsity, nonnegative=True)
    allowed = torch.tensor([-1.0, 1.0] if values == "binary" else [-1.0, 0.0, 1.0], dtype=weight.dtype, device=weight.device)
    if not bool(torch.isin(weight, allowed).all()):
        raise ValueError(f"weight must have entries in {allowed.tolist()} for values={values!r}")
    if values == "binary" and sparsity > 0:
        raise ValueError("sparsity must be 0 for binary weights (there is no zero to choose)")
    average = decay * average + (1.0 - decay) * hamiltonian_grad
    if values == "binary":
        target = torch.where(average >= 0, torch.ones_like(weight), -torch.ones_like(weight))
    else:
        target = torch.sign(average) * (average.abs() > sparsity).to(weight.dtype)
    gain = (average * target - sparsity * target.abs()) - (average * weight - sparsity * weight.abs())
    changing = target != weight
    if bool(changing.any()):
        threshold = rho * gain[changing].max()
        weight = torch.where(changing & (gain > threshold), target, weight)
    return weight, average


def teacher_classification_data(
    n: int,
    dim: int = 16,
    classes: int = 3,
    width: int = 32,
    seed: int = 0,
    teacher_seed: int = 0,
    dtype=torch.float32,
    device=None,
):
    r"""A generated classification problem: :math:`x \sim N(0, I_d)`, label :math:`= \arg\max_k (A\tanh(Wx))_k`.

    The teacher :math:`(W, A)` has Gaussian entries (scaled by the fan-in) drawn from ``teacher_seed``;
    the inputs from ``seed``. Returns ``(x, labels)``.
    """
    n = check_int("n", n, minimum=1)
    dim = check_int("dim", dim, minimum=1)
    classes = check_int("classes", classes, minimum=2)
    width = check_int("width", width, minimum=1)
    device = torch.device("cpu") if device is None else get_device(device)
    teacher = generator(check_int("teacher_seed", teacher_seed, minimum=0))
    W = torch.randn(width, dim, generator=teacher) / dim**0.5
    A = torch.randn(classes, width, generator=teacher) / width**0.5
    x = torch.randn(n, dim, generator=generator(check_int("seed", seed, minimum=0)))
    labels = (torch.tanh(x @ W.T) @ A.T).argmax(dim=1)
    return x.to(dtype=dtype, device=device), labels.to(device)


def mlp_logits(weights: list[torch.Tensor], x: torch.Tensor) -> torch.Tensor:
    r"""Feed-forward net with weight matrices ``weights``: :math:`a_{l+1} = \tanh(W_l a_l/\sqrt{d_l})`, last layer linear.

    The fixed scale :math:`1/\sqrt{d_l}` (fan-in) lets the entries of :math:`W_l` be :math:`\pm1` (or 0).
    """
    a = x
    for l, W in enumerate(weights):
        z = a @ W.T / W.shape[1] ** 0.5
        a = torch.tanh(z) if l < len(weights) - 1 else z
    return a


def random_sign_weights(sizes, seed: int = 0, dtype=torch.float32, device=None) -> list[torch.Tensor]:
    """Weight matrices of shapes ``(sizes[l+1], sizes[l])`` with independent random entries in :math:`\\{\\pm1\\}`."""
    sizes = [check_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
    if len(sizes) < 2:
        raise ValueError(f"sizes must hold at least 2 layer widths, got {sizes}")
    seed = check_int("seed", seed, minimum=0)
    device = torch.device("cpu") if device is None else get_device(device)
    gen = generator(seed)
    return [
        torch.where(torch.rand(sizes[l + 1], sizes[l], generator=gen) < 0.5, -1.0, 1.0).to(dtype=dtype, device=device)
        for l in range(len(sizes) - 1)
    ]


def _check_classification(x, y, sizes):
    _check_batch("x", x)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise ValueError(f"y must hold one integer label per sample of x ({x.shape[0]})")
    sizes = [check_int(f"sizes[{i}]", s, minimum=1) for i, s in enumerate(sizes)]
    if len(sizes) < 2 or sizes[0] != x.shape[1]:
        raise ValueError(f"sizes must start with the input dimension {x.shape[1]} and hold at least 2 entries, got {sizes}")
    return sizes


def train_discrete_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    sizes,
    *,
    values: str = "binary",
    steps: int = 200,
    decay: float = 0.5,
    rho: float = 0.1,
    sparsity: float = 0.0,
    seed: int = 0,
    device=None,
):
    r"""Train :func:`mlp_logits` with weights in :math:`\{\pm1\}` or :math:`\{-1,0,1\}` by discrete MSA (Li & Hao, 2018).

    Full batch, cross-entropy loss :math:`J`. Each step computes :math:`\partial H_l/\partial W_l = -\partial J/\partial W_l`
    (the costate identity: back-propagation gives the Hamiltonian's gradient) and applies
    :func:`discrete_msa_update` to every layer. Weights start as random signs (``seed``). Computes on
    ``device``, by default that of ``x``. Returns a :class:`DiscreteTraining` ``(weights, history)``
    with per-step ``"loss"``, ``"flips"`` (entries changed) and ``"in_set"`` (whether every
    weight lies in the set after the step).
    """
    import torch.nn.functional as F

    sizes = _check_classification(x, y, sizes)
    device = device_of(x) if device is None else get_device(device)
    check_choice("values", values, DISCRETE_SETS)
    steps = check_int("steps", steps, minimum=1)
    x, y = x.to(device), y.to(device)
    weights = random_sign_weights(sizes, check_int("seed", seed, minimum=0), x.dtype, device)
    averages = [torch.zeros_like(W) for W in weights]
    allowed = torch.tensor([-1.0, 1.0] if values == "binary" else [-1.0, 0.0, 1.0], dtype=x.dtype, device=device)
    history = {"loss": [], "flips": [], "in_set": []}
    for step in range(steps):
        trial = [W.clone().requires_grad_(True) for W in weights]
        loss = F.cross_entropy(mlp_logits(trial, x), y)
        raise_if_nonfinite(loss.detach(), step)
        grads = torch.autograd.grad(loss, trial)
        flips = 0
        for l in range(len(weights)):
            new, averages[l] = discrete_msa_update(
                weights[l], -grads[l], averages[l], values=values, decay=decay, rho=rho, sparsity=sparsity
            )
            flips += int((new != weights[l]).sum())
            weights[l] = new
        history["loss"].append(float(loss.detach()))
        history["flips"].append(flips)
        history["in_set"].append(all(bool(torch.isin(W, allowed).all()) for W in weights))
    return DiscreteTraining(weights, history)


def train_ste_mlp(
    x: torch.Tensor,
    y: torch.Tensor,
    sizes,
    *,
    values: str = "binary",
    steps: int = 200,
    lr: float = 1e-2,
    threshold: float = 0.05,
    seed: int = 0,
    device=None,
):
    r"""Straight-through-estimator baseline: latent real weights :math:`w`, forward with :math:`q(w)`, Adam on :math:`w`.

    :math:`q(w) = \mathrm{sign}(w)` (binary) or :math:`\mathrm{sign}(w)\,\mathbf 1[|w| > \text{threshold}]` (ternary); the
    backward pass treats :math:`q` as the identity, and :math:`w` is clipped to :math:`[-1, 1]`. Latent weights start
    Gaussian with standard deviation 0.1 (``seed``). Returns a :class:`DiscreteTraining`
    ``(quantised weights, history)`` with per-step ``"loss"``.
    """
    import torch.nn.functional as F

    sizes = _check_classification(x, y, sizes)
    device = device_of(x) if device is None else get_device(device)
    check_choice("values", values, DISCRETE_SETS)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    threshold = check_float("threshold", threshold, nonnegative=True)
    x, y = x.to(device), y.to(device)
    gen = generator(check_int("seed", seed, minimum=0))
    latent = [
        (0.1 * torch.randn(sizes[l + 1], sizes[l], generator=gen)).to(dtype=x.dtype, device=device).requires_grad_(True)
        for l in range(len(sizes) - 1)
    ]

    def quantise(w):
        q = torch.where(w >= 0, 1.0, -1.0) if values == "binary" else torch.sign(w) * (w.abs() > threshold)
        return w + (q.to(w.dtype) - w).detach()  # value q(w), gradient of the identity

    opt = torch.optim.Adam(latent, lr=lr)
    history = {"loss": []}
    for step in range(steps):
        opt.zero_grad()
        loss = F.cross_entropy(mlp_logits([quantise(w) for w in latent], x), y)
        raise_if_nonfinite(loss.detach(), step)
        loss.backward()
        opt.step()
        with torch.no_grad():
            for w in latent:
                w.clamp_(-1.0, 1.0)
        history["loss"].append(float(loss.detach()))
    return DiscreteTraining([quantise(w).detach() for w in latent], history)


# --------------------------------------------------------------------------------------------------
# Dynamic programming (HJB), LQR / Riccati, PMP for linear-quadratic problems
# --------------------------------------------------------------------------------------------------


def solve_hjb_1d(drift: Callable, running_cost: Callable, terminal_cost: Callable, x_grid, u_grid, T: float, steps: int):
    r"""Value function of :math:`\min_u \int_0^T r(x_t, u_t)\,dt + \Phi(x_T)`, :math:`\dot x = f(x, u)`, on a 1-D grid.

    Semi-Lagrangian dynamic programming, backwards from :math:`V(T, x) = \Phi(x)`:

    .. math:: V(t_k, x) = \min_{u}\ \Big[\tfrac{\Delta t}{2}\big(r(x, u) + r(\tilde x, u)\big) + V(t_{k+1}, \tilde x)\Big],

    where :math:`\tilde x` is one Heun step of :math:`\dot x = f(x, u)` with :math:`u` held fixed
    (second order in :math:`\Delta t`), :math:`V(t_{k+1}, \cdot)` is interpolated linearly, and the
    minimum over the control grid ``u_grid`` is refined by a parabola through the best grid value and
    its neighbours. ``drift(x, u)``, ``running_cost(x, u)`` (broadcasting numpy arrays) and
    ``terminal_cost(x)`` are vectorised. Outside ``x_grid`` the value is extrapolated constantly, so
    the grid must be wide enough for the paths of interest.

    Returns ``(times, V, U)``: ``times`` shape ``(steps+1,)``, ``V`` shape ``(steps+1, len(x_grid))``, and the
    feedback ``U`` of shape ``(steps, len(x_grid))``, ``U[k]`` being the minimiser used on :math:`[t_k, t_{k+1})`.
    """
    check_callable("drift", drift)
    check_callable("running_cost", running_cost)
    check_callable("terminal_cost", terminal_cost)
    x_grid = check_array("x_grid", x_grid, ndim=1)
    u_grid = check_array("u_grid", u_grid, ndim=1)
    if x_grid.size < 3 or np.any(np.diff(x_grid) <= 0):
        raise ValueError("x_grid must be increasing and hold at least 3 points")
    if u_grid.size < 3 or np.any(np.diff(u_grid) <= 0):
        raise ValueError("u_grid must be increasing and hold at least 3 points")
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    dt = T / steps
    X, Uc = x_grid[:, None], u_grid[None, :]
    k1 = drift(X, Uc)
    x_mid = X + dt * k1
    x_new = X + 0.5 * dt * (k1 + drift(x_mid, Uc))
    stage_cost = 0.5 * dt * (running_cost(X, Uc) + running_cost(x_new, Uc))
    V = np.empty((steps + 1, x_grid.size))
    U = np.empty((steps, x_grid.size))
    V[steps] = terminal_cost(x_grid)
    rows = np.arange(x_grid.size)
    du = u_grid[1] - u_grid[0]
    for k in reversed(range(steps)):
        q = stage_cost + np.interp(x_new, x_grid, V[k + 1])
        j = np.clip(np.argmin(q, axis=1), 1, u_grid.size - 2)
        qm, q0, qp = q[rows, j - 1], q[rows, j], q[rows, j + 1]
        curvature = qm - 2 * q0 + qp
        shift = np.where(curvature > 0, 0.5 * (qm - qp) / np.where(curvature > 0, curvature, 1.0), 0.0)
        shift = np.clip(shift, -1.0, 1.0)
        V[k] = np.minimum(q0 - 0.5 * curvature * shift**2 * (curvature > 0), q.min(axis=1))
        U[k] = u_grid[j] + shift * du
    return np.linspace(0.0, T, steps + 1), V, U


def _check_lq(A, B, Q, R, S=None):
    A = np.atleast_2d(check_array("A", A))
    B = np.atleast_2d(check_array("B", B))
    Q = np.atleast_2d(check_array("Q", Q))
    R = np.atleast_2d(check_array("R", R))
    d = A.shape[0]
    if A.shape != (d, d):
        raise ValueError(f"A must be square, got shape {A.shape}")
    if B.ndim != 2 or B.shape[0] != d:
        raise ValueError(f"B must have shape ({d}, m), got {B.shape}")
    m = B.shape[1]
    if Q.shape != (d, d):
        raise ValueError(f"Q must have shape {(d, d)}, got {Q.shape}")
    if R.shape != (m, m) or np.any(np.linalg.eigvalsh(0.5 * (R + R.T)) <= 0):
        raise ValueError(f"R must be a symmetric positive definite matrix of shape {(m, m)}")
    if S is None:
        return A, B, Q, R
    S = np.atleast_2d(check_array("S", S))
    if S.shape != (d, d):
        raise ValueError(f"S must have shape {(d, d)}, got {S.shape}")
    return A, B, Q, R, S


def lqr_riccati(A, B, Q, R, S, T: float, steps: int = 200):
    r"""Finite-horizon LQR: :math:`\min \int_0^T (x^\top Q x + u^\top R u)\,dt + x_T^\top S x_T`, :math:`\dot x = Ax + Bu`.

    The value function is :math:`V(t, x) = x^\top P(t) x` with the Riccati equation
    :math:`-\dot P = A^\top P + P A - P B R^{-1} B^\top P + Q`, :math:`P(T) = S`, integrated backwards
    with scipy's ``solve_ivp`` (rtol 1e-10). The optimal control is the feedback
    :math:`u = -K(t) x`, :math:`K = R^{-1}B^\top P`.

    Returns ``(times, P, K)`` on ``steps + 1`` equally spaced times; ``P`` has shape ``(steps+1, d, d)``
    and ``K`` ``(steps+1, m, d)``.
    """
    from scipy.integrate import solve_ivp

    A, B, Q, R, S = _check_lq(A, B, Q, R, S)
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    d = A.shape[0]
    Rinv_Bt = np.linalg.solve(R, B.T)

    def backward(s, p_flat):  # s = T - t
        P = p_flat.reshape(d, d)
        return (A.T @ P + P @ A - P @ B @ Rinv_Bt @ P + Q).ravel()

    times = np.linspace(0.0, T, steps + 1)
    sol = solve_ivp(backward, (0.0, T), S.ravel(), t_eval=T - times[::-1], rtol=1e-10, atol=1e-12, method="DOP853")
    P = sol.y.T[::-1].reshape(steps + 1, d, d)
    P = 0.5 * (P + P.transpose(0, 2, 1))
    K = np.einsum("md,tde->tme", Rinv_Bt, P)
    return times, P, K


def lq_pmp_solution(A, B, Q, R, S, x0, T: float, steps: int = 200):
    r"""Open-loop optimal control of the LQ problem from the maximum principle (a two-point boundary-value problem).

    With :math:`H = p\cdot(Ax + Bu) - x^\top Q x - u^\top R u`, maximisation gives
    :math:`u = \frac12 R^{-1}B^\top p`, and

    .. math:: \dot x = Ax + \tfrac12 BR^{-1}B^\top p,\quad \dot p = -A^\top p + 2Qx,\quad x(0) = x_0,\quad p(T) = -2Sx(T),

    solved with scipy's ``solve_bvp`` (tol 1e-8). Returns ``(times, x, u)`` with shapes
    ``(steps+1,)``, ``(steps+1, d)``, ``(steps+1, m)``.
    """
    from scipy.integrate import solve_bvp

    A, B, Q, R, S = _check_lq(A, B, Q, R, S)
    x0 = np.atleast_1d(check_array("x0", x0))
    d = A.shape[0]
    if x0.shape != (d,):
        raise ValueError(f"x0 must have shape ({d},), got {x0.shape}")
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    half_BRB = 0.5 * B @ np.linalg.solve(R, B.T)

    def rhs(t, z):
        x, p = z[:d], z[d:]
        return np.vstack([A @ x + half_BRB @ p, -A.T @ p + 2 * Q @ x])

    def boundary(za, zb):
        return np.concatenate([za[:d] - x0, zb[d:] + 2 * S @ zb[:d]])

    mesh = np.linspace(0.0, T, 101)
    sol = solve_bvp(rhs, boundary, mesh, np.zeros((2 * d, mesh.size)), tol=1e-8, max_nodes=100_000)
    if not sol.success:
        raise RuntimeError(f"solve_bvp did not converge: {sol.message}")
    times = np.linspace(0.0, T, steps + 1)
    z = sol.sol(times)
    u = 0.5 * np.linalg.solve(R, B.T @ z[d:])
    return times, z[:d].T, u.T


def simulate_linear(A, B, x0, control: Callable, T: float, steps: int = 200, substeps: int = 4):
    r"""Integrate :math:`\dot x = Ax + B\,u(t, x)` from ``x0``; returns ``(times, x)`` on ``steps + 1`` equal times.

    ``control(t, x)`` returns the control vector (shape ``(m,)``): an *open-loop* control ignores ``x``,
    a *closed-loop* (feedback) control uses it. Classical fourth-order Runge–Kutta
    (:func:`mldyn_lite.numerics.integrate`, ``rule="classic"``, in float64) with ``substeps`` steps per
    output interval: a fixed cost, and no step-size trouble with controls that are only piecewise smooth
    (e.g. interpolated on the output grid).
    """
    A = np.atleast_2d(check_array("A", A))
    B = np.atleast_2d(check_array("B", B))
    x0 = np.atleast_1d(check_array("x0", x0))
    if A.shape != (x0.size, x0.size) or B.shape[0] != x0.size:
        raise ValueError(f"A, B and x0 do not fit: shapes {A.shape}, {B.shape}, {x0.shape}")
    check_callable("control", control)
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    substeps = check_int("substeps", substeps, minimum=1)

    def field(t, x):
        x = x.numpy()
        return torch.from_numpy(A @ x + B @ np.atleast_1d(control(t, x)))

    x0 = torch.tensor(x0, dtype=torch.float64)
    path = integrate(field, x0, T, steps * substeps, "rk4", rule="classic", return_path=True)
    return np.linspace(0.0, T, steps + 1), path[::substeps].numpy()
