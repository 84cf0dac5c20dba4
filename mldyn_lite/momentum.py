r"""Momentum SGD as a stochastic differential equation: its SME, controlled momentum, linear scaling.

**Heavy ball.** Momentum SGD with learning rate :math:`\eta` and momentum :math:`\mu`,
:math:`v_{k+1} = \mu v_k - \eta\nabla f_{\gamma_k}(x_k)`, :math:`x_{k+1} = x_k + v_{k+1}`, is written with
the step :math:`h = \sqrt\eta`, the velocity :math:`V = v/h` and the friction :math:`\lambda = (1-\mu)/h`:

.. math:: V_{k+1} = V_k - h\big(\lambda V_k + \nabla f_{\gamma_k}(x_k)\big), \qquad x_{k+1} = x_k + hV_{k+1}.

Matching one-step moments to first order in :math:`h` gives the stochastic modified equation (SME) of
momentum SGD (Li, Tai & E, ICML 2017; JMLR 20(40), 2019, where momentum SGD and Nesterov's method are
treated), a damped Langevin equation in the time :math:`t = kh`:

.. math:: dX_t = V_t\,dt, \qquad dV_t = -\big(\lambda V_t + \nabla f(X_t)\big)dt + \sqrt h\,\Sigma(X_t)^{1/2}dW_t,

with :math:`\Sigma` the gradient-noise covariance; the weak error is :math:`O(h)` on a fixed horizon.
Nesterov's method evaluates the gradient at :math:`x_k + h\mu V_k` and has the same first-order SME.

This module holds

* exact first and second moments of both recursions and of the SME on a quadratic with additive noise
  (:func:`momentum_moments`, :func:`momentum_sme_moments`);
* controlled momentum on the quadratic model: the moment equations of the SME with a friction schedule
  :math:`\lambda(t)`, their exact propagation (:func:`schedule_loss`), the optimal schedule by
  gradient descent on the Pontryagin-adjoint gradient (:func:`oracle_schedule`) and a brute-force search
  over piecewise-constant schedules (:func:`brute_force_schedule`);
* batched softmax regression trained by momentum SGD, with constant momentum or the practical
  controller (:class:`CriticalMomentum`), for the digits experiments (:func:`train_softmax`).
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np
import torch

from ._checks import check_array, check_choice, check_float, check_int, check_tensor
from .numerics import device_of, generator
from .training import raise_if_nonfinite

__all__ = [
    "CriticalMomentum",
    "MomentumQuadratic",
    "ScheduleSearch",
    "SoftmaxRun",
    "brute_force_schedule",
    "momentum_moments",
    "momentum_sme_moments",
    "momentum_transition",
    "oracle_schedule",
    "schedule_loss",
    "softmax_loss",
    "train_softmax",
]


# --------------------------------------------------------------------------- the quadratic model


@dataclass(frozen=True)
class MomentumQuadratic:
    r"""The quadratic :math:`f = \frac a2 x^2` with gradient noise :math:`\nabla f_\gamma = ax + \sigma\xi`,
    :math:`\xi\sim N(0,1)`, started at
    :math:`(x_0, V_0)`; ``friction`` is :math:`\lambda` (the momentum is :math:`\mu = 1 - \lambda h`)."""

    a: float = 1.0
    sigma: float = 1.0
    friction: float = 2.0
    x0: float = 3.0
    v0: float = 0.0

    def __post_init__(self):
        check_float("a", self.a, positive=True)
        check_float("sigma", self.sigma, nonnegative=True)
        check_float("friction", self.friction, nonnegative=True)
        check_float("x0", self.x0)
        check_float("v0", self.v0)


def momentum_transition(problem: MomentumQuadratic, h: float, method: str = "heavy_ball"):
    r"""The linear recursion :math:`z_{k+1} = Mz_k + b\xi_k` of :math:`z = (x, V)` for ``method`` ``"heavy_ball"``
    (gradient at :math:`x_k`) or ``"nesterov"`` (gradient at :math:`x_k + h\mu V_k`) on ``problem``;
    returns ``(M, b)`` of shapes ``(2, 2)`` and ``(2,)``."""
    h = check_float("h", h, positive=True)
    method = check_choice("method", method, {"heavy_ball", "nesterov"})
    a, mu = problem.a, 1.0 - problem.friction * h
    if method == "heavy_ball":  # V' = mu V - h (a x + sigma xi)
        velocity = np.array([-h * a, mu])
    else:  # the gradient at x + h mu V
        velocity = np.array([-h * a, mu - h * a * h * mu])
    M = np.stack([np.array([1.0, 0.0]) + h * velocity, velocity])
    return M, np.array([-h * h * problem.sigma, -h * problem.sigma])


def momentum_moments(problem: MomentumQuadratic, h: float, T: float, method: str = "heavy_ball"):
    r"""Exact mean ``(2,)`` and covariance ``(2, 2)`` of :math:`(x_k, V_k)`, :math:`k = T/h`, for ``method``
    ``"heavy_ball"`` or ``"nesterov"`` on ``problem``: with :func:`momentum_transition`,
    :math:`m_{k+1} = Mm_k` and :math:`C_{k+1} = MC_kM^\top + bb^\top`."""
    T = check_float("T", T, positive=True)
    M, b = momentum_transition(problem, h, method)
    mean, cov = np.array([problem.x0, problem.v0]), np.zeros((2, 2))
    for _ in range(round(T / h)):
        mean, cov = M @ mean, M @ cov @ M.T + np.outer(b, b)
    return mean, cov


def momentum_sme_moments(problem: MomentumQuadratic, h: float, T: float):
    r"""Exact mean and covariance of the SME at ``T``:
    :math:`dX = V dt`, :math:`dV = -(\lambda V + aX)dt + \sqrt h\sigma dW` (an Ornstein–Uhlenbeck process)."""
    from .sme import ou_moments

    h = check_float("h", h, positive=True)
    T = check_float("T", T, positive=True)
    A = np.array([[0.0, -1.0], [problem.a, problem.friction]])
    Q = np.diag([0.0, h * problem.sigma**2])
    return ou_moments(A, Q, np.array([problem.x0, problem.v0]), T)


# --------------------------------------------------------------------------- controlled momentum


def _generators(a, sigma, h, frictions):
    r"""Generators of the moment ODE of :math:`(E X^2, E XV, E V^2, 1)` for each friction (shape ``(..., 4, 4)``)."""
    lam = torch.as_tensor(frictions, dtype=torch.float64)
    G = torch.zeros(lam.shape + (4, 4), dtype=torch.float64)
    G[..., 0, 1] = 2.0
    G[..., 1, 0], G[..., 1, 1], G[..., 1, 2] = -a, -lam, 1.0
    G[..., 2, 1], G[..., 2, 2], G[..., 2, 3] = -2.0 * a, -2.0 * lam, h * sigma**2
    return G


def _start_moments(problem):
    return torch.tensor([problem.x0**2, problem.x0 * problem.v0, problem.v0**2, 1.0], dtype=torch.float64)


def schedule_loss(problem: MomentumQuadratic, h: float, T: float, frictions) -> torch.Tensor:
    r""":math:`\mathbb E f(X_T) = \frac a2\mathbb E X_T^2` of the SME under a piecewise-constant friction schedule.

    ``frictions`` has shape ``(pieces,)`` or ``(R, pieces)`` (``R`` schedules at once); piece :math:`j`
    holds :math:`\lambda` on :math:`[jT/n, (j+1)T/n)`. The second moments obey the linear ODE
    :math:`\tfrac{d}{dt}EX^2 = 2EXV`, :math:`\tfrac{d}{dt}EXV = EV^2 - aEX^2 - \lambda EXV`,
    :math:`\tfrac{d}{dt}EV^2 = -2aEXV - 2\lambda EV^2 + h\sigma^2`, propagated exactly with matrix exponentials.
    Differentiable in ``frictions``.
    """
    h = check_float("h", h, positive=True)
    T = check_float("T", T, positive=True)
    lam = torch.as_tensor(frictions, dtype=torch.float64)
    if lam.ndim not in (1, 2) or lam.shape[-1] < 1:
        raise ValueError(f"frictions must have shape (pieces,) or (R, pieces), got {tuple(lam.shape)}")
    single = lam.ndim == 1
    lam = lam.reshape(-1, lam.shape[-1])
    steps = torch.linalg.matrix_exp(_generators(problem.a, problem.sigma, h, lam) * (T / lam.shape[-1]))
    m = _start_moments(problem).expand(lam.shape[0], 4).unsqueeze(-1)
    for j in range(lam.shape[-1]):
        m = steps[:, j] @ m
    loss = 0.5 * problem.a * m[:, 0, 0]
    return loss[0] if single else loss


@dataclass
class ScheduleSearch:
    """Result of a schedule optimisation: the best ``frictions`` (shape ``(pieces,)``),
    its ``loss`` and the number of schedules ``evaluated``."""

    frictions: np.ndarray
    loss: float
    evaluated: int


def oracle_schedule(
    problem: MomentumQuadratic,
    h: float,
    T: float,
    pieces: int = 20,
    *,
    iterations: int = 60,
    friction_max: float | None = None,
) -> ScheduleSearch:
    r"""The optimal friction schedule of the SME on the quadratic model: minimise :func:`schedule_loss` over
    :math:`\lambda_j\in[0, \lambda_{\max}]` (default :math:`\lambda_{\max} = 1/h`, i.e. momentum :math:`\mu\ge 0`).

    The gradient of the final loss with respect to :math:`\lambda_j` is the Pontryagin switching function
    :math:`p_{j+1}^\top(\partial E_j/\partial\lambda_j)m_j` (moments :math:`m` swept forward, adjoint :math:`p`
    backward, :math:`E_j` the exact propagator of piece :math:`j`); L-BFGS-B keeps the bounds.
    """
    from scipy.optimize import minimize

    pieces = check_int("pieces", pieces, minimum=1)
    iterations = check_int("iterations", iterations, minimum=1)
    lam_max = 1.0 / h if friction_max is None else check_float("friction_max", friction_max, positive=True)
    tau = T / pieces
    dG = _generators(problem.a, problem.sigma, h, 1.0) - _generators(problem.a, problem.sigma, h, 0.0)
    m0 = _start_moments(problem).numpy()
    calls = [0]

    def objective(lam):
        # forward sweep of the moments, backward sweep of the adjoint p, gradient p_{j+1}^T (dE_j/dlam_j) m_j;
        # exp([[G, dG], [0, G]] tau) holds the propagator E_j and its derivative in one matrix exponential
        calls[0] += 1
        G = _generators(problem.a, problem.sigma, h, lam)
        block = torch.zeros(pieces, 8, 8, dtype=torch.float64)
        block[:, :4, :4], block[:, 4:, 4:], block[:, :4, 4:] = G, G, dG
        big = torch.linalg.matrix_exp(block * tau).numpy()
        pairs = [(big[j, :4, :4], big[j, :4, 4:]) for j in range(pieces)]
        ms = [m0]
        for E, _ in pairs:
            ms.append(E @ ms[-1])
        p = np.array([0.5 * problem.a, 0.0, 0.0, 0.0])
        grad = np.zeros(pieces)
        for j in reversed(range(pieces)):
            grad[j] = p @ pairs[j][1] @ ms[j]
            p = pairs[j][0].T @ p
        return 0.5 * problem.a * ms[-1][0], grad

    start = np.full(pieces, min(2.0 * np.sqrt(problem.a), lam_max))  # critical damping
    result = minimize(
        objective, start, jac=True, method="L-BFGS-B", bounds=[(0.0, lam_max)] * pieces, options={"maxiter": iterations}
    )
    return ScheduleSearch(result.x, float(result.fun), calls[0])


def brute_force_schedule(problem: MomentumQuadratic, h: float, T: float, levels, pieces: int = 4) -> ScheduleSearch:
    r"""Try every piecewise-constant schedule with ``pieces`` pieces and values in ``levels``; return the best."""
    levels = check_array("levels", np.asarray(levels, dtype=float), ndim=1)
    pieces = check_int("pieces", pieces, minimum=1)
    if np.any(levels < 0):
        raise ValueError("levels must be >= 0 (a friction)")
    combos = np.array(list(itertools.product(levels, repeat=pieces)))
    with torch.no_grad():
        losses = schedule_loss(problem, h, T, torch.as_tensor(combos)).numpy()
    best = int(np.argmin(losses))
    return ScheduleSearch(combos[best], float(losses[best]), len(combos))


# --------------------------------------------------------------------------- softmax regression


def softmax_loss(W: torch.Tensor, X: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    r"""Mean cross-entropy of softmax regression, one value per run.

    ``W`` has shape ``(R, d+1, c)`` (the last row is the bias), ``X`` ``(R, B, d)`` or ``(n, d)``."""
    W = check_tensor("W", W, ndim=3)
    logits = X @ W[:, :-1] + W[:, -1:]
    logits = logits.reshape(W.shape[0], -1, W.shape[-1])
    labels = y.expand(W.shape[0], -1) if y.ndim == 1 else y
    return torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels, reduction="none").mean(dim=1)


class CriticalMomentum:
    r"""A practical controlled momentum: per coordinate, critical damping of the local quadratic model.

    Each coordinate is modelled as :math:`f_i\approx\frac{a_i}2(x_i-b_i)^2`; :math:`a_i` is the slope of the
    regression of the sampled gradient on the iterate (running, exponentially weighted moments with rate
    ``rate``). The friction that makes the SME decay fastest is :math:`\lambda_i = 2\sqrt{a_i}` (critical
    damping), i.e. momentum :math:`\mu_i = 1 - 2\sqrt{\eta a_i}`, clipped to ``[0, mu_max]``. The oracle of
    the quadratic model adds a second phase: more friction (less momentum) once the noise floor is reached;
    ``anneal`` (a time in steps) lowers ``mu_max`` linearly to 0 over the run when given.
    Call as ``controller(k, params, grad) -> mu`` (shape of ``params``).
    """

    def __init__(self, lr: float, *, mu_max: float = 0.99, rate: float = 0.05, warmup: int = 20, anneal: int | None = None):
        self.lr = check_float("lr", lr, positive=True)
        self.mu_max = check_float("mu_max", mu_max, nonnegative=True)
        if self.mu_max >= 1:
            raise ValueError(f"mu_max must be < 1, got {mu_max}")
        self.rate = check_float("rate", rate, positive=True)
        self.warmup = check_int("warmup", warmup, minimum=1)
        self.anneal = None if anneal is None else check_int("anneal", anneal, minimum=1)
        self.history: list[float] = []
        self._state: dict | None = None

    def __call__(self, k: int, params: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
        if self._state is None:
            z = torch.zeros_like(params)
            self._state = {"x": params.clone(), "g": grad.clone(), "vx": z.clone(), "cxg": z.clone()}
        s, r = self._state, self.rate
        dx, dg = params - s["x"], grad - s["g"]
        s["x"] += r * dx
        s["g"] += r * dg
        s["vx"] = (1 - r) * (s["vx"] + r * dx * dx)
        s["cxg"] = (1 - r) * (s["cxg"] + r * dx * dg)
        ceiling = self.mu_max if self.anneal is None else self.mu_max * max(0.0, 1.0 - k / self.anneal)
        if k < self.warmup:
            mu = torch.full_like(params, ceiling)
        else:
            curvature = (s["cxg"] / s["vx"].clamp_min(1e-12)).clamp_min(0.0)
            mu = (1.0 - 2.0 * torch.sqrt(self.lr * curvature)).clamp(0.0, ceiling)
        self.history.append(float(mu.mean()))
        return mu


@dataclass
class SoftmaxRun:
    """Result of :func:`train_softmax`: final weights ``W`` ``(R, d+1, c)`` and ``history`` (``"step"``,
    ``"time"`` = step × lr, ``"loss"`` = full-batch loss per run, shape ``(R,)`` per entry)."""

    W: torch.Tensor
    history: dict = field(default_factory=dict)

    @property
    def final_loss(self) -> np.ndarray:
        return np.asarray(self.history["loss"][-1])


def train_softmax(
    X,
    y,
    *,
    lr: float,
    batch_size: int,
    steps: int,
    momentum=0.0,
    runs: int = 1,
    seed: int = 0,
    log_every: int = 10,
    classes: int | None = None,
) -> SoftmaxRun:
    r"""``runs`` independent momentum-SGD runs of softmax regression at once (weights start at 0).

    :math:`v_{k+1} = \mu v_k - \eta g_k`, :math:`W_{k+1} = W_k + v_{k+1}` with :math:`g_k` the gradient on
    ``batch_size`` samples drawn with replacement, independently per run. ``momentum`` is a float, a
    tensor of shape ``(runs,)`` (one constant per run) or a controller ``momentum(k, W, g) -> mu``.
    The device is that of ``X``; the full-batch loss is logged every ``log_every`` steps.
    """
    X = check_tensor("X", X, ndim=2)
    if not isinstance(y, torch.Tensor) or y.ndim != 1 or y.dtype != torch.int64 or y.shape[0] != X.shape[0]:
        raise TypeError(f"y must be an int64 tensor of labels with shape ({X.shape[0]},)")
    lr = check_float("lr", lr, positive=True)
    batch_size = check_int("batch_size", batch_size, minimum=1)
    steps = check_int("steps", steps, minimum=1)
    runs = check_int("runs", runs, minimum=1)
    log_every = check_int("log_every", log_every, minimum=1)
    device = device_of(X)
    n, d = X.shape
    c = int(y.max()) + 1 if classes is None else check_int("classes", classes, minimum=2)
    gen = generator(seed, device)
    W = torch.zeros(runs, d + 1, c, dtype=X.dtype, device=device)
    v = torch.zeros_like(W)
    if isinstance(momentum, torch.Tensor):
        momentum = momentum.to(device, X.dtype).reshape(runs, 1, 1)
    elif not callable(momentum):
        momentum = check_float("momentum", momentum, nonnegative=True)
    history = {"step": [], "time": [], "loss": []}

    def log(k):
        with torch.no_grad():
            loss = softmax_loss(W, X, y)
        raise_if_nonfinite(loss, k, "softmax loss", "the learning rate is too large: momentum SGD diverged")
        history["step"].append(k)
        history["time"].append(k * lr)
        history["loss"].append(loss.cpu().numpy())

    log(0)
    for k in range(steps):
        idx = torch.randint(n, (runs, batch_size), generator=gen, device=device)
        Wg = W.detach().requires_grad_(True)
        grad = torch.autograd.grad(softmax_loss(Wg, X[idx], y[idx]).sum(), Wg)[0]
        mu = momentum(k, W, grad) if callable(momentum) else momentum
        v = mu * v - lr * grad
        W = W + v
        if (k + 1) % log_every == 0 or k == steps - 1:
            log(k + 1)
    return SoftmaxRun(W, history)
