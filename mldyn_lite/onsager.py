r"""OnsagerNet: learning stable and interpretable reduced dynamics.

Given trajectories of a high-dimensional system :math:`\dot x = F(x)`, we look
for reduced coordinates :math:`h = \varphi(x) \in \mathbb{R}^m` and a vector
field :math:`f` such that :math:`\dot h = f(h)` tracks :math:`\varphi(x(t))`
(lecture, "Learning stable and interpretable dynamics"; Yu, Tian, E & Li,
*Phys. Rev. Fluids* 6, 114402, 2021). OnsagerNet gives :math:`f` the structure
of the generalised Onsager principle

.. math::  [M(h) + W(h)]\,\dot h = -\nabla V(h) + g(h),

with :math:`M` symmetric positive definite (dissipation; Onsager's reciprocal
relations :math:`M_{ij} = M_{ji}`), :math:`W` antisymmetric (conservative
exchange), :math:`V` bounded below with quadratic growth (a free energy) and
:math:`g` simple (here linear: an external force). As in the published code we
parametrise the inverse operator, the *mobility*: if the symmetric part of
:math:`M+W` is positive definite then so is the symmetric part of
:math:`(M+W)^{-1}`, so the same structure reads

.. math::  \dot h = -\big[M(h) + W(h)\big]\nabla V(h) + g(h), \qquad
           M = L L^\top + \alpha I,\quad W = U - U^\top,\quad
           V = \sum_k \phi_k(h)^2 + \beta\|h\|^2,\quad g(h) = G h + c,

where :math:`L(h)` is lower triangular, :math:`U(h)` strictly upper triangular
and :math:`\phi(h)` the "potential features", all from one tanh layer. With
:math:`g = 0`, :math:`\tfrac{d}{dt}V = -\nabla V^\top M \nabla V \le -\alpha\|\nabla V\|^2 \le 0`:
the model cannot create energy, whatever its weights. By default
:math:`G = K - K^\top - NN^\top` has a negative semidefinite symmetric part; since
:math:`\nabla V = 2\beta h + O(1)`, :math:`V` then decreases outside a ball and every
trajectory is bounded, for any weights (``force="linear"`` gives the published
free :math:`G`, without that guarantee).

This module holds

* :class:`OnsagerNet` — the book's default (one tanh layer, hand-written :math:`\nabla V`,
  ``force="stable"``) and, as options, the published architecture (:func:`published_onsagernet`:
  depth, width, ReQU/ReQUr activations, free linear force); its gradient-flow special case
  :func:`gradient_flow_model`; the unstructured baseline :class:`MLPVectorField`
  (:func:`mlp_of_equal_size`);
* training data kept by trajectory — :func:`derivative_data`, :func:`pair_data` (one-step pairs
  :math:`(h(t), h(t+\delta))`), :func:`trajectory_data` — and :func:`fit_vector_field`
  (derivative matching or the published one-step RK2 loss, validation on held-out
  trajectories, halve-on-plateau schedule, optional :class:`StandardizedField`, a ``seed``;
  options in :class:`FitOptions`, result :class:`VectorFieldFit`); the earlier
  :func:`train_vector_field` (derivatives only, split by point) is kept for the Lorenz page;
* :func:`rollout`, the simulator: batched RK4 (the step of :mod:`mldyn_lite.numerics`) in the data's
  ``(batch, time, m)`` layout, with escape detection (it replaces the older ``integrate``, time axis first);
* analysis: :func:`trajectory_error` (the published :math:`E(T)`), :func:`wrong_end_states`,
  :func:`fixed_points` (Newton, Jacobian eigenvalues), :func:`boundedness` (far starts);
* Lorenz '63 data (:func:`lorenz63`, :func:`lorenz63_data`);
* :class:`PCA` and the near-isometric :class:`Autoencoder` reductions.

The Rayleigh–Bénard solver lives in :mod:`mldyn_lite.boussinesq`.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .numerics import ACTIVATIONS as NUMERICS_ACTIVATIONS
from .numerics import device_of, generator, mlp
from .numerics import step as _rk_step
from .training import raise_if_nonfinite

try:  # numpy's BLAS threads spin on 2 busy cores; keep LAPACK calls on one thread when we can
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

__all__ = [
    "ACTIVATIONS",
    "Autoencoder",
    "AutoencoderFit",
    "Boundedness",
    "FitOptions",
    "FixedPoints",
    "LORENZ_BOX",
    "MLPVectorField",
    "OnsagerNet",
    "PCA",
    "Rollout",
    "StandardizedField",
    "VectorFieldData",
    "VectorFieldFit",
    "VectorFieldTraining",
    "boundedness",
    "count_parameters",
    "derivative_data",
    "fit_vector_field",
    "fixed_points",
    "gradient_flow_model",
    "lorenz63",
    "lorenz63_data",
    "mlp_of_equal_size",
    "one_step_loss",
    "pair_data",
    "published_onsagernet",
    "published_width",
    "relative_derivative_error",
    "rk2_step",
    "rollout",
    "split_trajectories",
    "train_autoencoder",
    "train_vector_field",
    "trajectory_data",
    "trajectory_error",
    "wrong_end_states",
]

# ----------------------------------------------------------------------------------------------------
# Lorenz '63
# ----------------------------------------------------------------------------------------------------

#: The published sampling box for Lorenz initial conditions: U([-25, 25]^2 x [-5, 30]).
LORENZ_BOX = ((-25.0, 25.0), (-25.0, 25.0), (-5.0, 30.0))


def lorenz63(x, sigma: float = 10.0, b: float = 8.0 / 3.0, r: float = 28.0):
    r"""Lorenz '63, :math:`\dot X = \sigma(Y-X),\ \dot Y = rX - Y - XZ,\ \dot Z = XY - bZ`.

    ``x`` has shape ``(..., 3)``, numpy array or torch tensor; the result has the same type and shape.
    """
    if not isinstance(x, torch.Tensor):
        x = check_array("x", x)
    if x.shape[-1] != 3:
        raise ValueError(f"x must have last dimension 3, got shape {tuple(x.shape)}")
    X, Y, Z = x[..., 0], x[..., 1], x[..., 2]
    stack = torch.stack if isinstance(x, torch.Tensor) else np.stack
    return stack([sigma * (Y - X), r * X - Y - X * Z, X * Y - b * Z], -1)


def lorenz63_data(
    n_trajectories: int = 100,
    t_final: float = 3.0,
    n_snapshots: int = 100,
    r: float = 28.0,
    sigma: float = 10.0,
    b: float = 8.0 / 3.0,
    seed: int = 0,
    box=LORENZ_BOX,
    rtol: float = 1e-10,
    atol: float = 1e-10,
):
    r"""Trajectories of Lorenz '63 from initial conditions uniform in ``box`` (the published set-up).

    All trajectories are integrated as one stacked ODE with scipy's ``solve_ivp``
    (DOP853, tight tolerances). Returns ``(t, states, derivatives)`` with
    ``t`` of shape ``(n_snapshots,)`` and the others ``(n_trajectories, n_snapshots, 3)``;
    ``derivatives`` is the exact vector field at the snapshots.
    """
    n_trajectories = check_int("n_trajectories", n_trajectories, minimum=1)
    t_final = check_float("t_final", t_final, positive=True)
    n_snapshots = check_int("n_snapshots", n_snapshots, minimum=2)
    r = check_float("r", r, positive=True)
    box = check_array("box", box, ndim=2)
    if box.shape != (3, 2) or np.any(box[:, 1] <= box[:, 0]):
        raise ValueError(f"box must hold three (low, high) pairs with low < high, got {box.tolist()}")
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    x0 = rng.uniform(box[:, 0], box[:, 1], size=(n_trajectories, 3))
    t = np.linspace(0.0, t_final, n_snapshots)
    sol = solve_ivp(
        lambda _t, y: lorenz63(y.reshape(-1, 3), sigma, b, r).ravel(),
        (0.0, t_final),
        x0.ravel(),
        t_eval=t,
        method="DOP853",
        rtol=rtol,
        atol=atol,
    )
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    states = sol.y.reshape(n_trajectories, 3, n_snapshots).transpose(0, 2, 1)
    return t, states, lorenz63(states, sigma, b, r)


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------


def _requ(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) ** 2


def _requr(x: torch.Tensor) -> torch.Tensor:
    return torch.relu(x) ** 2 - torch.relu(x - 0.5) ** 2


#: Activations of the feature network. ``"ReQU"`` is :math:`\max(x,0)^2`; ``"ReQUr"`` (the published default)
#: is :math:`\max(x,0)^2 - \max(x-\tfrac12,0)^2`, quadratic near 0 and linear (slope 1) beyond 1/2.
ACTIVATIONS = {
    "tanh": torch.tanh,
    "ReQU": _requ,
    "ReQUr": _requr,
    "relu": torch.relu,
    "softplus": torch.nn.functional.softplus,
}


def _private_generator(seed) -> torch.Generator | None:
    """A generator seeded with ``seed`` (``None``: draw from torch's global generator, as torch does)."""
    return None if seed is None else generator(check_int("seed", seed, minimum=0))


def _linear(d_in: int, d_out: int, gen: torch.Generator | None, bias: bool = True) -> nn.Linear:
    r"""``nn.Linear(d_in, d_out)`` with PyTorch's default initialisation, its numbers drawn from ``gen``.

    ``gen=None`` is plain ``nn.Linear`` (torch's global generator). With a generator the layer is
    built without initialisation and then filled exactly as ``nn.Linear.reset_parameters`` does
    (Kaiming-uniform weights, uniform bias in :math:`\pm 1/\sqrt{d_{in}}`), so a seed gives the same
    numbers as seeding the global generator would, and the global random state is left alone.
    """
    if gen is None:
        return nn.Linear(d_in, d_out, bias=bias)
    layer = torch.nn.utils.skip_init(nn.Linear, d_in, d_out, bias=bias)
    with torch.no_grad():
        nn.init.kaiming_uniform_(layer.weight, a=math.sqrt(5), generator=gen)
        if bias:
            bound = 1 / math.sqrt(d_in) if d_in > 0 else 0
            nn.init.uniform_(layer.bias, -bound, bound, generator=gen)
    return layer


class OnsagerNet(nn.Module):
    r"""The vector field :math:`f(h) = -[M(h) + W(h)]\nabla V(h) + g(h)` (see the module docstring).

    A feature network :math:`s(h)` feeds two linear heads: the potential
    features :math:`\phi(h) = Cs + c_0\ (+\,Ph)` and the :math:`m^2` entries of
    a matrix :math:`R(h)` whose lower triangle (with diagonal) is :math:`L` and
    whose strict upper triangle is :math:`U`. The feature network is
    :math:`s_1 = \sigma(A h + a)` followed by ``depth - 1`` residual layers
    :math:`s_{k+1} = s_k + \sigma(A_k s_k + a_k)`, all of ``width`` units.

    **The book's default** (``depth=1``, ``activation="tanh"``, ``force="stable"``) is a
    small variant chosen for speed and a proof of boundedness: one tanh layer, a
    hand-written :math:`\nabla V`, a force with negative semidefinite symmetric part.
    **The published architecture** (Yu, Tian, E & Li 2021, and their code) is
    :func:`published_onsagernet`: ``depth=2`` layers of ``width`` :math:`2\binom{m+2}{2}`,
    ``activation="ReQUr"``, potential features with a linear term (``potential_linear=True``,
    :math:`m` of them), a free linear force ``force="linear"``, :math:`\alpha=\beta=0.1`,
    :math:`\nabla V` by autograd. Not reproduced: their weight initialisation (Xavier/orthogonal
    with gain 0.1 and an orthogonal bias for :math:`R`).

    Parameters
    ----------
    dim
        :math:`m`, the dimension of the reduced state.
    width
        Width of the feature layers.
    n_potential
        Number of potential features :math:`\phi_k`; default ``width``.
    alpha, beta
        The :math:`\alpha I` in :math:`M` and the :math:`\beta\|h\|^2` in :math:`V`.
    conservative
        Include :math:`W = U - U^\top` (``False``: :math:`W = 0`).
    force
        ``"stable"`` (default): :math:`g(h) = Gh + c` with :math:`G = K - K^\top - NN^\top`,
        whose symmetric part is negative semidefinite — with the bounded tanh features
        every trajectory is then bounded, for any weights (see :meth:`bounded_by_construction`);
        ``"linear"``: a free :math:`G` (the published choice, no such guarantee);
        ``"none"``: :math:`g = 0`.
    autograd_gradient
        Compute :math:`\nabla V` with a second autograd pass instead of the
        hand-written formula (same values, higher cost). Always on unless
        ``depth=1`` with tanh.
    depth, activation
        Number of feature layers and their activation (a key of :data:`ACTIVATIONS`).
    potential_linear
        Add a linear term :math:`Ph` to the potential features (the published form).
    seed
        Seed of the weight initialisation (``None``: torch's global generator). The global
        generator's state is left as it was.
    """

    FORCES = ("stable", "linear", "none")

    def __init__(
        self,
        dim: int,
        width: int = 24,
        n_potential: int | None = None,
        alpha: float = 0.1,
        beta: float = 0.1,
        conservative: bool = True,
        force: str = "stable",
        autograd_gradient: bool = False,
        *,
        depth: int = 1,
        activation: str = "tanh",
        potential_linear: bool = False,
        seed: int | None = None,
    ):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        self.width = width
        self.depth = check_int("depth", depth, minimum=1)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        self._act = ACTIVATIONS[self.activation]
        self.n_potential = width if n_potential is None else check_int("n_potential", n_potential, minimum=1)
        self.alpha = check_float("alpha", alpha, nonnegative=True)
        self.beta = check_float("beta", beta, nonnegative=True)
        self.conservative = bool(conservative)
        self.force_kind = check_choice("force", force, self.FORCES)
        self.potential_linear = bool(potential_linear)
        self.autograd_gradient = bool(autograd_gradient) or self.depth > 1 or self.activation != "tanh"
        self._build(_private_generator(seed))

    def _build(self, gen: torch.Generator | None):
        dim, width = self.dim, self.width
        self.features = _linear(dim, width, gen)
        self.residual_layers = nn.ModuleList(_linear(width, width, gen) for _ in range(self.depth - 1))
        self.heads = _linear(width, self.n_potential + dim * dim, gen)
        self.potential_skip = _linear(dim, self.n_potential, gen, bias=False) if self.potential_linear else None
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim)))
        self.register_buffer("upper_mask", torch.triu(torch.ones(dim, dim), diagonal=1))
        with torch.no_grad():  # start close to a weakly damped system: small L and U
            self.heads.weight[self.n_potential :].mul_(0.1)
            self.heads.bias[self.n_potential :].zero_()
        if self.force_kind != "none":
            self.force_matrix = nn.Parameter(0.1 * torch.randn(dim, dim, generator=gen) / math.sqrt(dim))
            self.force_damping = (
                nn.Parameter(0.1 * torch.randn(dim, dim, generator=gen) / math.sqrt(dim))
                if self.force_kind == "stable"
                else None
            )
            self.force_bias = nn.Parameter(torch.zeros(dim))

    # --- the ingredients -------------------------------------------------------------------------
    def _features(self, h: torch.Tensor) -> torch.Tensor:
        s = self._act(self.features(h))
        for layer in self.residual_layers:
            s = s + self._act(layer(s))
        return s

    def _split_heads(self, s: torch.Tensor, h: torch.Tensor | None = None):
        out = self.heads(s)
        phi = out[:, : self.n_potential]
        if self.potential_skip is not None:
            phi = phi + self.potential_skip(h)
        return phi, out[:, self.n_potential :].reshape(-1, self.dim, self.dim)

    def potential(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`V(h) = \sum_k \phi_k(h)^2 + \beta\|h\|^2`, shape ``(batch,)``."""
        phi, _ = self._split_heads(self._features(h), h)
        return (phi**2).sum(-1) + self.beta * (h**2).sum(-1)

    def grad_potential(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla V(h)`; for one tanh layer :math:`2A^\top[(1 - s^2)\odot C^\top\phi] + 2P^\top\phi + 2\beta h`,
        written out and differentiable in the weights; otherwise by autograd."""
        s = self._features(h)
        return self._grad_potential(h, s, self._split_heads(s, h)[0])

    def _grad_potential(self, h, s, phi):
        if self.autograd_gradient:
            with torch.enable_grad():
                h_ = h if h.requires_grad else h.detach().requires_grad_(True)
                V = self.potential(h_).sum()
                return torch.autograd.grad(V, h_, create_graph=True)[0]
        back = (phi @ self.heads.weight[: self.n_potential]) * (1 - s * s)
        grad = torch.addmm(h, back, self.features.weight, beta=2 * self.beta, alpha=2.0)
        if self.potential_skip is not None:
            grad = grad + 2.0 * phi @ self.potential_skip.weight
        return grad

    def matrices(self, h: torch.Tensor):
        r"""``(M, W)`` at ``h``, each ``(batch, m, m)``: :math:`M = LL^\top + \alpha I`, :math:`W = U - U^\top`."""
        _, R = self._split_heads(self._features(h), h)
        L = R * self.lower_mask
        M = L @ L.transpose(1, 2) + self.alpha * torch.eye(self.dim, dtype=h.dtype, device=h.device)
        U = R * self.upper_mask if self.conservative else torch.zeros_like(R)
        return M, U - U.transpose(1, 2)

    def force_operator(self) -> torch.Tensor | None:
        """The matrix :math:`G` of :math:`g(h) = Gh + c` (``None`` if ``force="none"``)."""
        if self.force_kind == "none":
            return None
        G = self.force_matrix
        if self.force_kind == "stable":  # K - K^T - N N^T in two operations
            G = torch.addmm(G - G.T, self.force_damping, self.force_damping.T, alpha=-1.0)
        return G

    def force(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`g(h) = Gh + c` (zero if ``force="none"``)."""
        G = self.force_operator()
        return torch.zeros_like(h) if G is None else torch.addmm(self.force_bias, h, G.T)

    def bounded_by_construction(self) -> bool:
        r"""Whether the sufficient condition for bounded trajectories holds.

        With bounded (tanh) features and no linear potential term, far out
        :math:`\nabla V = 2\beta h + O(1)`, so
        :math:`\dot V \le -4\alpha\beta^2\|h\|^2 + 2\beta\,h^\top G h + O(\|h\|)`:
        :math:`V` decreases far out if :math:`\lambda_{\max}(\tfrac12(G+G^\top)) < 2\alpha\beta`,
        and :math:`V \ge \beta\|h\|^2` then traps every trajectory in a bounded set.
        For unbounded activations (ReQU, ReQUr) or ``potential_linear`` this argument
        does not apply and the method returns ``False`` (no certificate, not a proof of blow-up).
        """
        if self.activation != "tanh" or self.potential_linear:
            return False
        G = self.force_operator()
        if G is None:
            return self.alpha * self.beta > 0
        top = torch.linalg.eigvalsh(0.5 * (G + G.T)).max().item()
        return top < 2 * self.alpha * self.beta

    # --- the vector field ---------------------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = self._features(h)
        phi, R = self._split_heads(s, h)
        grad_V = self._grad_potential(h, s, phi)
        L = R * self.lower_mask
        # (L L^T + U - U^T) as one matrix, then one batched product with grad V
        if self.conservative:
            U = R * self.upper_mask
            mobility = torch.baddbmm(U - U.transpose(1, 2), L, L.transpose(1, 2))
        else:
            mobility = L @ L.transpose(1, 2)
        g = grad_V.unsqueeze(-1)
        flux = torch.baddbmm(g, mobility, g, beta=self.alpha).squeeze(-1)  # alpha grad V + mobility grad V
        if self.force_kind == "none":
            return -flux
        return self.force(h) - flux


def published_width(dim: int) -> int:
    r"""The published hidden width :math:`2\binom{m+2}{2}` for :math:`m` = ``dim`` (e.g. 42 for m = 5)."""
    dim = check_int("dim", dim, minimum=1)
    return 2 * math.comb(dim + 2, 2)


def published_onsagernet(dim: int, *, seed: int | None = None, **kwargs) -> OnsagerNet:
    r"""OnsagerNet with the published architecture (Yu, Tian, E & Li 2021; their RBC code).

    Two feature layers (the second residual) of :func:`published_width` units with the ReQUr
    activation, :math:`m` potential features with a linear term, a free linear force
    (``force="linear"``), :math:`\alpha = \beta = 0.1`, :math:`\nabla V` by autograd. Their
    training recipe (AdamW with amsgrad, lr 6.4e-3, batch 200, RK2 one-step loss,
    lr halving on plateau) is :meth:`FitOptions.published`. Keywords override the defaults.
    """
    settings = dict(
        width=published_width(dim),
        n_potential=dim,
        alpha=0.1,
        beta=0.1,
        force="linear",
        depth=2,
        activation="ReQUr",
        potential_linear=True,
    )
    settings.update(kwargs)
    return OnsagerNet(dim, seed=seed, **settings)


def gradient_flow_model(dim: int, width: int = 24, **kwargs) -> OnsagerNet:
    r"""The structured but restrictive baseline :math:`\dot h = -M(h)\nabla V(h)`: OnsagerNet with :math:`W = 0, g = 0`.

    Along its trajectories :math:`\dot V \le -\alpha\|\nabla V\|^2`, so every
    trajectory runs downhill to a critical point of :math:`V`: it can neither
    oscillate nor be chaotic.
    """
    return OnsagerNet(dim, width, conservative=False, force="none", **kwargs)


class _Activation(nn.Module):
    def __init__(self, name: str):
        super().__init__()
        self.name = name

    def forward(self, x):
        return ACTIVATIONS[self.name](x)


class MLPVectorField(nn.Module):
    r"""The unstructured baseline :math:`f(h) = \mathrm{MLP}(h)`: ``depth`` hidden layers of ``width`` units
    (``activation`` from :data:`ACTIVATIONS`, default tanh) and a linear output.

    Built by :func:`mldyn_lite.numerics.mlp` (for ``"ReQU"``/``"ReQUr"``, which it does not know, by the same
    recipe); ``seed`` draws the weights from a private generator (``None``: torch's global generator)."""

    def __init__(self, dim: int, width: int = 32, depth: int = 2, *, activation: str = "tanh", seed: int | None = None):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        width = check_int("width", width, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        self.activation = check_choice("activation", activation, tuple(ACTIVATIONS))
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        if self.activation in NUMERICS_ACTIVATIONS:
            self.net = mlp(dim, width, depth, dim, self.activation, seed=seed)
        else:
            gen = _private_generator(seed)
            layers, size = [], dim
            for _ in range(depth):
                layers += [_linear(size, width, gen), _Activation(self.activation)]
                size = width
            layers.append(_linear(size, dim, gen))
            self.net = nn.Sequential(*layers)
        self.dim, self.width, self.depth = dim, width, depth

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def _mlp_size(dim: int, width: int, depth: int) -> int:
    return dim * width + width + (depth - 1) * (width * width + width) + width * dim + dim


def mlp_of_equal_size(
    model: nn.Module, depth: int = 2, *, activation: str = "tanh", seed: int | None = None
) -> MLPVectorField:
    """An :class:`MLPVectorField` with ``depth`` layers whose parameter count is closest to ``model``'s."""
    target = count_parameters(model)
    dim = check_int("model.dim", getattr(model, "dim", None), minimum=1)
    depth = check_int("depth", depth, minimum=1)
    width = min(range(1, 4097), key=lambda w: abs(_mlp_size(dim, w, depth) - target))
    return MLPVectorField(dim, width, depth, activation=activation, seed=seed)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------
# Training data: derivatives, one-step pairs, trajectories
# ----------------------------------------------------------------------------------------------------


def _as_trajectories(name: str, value) -> np.ndarray:
    """An array of shape (n_trajectories, n_points, m); a 2-D array is one point per trajectory."""
    value = check_array(name, value)
    if value.ndim == 2:
        value = value[:, None, :]
    if value.ndim != 3:
        raise ValueError(f"{name} must have shape (n_trajectories, n_points, m) or (n_points, m), got {value.shape}")
    if not np.isfinite(value).all():
        raise ValueError(f"{name} holds NaN or Inf")
    return value


@dataclass(frozen=True)
class VectorFieldData:
    r"""Training data for a vector field, kept by trajectory (axis 0) so that validation can hold out trajectories.

    ``kind`` is ``"derivatives"`` (``start`` = :math:`h`, ``target`` = :math:`\dot h`) or
    ``"pairs"`` (``start`` = :math:`h(t)`, ``target`` = :math:`h(t+\delta)`); arrays of shape
    ``(n_trajectories, n_points, m)``. Build it with :func:`derivative_data`, :func:`pair_data`
    or :func:`trajectory_data`.
    """

    kind: str
    start: np.ndarray
    target: np.ndarray
    delta: float | None = None

    @property
    def n_trajectories(self) -> int:
        return self.start.shape[0]

    @property
    def dim(self) -> int:
        return self.start.shape[-1]

    def rates(self) -> np.ndarray:
        r""":math:`\dot h` (derivatives) or the difference quotients :math:`(h(t+\delta) - h(t))/\delta` (pairs)."""
        return self.target if self.kind == "derivatives" else (self.target - self.start) / self.delta

    def select(self, trajectories) -> VectorFieldData:
        """The data of the given trajectory indices."""
        index = np.asarray(trajectories, dtype=int)
        return VectorFieldData(self.kind, self.start[index], self.target[index], self.delta)


def derivative_data(states, derivatives) -> VectorFieldData:
    r"""Data :math:`(h_i, \dot h_i)`: arrays ``(n_trajectories, n_points, m)`` (or ``(n_points, m)``, one point each)."""
    states, derivatives = _as_trajectories("states", states), _as_trajectories("derivatives", derivatives)
    if states.shape != derivatives.shape:
        raise ValueError(f"states and derivatives must have the same shape, got {states.shape} and {derivatives.shape}")
    return VectorFieldData("derivatives", states, derivatives)


def pair_data(h0, h1, delta: float) -> VectorFieldData:
    r"""One-step pairs :math:`(h(t), h(t+\delta))`, as in the published RBC data (``delta`` = 0.001 there).

    ``h0`` and ``h1`` have shape ``(n_trajectories, n_pairs, m)`` (or ``(n_pairs, m)``).
    """
    h0, h1 = _as_trajectories("h0", h0), _as_trajectories("h1", h1)
    if h0.shape != h1.shape:
        raise ValueError(f"h0 and h1 must have the same shape, got {h0.shape} and {h1.shape}")
    return VectorFieldData("pairs", h0, h1, check_float("delta", delta, positive=True))


def trajectory_data(trajectories, times) -> VectorFieldData:
    r"""Consecutive snapshots of trajectories ``(n_trajectories, n_times, m)`` at uniformly spaced ``times``,
    as one-step pairs :math:`(h(t_k), h(t_{k+1}))` with :math:`\delta = t_{k+1} - t_k`.

    For coarse snapshots train with :attr:`FitOptions.substeps` > 1 (several RK2 steps per gap).
    """
    trajectories = _as_trajectories("trajectories", trajectories)
    times = check_array("times", times, ndim=1)
    if times.size != trajectories.shape[1] or times.size < 2:
        raise ValueError(
            f"times must hold one time per snapshot (at least 2), got {times.size} times for "
            f"{trajectories.shape[1]} snapshots"
        )
    steps = np.diff(times)
    if np.any(steps <= 0) or not np.allclose(steps, steps[0], rtol=1e-6):
        raise ValueError("times must be increasing and uniformly spaced")
    return VectorFieldData("pairs", trajectories[:, :-1], trajectories[:, 1:], float(steps[0]))


def split_trajectories(n_trajectories: int, validation_fraction: float = 0.2, seed: int = 0):
    """Random disjoint ``(train, validation)`` index arrays of whole trajectories (at least one to train)."""
    n_trajectories = check_int("n_trajectories", n_trajectories, minimum=1)
    validation_fraction = check_float("validation_fraction", validation_fraction, minimum=0.0, maximum=0.9)
    order = np.random.default_rng(check_int("seed", seed, minimum=0)).permutation(n_trajectories)
    n_val = min(int(round(validation_fraction * n_trajectories)), n_trajectories - 1)
    return np.sort(order[n_val:]), np.sort(order[:n_val])


# ----------------------------------------------------------------------------------------------------
# Losses
# ----------------------------------------------------------------------------------------------------


def relative_derivative_error(model: nn.Module, states: torch.Tensor, derivatives: torch.Tensor) -> torch.Tensor:
    r"""The loss :math:`\sum_i\|f(h_i) - \dot h_i\|^2 / \sum_i\|\dot h_i\|^2` (a scalar tensor)."""
    return ((model(states) - derivatives) ** 2).sum() / (derivatives**2).sum()


def rk2_step(field, h: torch.Tensor, delta: float, substeps: int = 1) -> torch.Tensor:
    r"""Heun's second-order Runge–Kutta step(s) across :math:`\delta`, differentiable in ``field``'s weights:

    .. math:: k_1 = f(h),\quad k_2 = f(h + \tau k_1),\quad h \mapsto h + \tfrac{\tau}{2}(k_1 + k_2),
              \qquad \tau = \delta/\mathrm{substeps}.

    This is the step of the published one-step loss (Yu et al. 2021, ``ode_rk2``).
    """
    tau = delta / substeps
    for _ in range(substeps):
        k1 = field(h)
        k2 = field(h + tau * k1)
        h = h + 0.5 * tau * (k1 + k2)
    return h


def one_step_loss(
    field, h0: torch.Tensor, h1: torch.Tensor, delta: float, substeps: int = 1, normaliser: float | torch.Tensor = 1.0
) -> torch.Tensor:
    r"""The published one-step loss :math:`\frac1N\sum_i \|(\Phi^{\mathrm{RK2}}_\delta(h_0^i) - h_1^i)/\delta\|^2`,
    divided by ``normaliser`` (the trainer uses the mean :math:`\|(h_1 - h_0)/\delta\|^2` of the training data,
    which makes it a relative error; the paper uses 1)."""
    predicted = rk2_step(field, h0, delta, substeps)
    return (((predicted - h1) / delta) ** 2).sum(-1).mean() / normaliser


# ----------------------------------------------------------------------------------------------------
# Standardisation
# ----------------------------------------------------------------------------------------------------


class StandardizedField(nn.Module):
    r"""A vector field trained on standardised coordinates, in the original units:

    .. math:: f(h) = r\,s\; f_{\mathrm{inner}}\big((h - \mu)/s\big),

    with the data mean :math:`\mu` (per component), one length scale :math:`s` (the RMS distance
    of the data from :math:`\mu`) and one rate :math:`r` (RMS :math:`\|\dot h\|/s`), stored as
    buffers — saved and loaded with the weights. One scalar :math:`s` keeps the geometry (and
    OnsagerNet's structure) unchanged: :math:`f_{\mathrm{inner}}` sees states of size one and
    returns rates of size one.
    """

    def __init__(self, inner: nn.Module, mean, scale: float, rate: float):
        super().__init__()
        if not isinstance(inner, nn.Module):
            raise TypeError(f"inner must be a torch.nn.Module, got {type(inner).__name__}")
        self.inner = inner
        self.dim = inner.dim
        ref = next(inner.parameters())
        self.register_buffer("mean", torch.as_tensor(np.asarray(mean), dtype=ref.dtype, device=ref.device).clone())
        self.register_buffer(
            "scale", torch.tensor(check_float("scale", scale, positive=True), dtype=ref.dtype, device=ref.device)
        )
        self.register_buffer(
            "rate", torch.tensor(check_float("rate", rate, positive=True), dtype=ref.dtype, device=ref.device)
        )

    @classmethod
    def from_data(cls, inner: nn.Module, data: VectorFieldData) -> StandardizedField:
        """Mean, scale and rate measured on ``data``."""
        states = data.start.reshape(-1, data.dim)
        mean = states.mean(0)
        scale = float(np.sqrt(((states - mean) ** 2).sum(-1).mean()))
        rate = float(np.sqrt((data.rates() ** 2).sum(-1).mean())) / scale
        return cls(inner, mean, max(scale, 1e-12), max(rate, 1e-12))

    def standardize(self, h: torch.Tensor) -> torch.Tensor:
        return (h - self.mean) / self.scale

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return (self.rate * self.scale) * self.inner(self.standardize(h))


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------


@dataclass
class FitOptions:
    r"""Options of :func:`fit_vector_field`.

    The learning rate starts at ``lr`` and is multiplied by ``lr_factor`` whenever the
    validation error has not improved (by a relative ``min_improvement``) for ``patience``
    steps; training ends after ``steps`` steps or when the rate falls below ``min_lr``. The
    weights with the best validation error are kept. ``validation_fraction`` of the
    *trajectories* (never single points) are held out, chosen with ``seed``, which also
    draws the minibatches. ``standardize`` wraps the model in :class:`StandardizedField`.
    ``substeps`` RK2 steps span each pair's :math:`\delta` (one-step loss only).
    """

    steps: int = 3000
    lr: float = 1e-2
    batch_size: int = 512
    validation_fraction: float = 0.2
    eval_every: int = 50
    patience: int = 300
    lr_factor: float = 0.5
    min_lr: float | None = None
    min_improvement: float = 1e-3
    clip: float = 1.0
    weight_decay: float = 0.0
    amsgrad: bool = False
    substeps: int = 1
    standardize: bool = False
    seed: int = 0

    @classmethod
    def published(cls, **overrides) -> FitOptions:
        """The published recipe: AdamW with amsgrad, lr 6.4e-3, batch 200, clipping at 1, halving on plateau."""
        settings = dict(lr=6.4e-3, batch_size=200, amsgrad=True, clip=1.0, lr_factor=0.5)
        settings.update(overrides)
        return cls(**settings)

    def checked(self) -> FitOptions:
        check_int("steps", self.steps, minimum=1)
        check_float("lr", self.lr, positive=True)
        check_int("batch_size", self.batch_size, minimum=1)
        check_float("validation_fraction", self.validation_fraction, minimum=0.0, maximum=0.9)
        check_int("eval_every", self.eval_every, minimum=1)
        check_int("patience", self.patience, minimum=1)
        check_float("lr_factor", self.lr_factor, positive=True, maximum=0.99)
        if self.min_lr is not None:
            check_float("min_lr", self.min_lr, positive=True)
        check_float("min_improvement", self.min_improvement, nonnegative=True)
        check_float("clip", self.clip, positive=True)
        check_float("weight_decay", self.weight_decay, nonnegative=True)
        check_int("substeps", self.substeps, minimum=1)
        check_int("seed", self.seed, minimum=0)
        return self


@dataclass
class VectorFieldFit:
    """What :func:`fit_vector_field` returns.

    ``model`` is the trained field in the data's units (the :class:`StandardizedField` wrapper when
    standardising); ``history`` has lists ``steps``, ``train``, ``validation``, ``lr``;
    ``train_trajectories`` / ``validation_trajectories`` index the data's first axis.
    """

    model: nn.Module
    history: dict
    best_validation: float
    best_step: int
    train_trajectories: np.ndarray
    validation_trajectories: np.ndarray
    seconds: float


def _fused(model: nn.Module) -> dict:
    """``fused=True`` for AdamW on CPU float parameters: one kernel per step instead of a dozen small ones
    (the same update; several times less overhead on the book's small models)."""
    parameters = list(model.parameters())
    ok = all(p.device.type == "cpu" and p.dtype in (torch.float32, torch.float64) for p in parameters)
    return {"fused": True} if ok and parameters else {}


def _loss_fn(data: VectorFieldData, substeps: int):
    if data.kind == "derivatives":

        def loss(model, x, y, normaliser):
            return ((model(x) - y) ** 2).sum(-1).mean() / normaliser
    else:

        def loss(model, x, y, normaliser):
            return one_step_loss(model, x, y, data.delta, substeps, normaliser)

    return loss


def fit_vector_field(model: nn.Module, data: VectorFieldData, options: FitOptions | None = None) -> VectorFieldFit:
    r"""Fit a vector field :math:`\dot h = f_\theta(h)` to ``data`` (see :class:`VectorFieldData`).

    * derivative data: minimise :math:`\sum\|f(h_i) - \dot h_i\|^2 / \sum\|\dot h_i\|^2`;
    * one-step pairs or trajectories: the published one-step loss (:func:`one_step_loss`, Heun's RK2
      across :math:`\delta`), relative to the mean squared difference quotient.

    AdamW on minibatches with gradient clipping and a halve-on-plateau learning-rate schedule
    (:class:`FitOptions`); whole trajectories are held out for validation; the best weights are
    kept. Runs on the device of ``model``'s parameters. A NaN/Inf loss stops with
    :class:`~mldyn_lite.training.TrainingDivergedError` naming the step.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not isinstance(data, VectorFieldData):
        raise TypeError(
            f"data must be a VectorFieldData (use derivative_data, pair_data or trajectory_data), got {type(data).__name__}"
        )
    options = FitOptions() if options is None else options
    if not isinstance(options, FitOptions):
        raise TypeError(f"options must be a FitOptions, got {type(options).__name__}")
    options.checked()
    if getattr(model, "dim", data.dim) != data.dim:
        raise ValueError(f"data must have last dimension model.dim = {model.dim}, got {data.dim}")
    start_time = time.process_time()
    train_idx, val_idx = split_trajectories(data.n_trajectories, options.validation_fraction, options.seed)
    train_data = data.select(train_idx)
    if options.standardize:
        model = StandardizedField.from_data(model, train_data)
    parameter = next(model.parameters())
    device, dtype = parameter.device, parameter.dtype

    def tensors(part: VectorFieldData):
        return (
            torch.as_tensor(part.start.reshape(-1, data.dim), dtype=dtype, device=device),
            torch.as_tensor(part.target.reshape(-1, data.dim), dtype=dtype, device=device),
            float((part.rates() ** 2).sum(-1).mean()),
        )

    x_train, y_train, norm_train = tensors(train_data)
    if len(val_idx):
        x_val, y_val, norm_val = tensors(data.select(val_idx))
    else:
        x_val, y_val, norm_val = x_train, y_train, norm_train
    loss_fn = _loss_fn(data, options.substeps)
    gen = generator(options.seed)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=options.lr, weight_decay=options.weight_decay, amsgrad=options.amsgrad, **_fused(model)
    )
    min_lr = options.lr / 64 if options.min_lr is None else options.min_lr
    lr, last_change = options.lr, 0
    history = {"steps": [], "train": [], "validation": [], "lr": []}
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    n_train = x_train.shape[0]
    for step in range(options.steps):
        batch = torch.randint(n_train, (min(options.batch_size, n_train),), generator=gen).to(device)
        loss = loss_fn(model, x_train[batch], y_train[batch], norm_train)
        raise_if_nonfinite(
            loss.detach(),
            step,
            hint="the learning rate is too large or the data hold very large "
            "values; try a smaller lr or FitOptions(standardize=True)",
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), options.clip)
        optimizer.step()
        if step % options.eval_every == options.eval_every - 1 or step == options.steps - 1:
            with torch.no_grad():
                val = float(loss_fn(model, x_val, y_val, norm_val))
            raise_if_nonfinite(torch.tensor(val), step, what="validation error")
            history["steps"].append(step + 1)
            history["train"].append(float(loss.detach()))
            history["validation"].append(val)
            history["lr"].append(lr)
            if val < best[0] * (1 - options.min_improvement):
                best = (val, step + 1, copy.deepcopy(model.state_dict()))
            elif step + 1 - max(best[1], last_change) >= options.patience:
                lr *= options.lr_factor
                last_change = step + 1
                if lr < min_lr:
                    break
                for group in optimizer.param_groups:
                    group["lr"] = lr
    model.load_state_dict(best[2])
    return VectorFieldFit(model, history, best[0], best[1], train_idx, val_idx, time.process_time() - start_time)


@dataclass
class VectorFieldTraining:
    """What :func:`train_vector_field` returns: the trained ``model`` (its best weights), the ``history``
    (lists ``steps``, ``train``, ``validation``), ``best_validation`` and ``best_step``.

    ``result["steps"]`` and friends still read the history (and ``result["best_validation"]``,
    ``result["best_step"]`` the numbers), as when the trainer returned a dict.
    """

    model: nn.Module
    history: dict
    best_validation: float
    best_step: int

    def __getitem__(self, key: str):
        if key in ("best_validation", "best_step"):
            return getattr(self, key)
        return self.history[key]


def train_vector_field(
    model: nn.Module,
    states,
    derivatives,
    *,
    steps: int = 2000,
    lr: float = 1e-2,
    batch_size: int = 1024,
    validation_fraction: float = 0.2,
    patience: int = 400,
    eval_every: int = 50,
    clip: float = 1.0,
    weight_decay: float = 0.0,
    seed: int = 0,
    device=None,
) -> VectorFieldTraining:
    r"""Derivative matching with a cosine schedule and early stopping — the book's earlier trainer, kept for
    the Lorenz page and the benchmarks; new code uses :func:`fit_vector_field`.

    Minimises :func:`relative_derivative_error`; a random ``validation_fraction`` of the *points* is held
    out, the best weights are restored (early stopping after ``patience`` steps without improvement). Runs
    on the device of the model (``device``, if given, moves the model there first; it is never chosen for
    you). Returns :class:`VectorFieldTraining`.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = device_of(model) if device is None else torch.device(device)
    dtype = next(model.parameters()).dtype
    states = torch.as_tensor(check_array("states", states), dtype=dtype)
    derivatives = torch.as_tensor(check_array("derivatives", derivatives), dtype=dtype)
    states = states.reshape(-1, states.shape[-1])
    derivatives = derivatives.reshape(-1, derivatives.shape[-1])
    if states.shape != derivatives.shape or states.shape[1] != model.dim:
        raise ValueError(
            f"states and derivatives must both have shape (..., {model.dim}), "
            f"got {tuple(states.shape)} and {tuple(derivatives.shape)}"
        )
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    validation_fraction = check_float("validation_fraction", validation_fraction, minimum=0.0, maximum=0.9)
    patience = check_int("patience", patience, minimum=1)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    clip = check_float("clip", clip, positive=True)
    weight_decay = check_float("weight_decay", weight_decay, nonnegative=True)
    gen = generator(check_int("seed", seed, minimum=0))

    order = torch.randperm(states.shape[0], generator=gen)
    n_val = int(round(validation_fraction * states.shape[0]))
    val_idx, train_idx = order[:n_val], order[n_val:]
    model.to(device)
    x_train, y_train = states[train_idx].to(device), derivatives[train_idx].to(device)
    x_val, y_val = states[val_idx].to(device), derivatives[val_idx].to(device)
    if n_val == 0:
        x_val, y_val = x_train, y_train
    n_train = x_train.shape[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, **_fused(model))
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr / 100)
    history = {"steps": [], "train": [], "validation": []}
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    for step in range(steps):
        batch = torch.randint(n_train, (min(batch_size, n_train),), generator=gen).to(device)
        loss = relative_derivative_error(model, x_train[batch], y_train[batch])
        raise_if_nonfinite(
            loss.detach(),
            step,
            hint="the learning rate is too large or the data hold NaN/Inf; try a smaller lr or rescale the states",
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        if step % eval_every == eval_every - 1 or step == steps - 1:
            with torch.no_grad():
                val = float(relative_derivative_error(model, x_val, y_val))
            raise_if_nonfinite(torch.tensor(val), step, what="validation error")
            history["steps"].append(step + 1)
            history["train"].append(float(loss.detach()))
            history["validation"].append(val)
            if val < best[0]:
                best = (val, step + 1, copy.deepcopy(model.state_dict()))
            elif step + 1 - best[1] >= patience:
                break
    model.load_state_dict(best[2])
    return VectorFieldTraining(model, history, best[0], best[1])


# ----------------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------------


def _rk4_path(field, h0: torch.Tensor, steps: int, dt: float, save_every: int, escape_radius: float):
    """Classical RK4 steps of :func:`mldyn_lite.numerics.step` with saving and escape detection."""
    h = h0.detach().clone()
    escaped = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
    path = [h.clone()]

    def autonomous(_t, x):
        return field(x)

    with torch.no_grad():
        for step in range(1, steps + 1):
            h_new = _rk_step(autonomous, 0.0, h, dt, "rk4", "classic", check=(step == 1))
            bad = ~torch.isfinite(h_new).all(-1) | (h_new.norm(dim=-1) > escape_radius)
            escaped = escaped | bad
            h = torch.where(escaped[:, None], h, h_new)
            if step % save_every == 0:
                path.append(h.clone())
    return path, escaped


def _check_field_shape(field, h0):
    with torch.no_grad():
        out = field(h0[:1])
    if not isinstance(out, torch.Tensor) or out.shape != h0[:1].shape:
        got = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"field(h) must return the shape of h, {tuple(h0[:1].shape)}, got {got}")


@dataclass
class Rollout:
    """Trajectories of a learned field: ``path`` ``(batch, n_saved, m)``, ``times`` ``(n_saved,)``, ``escaped``
    ``(batch,)`` (norm above the escape radius or non-finite at some step; the state is frozen there)."""

    path: torch.Tensor
    times: np.ndarray
    escaped: torch.Tensor


def rollout(field, h0, T: float, dt: float = 0.01, save_every: int = 1, escape_radius: float = math.inf) -> Rollout:
    r"""The OnsagerNet simulator: integrate :math:`\dot h = f(h)` from every row of ``h0`` to time ``T`` with
    classical RK4 steps of size ``dt`` (:func:`mldyn_lite.numerics.step`), without gradients, saving every
    ``save_every``-th state, in the data's layout ``(batch, time, m)``.

    A trajectory whose norm exceeds ``escape_radius`` (or that turns non-finite) is frozen from then on and
    flagged in :attr:`Rollout.escaped`, so a blow-up cannot produce Inf/NaN. ``h0`` may be a numpy array
    (then in the field's dtype, on its device) or a tensor (its device and dtype are kept)."""
    check_callable("field", field)
    if not isinstance(h0, torch.Tensor):
        ref = next(field.parameters()) if isinstance(field, nn.Module) else torch.zeros(())
        h0 = torch.as_tensor(
            check_array("h0", h0, ndim=2), dtype=ref.dtype if ref.is_floating_point() else torch.float32, device=ref.device
        )
    h0 = check_tensor("h0", h0, ndim=2)
    T = check_float("T", T, positive=True)
    dt = check_float("dt", dt, positive=True)
    save_every = check_int("save_every", save_every, minimum=1)
    _check_field_shape(field, h0)
    steps = int(round(T / dt))
    path, escaped = _rk4_path(field, h0, steps, dt, save_every, float(escape_radius))
    return Rollout(torch.stack(path, dim=1), np.arange(len(path)) * save_every * dt, escaped)


# ----------------------------------------------------------------------------------------------------
# Analysis: trajectory error, wrong end states, fixed points, boundedness
# ----------------------------------------------------------------------------------------------------


def _numpy(x) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x, dtype=float)


def trajectory_error(predicted, truth, times=None, T: float | None = None) -> float:
    r"""The published trajectory error :math:`E(T)`: the mean over trajectories of
    :math:`\big(\sum_{t_k\le T}\|\hat h(t_k) - h(t_k)\|^2 / \sum_{t_k\le T}\|h(t_k)\|^2\big)^{1/2}`
    (RMS error over RMS :math:`\|h\|`, up to :math:`T`). Arrays ``(n_trajectories, n_times, m)``;
    ``T`` needs ``times``; ``T=None`` uses the whole horizon."""
    predicted, truth = _numpy(predicted), _numpy(truth)
    if predicted.shape != truth.shape or predicted.ndim != 3:
        raise ValueError(
            f"predicted and truth must have the same shape (n_trajectories, n_times, m), "
            f"got {predicted.shape} and {truth.shape}"
        )
    keep = slice(None)
    if T is not None:
        if times is None:
            raise ValueError("T needs the times of the snapshots (times=...)")
        times = check_array("times", times, ndim=1)
        if times.size != truth.shape[1]:
            raise ValueError(f"times must hold {truth.shape[1]} entries, got {times.size}")
        keep = times <= check_float("T", T, nonnegative=True) + 1e-9
    error = ((predicted[:, keep] - truth[:, keep]) ** 2).sum(-1).mean(1)
    size = (truth[:, keep] ** 2).sum(-1).mean(1)
    return float(np.mean(np.sqrt(error / size)))


def wrong_end_states(predicted, truth, threshold: float = 0.3) -> np.ndarray:
    r"""Which trajectories end in the wrong state: :math:`\|\hat h(T) - h(T)\| > 0.3\max_t\|h(t)\|`
    (the published failure criterion, with the maximum over that trajectory). Returns a boolean array."""
    predicted, truth = _numpy(predicted), _numpy(truth)
    if predicted.shape != truth.shape or predicted.ndim != 3:
        raise ValueError(
            f"predicted and truth must have the same shape (n_trajectories, n_times, m), "
            f"got {predicted.shape} and {truth.shape}"
        )
    threshold = check_float("threshold", threshold, positive=True)
    final = np.linalg.norm(predicted[:, -1] - truth[:, -1], axis=-1)
    return final > threshold * np.linalg.norm(truth, axis=-1).max(1)


def _jacobian(field, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(f(h), J(h))`` for a batch of states, J of shape (batch, m, m); one backward pass per component."""
    with torch.enable_grad():
        x = h.detach().requires_grad_(True)
        f = field(x)
        rows = [torch.autograd.grad(f[:, i].sum(), x, retain_graph=i < f.shape[1] - 1)[0] for i in range(f.shape[1])]
    return f.detach(), torch.stack(rows, dim=1)


@dataclass
class FixedPoints:
    r"""Fixed points found by :func:`fixed_points`, one row per start: ``points`` ``(n, m)``, the residual
    :math:`\|f\|`, ``converged``, the Jacobian ``eigenvalues`` ``(n, m)`` (complex) and ``stable``
    (all real parts < 0). :meth:`unique` merges converged points closer than a tolerance."""

    points: np.ndarray
    residual: np.ndarray
    converged: np.ndarray
    eigenvalues: np.ndarray
    stable: np.ndarray

    def unique(self, tol: float = 1e-4) -> FixedPoints:
        keep: list[int] = []
        for i in np.flatnonzero(self.converged):
            scale = 1.0 + np.linalg.norm(self.points[i])
            if all(np.linalg.norm(self.points[i] - self.points[j]) > tol * scale for j in keep):
                keep.append(i)
        keep = np.asarray(keep, dtype=int)
        return FixedPoints(
            self.points[keep], self.residual[keep], self.converged[keep], self.eigenvalues[keep], self.stable[keep]
        )


def fixed_points(field, starts, *, tol: float = 1e-9, max_iter: int = 60) -> FixedPoints:
    r"""Fixed points :math:`f(h^*) = 0` by damped Newton iterations :math:`h \leftarrow h - \lambda J(h)^{-1}f(h)`
    from each row of ``starts`` (e.g. the data's end states), in float64 (a module is copied to float64),
    with the step halved until :math:`\|f\|` decreases. Converged when :math:`\|f\| \le` ``tol``
    :math:`\cdot(1 + \|h\|)`. Returns :class:`FixedPoints` with the eigenvalues of :math:`J(h^*)`."""
    check_callable("field", field)
    tol = check_float("tol", tol, positive=True)
    max_iter = check_int("max_iter", max_iter, minimum=1)
    if isinstance(field, nn.Module):
        field = copy.deepcopy(field).double()
        device = next(field.parameters()).device
    else:
        device = starts.device if isinstance(starts, torch.Tensor) else torch.device("cpu")
    h = torch.as_tensor(check_array("starts", _numpy(starts), ndim=2), dtype=torch.float64, device=device)
    for _ in range(max_iter):
        f, J = _jacobian(field, h)
        norm = f.norm(dim=-1)
        done = norm <= tol * (1 + h.norm(dim=-1))
        if done.all():
            break
        try:
            step = torch.linalg.solve(J, f.unsqueeze(-1)).squeeze(-1)
        except RuntimeError:
            step = (torch.linalg.pinv(J) @ f.unsqueeze(-1)).squeeze(-1)
        step = torch.where(done[:, None], torch.zeros_like(step), step)
        damping = torch.ones_like(norm)
        with torch.no_grad():
            for _ in range(30):
                trial = h - damping[:, None] * step
                better = field(trial).norm(dim=-1) < norm
                if (better | done).all():
                    break
                damping = torch.where(better | done, damping, 0.5 * damping)
        h = (h - damping[:, None] * step).detach()
    f, J = _jacobian(field, h)
    residual = f.norm(dim=-1)
    eigenvalues = torch.linalg.eigvals(J).cpu().numpy()
    converged = (residual <= tol * (1 + h.norm(dim=-1))).cpu().numpy()
    return FixedPoints(h.cpu().numpy(), residual.cpu().numpy(), converged, eigenvalues, (eigenvalues.real < 0).all(-1))


@dataclass
class Boundedness:
    r"""Long runs from far starts (:func:`boundedness`): for each factor in ``factors`` (rows) and each start
    (columns), the final distance from the data's centre in units of the data radius ``final_distance``,
    the largest distance reached ``max_distance``, and ``escaped`` (beyond ``escape_factor`` radii or
    non-finite). ``returned`` = final distance within ``return_factor`` data radii."""

    factors: tuple
    radius: float
    centre: np.ndarray
    final_distance: np.ndarray
    max_distance: np.ndarray
    escaped: np.ndarray
    returned: np.ndarray


def boundedness(
    field,
    states,
    factors=(2.0, 5.0),
    *,
    n_starts: int = 20,
    T: float = 50.0,
    dt: float = 0.02,
    return_factor: float = 1.0,
    escape_factor: float = 100.0,
    seed: int = 0,
) -> Boundedness:
    r"""Integrate ``field`` from ``n_starts`` points uniform on each sphere of radius ``factor`` × the data
    radius :math:`R = \max_i\|h_i - \bar h\|` around the data mean :math:`\bar h` to time ``T`` (RK4, ``dt``).

    The published claim is that OnsagerNet stays bounded from such starts for any weights that satisfy
    its structure, while an unconstrained model may drift away.
    """
    check_callable("field", field)
    states = _numpy(states)
    states = check_array("states", states).reshape(-1, states.shape[-1])
    factors = tuple(check_float("factors", f, positive=True) for f in factors)
    n_starts = check_int("n_starts", n_starts, minimum=1)
    return_factor = check_float("return_factor", return_factor, positive=True)
    escape_factor = check_float("escape_factor", escape_factor, positive=True)
    centre = states.mean(0)
    radius = float(np.linalg.norm(states - centre, axis=1).max())
    rng = np.random.default_rng(check_int("seed", seed, minimum=0))
    direction = rng.standard_normal((len(factors), n_starts, states.shape[1]))
    direction /= np.linalg.norm(direction, axis=-1, keepdims=True)
    starts = centre + radius * np.asarray(factors)[:, None, None] * direction
    ref = next(field.parameters()) if isinstance(field, nn.Module) else torch.zeros(())
    h0 = torch.as_tensor(starts.reshape(-1, states.shape[1]), dtype=ref.dtype, device=ref.device)
    run = rollout(
        field,
        h0,
        T,
        dt=dt,
        save_every=max(1, int(round(0.5 / dt))),
        escape_radius=np.linalg.norm(centre) + escape_factor * radius,
    )
    distance = np.linalg.norm(_numpy(run.path) - centre, axis=-1) / radius
    shape = (len(factors), n_starts)
    escaped = _numpy(run.escaped).astype(bool).reshape(shape)
    final = distance[:, -1].reshape(shape)
    return Boundedness(
        factors, radius, centre, final, distance.max(1).reshape(shape), escaped, (final <= return_factor) & ~escaped
    )


# ----------------------------------------------------------------------------------------------------
# Reductions
# ----------------------------------------------------------------------------------------------------


class PCA:
    r"""Principal component analysis :math:`h = P^\top(x - \mu)`, :math:`x \approx \mu + P h` (numpy).

    ``fit`` computes all components by an SVD of the centred data; ``dim``
    chooses how many :meth:`encode` and :meth:`decode` use.
    """

    def __init__(self, data, dim: int):
        data = check_array("data", data, ndim=2)
        self.dim = check_int("dim", dim, minimum=1, maximum=min(data.shape))
        self.mean = data.mean(0)
        if threadpool_limits is None:
            _, singular, vt = np.linalg.svd(data - self.mean, full_matrices=False)
        else:
            with threadpool_limits(1):
                _, singular, vt = np.linalg.svd(data - self.mean, full_matrices=False)
        self.all_components = vt.T
        variances = singular**2
        self.explained_variance_ratio = variances / variances.sum()

    @property
    def components(self) -> np.ndarray:
        """:math:`P`, shape ``(d, dim)``, orthonormal columns."""
        return self.all_components[:, : self.dim]

    def captured_variance(self, dim: int | None = None) -> float:
        """Fraction of the total variance in the leading ``dim`` components."""
        dim = self.dim if dim is None else check_int("dim", dim, minimum=1, maximum=self.all_components.shape[1])
        return float(self.explained_variance_ratio[:dim].sum())

    def encode(self, x) -> np.ndarray:
        x = check_array("x", x)
        return (x - self.mean) @ self.components

    def decode(self, h) -> np.ndarray:
        h = check_array("h", h)
        if h.shape[-1] != self.dim:
            raise ValueError(f"h must have last dimension {self.dim}, got shape {h.shape}")
        return self.mean + h @ self.components.T


class Autoencoder(nn.Module):
    r"""A near-isometric autoencoder: PCA plus small nonlinear corrections.

    Encoder :math:`\varphi(x) = P^\top(x-\mu) + \epsilon(x)` and decoder
    :math:`\psi(h) = \mu + P h + \delta(h)`, with tanh MLPs :math:`\epsilon, \delta`
    that start at zero (so training starts from PCA). :func:`train_autoencoder`
    minimises the reconstruction error plus ``isometry`` times the mismatch
    between distances in :math:`x` and in :math:`h`.
    """

    def __init__(self, pca: PCA, width: int = 32, *, seed: int | None = None):
        super().__init__()
        if not isinstance(pca, PCA):
            raise TypeError(f"pca must be a PCA, got {type(pca).__name__}")
        width = check_int("width", width, minimum=1)
        if seed is not None:
            seed = check_int("seed", seed, minimum=0)
        d, m = pca.components.shape
        self.dim = m
        self.register_buffer("mean", torch.tensor(pca.mean, dtype=torch.float32))
        self.register_buffer("P", torch.tensor(pca.components, dtype=torch.float32))
        # one tanh layer each (numerics.mlp); the decoder's seed is offset so that the two nets differ
        self.encoder_correction = mlp(d, width, 1, m, "tanh", seed=seed)
        self.decoder_correction = mlp(m, width, 1, d, "tanh", seed=None if seed is None else seed + 1)
        for net in (self.encoder_correction, self.decoder_correction):
            nn.init.zeros_(net[-1].weight)
            nn.init.zeros_(net[-1].bias)

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        centred = x - self.mean
        return centred @ self.P + self.encoder_correction(centred)

    def decode(self, h: torch.Tensor) -> torch.Tensor:
        return self.mean + h @ self.P.T + self.decoder_correction(h)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))


@dataclass
class AutoencoderFit:
    """What :func:`train_autoencoder` returns: the trained ``model`` and ``history`` (``"step"``, ``"loss"``),
    and the ``final_loss`` (the last minibatch loss)."""

    model: Autoencoder
    history: dict
    final_loss: float


def train_autoencoder(
    model: Autoencoder,
    data,
    *,
    steps: int = 500,
    lr: float = 3e-3,
    isometry: float = 1.0,
    batch_size: int = 256,
    seed: int = 0,
) -> AutoencoderFit:
    r"""Minimise the reconstruction error plus ``isometry`` (:math:`\lambda`) times the distance mismatch,

    .. math:: \mathbb{E}\|x - \psi(\varphi(x))\|^2
              + \lambda\,\mathbb{E}\big(\|\varphi(x)-\varphi(x')\| - \|x - x'\|\big)^2 .

    Pairs :math:`(x, x')` are a minibatch and its shuffled copy; ``seed`` draws the minibatches. Runs on the
    device of ``model`` (move it first with ``model.to(device)``). Returns :class:`AutoencoderFit`.
    """
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model must be an Autoencoder, got {type(model).__name__}")
    device = device_of(model)
    data = torch.as_tensor(check_array("data", data, ndim=2), dtype=torch.float32, device=device)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    isometry = check_float("isometry", isometry, nonnegative=True)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    gen = generator(check_int("seed", seed, minimum=0))
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = {"step": [], "loss": []}
    for step in range(steps):
        batch = data[torch.randint(data.shape[0], (batch_size,), generator=gen).to(device)]
        h = model.encode(batch)
        reconstruction = ((model.decode(h) - batch) ** 2).sum(-1).mean()
        partner = torch.roll(torch.arange(batch_size, device=device), 1)
        distance_x = (batch - batch[partner]).norm(dim=-1)
        distance_h = (h - h[partner]).norm(dim=-1)
        loss = reconstruction + isometry * ((distance_h - distance_x) ** 2).mean()
        raise_if_nonfinite(loss.detach(), step)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        history["step"].append(step + 1)
        history["loss"].append(float(loss.detach()))
    return AutoencoderFit(model, history, history["loss"][-1])
