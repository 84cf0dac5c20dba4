r"""Residual networks as discretised flows (continuous-time ResNets).

A residual network with :math:`L` layers on :math:`[0, T]`,

.. math::  x_{n+1} = x_n + \delta\, f(x_n, \theta_n), \qquad \delta = T / L,

is the forward-Euler discretisation of the controlled ODE

.. math::  \dot x_t = f(x_t, \theta_t), \qquad 0 \le t \le T,

so that depth plays the role of the number of time steps ("composition is
dynamics", Q. Li, lecture 2021; E, Comm. Math. Stat. 2017; Li, Lin & Shen,
arXiv:1912.10382). If :math:`\theta_t` is fixed and smooth in time, the
ResNet output converges to the ODE flow map :math:`\varphi_T(x_0)` with error
:math:`O(\delta)` (Euler is first order).

The vector fields here take ``field(t, x)`` with ``x`` of shape ``(batch, d)``,
the calling convention of ``torchdiffeq.odeint``, so that the reference
solution is computed by that library (:func:`reference_flow`). For contrast,
:func:`rk4_flow` takes fourth-order Runge–Kutta steps (four evaluations of
``f`` per step), whose error is :math:`O(\delta^4)`.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ._checks import check_callable, check_choice, check_float, check_int, check_tensor


def _check_flow_args(field, x0, T, steps):
    check_callable("field", field)
    check_tensor("x0", x0, ndim=2)
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    return T, steps


def _check_velocity(velocity, x: torch.Tensor) -> torch.Tensor:
    """Fail at the first step, not through silent broadcasting, if ``field(t, x)`` has the wrong shape."""
    if not isinstance(velocity, torch.Tensor) or velocity.shape != x.shape:
        got = tuple(velocity.shape) if isinstance(velocity, torch.Tensor) else type(velocity).__name__
        raise ValueError(f"field(t, x) must return a tensor of the shape of x, {tuple(x.shape)}, got {got}")
    return velocity


def euler_flow(field, x0: torch.Tensor, T: float, steps: int, return_path: bool = False) -> torch.Tensor:
    r"""Forward Euler for :math:`\dot x = f(t, x)` — exactly a residual network of depth ``steps``.

    Step :math:`n` is the residual block :math:`x_{n+1} = x_n + \delta f(t_n, x_n)` with
    :math:`\delta = T/\mathrm{steps}` and :math:`t_n = n\delta`. Returns :math:`x_T` of shape
    ``(batch, d)``, or the whole path of shape ``(steps + 1, batch, d)`` if ``return_path``.
    """
    T, steps = _check_flow_args(field, x0, T, steps)
    dt = T / steps
    x = x0
    path = [x]
    for n in range(steps):
        velocity = field(n * dt, x)
        if n == 0:
            _check_velocity(velocity, x)
        x = x + dt * velocity
        path.append(x)
    return torch.stack(path) if return_path else x


#: The fourth-order Runge–Kutta rules :func:`rk4_flow` knows.
RK4_RULES = ("3/8", "classic")


def rk4_flow(field, x0: torch.Tensor, T: float, steps: int, return_path: bool = False,
             rule: str = "3/8") -> torch.Tensor:
    r"""Fixed-step fourth-order Runge–Kutta for :math:`\dot x = f(t, x)` (global error :math:`O(\delta^4)`).

    ``rule="3/8"`` (default) is Kutta's 3/8 rule, the step that ``torchdiffeq``'s
    ``odeint(method="rk4")`` takes, so the two agree to round-off on the same
    time grid; ``rule="classic"`` is the classical RK4 with weights
    :math:`(1, 2, 2, 1)/6`. Both are fourth order and use four evaluations of
    ``field`` per step. Shapes as in :func:`euler_flow`.
    """
    T, steps = _check_flow_args(field, x0, T, steps)
    check_choice("rule", rule, RK4_RULES)
    dt = T / steps
    x = x0
    path = [x]
    for n in range(steps):
        t = n * dt
        k1 = field(t, x)
        if n == 0:
            _check_velocity(k1, x)
        if rule == "3/8":
            k2 = field(t + dt / 3, x + dt * k1 / 3)
            k3 = field(t + 2 * dt / 3, x + dt * (k2 - k1 / 3))
            k4 = field(t + dt, x + dt * (k1 - k2 + k3))
            x = x + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125
        else:
            k2 = field(t + dt / 2, x + dt / 2 * k1)
            k3 = field(t + dt / 2, x + dt / 2 * k2)
            k4 = field(t + dt, x + dt * k3)
            x = x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        path.append(x)
    return torch.stack(path) if return_path else x


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

    def __init__(self, dim: int, width: int, T: float = 1.0, degree: int = 2, scale: float = 1.0,
                 seed: int = 0, dtype: torch.dtype = torch.float64, device: str | torch.device = "cpu"):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        degree = check_int("degree", degree, minimum=0)
        self.T = check_float("T", T, positive=True)
        scale = check_float("scale", scale, positive=True)
        gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))

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

    def __init__(self, dim: int, width: int, layers: int, T: float = 1.0, init_scale: float = 0.1,
                 seed: int = 0, dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        self.layers = check_int("layers", layers, minimum=1)
        self.T = check_float("T", T, positive=True)
        init_scale = check_float("init_scale", init_scale, nonnegative=True)
        gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
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

    def __init__(self, dim: int = 2, width: int = 16, layers: int = 10, T: float = 1.0, classes: int = 2,
                 seed: int = 0, device: str | torch.device = "cpu"):
        super().__init__()
        self.field = LayerwiseTanhField(dim, width, layers, T, seed=seed, device=device)
        classes = check_int("classes", classes, minimum=2)
        gen = torch.Generator().manual_seed(seed + 1)
        self.readout = nn.Linear(dim, classes).to(device)
        with torch.no_grad():
            self.readout.weight.copy_(torch.randn(classes, dim, generator=gen) / math.sqrt(dim))
            self.readout.bias.zero_()

    def features(self, x: torch.Tensor, return_path: bool = False) -> torch.Tensor:
        """The residual flow :math:`x_0 \\mapsto x_T` (or the path over all layers)."""
        return euler_flow(self.field, x, self.field.T, self.field.layers, return_path=return_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_tensor("x", x, ndim=2, last_dim=self.field.A.shape[1])
        return self.readout(self.features(x))
