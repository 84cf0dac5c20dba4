r"""Residual networks as discretised flows, and what flow maps can approximate (chapters 1–2).

**Composition is dynamics (chapter 1.2).** A residual network with :math:`L` layers on :math:`[0, T]`,

.. math::  x_{n+1} = x_n + \delta\, f(x_n, \theta_n), \qquad \delta = T / L,

is the forward-Euler discretisation of the controlled ODE

.. math::  \dot x_t = f(x_t, \theta_t), \qquad 0 \le t \le T,

so that depth plays the role of the number of time steps ("composition is
dynamics", Q. Li, lecture 2021; E, Comm. Math. Stat. 2017; Li, Lin & Shen,
arXiv:1912.10382). If :math:`\theta_t` is fixed and smooth in time, the
ResNet output converges to the ODE flow map :math:`\varphi_T(x_0)` with error
:math:`O(\delta)` (Euler is first order).

**Approximation by flows (chapter 2.1).** The continuum idealisation of a
ResNet is the hypothesis space (Li, Lin & Shen, JEMS 2022, arXiv:1912.10382)

.. math::  \mathcal H(\mathcal F, \mathcal G) = \{\, g \circ \varphi_T \;:\;
           \varphi_T \text{ a flow map of } \dot x = f(x),\ f \in \mathcal F,\ g \in \mathcal G \,\},

where the field may switch between members of the control family
:math:`\mathcal F` in time. :class:`ContinuousResNet` is this model with
:math:`\theta_t` piecewise constant on ``pieces`` intervals,
:math:`f(x; \theta) = A\,\sigma(Wx + b)`, an optional augmentation
:math:`x \mapsto (x, 0) \in \mathbb R^{d+p}` and a readout :math:`g`
(a coordinate projection or an affine map). It integrates forward or
backward (inverting the map). In :math:`d = 1` with :math:`\mathcal G = \{\mathrm{id}\}`
every flow map is strictly increasing, so its square error on a target is
bounded below by the isotonic-regression error (:func:`isotonic_regression`,
:func:`isotonic_error`); an explicit Euler step with :math:`h f'(x) < -1`
is not monotone, a discretisation artefact.

The vector fields here take ``field(t, x)`` with ``x`` of shape ``(batch, d)``,
the calling convention of ``torchdiffeq.odeint``, so that reference solutions
are computed by that library (:func:`reference_flow`). :func:`integrate` takes
fixed Euler or fourth-order Runge–Kutta steps (error :math:`O(\delta)` and
:math:`O(\delta^4)`), forward or backward in time; :func:`euler_flow` and
:func:`rk4_flow` are its forward special cases.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import torch
from torch import nn

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .numerics import METHODS, RK4_RULES, generator, integrate  # noqa: F401  (re-exported: flows.integrate)
from .numerics import step as _step
from .training import fit

__all__ = [
    "ACTIVATIONS",
    "READOUTS",
    "ContinuousResNet",
    "LayerwiseTanhField",
    "ResNetClassifier",
    "SmoothTanhField",
    "Training",
    "best_linear_accuracy",
    "escape_times",
    "euler_flow",
    "integrate",
    "inverse_flow",
    "isotonic_error",
    "isotonic_regression",
    "lecture_example_field",
    "linearly_separable",
    "reference_flow",
    "rk4_flow",
    "smallest_increment",
    "train_classifier",
    "train_regressor",
    "well_function",
]


def _cpu_unless(device) -> torch.device:
    """A model built from nothing lives on ``device`` if given, else on the CPU (the book's device rule)."""
    return torch.device("cpu") if device is None else torch.device(device)


class Training(NamedTuple):
    """What :func:`train_classifier` and :func:`train_regressor` return: the trained model and its loss history."""

    model: nn.Module
    history: list

    @property
    def final_loss(self) -> float:
        """The last training loss."""
        return self.history[-1]


def _check_flow_args(field, x0, T, steps):
    check_callable("field", field)
    check_tensor("x0", x0, ndim=2)
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    return T, steps


def inverse_flow(field, x_T: torch.Tensor, T: float, steps: int, method: str = "rk4") -> torch.Tensor:
    r"""Approximate :math:`\varphi_T^{-1}(x_T)` by integrating :math:`\dot x = f(t, x)` backward from ``T`` to 0."""
    check_tensor("x_T", x_T, ndim=2)
    return integrate(field, x_T, T, steps, method, backward=True)


def euler_flow(field, x0: torch.Tensor, T: float, steps: int, return_path: bool = False) -> torch.Tensor:
    r"""Forward Euler for :math:`\dot x = f(t, x)` — exactly a residual network of depth ``steps``.

    Step :math:`n` is the residual block :math:`x_{n+1} = x_n + \delta f(t_n, x_n)` with
    :math:`\delta = T/\mathrm{steps}` and :math:`t_n = n\delta`. Returns :math:`x_T` of shape
    ``(batch, d)``, or the whole path of shape ``(steps + 1, batch, d)`` if ``return_path``.
    """
    check_tensor("x0", x0, ndim=2)
    return integrate(field, x0, T, steps, "euler", return_path=return_path)


def rk4_flow(field, x0: torch.Tensor, T: float, steps: int, return_path: bool = False, rule: str = "3/8") -> torch.Tensor:
    r"""Fixed-step fourth-order Runge–Kutta for :math:`\dot x = f(t, x)` (global error :math:`O(\delta^4)`).

    ``rule="3/8"`` (default) is Kutta's 3/8 rule, the step that ``torchdiffeq``'s
    ``odeint(method="rk4")`` takes, so the two agree to round-off on the same
    time grid; ``rule="classic"`` is the classical RK4 with weights
    :math:`(1, 2, 2, 1)/6`. Both are fourth order and use four evaluations of
    ``field`` per step. Shapes as in :func:`euler_flow`.
    """
    check_tensor("x0", x0, ndim=2)
    return integrate(field, x0, T, steps, "rk4", return_path=return_path, rule=rule)


def reference_flow(field, x0: torch.Tensor, T: float, rtol: float = 1e-10, atol: float = 1e-12) -> torch.Tensor:
    """Flow map :math:`\\varphi_T(x_0)` from ``torchdiffeq``'s adaptive Dormand–Prince solver.

    Use float64 tensors for tolerances below about 1e-6.
    """
    from torchdiffeq import odeint

    check_callable("field", field)
    check_tensor("x0", x0, ndim=2)
    T = check_float("T", T, positive=True)
    rtol = check_float("rtol", rtol, positive=True)
    atol = check_float("atol", atol, positive=True)
    times = torch.tensor([0.0, T], dtype=x0.dtype, device=x0.device)
    return odeint(lambda t, x: field(float(t), x), x0, times, rtol=rtol, atol=atol, method="dopri5")[-1]


class SmoothTanhField(nn.Module):
    r"""A time-dependent residual block with smooth parameters:

    .. math:: f(x, t) = A(t) \tanh(W(t) x + b(t)),

    where each of :math:`A, W, b` is a polynomial in :math:`s = t / T` of
    degree ``degree`` with random Gaussian coefficients. The parameters
    :math:`\theta_t` are therefore fixed *continuous-time* parameters, and a
    ResNet of any depth :math:`L` samples them at :math:`t_n = n T / L`.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        T: float = 1.0,
        degree: int = 2,
        scale: float = 1.0,
        seed: int = 0,
        dtype: torch.dtype = torch.float64,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        device = _cpu_unless(device)
        dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        degree = check_int("degree", degree, minimum=0)
        self.T = check_float("T", T, positive=True)
        scale = check_float("scale", scale, positive=True)
        gen = generator(check_int("seed", seed, minimum=0))

        def coefficients(*shape, fan_in):
            return nn.Parameter(
                (scale / math.sqrt(fan_in) * torch.randn(degree + 1, *shape, generator=gen, dtype=dtype)).to(device)
            )

        self.A = coefficients(dim, width, fan_in=width)
        self.W = coefficients(width, dim, fan_in=dim)
        self.b = coefficients(width, fan_in=1)

    def _at(self, coeffs: torch.Tensor, t: float) -> torch.Tensor:
        s = t / self.T
        powers = torch.tensor([s**k for k in range(coeffs.shape[0])], dtype=coeffs.dtype, device=coeffs.device)
        return torch.tensordot(powers, coeffs, dims=1)

    def forward(self, t: float, x: torch.Tensor) -> torch.Tensor:
        t = float(t)
        A, W, b = self._at(self.A, t), self._at(self.W, t), self._at(self.b, t)
        return torch.tanh(x @ W.T + b) @ A.T


class LayerwiseTanhField(nn.Module):
    r"""A standard ResNet's residual blocks as a piecewise-constant-in-time field:

    .. math:: f(x, t) = A_n \tanh(W_n x + b_n), \qquad t \in [n\delta, (n+1)\delta),

    with :math:`\delta = T / L`. :func:`euler_flow` with ``steps = layers``
    gives exactly the residual network :math:`x_{n+1} = x_n + \delta A_n\tanh(W_n x_n + b_n)`.
    """

    def __init__(
        self,
        dim: int,
        width: int,
        layers: int,
        T: float = 1.0,
        init_scale: float = 0.1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        device = _cpu_unless(device)
        dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        self.layers = check_int("layers", layers, minimum=1)
        self.T = check_float("T", T, positive=True)
        init_scale = check_float("init_scale", init_scale, nonnegative=True)
        gen = generator(check_int("seed", seed, minimum=0))
        A = init_scale * torch.randn(self.layers, dim, width, generator=gen, dtype=dtype)
        W = torch.randn(self.layers, width, dim, generator=gen, dtype=dtype) / math.sqrt(dim)
        self.A = nn.Parameter(A.to(device))
        self.W = nn.Parameter(W.to(device))
        self.b = nn.Parameter(torch.zeros(self.layers, width, dtype=dtype, device=device))

    def forward(self, t: float, x: torch.Tensor) -> torch.Tensor:
        n = min(int(float(t) / self.T * self.layers + 1e-9), self.layers - 1)
        return torch.tanh(x @ self.W[n].T + self.b[n]) @ self.A[n].T


class ResNetClassifier(nn.Module):
    r"""Residual feature flow followed by a linear classifier: :math:`g(x_T) = \mathrm{softmax}(C x_T + c)`.

    The features :math:`x_n` stay in the input dimension (``dim``), so their
    trajectories through the layers can be drawn in the plane.
    """

    def __init__(
        self,
        dim: int = 2,
        width: int = 16,
        layers: int = 10,
        T: float = 1.0,
        classes: int = 2,
        seed: int = 0,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        device = _cpu_unless(device)
        self.field = LayerwiseTanhField(dim, width, layers, T, seed=seed, device=device)
        classes = check_int("classes", classes, minimum=2)
        gen = generator(seed + 1)
        self.readout = nn.utils.skip_init(nn.Linear, dim, classes, device=device)  # no draw from the global RNG
        with torch.no_grad():
            self.readout.weight.copy_(torch.randn(classes, dim, generator=gen) / math.sqrt(dim))
            self.readout.bias.zero_()

    def features(self, x: torch.Tensor, return_path: bool = False) -> torch.Tensor:
        """The residual flow :math:`x_0 \\mapsto x_T` (or the path over all layers)."""
        return euler_flow(self.field, x, self.field.T, self.field.layers, return_path=return_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=2, last_dim=self.field.A.shape[1])
        return self.readout(self.features(x))


# --- chapter 2.1: the lecture's example flow --------------------------------------------------------------


def lecture_example_field(t, x: torch.Tensor) -> torch.Tensor:
    r"""The lecture's example ODE in the plane (Q. Li, lecture 2021, "The continuum idealization of ResNets"):

    .. math::  \dot x_1 = -x_2 \sin t, \qquad \dot x_2 = -\tfrac12 (1 - x_1^2)\, x_2 + x_1 \cos t .

    ``x`` has shape ``(batch, 2)``; ``t`` is a number or a 0-d tensor (as ``torchdiffeq`` passes it).
    The term :math:`+\tfrac12 x_1^2 x_2` lets some solutions started in :math:`[-1, 1]^2` blow up in
    finite time (see :func:`escape_times`).
    """
    if not isinstance(x, torch.Tensor) or x.ndim != 2 or x.shape[1] != 2:
        shape = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
        raise ValueError(f"x must be a tensor of shape (batch, 2), got {shape}")
    t = torch.as_tensor(t, dtype=x.dtype, device=x.device)
    x1, x2 = x[:, 0], x[:, 1]
    return torch.stack([-x2 * torch.sin(t), -0.5 * (1 - x1**2) * x2 + x1 * torch.cos(t)], dim=1)


def escape_times(field, x0: torch.Tensor, T: float, steps: int, radius: float = 1e3) -> torch.Tensor:
    r"""First time at which :math:`|x_t|` exceeds ``radius`` (``inf`` if it stays inside up to ``T``).

    Integrates with fixed RK4 steps of size :math:`T/\mathrm{steps}`; a point is frozen once it has
    escaped, so that solutions that blow up in finite time do not produce NaN. The time is resolved
    to one step. Returns a tensor of shape ``(batch,)``.
    """
    T, steps = _check_flow_args(field, x0, T, steps)
    radius = check_float("radius", radius, positive=True)
    dt = T / steps
    x = x0
    times = torch.full((x0.shape[0],), math.inf, dtype=x0.dtype, device=x0.device)
    escaped = torch.zeros(x0.shape[0], dtype=torch.bool, device=x0.device)
    with torch.no_grad():
        for n in range(steps):
            x_new = _step(field, n * dt, x, dt, "rk4", "3/8", check=(n == 0))
            out = ~torch.isfinite(x_new).all(dim=1) | (x_new.norm(dim=1) > radius)
            newly = out & ~escaped
            times[newly] = (n + 1) * dt
            escaped |= out
            x = torch.where(escaped[:, None], x, x_new)
    return times


# --- chapter 2.1: a continuous-time ResNet with piecewise-constant parameters ------------------------------

#: Activations :math:`\sigma` a :class:`ContinuousResNet` can use.
ACTIVATIONS = {"tanh": torch.tanh, "relu": torch.relu}
#: Readouts :math:`g`: a fixed coordinate projection, or a learned affine map.
READOUTS = ("identity", "linear")


class ContinuousResNet(nn.Module):
    r"""The hypothesis :math:`g \circ \varphi_T` of a continuous-time ResNet, with piecewise-constant controls.

    The input :math:`x \in \mathbb R^d` is lifted to :math:`z_0 = (x, 0) \in \mathbb R^{d + p}`
    (``augment`` :math:`= p` extra zero coordinates, the "augmented neural ODE" of Dupont, Doucet & Teh,
    NeurIPS 2019), flowed by

    .. math:: \dot z_t = A_k\, \sigma(W_k z_t + b_k), \qquad t \in [t_k, t_{k+1}),\quad t_k = kT/K,

    with :math:`K` = ``pieces`` parameter sets :math:`\theta_k = (A_k, W_k, b_k)`, and read out by
    :math:`g`: ``readout="identity"`` keeps the first ``out_features`` coordinates (the default is
    :math:`d`, so that without augmentation :math:`g = \mathrm{id}`); ``readout="linear"`` is a learned
    affine map :math:`\mathbb R^{d+p} \to \mathbb R^{\text{out}}` (e.g. class logits), initialised at zero.

    Each piece is an autonomous ODE, integrated with ``steps_per_piece`` fixed steps of ``method``
    (``"rk4"``, Kutta's 3/8 rule as in ``torchdiffeq``, or ``"euler"``). With ``method="euler"`` and one
    step per piece the model is exactly a residual network with :math:`K` blocks and step :math:`T/K`.
    :meth:`inverse` integrates the pieces backward in reverse order.
    """

    def __init__(
        self,
        dim: int,
        width: int = 16,
        pieces: int = 8,
        T: float = 1.0,
        *,
        augment: int = 0,
        readout: str = "identity",
        out_features: int | None = None,
        activation: str = "tanh",
        method: str = "rk4",
        steps_per_piece: int = 1,
        init_scale: float = 0.1,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        device = _cpu_unless(device)
        self.dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        self.pieces = check_int("pieces", pieces, minimum=1)
        self.T = check_float("T", T, positive=True)
        self.augment = check_int("augment", augment, minimum=0)
        self.readout_kind = check_choice("readout", readout, READOUTS)
        self.activation = check_choice("activation", activation, ACTIVATIONS)
        self.method = method
        self.steps_per_piece = steps_per_piece
        init_scale = check_float("init_scale", init_scale, nonnegative=True)
        self.state_dim = self.dim + self.augment
        if out_features is None:
            out_features = self.dim
        self.out_features = check_int("out_features", out_features, minimum=1)
        if readout == "identity" and self.out_features > self.state_dim:
            raise ValueError(
                f"out_features must be <= dim + augment = {self.state_dim} for readout='identity', got {self.out_features}"
            )
        gen = generator(check_int("seed", seed, minimum=0))
        K, D = self.pieces, self.state_dim
        A = init_scale * torch.randn(K, D, width, generator=gen, dtype=dtype) / math.sqrt(width)
        W = torch.randn(K, width, D, generator=gen, dtype=dtype) / math.sqrt(D)
        b = torch.randn(K, width, generator=gen, dtype=dtype)
        self.A, self.W, self.b = (nn.Parameter(p.to(device)) for p in (A, W, b))
        self.readout = None
        if readout == "linear":
            self.readout = nn.Linear(D, self.out_features, dtype=dtype).to(device)
            with torch.no_grad():  # g starts at zero: the first steps fit the readout to the (random) features
                self.readout.weight.zero_()
                self.readout.bias.zero_()

    @property
    def method(self) -> str:
        """The integration scheme, ``"rk4"`` or ``"euler"``; may be changed after training."""
        return self._method

    @method.setter
    def method(self, value: str) -> None:
        self._method = check_choice("method", value, METHODS)

    @property
    def steps_per_piece(self) -> int:
        """Integration steps per piece; may be changed after training, e.g. to integrate the same flow more accurately."""
        return self._steps_per_piece

    @steps_per_piece.setter
    def steps_per_piece(self, value: int) -> None:
        self._steps_per_piece = check_int("steps_per_piece", value, minimum=1)

    @property
    def steps(self) -> int:
        """Integration steps over :math:`[0, T]`: ``pieces * steps_per_piece``."""
        return self.pieces * self.steps_per_piece

    def times(self) -> torch.Tensor:
        """The times of the states in ``features(x, return_path=True)``, shape ``(steps + 1,)``."""
        return torch.linspace(0.0, self.T, self.steps + 1, dtype=torch.float64)

    def velocity(self, k: int, z: torch.Tensor) -> torch.Tensor:
        r"""The field of piece ``k``, :math:`A_k\sigma(W_k z + b_k)`, at states ``z`` of shape ``(batch, dim + augment)``."""
        return ACTIVATIONS[self.activation](z @ self.W[k].T + self.b[k]) @ self.A[k].T

    def piece_field(self, k: int):
        """Piece ``k`` as a field ``f(t, z)`` in the ``torchdiffeq`` convention (it ignores ``t``)."""
        k = check_int("k", k, minimum=0, maximum=self.pieces - 1)
        return lambda t, z: self.velocity(k, z)

    def lift(self, x: torch.Tensor) -> torch.Tensor:
        """:math:`x \\mapsto (x, 0)`: append ``augment`` zero coordinates."""
        check_tensor("x", x, ndim=2, last_dim=self.dim)
        if self.augment == 0:
            return x
        return torch.cat([x, x.new_zeros(x.shape[0], self.augment)], dim=1)

    def flow(self, z: torch.Tensor, return_path: bool = False, backward: bool = False) -> torch.Tensor:
        r"""The flow map :math:`\varphi_T(z)` on states (or :math:`\varphi_T^{-1}` with ``backward``).

        ``z`` has shape ``(batch, dim + augment)``. With ``return_path`` the states at every step,
        shape ``(steps + 1, batch, dim + augment)``, in the order integrated (from :math:`T` down to 0
        when ``backward``).
        """
        check_tensor("z", z, ndim=2, last_dim=self.state_dim)
        if not isinstance(backward, bool):
            raise TypeError(f"backward must be True or False, got {type(backward).__name__}")
        piece_length = self.T / self.pieces
        order = range(self.pieces - 1, -1, -1) if backward else range(self.pieces)
        path = [z]
        for k in order:
            field = self.piece_field(k)
            t0 = k * piece_length
            segment = integrate(
                field,
                path[-1],
                piece_length,
                self.steps_per_piece,
                self.method,
                t0=t0,
                backward=backward,
                return_path=return_path,
            )
            path.extend(segment[1:] if return_path else [segment])
        return torch.stack(path) if return_path else path[-1]

    def features(self, x: torch.Tensor, return_path: bool = False) -> torch.Tensor:
        r""":math:`\varphi_T(x, 0)`, the lifted input flowed to time :math:`T` (or its whole path)."""
        return self.flow(self.lift(x), return_path=return_path)

    def inverse(self, z_T: torch.Tensor) -> torch.Tensor:
        r""":math:`\varphi_T^{-1}(z_T)` by backward integration; shape ``(batch, dim + augment)``."""
        return self.flow(z_T, backward=True)

    def read(self, z: torch.Tensor) -> torch.Tensor:
        """The readout :math:`g` applied to states ``z``."""
        check_tensor("z", z, ndim=2, last_dim=self.state_dim)
        return self.readout(z) if self.readout is not None else z[:, : self.out_features]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.read(self.features(x))


def _check_model(model):
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def train_classifier(
    model: nn.Module, x: torch.Tensor, labels: torch.Tensor, *, steps: int = 300, lr: float = 1e-2
) -> Training:
    r"""Minimise the cross-entropy :math:`-\frac1N\sum_i \log \mathrm{softmax}(F(x^i))_{y^i}` with Adam.

    ``model(x)`` must return logits of shape ``(N, classes)``; ``labels`` are integers of shape ``(N,)``.
    Stops with the step number at the first NaN/Inf (:func:`mldyn_lite.fit`). Trains ``model`` in place and
    returns a :class:`Training` ``(model, history)``.
    """
    _check_model(model)
    check_tensor("x", x, ndim=2)
    if not isinstance(labels, torch.Tensor) or labels.ndim != 1 or labels.shape[0] != x.shape[0]:
        raise ValueError(f"labels must be an integer tensor of shape ({x.shape[0]},)")
    if labels.is_floating_point():
        raise TypeError(f"labels must have an integer dtype, got {labels.dtype}")
    return Training(model, fit(model, lambda: nn.functional.cross_entropy(model(x), labels), steps=steps, lr=lr))


def train_regressor(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, steps: int = 300, lr: float = 1e-2) -> Training:
    r"""Minimise the mean square error :math:`\frac1N\sum_i |F(x^i) - y^i|^2` with Adam; returns a :class:`Training`.

    ``x`` and ``y`` have shapes ``(N, d)`` and ``(N, out)``.
    """
    _check_model(model)
    check_tensor("x", x, ndim=2)
    check_tensor("y", y, ndim=2)
    if y.shape[0] != x.shape[0]:
        raise ValueError(f"y must have as many rows as x ({x.shape[0]}), got shape {tuple(y.shape)}")
    return Training(model, fit(model, lambda: (model(x) - y).square().sum(dim=1).mean(), steps=steps, lr=lr))


# --- measuring: linear separability, monotonicity, isotonic regression --------------------------------------


def _features_and_signs(features, labels):
    X = check_array("features", features, ndim=2)
    y = check_array("labels", labels, ndim=1)
    if y.shape[0] != X.shape[0]:
        raise ValueError(f"labels must have one entry per row of features ({X.shape[0]}), got {y.shape[0]}")
    classes = np.unique(y)
    if classes.size != 2:
        raise ValueError(f"labels must hold exactly two classes, got {classes.size}")
    signs = np.where(y == classes[1], 1.0, -1.0)
    return X, signs


def linearly_separable(features, labels) -> bool:
    r"""Whether a hyperplane strictly separates the two classes: is :math:`s_i(w\cdot x_i + c) \ge 1` feasible?

    An exact test (a linear feasibility problem solved by ``scipy.optimize.linprog``), on standardised
    features. ``features`` has shape ``(N, d)``, ``labels`` shape ``(N,)`` with two distinct values.
    """
    from scipy.optimize import linprog

    X, signs = _features_and_signs(features, labels)
    X = (X - X.mean(axis=0)) / np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    n, d = X.shape
    # variables (w, c); constraints -s_i (w . x_i + c) <= -1
    A_ub = -signs[:, None] * np.hstack([X, np.ones((n, 1))])
    result = linprog(np.zeros(d + 1), A_ub=A_ub, b_ub=-np.ones(n), bounds=[(None, None)] * (d + 1), method="highs")
    if result.status not in (0, 2):
        raise RuntimeError(f"the separability test did not finish: {result.message}")
    return result.status == 0


def best_linear_accuracy(features, labels, steps: int = 100, ridge: float = 1e-3):
    r"""Training accuracy of logistic regression (with a small ridge penalty) on ``features``.

    Returns ``(accuracy, w, c)`` where :math:`w\cdot x + c = 0` is the fitted line in the original
    coordinates (numpy arrays). How close to linearly separable the classes are.
    """
    X, signs = _features_and_signs(features, labels)
    steps = check_int("steps", steps, minimum=1)
    ridge = check_float("ridge", ridge, nonnegative=True)
    mean, std = X.mean(axis=0), np.where(X.std(axis=0) > 0, X.std(axis=0), 1.0)
    z = torch.tensor((X - mean) / std, dtype=torch.float64)
    target = torch.tensor((signs + 1) / 2, dtype=torch.float64)
    w = torch.zeros(X.shape[1], dtype=torch.float64, requires_grad=True)
    c = torch.zeros((), dtype=torch.float64, requires_grad=True)
    fit(
        [w, c],
        lambda: nn.functional.binary_cross_entropy_with_logits(z @ w + c, target) + ridge * w.square().sum(),
        steps=steps,
        lr=1.0,
        optimizer="lbfgs",
    )
    with torch.no_grad():
        accuracy = float(((z @ w + c > 0).double() == target).double().mean())
        w_raw = w.numpy() / std
        c_raw = float(c) - float((w.numpy() * mean / std).sum())
    return accuracy, w_raw, c_raw


def smallest_increment(values) -> float:
    r""":math:`\min_i (v_{i+1} - v_i)` of a sequence: positive iff the map that produced it preserves order."""
    v = check_array("values", values).reshape(-1)
    if v.size < 2:
        raise ValueError("values must hold at least two numbers")
    return float((v[1:] - v[:-1]).min())


def isotonic_regression(y, weights=None):
    r"""The best non-decreasing fit :math:`\hat y_1 \le \dots \le \hat y_N` to ``y`` in weighted least squares.

    Pool-adjacent-violators: scan left to right, keep blocks with their weighted mean, and merge the
    last two blocks while their means decrease. :math:`O(N)` merges. Returns a numpy array like ``y``.
    """
    y = check_array("y", y, ndim=1)
    w = np.ones_like(y) if weights is None else check_array("weights", weights, ndim=1)
    if w.shape != y.shape:
        raise ValueError(f"weights must have the shape of y, {y.shape}, got {w.shape}")
    if np.any(w <= 0):
        raise ValueError("weights must be positive")
    means, masses, counts = [], [], []
    for value, mass in zip(y, w):
        means.append(float(value))
        masses.append(float(mass))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            m, M, c = means.pop(), masses.pop(), counts.pop()
            means[-1] = (means[-1] * masses[-1] + m * M) / (masses[-1] + M)
            masses[-1] += M
            counts[-1] += c
    return np.repeat(means, counts)


def isotonic_error(x, y) -> float:
    r"""Smallest mean square error :math:`\frac1N\sum_i (h(x_i) - y_i)^2` over non-decreasing functions :math:`h`.

    A lower bound for every increasing model, in particular every 1-D flow map with
    :math:`\mathcal G = \{\mathrm{id}\}`. Equal inputs must get equal predictions, so ties in ``x``
    are pooled first.
    """
    x = check_array("x", x).reshape(-1)
    y = check_array("y", y).reshape(-1)
    if x.shape != y.shape:
        raise ValueError(f"x and y must hold the same number of values, got {x.size} and {y.size}")
    if x.size == 0:
        raise ValueError("x must not be empty")
    unique, inverse, counts = np.unique(x, return_inverse=True, return_counts=True)
    group_means = np.bincount(inverse, weights=y) / counts
    fitted = isotonic_regression(group_means, counts.astype(float))
    return float(np.mean((fitted[inverse] - y) ** 2))


def well_function(x: torch.Tensor, radius: float = 1.0) -> torch.Tensor:
    r"""The well function :math:`h_i(x) = \mathrm{ReLU}(x_i - r) - \mathrm{ReLU}(-x_i - r)`, componentwise.

    It vanishes exactly on the box :math:`[-r, r]^d` and points away from it outside. It is a finite
    combination of members :math:`e_i\,\mathrm{ReLU}(\pm x_i - r)` of the ridge family
    :math:`\{v\,\mathrm{ReLU}(w\cdot x + b)\}`, hence (suitably scaled) in the closure of its convex hull.
    """
    check_tensor("x", x, ndim=2)
    radius = check_float("radius", radius, positive=True)
    return torch.relu(x - radius) - torch.relu(-x - radius)
