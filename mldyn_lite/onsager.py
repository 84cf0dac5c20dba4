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

* :class:`OnsagerNet` (with a hand-written, differentiable :math:`\nabla V`, tested
  against autograd), its gradient-flow special case :func:`gradient_flow_model`,
  and the unstructured baseline :class:`MLPVectorField`;
* :func:`train_vector_field` — derivative matching with early stopping, stopping
  with a clear error at the first NaN/Inf;
* :func:`integrate` — fixed-step RK4 for learned fields, with escape detection;
* Lorenz '63 data (:func:`lorenz63`, :func:`lorenz63_data`);
* :class:`PCA` and the near-isometric :class:`Autoencoder` reductions.

The Rayleigh–Bénard solver lives in :mod:`mldyn_lite.boussinesq`.
"""

from __future__ import annotations

import copy
import math

import numpy as np
import torch
from scipy.integrate import solve_ivp
from torch import nn

from ._checks import check_array, check_callable, check_choice, check_float, check_int, check_tensor
from .runtime import get_device
from .training import raise_if_nonfinite

try:  # numpy's BLAS threads spin on 2 busy cores; keep LAPACK calls on one thread when we can
    from threadpoolctl import threadpool_limits
except ImportError:  # pragma: no cover
    threadpool_limits = None

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


def lorenz63_data(n_trajectories: int = 100, t_final: float = 3.0, n_snapshots: int = 100, r: float = 28.0,
                  sigma: float = 10.0, b: float = 8.0 / 3.0, seed: int = 0, box=LORENZ_BOX,
                  rtol: float = 1e-10, atol: float = 1e-10):
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
    sol = solve_ivp(lambda _t, y: lorenz63(y.reshape(-1, 3), sigma, b, r).ravel(), (0.0, t_final), x0.ravel(),
                    t_eval=t, method="DOP853", rtol=rtol, atol=atol)
    if not sol.success:
        raise RuntimeError(f"solve_ivp failed: {sol.message}")
    states = sol.y.reshape(n_trajectories, 3, n_snapshots).transpose(0, 2, 1)
    return t, states, lorenz63(states, sigma, b, r)


# ----------------------------------------------------------------------------------------------------
# Models
# ----------------------------------------------------------------------------------------------------

class OnsagerNet(nn.Module):
    r"""The vector field :math:`f(h) = -[M(h) + W(h)]\nabla V(h) + g(h)` (see the module docstring).

    One tanh layer :math:`s(h) = \tanh(Ah + a)` feeds two linear heads: the
    potential features :math:`\phi(h) = Cs + c_0` and the :math:`m^2` entries of
    a matrix :math:`R(h)` whose lower triangle (with diagonal) is :math:`L` and
    whose strict upper triangle is :math:`U`.

    Parameters
    ----------
    dim
        :math:`m`, the dimension of the reduced state.
    hidden
        Width of the tanh feature layer.
    n_potential
        Number of potential features :math:`\phi_k`; default ``hidden``.
    alpha, beta
        The :math:`\alpha I` in :math:`M` and the :math:`\beta\|h\|^2` in :math:`V`.
    conservative
        Include :math:`W = U - U^\top` (``False``: :math:`W = 0`).
    force
        ``"stable"`` (default): :math:`g(h) = Gh + c` with :math:`G = K - K^\top - NN^\top`,
        whose symmetric part is negative semidefinite — then every trajectory
        is bounded, for any weights (see :meth:`bounded_by_construction`);
        ``"linear"``: a free :math:`G` (the published choice, no such guarantee);
        ``"none"``: :math:`g = 0`.
    autograd_gradient
        Compute :math:`\nabla V` with a second autograd pass instead of the
        hand-written formula (same values, higher cost; for testing).
    """

    FORCES = ("stable", "linear", "none")

    def __init__(self, dim: int, hidden: int = 24, n_potential: int | None = None, alpha: float = 0.1,
                 beta: float = 0.1, conservative: bool = True, force: str = "stable",
                 autograd_gradient: bool = False):
        super().__init__()
        self.dim = check_int("dim", dim, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        self.n_potential = hidden if n_potential is None else check_int("n_potential", n_potential, minimum=1)
        self.alpha = check_float("alpha", alpha, nonnegative=True)
        self.beta = check_float("beta", beta, nonnegative=True)
        self.conservative = bool(conservative)
        self.force_kind = check_choice("force", force, self.FORCES)
        self.autograd_gradient = bool(autograd_gradient)
        self.features = nn.Linear(dim, hidden)
        self.heads = nn.Linear(hidden, self.n_potential + dim * dim)
        self.register_buffer("lower_mask", torch.tril(torch.ones(dim, dim)))
        self.register_buffer("upper_mask", torch.triu(torch.ones(dim, dim), diagonal=1))
        with torch.no_grad():  # start close to a weakly damped system: small L and U
            self.heads.weight[self.n_potential:].mul_(0.1)
            self.heads.bias[self.n_potential:].zero_()
        if self.force_kind != "none":
            self.force_matrix = nn.Parameter(0.1 * torch.randn(dim, dim) / math.sqrt(dim))
            self.force_damping = nn.Parameter(0.1 * torch.randn(dim, dim) / math.sqrt(dim)) \
                if self.force_kind == "stable" else None
            self.force_bias = nn.Parameter(torch.zeros(dim))

    # --- the ingredients -------------------------------------------------------------------------
    def _split_heads(self, s: torch.Tensor):
        out = self.heads(s)
        return out[:, : self.n_potential], out[:, self.n_potential:].reshape(-1, self.dim, self.dim)

    def potential(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`V(h) = \sum_k \phi_k(h)^2 + \beta\|h\|^2`, shape ``(batch,)``."""
        phi, _ = self._split_heads(torch.tanh(self.features(h)))
        return (phi**2).sum(-1) + self.beta * (h**2).sum(-1)

    def grad_potential(self, h: torch.Tensor) -> torch.Tensor:
        r""":math:`\nabla V(h) = 2A^\top\big[(1 - s^2)\odot C^\top\phi\big] + 2\beta h`, differentiable in the weights."""
        s = torch.tanh(self.features(h))
        return self._grad_potential(h, s, self._split_heads(s)[0])

    def _grad_potential(self, h, s, phi):
        if self.autograd_gradient:
            with torch.enable_grad():
                h_ = h if h.requires_grad else h.detach().requires_grad_(True)
                V = self.potential(h_).sum()
                return torch.autograd.grad(V, h_, create_graph=True)[0]
        back = (phi @ self.heads.weight[: self.n_potential]) * (1 - s * s)
        return torch.addmm(h, back, self.features.weight, beta=2 * self.beta, alpha=2.0)

    def matrices(self, h: torch.Tensor):
        r"""``(M, W)`` at ``h``, each ``(batch, m, m)``: :math:`M = LL^\top + \alpha I`, :math:`W = U - U^\top`."""
        _, R = self._split_heads(torch.tanh(self.features(h)))
        L = R * self.lower_mask
        M = L @ L.transpose(1, 2) + self.alpha * torch.eye(self.dim, dtype=h.dtype, device=h.device)
        U = R * self.upper_mask if self.conservative else torch.zeros_like(R)
        return M, U - U.transpose(1, 2)

    def force_operator(self) -> torch.Tensor | None:
        """The matrix :math:`G` of :math:`g(h) = Gh + c` (``None`` if ``force="none"``)."""
        if self.force_kind == "none":
            return None
        G = self.force_matrix
        if self.force_kind == "stable":
            G = G - G.T - self.force_damping @ self.force_damping.T
        return G

    def force(self, h: torch.Tensor) -> torch.Tensor:
        """:math:`g(h) = Gh + c` (zero if ``force="none"``)."""
        G = self.force_operator()
        return torch.zeros_like(h) if G is None else torch.addmm(self.force_bias, h, G.T)

    def bounded_by_construction(self) -> bool:
        r"""Whether the sufficient condition for bounded trajectories holds.

        Outside a large ball :math:`\nabla V = 2\beta h + O(1)` (the features
        saturate), so :math:`\dot V \le -4\alpha\beta^2\|h\|^2 + 2\beta\,h^\top G h + O(\|h\|)`:
        :math:`V` decreases far out if :math:`\lambda_{\max}(\tfrac12(G+G^\top)) < 2\alpha\beta`,
        and :math:`V \ge \beta\|h\|^2` then traps every trajectory in a bounded set.
        """
        G = self.force_operator()
        if G is None:
            return self.alpha * self.beta > 0
        top = torch.linalg.eigvalsh(0.5 * (G + G.T)).max().item()
        return top < 2 * self.alpha * self.beta

    # --- the vector field ---------------------------------------------------------------------------
    def forward(self, h: torch.Tensor) -> torch.Tensor:
        s = torch.tanh(self.features(h))
        phi, R = self._split_heads(s)
        grad_V = self._grad_potential(h, s, phi)
        L = R * self.lower_mask
        # (L L^T + U - U^T) as one matrix, then one batched product with grad V
        mobility = L @ L.transpose(1, 2)
        if self.conservative:
            U = R * self.upper_mask
            mobility = mobility + U - U.transpose(1, 2)
        g = grad_V.unsqueeze(-1)
        flux = torch.baddbmm(g, mobility, g, beta=self.alpha).squeeze(-1)   # alpha grad V + mobility grad V
        if self.force_kind == "none":
            return -flux
        return self.force(h) - flux


def gradient_flow_model(dim: int, hidden: int = 24, **kwargs) -> OnsagerNet:
    r"""The structured but restrictive baseline :math:`\dot h = -M(h)\nabla V(h)`: OnsagerNet with :math:`W = 0, g = 0`.

    Along its trajectories :math:`\dot V \le -\alpha\|\nabla V\|^2`, so every
    trajectory runs downhill to a critical point of :math:`V`: it can neither
    oscillate nor be chaotic.
    """
    return OnsagerNet(dim, hidden, conservative=False, force="none", **kwargs)


class MLPVectorField(nn.Module):
    r"""The unstructured baseline :math:`f(h) = \mathrm{MLP}(h)` (tanh hidden layers, linear output)."""

    def __init__(self, dim: int, hidden: int = 32, depth: int = 2):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        hidden = check_int("hidden", hidden, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        layers, width = [], dim
        for _ in range(depth):
            layers += [nn.Linear(width, hidden), nn.Tanh()]
            width = hidden
        layers.append(nn.Linear(width, dim))
        self.net = nn.Sequential(*layers)
        self.dim = dim

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.net(h)


def count_parameters(model: nn.Module) -> int:
    """Number of trainable parameters."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


# ----------------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------------

def relative_derivative_error(model: nn.Module, states: torch.Tensor, derivatives: torch.Tensor) -> torch.Tensor:
    r"""The loss :math:`\sum_i\|f(h_i) - \dot h_i\|^2 / \sum_i\|\dot h_i\|^2` (a scalar tensor)."""
    return ((model(states) - derivatives) ** 2).sum() / (derivatives**2).sum()


def train_vector_field(model: nn.Module, states, derivatives, *, steps: int = 2000, lr: float = 1e-2,
                       batch_size: int = 1024, validation_fraction: float = 0.2, patience: int = 400,
                       eval_every: int = 50, clip: float = 1.0, weight_decay: float = 0.0, seed: int = 0,
                       device=None) -> dict:
    r"""Fit ``model`` to derivative data :math:`(h_i, \dot h_i)` by minimising :func:`relative_derivative_error`.

    AdamW on minibatches with a cosine learning-rate decay and gradient
    clipping; a random ``validation_fraction`` of the points is held out and
    the weights with the best validation error are restored at the end
    (early stopping after ``patience`` steps without improvement). A NaN/Inf
    loss or gradient stops training with
    :class:`~mldyn_lite.training.TrainingDivergedError` naming the step.

    Returns a dict with ``train`` and ``validation`` error histories (every
    ``eval_every`` steps), ``steps`` at which they were taken, ``best_validation``
    and ``best_step``.
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = get_device(device)
    dtype = next(model.parameters()).dtype
    states = torch.as_tensor(check_array("states", states), dtype=dtype)
    derivatives = torch.as_tensor(check_array("derivatives", derivatives), dtype=dtype)
    states = states.reshape(-1, states.shape[-1])
    derivatives = derivatives.reshape(-1, derivatives.shape[-1])
    if states.shape != derivatives.shape or states.shape[1] != model.dim:
        raise ValueError(f"states and derivatives must both have shape (..., {model.dim}), "
                         f"got {tuple(states.shape)} and {tuple(derivatives.shape)}")
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    validation_fraction = check_float("validation_fraction", validation_fraction, minimum=0.0, maximum=0.9)
    patience = check_int("patience", patience, minimum=1)
    eval_every = check_int("eval_every", eval_every, minimum=1)
    clip = check_float("clip", clip, positive=True)
    weight_decay = check_float("weight_decay", weight_decay, nonnegative=True)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))

    order = torch.randperm(states.shape[0], generator=gen)
    n_val = int(round(validation_fraction * states.shape[0]))
    val_idx, train_idx = order[:n_val], order[n_val:]
    model.to(device)
    x_train, y_train = states[train_idx].to(device), derivatives[train_idx].to(device)
    x_val, y_val = states[val_idx].to(device), derivatives[val_idx].to(device)
    if n_val == 0:
        x_val, y_val = x_train, y_train
    n_train = x_train.shape[0]
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=steps, eta_min=lr / 100)
    history = {"steps": [], "train": [], "validation": []}
    best = (math.inf, 0, copy.deepcopy(model.state_dict()))
    for step in range(steps):
        batch = torch.randint(n_train, (min(batch_size, n_train),), generator=gen).to(device)
        loss = relative_derivative_error(model, x_train[batch], y_train[batch])
        raise_if_nonfinite(loss.detach(), step, hint="the learning rate is too large or the data hold NaN/Inf; "
                           "try a smaller lr or rescale the states")
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
    history["best_validation"], history["best_step"] = best[0], best[1]
    return history


# ----------------------------------------------------------------------------------------------------
# Simulation
# ----------------------------------------------------------------------------------------------------

def integrate(field, h0: torch.Tensor, t_final: float, dt: float = 0.01, save_every: int = 1,
              escape_radius: float = math.inf) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Classical fixed-step RK4 for :math:`\dot h = f(h)` on a batch, without gradients.

    A trajectory whose norm exceeds ``escape_radius`` is frozen from then on
    and flagged (so a blow-up cannot produce Inf/NaN).

    Returns ``(path, escaped)``: ``path`` of shape ``(n_saved, batch, m)``
    with the states at times ``0, save_every*dt, ...``, and the boolean
    ``escaped`` of shape ``(batch,)``.
    """
    check_callable("field", field)
    h0 = check_tensor("h0", h0, ndim=2)
    t_final = check_float("t_final", t_final, positive=True)
    dt = check_float("dt", dt, positive=True)
    save_every = check_int("save_every", save_every, minimum=1)
    escape_radius = float(escape_radius)
    n_steps = int(round(t_final / dt))
    h = h0.detach().clone()
    escaped = torch.zeros(h.shape[0], dtype=torch.bool, device=h.device)
    path = [h.clone()]
    with torch.no_grad():
        for step in range(1, n_steps + 1):
            k1 = field(h)
            if step == 1 and k1.shape != h.shape:
                raise ValueError(f"field(h) must return the shape of h, {tuple(h.shape)}, got {tuple(k1.shape)}")
            k2 = field(h + 0.5 * dt * k1)
            k3 = field(h + 0.5 * dt * k2)
            k4 = field(h + dt * k3)
            h_new = h + dt / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
            bad = ~torch.isfinite(h_new).all(-1) | (h_new.norm(dim=-1) > escape_radius)
            escaped = escaped | bad
            h = torch.where(escaped[:, None], h, h_new)
            if step % save_every == 0:
                path.append(h.clone())
    return torch.stack(path), escaped


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

    def __init__(self, pca: PCA, hidden: int = 32):
        super().__init__()
        if not isinstance(pca, PCA):
            raise TypeError(f"pca must be a PCA, got {type(pca).__name__}")
        hidden = check_int("hidden", hidden, minimum=1)
        d, m = pca.components.shape
        self.dim = m
        self.register_buffer("mean", torch.tensor(pca.mean, dtype=torch.float32))
        self.register_buffer("P", torch.tensor(pca.components, dtype=torch.float32))
        self.encoder_correction = nn.Sequential(nn.Linear(d, hidden), nn.Tanh(), nn.Linear(hidden, m))
        self.decoder_correction = nn.Sequential(nn.Linear(m, hidden), nn.Tanh(), nn.Linear(hidden, d))
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


def train_autoencoder(model: Autoencoder, data, *, steps: int = 500, lr: float = 3e-3, isometry: float = 1.0,
                      batch_size: int = 256, seed: int = 0, device=None) -> list[float]:
    r"""Minimise the reconstruction error plus ``isometry`` (:math:`\lambda`) times the distance mismatch,

    .. math:: \mathbb{E}\|x - \psi(\varphi(x))\|^2
              + \lambda\,\mathbb{E}\big(\|\varphi(x)-\varphi(x')\| - \|x - x'\|\big)^2 .

    Pairs :math:`(x, x')` are a minibatch and its shuffled copy. Returns the loss history.
    """
    if not isinstance(model, Autoencoder):
        raise TypeError(f"model must be an Autoencoder, got {type(model).__name__}")
    device = get_device(device)
    data = torch.as_tensor(check_array("data", data, ndim=2), dtype=torch.float32, device=device)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    isometry = check_float("isometry", isometry, nonnegative=True)
    batch_size = check_int("batch_size", batch_size, minimum=2)
    gen = torch.Generator().manual_seed(check_int("seed", seed, minimum=0))
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    history = []
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
        history.append(float(loss.detach()))
    return history
