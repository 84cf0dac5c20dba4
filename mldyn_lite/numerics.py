r"""Shared numerics: one fixed-step ODE integrator, one MLP builder, one seeded generator, one device rule.

Every module of :mod:`mldyn_lite` that integrates an ODE, builds a fully connected network or draws
random numbers does it through this module, so that the conventions are learnt once:

* **Integrator.** :func:`integrate` takes fixed steps of forward Euler or fourth-order Runge–Kutta for

  .. math:: \dot x = f(t, x), \qquad x(t_0) = x_0, \qquad t \in [t_0, t_0 + T],

  with :math:`\delta = T/\text{steps}` (global error :math:`O(\delta)` and :math:`O(\delta^4)`; Hairer,
  Nørsett & Wanner, *Solving Ordinary Differential Equations I*, 1993). Like ``torchdiffeq.odeint``
  the field may be ``f(t, x)``; like ``torchdyn`` it may also be autonomous, ``f(x)``. Device and
  dtype follow ``x0``; it returns the final state, or the whole path with ``return_path=True``.
* **Networks.** :func:`mlp` builds ``depth`` hidden layers of ``width`` units and a linear read-out.
* **Randomness.** :func:`generator` returns a seeded :class:`torch.Generator`; library code takes a
  ``seed`` or a generator and never reseeds the global random state.
* **Device.** Library functions compute on the device of their input or model (:func:`device_of`),
  the CPU if there is none; only :func:`mldyn_lite.setup` chooses CUDA.
"""

from __future__ import annotations

import inspect
import math

import torch
from torch import nn

from ._checks import check_callable, check_choice, check_float, check_int, check_tensor

__all__ = [
    "ACTIVATIONS",
    "METHODS",
    "RK4_RULES",
    "as_time_field",
    "device_of",
    "generator",
    "integrate",
    "mlp",
    "step",
]

#: The fixed-step methods :func:`integrate` knows.
METHODS = ("rk4", "euler")
#: The fourth-order Runge–Kutta rules: Kutta's 3/8 rule (the step of ``torchdiffeq``'s ``method="rk4"``)
#: and the classical rule with weights (1, 2, 2, 1)/6.
RK4_RULES = ("3/8", "classic")
#: Activation functions :func:`mlp` knows, by name.
ACTIVATIONS = {
    "tanh": nn.Tanh,
    "relu": nn.ReLU,
    "softplus": nn.Softplus,
    "sigmoid": nn.Sigmoid,
    "gelu": nn.GELU,
    "elu": nn.ELU,
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)


# --------------------------------------------------------------------------- device and randomness


def device_of(*objects, default: str | torch.device = "cpu") -> torch.device:
    """The device of the first tensor, or of the first parameter of the first module, among ``objects``.

    ``default`` (the CPU) when none of them carries a device. This is the book's device rule:
    a library function computes where its input lives and never picks CUDA on its own.
    """
    for obj in objects:
        if isinstance(obj, torch.Tensor):
            return obj.device
        if isinstance(obj, nn.Module):
            for tensor in obj.parameters():
                return tensor.device
            for tensor in obj.buffers():
                return tensor.device
        if isinstance(obj, torch.Generator):
            return obj.device
    return torch.device(default)


def generator(seed: int, device: str | torch.device | None = None) -> torch.Generator:
    """A :class:`torch.Generator` on ``device`` (default CPU) seeded with ``seed`` (an int ≥ 0).

    Pass it to ``torch.randn(..., generator=g)`` and friends; the global random state is untouched.
    """
    seed = check_int("seed", seed, minimum=0)
    device = torch.device("cpu") if device is None else torch.device(device)
    return torch.Generator(device=device).manual_seed(seed)


# --------------------------------------------------------------------------- networks


def mlp(
    d_in: int,
    width: int,
    depth: int,
    d_out: int,
    activation: str = "tanh",
    *,
    seed: int | torch.Generator | None = None,
    dtype: torch.dtype | None = None,
    device: str | torch.device | None = None,
) -> nn.Sequential:
    r"""A fully connected network :math:`\mathbb R^{d_{in}} \to \mathbb R^{d_{out}}`: ``depth`` hidden layers
    of ``width`` units with ``activation`` (a name in :data:`ACTIVATIONS`) and a linear read-out.

    The weights and biases of each layer are drawn uniformly from :math:`[-1/\sqrt{n_{in}}, 1/\sqrt{n_{in}}]`
    (the range of PyTorch's default initialisation of ``nn.Linear``). With ``seed`` they are drawn from a
    private generator on ``device``, layer by layer, weight then bias, so the network is the same whatever
    the global random state (``seed`` may also be a :class:`torch.Generator`, which is then advanced, for a
    trainer that draws its initial weights and its samples from one stream); without it, PyTorch's default
    initialisation uses the global generator.
    ``depth=0`` is an affine map.
    """
    d_in = check_int("d_in", d_in, minimum=1)
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=0)
    d_out = check_int("d_out", d_out, minimum=1)
    activation = check_choice("activation", activation, tuple(ACTIVATIONS))
    device = torch.device("cpu") if device is None else torch.device(device)
    if isinstance(seed, torch.Generator):
        gen = seed
        if gen.device.type != device.type:
            raise ValueError(f"seed is a generator on {gen.device}, but device is {device}")
    else:
        gen = None if seed is None else generator(seed, device)
    layers: list[nn.Module] = []
    size = d_in
    for i, out in enumerate([width] * depth + [d_out]):
        if gen is None:
            layer = nn.Linear(size, out, dtype=dtype, device=device)
        else:
            layer = torch.nn.utils.skip_init(nn.Linear, size, out, dtype=dtype, device=device)
            bound = 1 / math.sqrt(size)
            with torch.no_grad():
                for parameter in (layer.weight, layer.bias):
                    draw = torch.rand(parameter.shape, generator=gen, device=device, dtype=parameter.dtype)
                    parameter.copy_((2 * draw - 1) * bound)
        layers.append(layer)
        if i < depth:
            layers.append(ACTIVATIONS[activation]())
        size = out
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- integrator


def as_time_field(field):
    """Return ``field`` as a function of ``(t, x)``: ``f(t, x)`` is returned as it is, ``f(x)`` is wrapped.

    The number of required positional parameters decides (for an ``nn.Module``, those of its
    ``forward``); a callable whose signature cannot be read is taken to be ``f(t, x)``.
    """
    check_callable("field", field)
    target = field.forward if isinstance(field, nn.Module) else field
    try:
        parameters = list(inspect.signature(target).parameters.values())
    except (TypeError, ValueError):
        return field
    if any(p.kind == inspect.Parameter.VAR_POSITIONAL for p in parameters):
        return field
    required = [p for p in parameters if p.kind in _POSITIONAL and p.default is inspect.Parameter.empty]
    if len(required) == 1:
        return lambda _t, x: field(x)
    if len(required) == 2:
        return field
    raise TypeError(f"field must be a function f(t, x) or f(x), got one with {len(required)} required arguments")


def _check_velocity(velocity, x: torch.Tensor) -> torch.Tensor:
    """Fail at the first step, not through silent broadcasting, if the field has the wrong shape."""
    if not isinstance(velocity, torch.Tensor) or velocity.shape != x.shape:
        got = tuple(velocity.shape) if isinstance(velocity, torch.Tensor) else type(velocity).__name__
        raise ValueError(f"field(t, x) must return a tensor of the shape of x, {tuple(x.shape)}, got {got}")
    return velocity


def step(
    field, t: float, x: torch.Tensor, dt: float, method: str = "rk4", rule: str = "3/8", check: bool = False
) -> torch.Tensor:
    """One explicit step of size ``dt`` (negative integrates backward) of ``field(t, x)``; no argument checks."""
    k1 = field(t, x)
    if check:
        _check_velocity(k1, x)
    if method == "euler":
        return x + dt * k1
    if rule == "3/8":  # Kutta's 3/8 rule, torchdiffeq's "rk4"
        k2 = field(t + dt / 3, x + dt * k1 / 3)
        k3 = field(t + 2 * dt / 3, x + dt * (k2 - k1 / 3))
        k4 = field(t + dt, x + dt * (k1 - k2 + k3))
        return x + (k1 + 3 * (k2 + k3) + k4) * dt * 0.125
    k2 = field(t + dt / 2, x + dt / 2 * k1)
    k3 = field(t + dt / 2, x + dt / 2 * k2)
    k4 = field(t + dt, x + dt * k3)
    return x + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)


def integrate(
    field,
    x0: torch.Tensor,
    T: float,
    steps: int,
    method: str = "rk4",
    *,
    t0: float = 0.0,
    backward: bool = False,
    return_path: bool = False,
    rule: str = "3/8",
) -> torch.Tensor:
    r"""Fixed-step integration of :math:`\dot x = f(t, x)` (or :math:`\dot x = f(x)`) over a span of length ``T``.

    Forward (default): from :math:`x(t_0) = x_0` to :math:`x(t_0 + T)` with steps at
    :math:`t_n = t_0 + n\delta`, :math:`\delta = T/\mathrm{steps}`. Backward (``backward=True``):
    ``x0`` is the state at :math:`t_0 + T` and the ODE is integrated with step :math:`-\delta`
    down to :math:`t_0`, approximating the inverse flow map :math:`\varphi_T^{-1}` (to the method's
    order; the backward scheme is not the exact inverse of the forward one).

    ``field`` is ``f(t, x)`` or ``f(x)`` (see :func:`as_time_field`) and must return a tensor of the
    shape of ``x``. ``method`` is ``"rk4"`` (``rule`` ``"3/8"``, the step of ``torchdiffeq``'s
    ``method="rk4"``, or ``"classic"``) or ``"euler"`` (one residual block per step). ``x0`` is a
    tensor of any shape, typically ``(batch, d)``; the computation stays on its device and dtype
    and keeps the autograd graph. Returns the final state (the shape of ``x0``), or with
    ``return_path`` the states at every step stacked on a new first axis, shape ``(steps + 1, *x0.shape)``,
    in the order integrated.

    A field that is piecewise constant in time must be integrated one piece at a time: a stage
    evaluated exactly on a switching time would otherwise see the neighbouring piece.
    """
    field = as_time_field(field)
    check_tensor("x0", x0)
    T = check_float("T", T, positive=True)
    steps = check_int("steps", steps, minimum=1)
    check_choice("method", method, METHODS)
    check_choice("rule", rule, RK4_RULES)
    t0 = check_float("t0", t0)
    if not isinstance(backward, bool):
        raise TypeError(f"backward must be True or False, got {type(backward).__name__}")
    if not isinstance(return_path, bool):
        raise TypeError(f"return_path must be True or False, got {type(return_path).__name__}")
    dt = -T / steps if backward else T / steps
    t_start = t0 + T if backward else t0
    x = x0
    path = [x]
    for n in range(steps):
        x = step(field, t_start + n * dt, x, dt, method, rule, check=(n == 0))
        if return_path:
            path.append(x)
    return torch.stack(path) if return_path else x
