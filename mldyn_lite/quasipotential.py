r"""Quasipotentials of non-gradient systems: a learned orthogonal decomposition, and the minimum action path.

For the stochastic system :math:`dx = f(x)\,dt + \sqrt{\varepsilon}\,dW` Freidlin–Wentzell
theory gives, as :math:`\varepsilon\to0`, the stationary density
:math:`\rho(x)\asymp e^{-V(x)/\varepsilon}` and mean exit times :math:`\asymp e^{\Delta V/\varepsilon}`,
with the quasipotential :math:`V(x) = \inf_{T,\varphi}\ \tfrac12\int_0^T|\dot\varphi - f(\varphi)|^2dt`
over paths from the attractor to :math:`x`. B. Lin, Q. Li and W. Ren, *A data driven method for
computing quasipotentials* (MSML 2021, arXiv:2012.09111) learn it from trajectory data through
the orthogonal decomposition

.. math:: f = -\nabla U + g, \qquad \nabla U\cdot g = 0 .

Then :math:`\tfrac12|\nabla(2U)|^2 + f\cdot\nabla(2U) = 0`, the Hamilton–Jacobi equation of the
quasipotential, so :math:`V = 2U` (with noise :math:`\sqrt{2\varepsilon}` instead, :math:`V = U`).
The most probable escape path climbs along :math:`\dot x = \nabla U + g` (the time reversal of
the downhill part, with the circulation kept).

This module provides

* drifts with a known answer, :func:`rotating_double_well_drift`
  :math:`f = -(I + cJ)\nabla U` (then :math:`g = -cJ\nabla U \perp \nabla U`), and the
  Maier–Stein field :func:`maier_stein_drift`;
* :func:`simulate_increments`: short Euler–Maruyama trajectories and their finite-difference
  drift estimates, the data the method learns from;
* :class:`DecompositionNet`, :func:`decomposition_loss` and :func:`fit_decomposition`;
* :func:`potential_error` and :func:`orthogonality_residual`, the two accuracy measures;
* :func:`minimum_action_path`: the geometric minimum action method (Heymann & Vanden-Eijnden
  2008), the path-space reference.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from ._checks import (
    check_array,
    check_box,
    check_callable,
    check_float,
    check_int,
    check_tensor,
    resolve_generator,
    resolve_options,
)
from .numerics import generator as new_generator
from .numerics import mlp
from .runtime import get_device
from .training import raise_if_nonfinite, train_averaged

__all__ = [
    "DecompositionFit",
    "DecompositionNet",
    "DecompositionOptions",
    "decomposition_loss",
    "double_well_potential",
    "fit_decomposition",
    "geometric_action",
    "maier_stein_drift",
    "minimum_action_path",
    "orthogonality_residual",
    "potential_error",
    "rotating_double_well_drift",
    "simulate_increments",
    "uniform_points",
]

#: The symplectic matrix J = [[0, 1], [-1, 0]].
J = ((0.0, 1.0), (-1.0, 0.0))
#: Default box of the two planar examples.
DEFAULT_BOX = ((-1.5, 1.5), (-1.0, 1.0))


def _points(name, points):
    points = check_tensor(name, points, ndim=2)
    if points.shape[1] != 2:
        raise ValueError(f"{name} must have shape (k, 2), got {tuple(points.shape)}")
    return points


def double_well_potential(points: torch.Tensor) -> torch.Tensor:
    r""":math:`U(x, y) = \tfrac14(x^2-1)^2 + \tfrac12 y^2`: minima at :math:`(\pm1, 0)`, saddle at the origin."""
    points = _points("points", points)
    x, y = points[:, 0], points[:, 1]
    return 0.25 * (x**2 - 1) ** 2 + 0.5 * y**2


def rotating_double_well_drift(points: torch.Tensor, c: float = 1.0) -> torch.Tensor:
    r"""The drift :math:`f = -(I + cJ)\nabla U` of :func:`double_well_potential` (known decomposition)."""
    c = check_float("c", c)
    points = _points("points", points)
    grad = torch.stack([points[:, 0] ** 3 - points[:, 0], points[:, 1]], dim=1)
    rotated = torch.stack([grad[:, 1], -grad[:, 0]], dim=1)  # J grad U
    return -(grad + c * rotated)


def maier_stein_drift(points: torch.Tensor, beta: float = 10.0) -> torch.Tensor:
    r"""Maier–Stein: :math:`f = (x - x^3 - \beta x y^2,\ -(1 + x^2) y)`; gradient only for :math:`\beta = 1`."""
    beta = check_float("beta", beta)
    points = _points("points", points)
    x, y = points[:, 0], points[:, 1]
    return torch.stack([x - x**3 - beta * x * y**2, -(1 + x**2) * y], dim=1)


_check_box = check_box


def uniform_points(n: int, box=DEFAULT_BOX, seed: int = 0, device=None, dtype=torch.float32) -> torch.Tensor:
    """``n`` points uniform in ``box`` (shape ``(n, 2)``)."""
    n = check_int("n", n, minimum=1)
    (x0, x1), (y0, y1) = _check_box(box)
    device = torch.device("cpu") if device is None else get_device(device)
    generator = new_generator(seed, device)
    unit = torch.rand(n, 2, generator=generator, device=device, dtype=dtype)
    return torch.tensor([x0, y0], device=device, dtype=dtype) + unit * torch.tensor(
        [x1 - x0, y1 - y0], device=device, dtype=dtype
    )


def simulate_increments(
    drift: Callable,
    n_trajectories: int,
    steps: int,
    *,
    dt: float = 0.01,
    eps: float = 1e-4,
    box=DEFAULT_BOX,
    seed: int = 0,
    device=None,
    dtype=torch.float32,
):
    r"""Trajectory data: ``n_trajectories`` short Euler–Maruyama paths of :math:`dx = f\,dt + \sqrt{\varepsilon}\,dW`.

    The paths start uniformly in ``box`` and run ``steps`` steps of size ``dt``. Returns the
    states :math:`x_k` and the finite-difference drift estimates :math:`(x_{k+1} - x_k)/\Delta t`
    (shapes ``(n, 2)``), keeping only states inside the box. Each estimate is :math:`f(x_k)` plus
    noise of standard deviation :math:`\sqrt{\varepsilon/\Delta t}` per component; the
    least-squares fit averages that noise out.
    """
    check_callable("drift", drift)
    n_trajectories = check_int("n_trajectories", n_trajectories, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    dt = check_float("dt", dt, positive=True)
    eps = check_float("eps", eps, nonnegative=True)
    box = _check_box(box)
    device = torch.device("cpu") if device is None else get_device(device)
    generator = new_generator(seed, device)
    x = uniform_points(n_trajectories, box, seed=seed + 1, device=device, dtype=dtype)
    states, estimates = [], []
    for step in range(steps):
        nxt = x + dt * drift(x) + math.sqrt(eps * dt) * torch.randn(x.shape, generator=generator, device=device, dtype=dtype)
        raise_if_nonfinite(nxt, step, "trajectory", "dt is too large for this drift")
        states.append(x)
        estimates.append((nxt - x) / dt)
        x = nxt
    states, estimates = torch.cat(states), torch.cat(estimates)
    (x0, x1), (y0, y1) = box
    inside = (states[:, 0] >= x0) & (states[:, 0] <= x1) & (states[:, 1] >= y0) & (states[:, 1] <= y1)
    return states[inside], estimates[inside]


class DecompositionNet(torch.nn.Module):
    r"""One tanh network with three outputs: the potential :math:`U_\theta` and the field :math:`g_\theta`.

    Sharing the hidden layers costs one forward and one double-backward pass per step instead
    of two, and trained better than two separate networks in our tests.

    ``mirror=True`` builds in the mirror symmetry :math:`(x, y) \mapsto (x, -y)` of a drift with
    :math:`f(x, -y) = (f_1, -f_2)(x, y)` (Maier–Stein): the network sees :math:`(x, |y|)`, so
    :math:`U_\theta(x, -y) = U_\theta(x, y)` and :math:`g_\theta = (h_1, \operatorname{sign}(y)\,h_2)`.
    A smooth function of :math:`|y|` can have a kink on the axis :math:`y = 0`, where the two
    mirror-image minimum action paths meet and the quasipotential is not differentiable.
    The layers are :func:`mldyn_lite.numerics.mlp`; with a ``generator`` the initial weights are drawn
    from it (PyTorch's default ranges) and the global RNG is not used.
    """

    def __init__(self, width: int = 50, depth: int = 2, *, mirror: bool = False, generator: torch.Generator | None = None):
        super().__init__()
        width = check_int("width", width, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        if not isinstance(mirror, bool):
            raise TypeError(f"mirror must be True or False, got {type(mirror).__name__}")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        device = None if generator is None else generator.device
        self.mlp = mlp(2, width, depth, 3, "tanh", seed=generator, device=device)
        self.mirror = mirror

    def _outputs(self, x: torch.Tensor) -> torch.Tensor:
        if not self.mirror:
            return self.mlp(x)
        out = self.mlp(torch.stack([x[:, 0], x[:, 1].abs()], dim=1))
        return torch.stack([out[:, 0], out[:, 1], torch.sign(x[:, 1]) * out[:, 2]], dim=1)

    def potential(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`U_\theta(x)`, shape ``(k,)``."""
        return self._outputs(x)[:, 0]

    def parts(self, x: torch.Tensor, create_graph: bool = False):
        r"""Return :math:`U_\theta(x)`, :math:`\nabla U_\theta(x)` and :math:`g_\theta(x)`."""
        x = x.detach().requires_grad_(True)
        with torch.enable_grad():
            out = self._outputs(x)
            grad_u = torch.autograd.grad(out[:, 0].sum(), x, create_graph=create_graph)[0]
        return out[:, 0], grad_u, out[:, 1:]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The modelled drift :math:`-\nabla U_\theta + g_\theta`."""
        _, grad_u, g = self.parts(x, create_graph=torch.is_grad_enabled())
        return -grad_u + g


def decomposition_loss(
    model: DecompositionNet,
    x: torch.Tensor,
    target: torch.Tensor,
    *,
    orthogonality: float = 3.0,
    rotation: float = 0.0,
    floor: float = 1e-2,
    selection: float = 0.0,
    anchors: torch.Tensor | None = None,
    one_sided: bool = False,
) -> torch.Tensor:
    r"""Fit plus orthogonality plus (optional) rotation penalty.

    .. math:: \big\langle |\hat f + \nabla U_\theta - g_\theta|^2\big\rangle
              + \lambda \Big\langle \frac{(\nabla U_\theta\cdot g_\theta)^2}
                {|\nabla U_\theta|^2 + |g_\theta|^2 + \delta}\Big\rangle
              + \mu\,\langle |g_\theta|^2\rangle .

    The orthogonality term is normalised by :math:`|\nabla U|^2 + |g|^2` (held fixed in the
    gradient), which equals :math:`|f|^2` at the solution, so that it does not fade where the
    field is weak. The trivial split :math:`U = \text{const},\ g = f` also makes the first two
    terms vanish; the rotation penalty :math:`\mu` (annealed to 0 by :func:`fit_decomposition`)
    steers training away from it.

    Optional selection term: the quasipotential is the largest subsolution of the Hamilton–Jacobi
    equation (the largest :math:`U` with :math:`\nabla U\cdot g \le 0`, zero at the attractors),
    so ``selection`` :math:`=\kappa > 0` subtracts
    :math:`\kappa(\langle U_\theta\rangle - \langle U_\theta\rangle_{\text{anchors}})` and
    ``one_sided=True`` penalises only :math:`\nabla U_\theta\cdot g_\theta > 0`.
    """
    if not isinstance(model, DecompositionNet):
        raise TypeError(f"model must be a DecompositionNet, got {type(model).__name__}")
    x = _points("x", x)
    target = _points("target", target)
    if target.shape != x.shape:
        raise ValueError(f"target must have the shape of x {tuple(x.shape)}, got {tuple(target.shape)}")
    orthogonality = check_float("orthogonality", orthogonality, nonnegative=True)
    rotation = check_float("rotation", rotation, nonnegative=True)
    floor = check_float("floor", floor, positive=True)
    selection = check_float("selection", selection, nonnegative=True)
    if selection > 0 and anchors is None:
        raise ValueError("anchors (the attractors, shape (k, 2)) are needed when selection > 0")
    u, grad_u, g = model.parts(x, create_graph=True)
    fit = ((target + grad_u - g) ** 2).sum(1).mean()
    scale = ((grad_u**2).sum(1) + (g**2).sum(1)).detach() + floor
    dot = (grad_u * g).sum(1)
    if one_sided:
        dot = torch.relu(dot)
    orthogonal = (dot**2 / scale).mean()
    loss = fit + orthogonality * orthogonal + rotation * (g**2).sum(1).mean()
    if selection > 0:
        anchors = _points("anchors", anchors)
        loss = loss - selection * (u.mean() - model.potential(anchors).mean())
    return loss


@dataclass(frozen=True)
class DecompositionOptions:
    r"""Settings of :func:`fit_decomposition`.

    ``width``, ``depth``, ``mirror``: the :class:`DecompositionNet`; ``steps`` Adam steps on
    minibatches of ``batch_size`` samples; the learning rate decays geometrically from ``lr`` to
    ``final_lr`` and the rotation penalty :math:`\mu` from ``rotation`` to ``final_rotation``;
    ``orthogonality`` is :math:`\lambda`; the returned model is an exponential moving average of
    the weights with factor ``ema``; the loss is recorded every ``record_every`` steps.
    ``selection`` (:math:`\kappa`), ``anchors`` (the attractors) and ``one_sided`` add the
    selection term of :func:`decomposition_loss`; off by default (page 4.6 shows that, at the
    book's budget, :math:`\kappa` moves the Maier–Stein barrier instead of selecting it).
    """

    width: int = 50
    depth: int = 2
    mirror: bool = False
    steps: int = 1500
    batch_size: int = 500
    lr: float = 3e-3
    final_lr: float = 3e-4
    orthogonality: float = 3.0
    rotation: float = 1.0
    final_rotation: float = 1e-4
    ema: float = 0.99
    selection: float = 0.0
    anchors: tuple | None = None
    one_sided: bool = False
    record_every: int = 10

    def __post_init__(self):
        object.__setattr__(self, "selection", check_float("selection", self.selection, nonnegative=True))
        if self.anchors is not None:
            anchors = check_array("anchors", self.anchors, ndim=2)
            if anchors.shape[1] != 2:
                raise ValueError(f"anchors must have shape (k, 2), got {anchors.shape}")
            object.__setattr__(self, "anchors", tuple(tuple(float(v) for v in row) for row in anchors))
        elif self.selection > 0:
            raise ValueError("anchors (the attractors, shape (k, 2)) are needed when selection > 0")
        for name in ("width", "depth", "steps", "batch_size", "record_every"):
            object.__setattr__(self, name, check_int(name, getattr(self, name), minimum=1))
        for name in ("lr", "final_lr", "rotation", "final_rotation"):
            object.__setattr__(self, name, check_float(name, getattr(self, name), positive=True))
        object.__setattr__(self, "orthogonality", check_float("orthogonality", self.orthogonality, nonnegative=True))
        object.__setattr__(self, "ema", check_float("ema", self.ema, minimum=0.0, maximum=1.0))
        if not isinstance(self.mirror, bool):
            raise TypeError(f"mirror must be True or False, got {type(self.mirror).__name__}")


@dataclass
class DecompositionFit:
    """Result of :func:`fit_decomposition`: the (weight-averaged) ``model``, the loss history
    ``losses`` (every ``record_every`` steps, at the steps ``history_steps``), the ``options``, ``seed``
    and ``cpu_seconds`` (process CPU time of the training)."""

    model: DecompositionNet
    losses: list
    options: DecompositionOptions | None = None
    seed: int | None = None
    cpu_seconds: float = float("nan")
    history_steps: list = dataclasses.field(default_factory=list)

    @property
    def history(self) -> dict:
        """The loss history as ``{"step": [...], "loss": [...]}`` (the book's ``history`` convention)."""
        return {"step": list(self.history_steps), "loss": list(self.losses)}


def fit_decomposition(
    x: torch.Tensor,
    target: torch.Tensor,
    options: DecompositionOptions | None = None,
    *,
    seed: int | None = 0,
    generator: torch.Generator | None = None,
    **overrides,
) -> DecompositionFit:
    r"""Learn :math:`f \approx -\nabla U_\theta + g_\theta,\ \nabla U_\theta\perp g_\theta` from samples ``(x, target)``.

    B. Lin, Q. Li & W. Ren (MSML 2021): minimise :func:`decomposition_loss` with Adam on
    minibatches; the learning rate decays geometrically from ``lr`` to ``final_lr`` and the
    rotation penalty from ``rotation`` to ``final_rotation`` (a continuation: a large :math:`\mu`
    first makes :math:`-\nabla U_\theta` the best gradient fit of :math:`f`, which lies near the
    quasipotential split, not near the trivial one). Returns an exponential moving average of
    the weights (factor ``ema``, :class:`torch.optim.swa_utils.AveragedModel`).

    ``options`` is a :class:`DecompositionOptions`; its fields may also be given as keywords
    (``steps=3000``; ``batch`` for ``batch_size``). Randomness (initial weights, minibatches)
    comes from ``generator`` or else from a new generator seeded with ``seed``; the global torch
    RNG is not touched.
    """
    x = _points("x", x)
    target = _points("target", target)
    if target.shape != x.shape:
        raise ValueError(f"target must have the shape of x {tuple(x.shape)}, got {tuple(target.shape)}")
    options = resolve_options(DecompositionOptions, options, overrides, "fit_decomposition", {"batch": "batch_size"})
    generator, seed = resolve_generator(seed, generator, x.device)
    o = options
    start = time.process_time()
    model = DecompositionNet(o.width, o.depth, mirror=o.mirror, generator=generator).to(device=x.device, dtype=x.dtype)
    last = max(o.steps - 1, 1)
    anchors = None if o.anchors is None else torch.tensor(o.anchors, device=x.device, dtype=x.dtype)

    def loss_at(step):
        index = torch.randint(0, x.shape[0], (min(o.batch_size, x.shape[0]),), generator=generator, device=x.device)
        mu = o.rotation * (o.final_rotation / o.rotation) ** (step / last)
        return decomposition_loss(
            model,
            x[index],
            target[index],
            orthogonality=o.orthogonality,
            rotation=mu,
            selection=o.selection,
            anchors=anchors,
            one_sided=o.one_sided,
        )

    run = train_averaged(model, loss_at, steps=o.steps, lr=o.lr, final_lr=o.final_lr, ema=o.ema, record_every=o.record_every)
    return DecompositionFit(
        model=run.model,
        losses=run.history["loss"],
        options=o,
        seed=seed,
        cpu_seconds=time.process_time() - start,
        history_steps=run.history["step"],
    )


def potential_error(model: DecompositionNet, x: torch.Tensor, true_potential) -> float:
    r"""Relative :math:`L^2` error of :math:`U_\theta` at ``x`` after the best constant shift.

    :math:`\min_c \|U_\theta - U - c\| / \|U - \bar U\|` (the potential is defined up to a constant).
    """
    if not isinstance(model, DecompositionNet):
        raise TypeError(f"model must be a DecompositionNet, got {type(model).__name__}")
    x = _points("x", x)
    truth = true_potential(x) if callable(true_potential) else true_potential
    truth = check_array("true_potential", truth, ndim=1)
    with torch.no_grad():
        learned = model.potential(x).detach().cpu().numpy().astype(float)
    if learned.shape != truth.shape:
        raise ValueError(f"true_potential must give one value per point, got shape {truth.shape}")
    difference = learned - truth
    difference -= difference.mean()
    return float(np.linalg.norm(difference) / np.linalg.norm(truth - truth.mean()))


def orthogonality_residual(model: DecompositionNet, x: torch.Tensor) -> float:
    r"""Orthogonality residual :math:`\sqrt{\langle(\nabla U_\theta\cdot g_\theta)^2\rangle
    / \langle|\nabla U_\theta|^2|g_\theta|^2\rangle}` at ``x``: an average :math:`|\cos|` of the angle."""
    if not isinstance(model, DecompositionNet):
        raise TypeError(f"model must be a DecompositionNet, got {type(model).__name__}")
    x = _points("x", x)
    _, grad_u, g = model.parts(x)
    dot = ((grad_u * g).sum(1) ** 2).mean()
    norms = ((grad_u**2).sum(1) * (g**2).sum(1)).mean()
    return float(torch.sqrt(dot / norms).detach())


# ----------------------------------------------------------------------------------------------
# minimum action path (geometric minimum action method)
# ----------------------------------------------------------------------------------------------


def geometric_action(drift: Callable, path: torch.Tensor) -> torch.Tensor:
    r"""Discrete geometric action :math:`\sum_k |\Delta\varphi_k|\,|f(m_k)| - \Delta\varphi_k\cdot f(m_k)` of a polyline.

    :math:`m_k` are the segment midpoints. Its minimum over paths from an attractor to
    :math:`x` is the quasipotential :math:`V(x)` (Heymann & Vanden-Eijnden 2008).
    """
    check_callable("drift", drift)
    path = _points("path", path)
    step = path[1:] - path[:-1]
    force = drift(0.5 * (path[1:] + path[:-1]))
    return (step.norm(dim=1) * force.norm(dim=1) - (step * force).sum(1)).sum()


def _redistribute(path: np.ndarray) -> np.ndarray:
    """Equal arc-length spacing of the points of ``path`` (the endpoints stay)."""
    length = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(path, axis=0), axis=1))])
    target = np.linspace(0.0, length[-1], len(path))
    return np.stack([np.interp(target, length, path[:, k]) for k in range(path.shape[1])], axis=1)


def minimum_action_path(drift: Callable, initial_path, *, rounds: int = 40, iterations: int = 25):
    r"""Minimise :func:`geometric_action` over the interior points of ``initial_path`` (endpoints fixed).

    ``rounds`` times: L-BFGS for ``iterations`` iterations, then redistribute the points to equal
    arc length (the action does not depend on the parametrisation, so the points would drift).
    Returns the path (numpy, shape ``(n, 2)``) and its action :math:`V` (float). Computed in float64.
    """
    check_callable("drift", drift)
    path = check_array("initial_path", initial_path, ndim=2)
    if path.shape[1] != 2 or path.shape[0] < 3:
        raise ValueError(f"initial_path must have shape (n >= 3, 2), got {path.shape}")
    rounds = check_int("rounds", rounds, minimum=1)
    iterations = check_int("iterations", iterations, minimum=1)
    path = _redistribute(path)
    for round_ in range(rounds):
        ends = torch.tensor(path[[0, -1]], dtype=torch.float64)
        interior = torch.tensor(path[1:-1], dtype=torch.float64, requires_grad=True)
        optimizer = torch.optim.LBFGS([interior], lr=1.0, max_iter=iterations, line_search_fn="strong_wolfe")

        def closure():
            optimizer.zero_grad()
            action = geometric_action(drift, torch.cat([ends[:1], interior, ends[1:]]))
            raise_if_nonfinite(action.detach(), round_, "action", "the drift is not finite along the path")
            action.backward()
            return action

        optimizer.step(closure)
        path = _redistribute(torch.cat([ends[:1], interior.detach(), ends[1:]]).numpy())
    action = float(geometric_action(drift, torch.tensor(path, dtype=torch.float64)))
    return path, action
