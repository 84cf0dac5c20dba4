r"""Flows as approximators in one dimension, and universal interpolation by control (chapter 2.2).

**1. The rate of a one-dimensional flow.** In :math:`d = 1` take the ReLU control family
:math:`\mathcal F = \{ v\,\mathrm{ReLU}(x - c),\ v\,\mathrm{ReLU}(c - x),\ v : |v| \le 1 \}` with piecewise
constant controls (Li, Lin & Shen, *Deep learning via dynamical systems: an approximation perspective*,
J. Eur. Math. Soc. 2023, arXiv:1912.10382). On a time piece of length :math:`\tau` with the *hinge field*
:math:`\dot x = v\,\mathrm{ReLU}(x - c)` the flow map is explicit,

.. math:: \varphi_\tau(x) = x \quad (x \le c), \qquad \varphi_\tau(x) = c + e^{v\tau}(x - c) \quad (x > c),

a continuous piecewise linear map that multiplies every slope to the right of :math:`c` by :math:`e^{v\tau}`.
Composing :math:`L` hinges at the knots :math:`x_{L-1}, \dots, x_1, x_0` (right to left) with
:math:`v\tau = \log(s_{k+1}/s_k)` and :math:`\log s_1`, then a translation :math:`\dot x = \pm 1`, gives
*exactly* the piecewise linear interpolant :math:`P_L` of an increasing target :math:`F^*` on :math:`L`
intervals (slopes :math:`s_k > 0`). So an :math:`(L + 1)`-piece flow inherits the interpolation error,

.. math:: \|F^* - \varphi\|_\infty \le \|F^* - P_L\|_\infty \le \tfrac18 \|F^{*\prime\prime}\|_\infty\, h^2,
          \qquad h = (b - a)/L,

a rate :math:`L^{-2}` for :math:`C^2` targets (and :math:`L^{-1-\alpha}` when :math:`F^{*\prime}` is only
:math:`\alpha`-Hölder), with time horizon :math:`T = \sum_k |\log(s_{k+1}/s_k)| + |\log s_1| + |F^*(a) - a|`,
which stays bounded as :math:`L \to \infty` (it tends to the total variation of :math:`\log F^{*\prime}` plus
the two end terms). :func:`hinge_controls` builds the controls, :func:`hinge_flow` integrates them with
:func:`mldyn_lite.numerics.integrate`, :func:`flow_rate` measures the error against :math:`L`.

**2. Universal interpolation by control.** The driftless control-affine system

.. math:: \dot x = \sum_{i=1}^m u_i(t)\, f_i(x), \qquad
          \{f_i\} = \{\tanh(s(x_j - c))\,e_k : j \ne k,\ c \in C\} \cup \{e_k : k \le d\}
          \quad (d \ge 2),

with piecewise constant controls :math:`u(t) \in \mathbb R^m` steers :math:`N` distinct points
:math:`x^1, \dots, x^N` *with one common control* to :math:`N` given targets when :math:`d \ge 2`
(universal interpolation: Cuchiero, Larsson & Teichmann, *Deep neural networks, generic universal
interpolation, and controlled ODEs*, SIAM J. Math. Data Sci. 2020, arXiv:1908.07838; Tabuada &
Gharesifard, *Universal approximation power of deep residual neural networks via nonlinear control
theory*, arXiv:2007.06007). In :math:`d = 1` the flow preserves order, so targets in another order are out
of reach: the mean square error stays above the isotonic-regression bound
(:func:`mldyn_lite.flows.isotonic_error`); there the family is :math:`\{\tanh(s(x - c)), 1\}`. The fields
:math:`\tanh(s(x_j - c))e_k`, :math:`j \ne k`, are *shears*: on a piece that moves only :math:`x_k`, the flow
is :math:`x_k \mapsto x_k + \tau \sum u_i f_i(x)`, exact and linear in the controls. :func:`steer` finds the
controls layer by layer by least squares, then refines all of them with damped Gauss–Newton steps on
:math:`\frac1N\sum_i |x_T^i - y^i|^2`, differentiating through :func:`mldyn_lite.numerics.integrate`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

from ._checks import check_callable, check_choice, check_float, check_int, check_tensor
from .measure import loglog_slope
from .numerics import METHODS, generator, integrate
from .training import fit, raise_if_nonfinite

__all__ = [
    "FlowRate",
    "HingeControls",
    "Steering",
    "control_field",
    "control_family_size",
    "flow_rate",
    "hinge_controls",
    "hinge_flow",
    "hinge_map",
    "steer",
    "steered_flow",
]


# --------------------------------------------------------------------------- 1. rate in one dimension


@dataclass(frozen=True)
class HingeControls:
    r"""Piecewise constant controls of the 1-D ReLU family: hinge pieces, then one translation.

    Piece :math:`k` is :math:`\dot x = v_k\,\mathrm{ReLU}(x - c_k)` for a time :math:`\tau_k`, with
    :math:`v_k = \pm 1`; the last piece is :math:`\dot x = \mathrm{sign}(\text{shift})` for a time
    :math:`|\text{shift}|`. ``pieces`` counts the hinge pieces (the size parameter :math:`L`).
    """

    centers: torch.Tensor
    rates: torch.Tensor
    durations: torch.Tensor
    shift: float

    @property
    def pieces(self) -> int:
        return int(self.centers.numel())

    @property
    def horizon(self) -> float:
        """The time horizon :math:`T = \\sum_k \\tau_k + |\\text{shift}|` (controls bounded by 1)."""
        return float(self.durations.sum()) + abs(self.shift)


def hinge_controls(knots: torch.Tensor, values: torch.Tensor) -> HingeControls:
    r"""Controls whose flow map is the piecewise linear interpolant of ``(knots, values)`` on ``[knots[0], knots[-1]]``.

    ``knots`` are increasing, ``values`` strictly increasing (a flow map in 1-D is increasing), both 1-D
    tensors of the same length :math:`L + 1 \ge 2`.
    """
    check_tensor("knots", knots, ndim=1)
    check_tensor("values", values, ndim=1)
    if knots.numel() != values.numel() or knots.numel() < 2:
        raise ValueError(f"knots and values must have the same length >= 2, got {knots.numel()} and {values.numel()}")
    if not bool((knots[1:] > knots[:-1]).all()):
        raise ValueError("knots must be strictly increasing")
    slopes = (values[1:] - values[:-1]) / (knots[1:] - knots[:-1])
    if not bool((slopes > 0).all()):
        raise ValueError("values must be strictly increasing: a one-dimensional flow map is increasing")
    logs = torch.log(slopes)
    # right to left: hinge at x_{L-1} with log(s_L / s_{L-1}), ..., at x_1, then at x_0 with log s_1
    jumps = torch.cat([(logs[1:] - logs[:-1]).flip(0), logs[:1]])
    centers = knots[:-1].flip(0)
    return HingeControls(centers=centers, rates=torch.sign(jumps), durations=jumps.abs(), shift=float(values[0] - knots[0]))


def hinge_map(x: torch.Tensor, center: float, log_factor: float) -> torch.Tensor:
    r"""The exact flow map of one hinge piece: :math:`x` left of ``center``, :math:`c + e^{v\tau}(x - c)` right of it."""
    check_tensor("x", x)
    return torch.where(x > center, center + math.exp(log_factor) * (x - center), x)


def hinge_flow(controls: HingeControls, x: torch.Tensor, *, max_step: float = 0.05) -> torch.Tensor:
    r"""The flow map of ``controls`` at ``x``, integrated piece by piece with RK4 (:func:`mldyn_lite.numerics.integrate`).

    Each piece takes :math:`\lceil \tau_k / \text{max\_step} \rceil` steps. ``x`` has any shape; device and
    dtype follow it.
    """
    if not isinstance(controls, HingeControls):
        raise TypeError(f"controls must be HingeControls, got {type(controls).__name__}")
    check_tensor("x", x)
    max_step = check_float("max_step", max_step, positive=True)
    for center, rate, tau in zip(controls.centers.tolist(), controls.rates.tolist(), controls.durations.tolist()):
        if tau > 0:
            x = integrate(lambda z, c=center, v=rate: v * torch.relu(z - c), x, tau, math.ceil(tau / max_step))
    if controls.shift != 0:
        sign = math.copysign(1.0, controls.shift)
        x = integrate(lambda z: torch.full_like(z, sign), x, abs(controls.shift), 1)
    return x


@dataclass
class FlowRate:
    """Sup-norm error of the hinge-flow approximation against the number of hinge pieces ``sizes``."""

    sizes: list[int]
    errors: list[float]
    horizons: list[float]
    slope: float


def flow_rate(
    target: Callable,
    sizes: Sequence[int],
    *,
    interval: tuple[float, float] = (0.0, 1.0),
    points: int = 4001,
    max_step: float = 0.05,
    dtype: torch.dtype = torch.float64,
    device=None,
) -> FlowRate:
    r"""Error :math:`\max_x |F^*(x) - \varphi(x)|` on a grid of ``points`` for ``L`` uniform knots, ``L`` in ``sizes``.

    ``target`` maps a tensor to a tensor of the same shape and is strictly increasing on ``interval``.
    The slope is the least-squares slope of log error against log ``L``.
    """
    check_callable("target", target)
    sizes = [check_int("sizes", L, minimum=1) for L in sizes]
    if len(sizes) < 2:
        raise ValueError("sizes must hold at least two sizes to measure a rate")
    a, b = (check_float("interval", v) for v in interval)
    if not a < b:
        raise ValueError(f"interval must satisfy a < b, got {interval!r}")
    points = check_int("points", points, minimum=2)
    grid = torch.linspace(a, b, points, dtype=dtype, device=device)
    truth = target(grid)
    errors, horizons = [], []
    for L in sizes:
        knots = torch.linspace(a, b, L + 1, dtype=dtype, device=device)
        controls = hinge_controls(knots, target(knots))
        errors.append(float((hinge_flow(controls, grid, max_step=max_step) - truth).abs().max()))
        horizons.append(controls.horizon)
    return FlowRate(sizes=sizes, errors=errors, horizons=horizons, slope=loglog_slope(sizes, errors)[0])


# --------------------------------------------------------------------------- 2. interpolation by control


def _sources(coordinate: int, d: int) -> list[int]:
    """The coordinates whose ridge functions drive ``coordinate``: all others (shears), itself in d = 1."""
    return [coordinate] if d == 1 else [j for j in range(d) if j != coordinate]


def control_family_size(d: int, centers: int) -> int:
    r"""Number :math:`m` of fields :math:`f_i` in the family.

    :math:`d(d-1)|C| + d` for :math:`d \ge 2` (shears and translations), :math:`|C| + 1` for :math:`d = 1`.
    """
    d = check_int("d", d, minimum=1)
    centers = check_int("centers", centers, minimum=1)
    return centers + 1 if d == 1 else d * (d - 1) * centers + d


def control_field(
    x: torch.Tensor, coordinate: int, weight: torch.Tensor, bias: torch.Tensor, centers: torch.Tensor, sharpness: float = 1.0
) -> torch.Tensor:
    r"""The field :math:`\sum_i u_i f_i(x)` of one time piece, which moves only ``x[:, coordinate]``.

    Its ``coordinate`` component is :math:`\sum_{j, l} u_{j l} \tanh(s(x_j - c_l)) + b` over the other
    coordinates :math:`j` (a *shear*; in :math:`d = 1` over :math:`j = 1` itself), with ``weight`` the
    controls :math:`u_{jl}` (flattened, length :math:`|\{j\}|\cdot|C|`) and ``bias`` the control of
    :math:`e_k`. ``x`` has shape ``(N, d)``.
    """
    features = torch.tanh(sharpness * (x[:, _sources(coordinate, x.shape[1]), None] - centers)).reshape(x.shape[0], -1)
    velocity = torch.zeros_like(x)
    velocity[:, coordinate] = features @ weight + bias
    return velocity


@dataclass
class Steering:
    """Controls found by :func:`steer` (``weights`` (pieces, controls per piece), ``biases`` (pieces,)) and the outcome.

    Piece ``p`` moves coordinate ``p % d``.
    """

    weights: torch.Tensor
    biases: torch.Tensor
    centers: torch.Tensor
    sharpness: float
    T: float
    steps_per_piece: int
    method: str
    history: list[float]
    mse: float
    max_error: float


def steered_flow(
    result: Steering,
    x0: torch.Tensor,
    *,
    steps_per_piece: int | None = None,
    method: str | None = None,
    return_path: bool = False,
) -> torch.Tensor:
    """The flow map of the controls in ``result`` at ``x0`` (or the path at every step, with ``return_path``).

    ``steps_per_piece`` and ``method`` (default: those used to find the controls) set the integration of
    each piece; finer RK4 steps check that the flow is resolved.
    """
    if not isinstance(result, Steering):
        raise TypeError(f"result must be a Steering, got {type(result).__name__}")
    check_tensor("x0", x0, ndim=2)
    steps = result.steps_per_piece if steps_per_piece is None else check_int("steps_per_piece", steps_per_piece, minimum=1)
    method = result.method if method is None else check_choice("method", method, METHODS)
    pieces, d = result.weights.shape[0], x0.shape[1]
    x, path = x0, [x0[None]]
    for p in range(pieces):

        def field(z, k=p % d, w=result.weights[p], b=result.biases[p]):
            return control_field(z, k, w, b, result.centers, result.sharpness)

        out = integrate(field, x, result.T / pieces, steps, method, return_path=return_path)
        x = out[-1] if return_path else out
        if return_path:
            path.append(out[1:])
    return torch.cat(path) if return_path else x


def _greedy_controls(x0, targets, pieces, tau, centers, sharpness, ridge):
    """Layer by layer, the controls of piece ``p`` solve a ridge least-squares fit of the residual of coordinate ``p % d``.

    For a shear the flow of one piece is exact and linear in its controls, ``x_k + tau (F(x) u + b)``, so each
    piece is the best it can be given the states it receives (the layer-wise idea of the MSA, chapter 2.4).
    """
    d = x0.shape[1]
    weights, biases, x = [], [], x0
    for p in range(pieces):
        k = p % d
        features = torch.tanh(sharpness * (x[:, _sources(k, d), None] - centers)).reshape(x.shape[0], -1)
        design = tau * torch.cat([features, torch.ones_like(features[:, :1])], dim=1)
        gram = design.T @ design + ridge * torch.eye(design.shape[1], dtype=x.dtype, device=x.device)
        controls = torch.linalg.solve(gram, design.T @ (targets[:, k] - x[:, k]))
        weights.append(controls[:-1])
        biases.append(controls[-1])
        if d > 1:  # exact for a shear; in d = 1 the field depends on x and the flow is integrated below
            x = x.clone()
            x[:, k] = x[:, k] + design @ controls
        else:
            x = integrate(
                lambda z, w=controls[:-1], b=controls[-1]: control_field(z, 0, w, b, centers, sharpness), x, tau, 8
            )
    return torch.stack(weights), torch.stack(biases)


def _levenberg_marquardt(
    params: list[torch.Tensor], residuals: Callable, iterations: int, damping: float = 1e-3
) -> list[float]:
    r"""Minimise :math:`|r(\theta)|^2` by damped Gauss–Newton steps :math:`(J^\top J + \lambda I)\delta = -J^\top r`.

    :math:`J = \partial r/\partial\theta` comes from autograd (one batched backward pass); :math:`\lambda` is
    divided by 3 after a step that lowers the loss and multiplied by 4 (step rejected) otherwise. Returns
    :math:`|r|^2` after every iteration.
    """
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    shapes = [p.shape for p in params]

    def unpack(vector):
        with torch.no_grad():
            offset = 0
            for p, shape in zip(params, shapes):
                p.copy_(vector[offset : offset + p.numel()].reshape(shape))
                offset += p.numel()

    history: list[float] = []
    r = residuals()

    for iteration in range(iterations):
        eye = torch.eye(r.numel(), dtype=r.dtype, device=r.device)
        rows = torch.autograd.grad(r, params, grad_outputs=eye, is_grads_batched=True)
        J = torch.cat([g.reshape(r.numel(), -1) for g in rows], dim=1)
        r = r.detach()
        raise_if_nonfinite(J, iteration, "Jacobian", "controls too large: lower T or the sharpness")
        gradient, normal = J.T @ r, J.T @ J
        loss = float(r.square().sum())
        while True:
            shift = torch.linalg.solve(normal + damping * torch.eye(flat.numel(), dtype=r.dtype, device=r.device), -gradient)
            unpack(flat + shift)
            trial = residuals()
            if float(trial.detach().square().sum()) < loss or damping > 1e8:
                break
            damping *= 4
        if float(trial.detach().square().sum()) < loss:
            flat, damping, r = flat + shift, damping / 3, trial
        else:
            unpack(flat)
            r = residuals()
        history.append(float(r.detach().square().sum()))
    return history


def steer(
    x0: torch.Tensor,
    targets: torch.Tensor,
    *,
    pieces: int,
    T: float = 1.0,
    centers: Sequence[float] = (-1.0, 0.0, 1.0),
    sharpness: float = 1.0,
    steps_per_piece: int = 1,
    method: str = "rk4",
    iterations: int = 20,
    lr: float = 0.05,
    optimizer: str = "lm",
    init: str = "greedy",
    ridge: float = 1e-8,
    seed: int | None = None,
) -> Steering:
    r"""Piecewise constant controls :math:`u(t)` that steer every ``x0[i]`` towards ``targets[i]`` at time ``T``.

    Minimises :math:`\frac1N\sum_i |x_T^i - y^i|^2` over the controls of ``pieces`` equal time pieces
    (:func:`control_field`; piece ``p`` moves coordinate ``p % d``; ``steps_per_piece`` steps of ``method``
    each; for :math:`d \ge 2` one Euler step is exact, since a shear does not depend on the coordinate it
    moves). ``init="greedy"`` starts from the layer-by-layer least-squares controls (exact for shears when
    each piece has at least :math:`N` features), ``"zero"`` from :math:`u = 0`; then ``iterations`` steps of
    ``optimizer``: ``"lm"`` (damped Gauss–Newton with the Jacobian from autograd) or ``"adam"``/``"sgd"``
    (:func:`mldyn_lite.fit`, step size ``lr``).
    ``seed`` adds a small random perturbation to the start. ``x0`` and ``targets`` have shape ``(N, d)``; device and dtype
    follow ``x0``. Returns a :class:`Steering` with the controls, the loss history, the final mean square
    error and the largest distance :math:`\max_i |x_T^i - y^i|`.
    """
    check_tensor("x0", x0, ndim=2)
    check_tensor("targets", targets, ndim=2)
    if targets.shape != x0.shape:
        raise ValueError(f"targets must have the shape of x0, {tuple(x0.shape)}, got {tuple(targets.shape)}")
    pieces = check_int("pieces", pieces, minimum=1)
    T = check_float("T", T, positive=True)
    steps_per_piece = check_int("steps_per_piece", steps_per_piece, minimum=1)
    check_choice("method", method, METHODS)
    check_choice("optimizer", optimizer, ("lm", "adam", "sgd"))
    iterations = check_int("iterations", iterations, minimum=1)
    sharpness = check_float("sharpness", sharpness, positive=True)
    ridge = check_float("ridge", ridge, nonnegative=True)
    check_choice("init", init, ("greedy", "zero"))
    if seed is not None:
        check_int("seed", seed, minimum=0)
    if len(centers) < 1:
        raise ValueError("centers must hold at least one centre")
    d, options = x0.shape[1], {"dtype": x0.dtype, "device": x0.device}
    centres = torch.as_tensor([check_float("centers", c) for c in centers], **options)
    if init == "greedy":
        weights, biases = _greedy_controls(x0, targets, pieces, T / pieces, centres, sharpness, ridge)
    else:
        weights = torch.zeros(pieces, len(_sources(0, d)) * len(centers), **options)
        biases = torch.zeros(pieces, **options)
    if seed is not None:  # a small random perturbation of the greedy start
        weights += 1e-3 * torch.randn(weights.shape, generator=generator(seed), dtype=x0.dtype).to(x0.device)
    weights.requires_grad_(True)
    biases.requires_grad_(True)
    result = Steering(weights, biases, centres, sharpness, T, steps_per_piece, method, [], math.nan, math.nan)

    def residuals():
        return (steered_flow(result, x0) - targets).reshape(-1)

    if optimizer == "lm":
        result.history = [h / x0.shape[0] for h in _levenberg_marquardt([weights, biases], residuals, iterations)]
    else:
        result.history = fit(
            [weights, biases], lambda: residuals().square().sum() / x0.shape[0], steps=iterations, lr=lr, optimizer=optimizer
        )
    with torch.no_grad():
        distances = (steered_flow(result, x0) - targets).norm(dim=1)
    result.weights, result.biases = weights.detach(), biases.detach()
    result.mse, result.max_error = float(distances.square().mean()), float(distances.max())
    return result
