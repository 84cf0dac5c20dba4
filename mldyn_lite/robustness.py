r"""Adversarial attacks and the closed-loop control defence of Chen, Li & Zhang (ICLR 2021).

**Attacks.** For a classifier :math:`F` with loss :math:`\ell(F(x), y)`, the fast gradient sign method
(FGSM; Goodfellow, Shlens & Szegedy, 2015) takes one step to the boundary of the
:math:`\varepsilon`-ball, :math:`x' = x + \varepsilon\,\mathrm{sign}\,\nabla_x\ell` (for :math:`\ell^\infty`)
or :math:`x' = x + \varepsilon\,\nabla_x\ell / \|\nabla_x\ell\|_2` (for :math:`\ell^2`). Projected
gradient descent (PGD; Madry et al., 2018) repeats such steps of size ``step_size`` and projects back
onto the ball after each (:func:`fgsm`, :func:`pgd`). Both can be confined to a linear subspace by an
orthogonal projector :math:`\Pi` (``projector``), e.g. the directions orthogonal to the data.

**Closed-loop defence.** A trained residual network :math:`x_{t+1} = F_t(x_t)`, :math:`t = 0,\dots,T-1`,
followed by a read-out, is kept *fixed*. On clean, correctly classified training data one fits, for
every layer, a PCA embedding: the mean :math:`\mu_t` and an orthogonal projector :math:`P_t` onto the
leading principal directions that keep a fraction (99 %) of the singular-value mass
(:func:`fit_pca_embeddings`). At test time, controls :math:`u_t` (starting at 0) are found online by
minimising, for each input separately,

.. math::  \sum_{t=0}^{T} \Big(\big\|(I - P_t)(x_t + u_t - \mu_t)\big\|^2 + c\,\|u_t\|^2\Big),
           \qquad x_{t+1} = F_t(x_t + u_t),

with Adam for a fixed number of iterations; the read-out is applied to :math:`x_T + u_T`
(:func:`closed_loop_logits`). The small control cost :math:`c \ge 0` makes the minimiser unique:
with :math:`c = 0`, any shift of :math:`x_0` inside the clean subspace that later controls undo
costs nothing, and the optimiser can drift along such shifts. The control is a *feedback*: it depends on the states the input
actually produces, and it pulls each state back towards the manifold of clean states. It cannot
undo a perturbation that stays inside that manifold.
An attacker who knows the defence attacks the controlled network itself (:func:`controller_aware_pgd`:
the gradient of the controlled forward pass with the controls held fixed, the backward-pass approximation of
Athalye, Carlini & Wagner, ICML 2018, or through the unrolled controller).

**Adversarial training with an annealed inner solver.** Adversarial training (Madry et al., 2018) solves
:math:`\min_\theta \mathbb E \max_{\|\delta\|\le\varepsilon} \ell(F_\theta(x+\delta), y)`, the inner maximum by
:math:`K_n` PGD steps of size :math:`\alpha_n` at outer step :math:`n`, at a cost of :math:`K_n + 1` gradient
evaluations (:func:`adversarial_training`). Amata (Ye, Li, Zhou & Zhu, AAAI 2021) treats the schedule
:math:`(K_n, \alpha_n)` as a control of the training dynamics and anneals it: coarse early, accurate late
(:func:`annealed_schedule`, :func:`constant_schedule`).
A schedule :math:`u = (K_n, \alpha_n)_n` is judged by the cost of that control problem, a terminal robust
loss (:func:`robust_loss`) plus a price :math:`\lambda` on the compute :math:`\sum_n (K_n + 1)`
(:func:`schedule_cost`); :func:`adversarial_training` returns an :class:`AdversarialTrainingResult`.

**How well is the inner problem solved?** The first-order stationarity condition (FOSC; Wang et al., ICML 2019)
of the inner maximum at an attack :math:`x' = x + \delta` is

.. math::  c(x') = \max_{\|x'' - x\| \le \varepsilon} \langle x'' - x', \nabla_x \ell(x')\rangle
           = \varepsilon\,\|\nabla_x\ell(x')\|_* - \langle \delta, \nabla_x\ell(x')\rangle \;\ge 0,

(:math:`\|\cdot\|_*` the dual norm: :math:`\ell^1` for the :math:`\ell^\infty` ball, :math:`\ell^2` for the
:math:`\ell^2` ball); it vanishes exactly at the first-order stationary points of the inner problem (:func:`fosc`).
:func:`adversarial_training` records it for the training attack along the run (``criterion_every``).

**Real data.** :func:`digits_data` (scikit-learn's 8x8 handwritten digits, shipped with the package, no download)
and :func:`mlp_classifier` set up the small image problem of notebook 2.9.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from ._checks import check_choice, check_float, check_int, check_tensor
from .numerics import device_of, generator, mlp
from .training import raise_if_nonfinite

__all__ = [
    "NORMS",
    "AdversarialTrainingResult",
    "ResidualTanhClassifier",
    "accuracy",
    "adversarial_training",
    "annealed_schedule",
    "check_schedule",
    "closed_loop_logits",
    "constant_schedule",
    "controller_aware_pgd",
    "digits_data",
    "fgsm",
    "fit_pca_embeddings",
    "fosc",
    "mlp_classifier",
    "pgd",
    "robust_accuracy",
    "robust_loss",
    "schedule_cost",
]

#: Norms of the perturbation balls :func:`fgsm` and :func:`pgd` know.
NORMS = ("linf", "l2")


class ResidualTanhClassifier(nn.Module):
    r"""A residual classifier :math:`x_{t+1} = x_t + \delta\tanh(W_t x_t + b_t)`, then logits :math:`= A x_T + c`.

    The states keep the input's dimension ``dim`` (no lifting layer), so that the closed-loop controls
    :math:`u_t` of :func:`closed_loop_logits` live in the input space at every layer. ``blocks[t]`` is the map
    :math:`F_t`; :meth:`states` returns :math:`x_0, \dots, x_T`. Weights are drawn from a generator seeded by
    ``seed``; the model lives on ``device`` (default CPU). (Not to be confused with
    :class:`mldyn_lite.flows.ResNetClassifier`, a lifted flow of width ``width`` with its own read-out.)
    """

    def __init__(
        self,
        dim: int,
        depth: int,
        classes: int,
        delta: float = 0.25,
        seed: int = 0,
        dtype: torch.dtype = torch.float32,
        device=None,
    ):
        super().__init__()
        dim = check_int("dim", dim, minimum=1)
        depth = check_int("depth", depth, minimum=1)
        classes = check_int("classes", classes, minimum=2)
        self.delta = check_float("delta", delta, positive=True)
        device = torch.device("cpu") if device is None else torch.device(device)
        gen = generator(check_int("seed", seed, minimum=0))
        self.layers = nn.ModuleList()
        for _ in range(depth):
            layer = nn.utils.skip_init(nn.Linear, dim, dim, dtype=dtype)  # no global draw
            with torch.no_grad():
                layer.weight.copy_(torch.randn(dim, dim, generator=gen, dtype=dtype) / dim**0.5)
                layer.bias.zero_()
            self.layers.append(layer)
        self.head = nn.utils.skip_init(nn.Linear, dim, classes, dtype=dtype)
        with torch.no_grad():
            self.head.weight.copy_(torch.randn(classes, dim, generator=gen, dtype=dtype) / dim**0.5)
            self.head.bias.zero_()
        self.to(device)

    @property
    def blocks(self):
        """The residual maps :math:`F_t(x) = x + \\delta\\tanh(W_t x + b_t)` as a list of callables."""
        return [lambda x, layer=layer: x + self.delta * torch.tanh(layer(x)) for layer in self.layers]

    def states(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The states :math:`x_0, \\dots, x_T` of a batch ``x`` (a list of ``T + 1`` tensors)."""
        out = [x]
        for block in self.blocks:
            out.append(block(out[-1]))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.states(x)[-1])


def _check_attack_args(model, x, y, eps, norm, projector):
    if not callable(model):
        raise TypeError(f"model must be callable (a torch module), got {type(model).__name__}")
    check_tensor("x", x)
    if x.ndim < 2 or x.shape[0] == 0:
        raise ValueError(f"x must be a non-empty batch of shape (batch, ...), got shape {tuple(x.shape)}")
    if not isinstance(y, torch.Tensor) or y.shape[:1] != x.shape[:1]:
        raise ValueError(
            f"y must be a tensor with one label per sample ({x.shape[0]}), got "
            f"{tuple(y.shape) if isinstance(y, torch.Tensor) else type(y).__name__}"
        )
    eps = check_float("eps", eps, nonnegative=True)
    check_choice("norm", norm, NORMS)
    if projector is not None:
        check_tensor("projector", projector, ndim=2)
        d = x[0].numel()
        if projector.shape != (d, d):
            raise ValueError(f"projector must have shape {(d, d)} for inputs with {d} entries, got {tuple(projector.shape)}")
        if norm != "l2":
            raise ValueError(
                "a projector confines the attack to a subspace; use it with norm='l2' "
                "(the l-infinity ball is not compatible with a subspace projection)"
            )
    return eps


def _loss_gradient(model, x, y, loss_fn):
    x = x.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(x), y)
        (grad,) = torch.autograd.grad(loss, x)
    return grad


def _steepest_direction(grad, norm, projector):
    flat = grad.flatten(1)
    if projector is not None:
        flat = flat @ projector.T
    if norm == "linf":
        return flat.sign().view_as(grad)
    length = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (flat / length).view_as(grad)


def _project_ball(delta, eps, norm, projector):
    if norm == "linf":
        return delta.clamp(-eps, eps)
    flat = delta.flatten(1)
    if projector is not None:
        flat = flat @ projector.T
    length = flat.norm(dim=1, keepdim=True).clamp_min(1e-12)
    return (flat * torch.clamp(eps / length, max=1.0)).view_as(delta)


def fgsm(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    norm: str = "linf",
    loss_fn=F.cross_entropy,
    projector: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Fast gradient sign method: one step of length ``eps`` in the steepest-ascent direction of the loss.

    ``norm="linf"``: :math:`x + \varepsilon\,\mathrm{sign}\,\nabla_x\ell`; ``norm="l2"``:
    :math:`x + \varepsilon\, g/\|g\|_2` with :math:`g = \Pi\nabla_x\ell` (``projector`` :math:`\Pi`, optional,
    an orthogonal projector on the flattened input; ``l2`` only). Returns the adversarial inputs
    (detached); the model's parameters are not changed.
    """
    eps = _check_attack_args(model, x, y, eps, norm, projector)
    grad = _loss_gradient(model, x, y, loss_fn)
    return (x + eps * _steepest_direction(grad, norm, projector)).detach()


def _random_start(x: torch.Tensor, eps: float, norm: str, projector, seed: int) -> torch.Tensor:
    """PGD's random start: uniform in the l-inf ball, or a random l2 direction scaled by a uniform radius."""
    gen = generator(seed, x.device)
    if norm == "linf":
        return eps * (2 * torch.rand(x.shape, generator=gen, device=x.device, dtype=x.dtype) - 1)
    direction = _steepest_direction(torch.randn(x.shape, generator=gen, device=x.device, dtype=x.dtype), "l2", projector)
    radius = torch.rand(x.shape[0], generator=gen, device=x.device, dtype=x.dtype)
    return eps * radius.view(-1, *([1] * (x.ndim - 1))) * direction


def pgd(
    model,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    step_size: float,
    steps: int,
    *,
    norm: str = "linf",
    random_start: bool = False,
    seed: int = 0,
    loss_fn=F.cross_entropy,
    projector: torch.Tensor | None = None,
) -> torch.Tensor:
    r"""Projected gradient ascent on the loss inside the ``eps``-ball around ``x`` (Madry et al., 2018).

    ``steps`` steps :math:`\delta \leftarrow \mathrm{proj}_{B_\varepsilon}(\delta + \alpha\, d)`, with :math:`d`
    the steepest-ascent direction as in :func:`fgsm` and :math:`\alpha` = ``step_size``. With
    ``random_start`` the perturbation starts uniformly in the :math:`\ell^\infty` ball (or at a random point
    of the :math:`\ell^2` ball's surface scaled by a uniform radius), drawn from a generator seeded by ``seed``.
    Returns the adversarial inputs (detached).
    """
    eps = _check_attack_args(model, x, y, eps, norm, projector)
    step_size = check_float("step_size", step_size, positive=True)
    steps = check_int("steps", steps, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    x = x.detach()
    delta = _random_start(x, eps, norm, projector, seed) if random_start else torch.zeros_like(x)
    for _ in range(steps):
        grad = _loss_gradient(model, x + delta, y, loss_fn)
        delta = _project_ball(delta + step_size * _steepest_direction(grad, norm, projector), eps, norm, projector)
    return (x + delta).detach()


def accuracy(logits: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of rows of ``logits`` whose arg-max equals the label ``y``."""
    check_tensor("logits", logits, ndim=2)
    if y.shape != logits.shape[:1]:
        raise ValueError(f"y must hold one label per row of logits ({logits.shape[0]}), got shape {tuple(y.shape)}")
    return float((logits.argmax(dim=1) == y).float().mean())


def fit_pca_embeddings(states: list[torch.Tensor], mass: float = 0.99) -> list[tuple[torch.Tensor, torch.Tensor]]:
    r"""Per-layer linear embeddings: mean :math:`\mu_t` and orthogonal projector :math:`P_t` from PCA.

    ``states[t]`` holds the layer-:math:`t` states of clean, correctly classified samples, shape
    ``(S, d)``. :math:`P_t = V_k V_k^\top` keeps the fewest principal directions whose singular values
    sum to at least ``mass`` of the total. Returns a list of ``(mean, projector)`` pairs.
    """
    if not isinstance(states, (list, tuple)) or not states:
        raise TypeError("states must be a non-empty list of tensors of shape (S, d), one per layer")
    mass = check_float("mass", mass, positive=True, maximum=1.0)
    embeddings = []
    for t, x in enumerate(states):
        check_tensor(f"states[{t}]", x, ndim=2)
        if x.shape[0] < 2:
            raise ValueError(f"states[{t}] must hold at least 2 samples to fit a PCA, got {x.shape[0]}")
        mean = x.mean(dim=0)
        _, singular, vt = torch.linalg.svd(x - mean, full_matrices=False)
        share = torch.cumsum(singular, 0) / singular.sum()
        k = int((share < mass - 1e-12).sum()) + 1
        basis = vt[:k].T
        embeddings.append((mean, basis @ basis.T))
    return embeddings


def closed_loop_logits(
    model: ResidualTanhClassifier,
    x: torch.Tensor,
    embeddings,
    *,
    iterations: int = 100,
    lr: float = 0.05,
    control_cost: float = 0.0,
    return_controls: bool = False,
    differentiable: bool = False,
):
    r"""Logits of the fixed ``model`` with online feedback controls :math:`u_0, \dots, u_T` (Chen, Li & Zhang, 2021).

    Minimises :math:`\sum_t \|(I - P_t)(x_t + u_t - \mu_t)\|^2 + c\|u_t\|^2` (``control_cost`` :math:`c`)
    over the controls with Adam (``lr`` decayed to 0 by a cosine schedule over ``iterations`` steps,
    controls start at zero), states propagated through the controlled network,
    then returns the read-out of :math:`x_T + u_T`. The sum over the batch is separable, so every
    input gets its own controls. The model's parameters are not changed. With ``return_controls``
    returns ``(logits, controls)``.

    With ``differentiable=True`` the same Adam iteration (written out, with the same cosine step) is kept in
    the autograd graph, so the logits can be differentiated with respect to ``x`` *through* the controller's
    optimisation: what an attacker who knows the defence does (:func:`controller_aware_pgd`).
    """
    if not isinstance(model, ResidualTanhClassifier):
        raise TypeError(f"model must be a ResidualTanhClassifier, got {type(model).__name__}")
    check_tensor("x", x, ndim=2)
    if x.shape[0] == 0:
        raise ValueError("x is an empty batch; it must hold at least one sample")
    blocks = model.blocks
    if not isinstance(embeddings, (list, tuple)) or len(embeddings) != len(blocks) + 1:
        raise ValueError(
            f"embeddings must hold one (mean, projector) pair per state, {len(blocks) + 1}, "
            f"got {len(embeddings) if isinstance(embeddings, (list, tuple)) else type(embeddings).__name__}"
        )
    iterations = check_int("iterations", iterations, minimum=0)
    lr = check_float("lr", lr, positive=True)
    control_cost = check_float("control_cost", control_cost, nonnegative=True)
    complements = [
        (mean, torch.eye(proj.shape[0], dtype=proj.dtype, device=proj.device) - proj) for mean, proj in embeddings
    ]
    if differentiable:
        controls = _unrolled_controls(model, x, complements, iterations, lr, control_cost)
        logits = _controlled_forward(model, x, controls)
        return (logits, controls) if return_controls else logits
    x = x.detach()
    controls = [torch.zeros_like(x, requires_grad=True) for _ in embeddings]
    opt = torch.optim.Adam(controls, lr=lr)
    # cosine decay of the step to zero, so that Adam settles instead of jittering around the minimiser
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(iterations, 1))
    with torch.enable_grad():
        for step in range(iterations):
            state, cost = x, 0.0
            for t, (mean, complement) in enumerate(complements):
                state = state + controls[t]
                cost = cost + ((state - mean) @ complement.T).pow(2).sum() + control_cost * controls[t].pow(2).sum()
                if t < len(blocks):
                    state = blocks[t](state)
            raise_if_nonfinite(cost.detach(), step, "closed-loop control cost", "lr is probably too large")
            # gradients with respect to the controls only: the network's parameters stay untouched
            grads = torch.autograd.grad(cost, controls)
            for u, g in zip(controls, grads):
                u.grad = g
            opt.step()
            schedule.step()
    controls = [u.detach() for u in controls]
    with torch.no_grad():
        logits = _controlled_forward(model, x, controls)
    if return_controls:
        return logits, controls
    return logits


def _control_cost(model, x, controls, complements, control_cost):
    state, cost = x, 0.0
    for t, (mean, complement) in enumerate(complements):
        state = state + controls[t]
        cost = cost + ((state - mean) @ complement.T).pow(2).sum() + control_cost * controls[t].pow(2).sum()
        if t < len(complements) - 1:
            state = model.blocks[t](state)
    return cost


def _unrolled_controls(model, x, complements, iterations, lr, control_cost, betas=(0.9, 0.999), eps=1e-8):
    # torch.optim.Adam's update with CosineAnnealingLR's step, written out so that autograd sees through it
    controls = [torch.zeros_like(x) for _ in complements]
    first = [torch.zeros_like(x) for _ in complements]
    second = [torch.zeros_like(x) for _ in complements]
    with torch.enable_grad():
        controls = [u.requires_grad_(True) for u in controls]
        for step in range(iterations):
            cost = _control_cost(model, x, controls, complements, control_cost)
            raise_if_nonfinite(cost.detach(), step, "closed-loop control cost", "lr is probably too large")
            grads = torch.autograd.grad(cost, controls, create_graph=True)
            rate = lr * (1 + math.cos(math.pi * step / max(iterations, 1))) / 2
            c1, c2 = 1 - betas[0] ** (step + 1), 1 - betas[1] ** (step + 1)
            for t, g in enumerate(grads):
                first[t] = betas[0] * first[t] + (1 - betas[0]) * g
                second[t] = betas[1] * second[t] + (1 - betas[1]) * g * g
                # the tiny shift keeps the derivative of the square root finite where a gradient is exactly 0
                denom = torch.sqrt(second[t] + 1e-30) / math.sqrt(c2) + eps
                controls[t] = controls[t] - (rate / c1) * first[t] / denom
    return controls


def _controlled_forward(model, x, controls):
    state = x
    for t, block in enumerate(model.blocks):
        state = block(state + controls[t])
    return model.head(state + controls[-1])


def controller_aware_pgd(
    model: ResidualTanhClassifier,
    x: torch.Tensor,
    y: torch.Tensor,
    embeddings,
    eps: float,
    step_size: float,
    steps: int,
    *,
    norm: str = "linf",
    random_start: bool = True,
    seed: int = 0,
    iterations: int = 100,
    lr: float = 0.05,
    control_cost: float = 0.0,
    gradient: str = "bpda",
) -> torch.Tensor:
    r"""PGD against the *controlled* network: an attacker who knows the closed-loop defence.

    Each PGD step follows the gradient, with respect to the input, of the loss of the controlled network
    :func:`closed_loop_logits` (``iterations``, ``lr``, ``control_cost`` as the defender uses them):

    * ``gradient="bpda"``: the controls are recomputed for the current input and held fixed while the
      controlled forward pass :math:`x_{t+1} = F_t(x_t + u_t)` is differentiated (the backward-pass
      approximation of Athalye, Carlini & Wagner, ICML 2018); one control solve per step.
    * ``gradient="unrolled"``: differentiated *through* the controller's optimisation
      (``differentiable=True``: the Adam iterations are unrolled); about three times a solve per step.

    Ball, steps and random start as in :func:`pgd`. Returns the adversarial inputs (detached).
    """
    if not isinstance(model, ResidualTanhClassifier):
        raise TypeError(f"model must be a ResidualTanhClassifier, got {type(model).__name__}")
    eps = _check_attack_args(model, x, y, eps, norm, None)
    step_size = check_float("step_size", step_size, positive=True)
    steps = check_int("steps", steps, minimum=1)
    seed = check_int("seed", seed, minimum=0)
    check_choice("gradient", gradient, ("bpda", "unrolled"))
    x = x.detach()
    delta = _random_start(x, eps, norm, None, seed) if random_start else torch.zeros_like(x)
    options = dict(iterations=iterations, lr=lr, control_cost=control_cost)

    def controlled(inputs):
        if gradient == "unrolled":
            return closed_loop_logits(model, inputs, embeddings, differentiable=True, **options)
        _, controls = closed_loop_logits(model, inputs, embeddings, return_controls=True, **options)
        return _controlled_forward(model, inputs, controls)

    for _ in range(steps):
        grad = _loss_gradient(controlled, x + delta, y, F.cross_entropy)
        delta = _project_ball(delta + step_size * _steepest_direction(grad, norm, None), eps, norm, None)
    return (x + delta).detach()


# --------------------------------------------------------------------------------------------------------------
# Adversarial training with a schedule for the inner solver (Madry et al., 2018; Ye, Li, Zhou & Zhu, AAAI 2021)
# --------------------------------------------------------------------------------------------------------------
#
# Adversarial training solves  min_theta  E max_{||delta|| <= eps}  l(F_theta(x + delta), y).  The inner maximum is
# approximated by K_n steps of PGD with step size alpha_n at outer step n, so that step costs K_n + 1 gradient
# evaluations (K_n with respect to the input, one with respect to the parameters). A *schedule* is the list of
# pairs (K_n, alpha_n), n = 0, ..., N-1; K_n = 0 means a clean (plain) training step. Amata (Ye et al.) anneals the
# schedule: few, long PGD steps early in training, many short ones late.


def constant_schedule(steps: int, k: int, eps: float, step_factor: float = 2.5) -> list[tuple[int, float]]:
    r"""PGD-:math:`K` adversarial training for ``steps`` outer steps: :math:`(K, \alpha)` with
    :math:`\alpha =` ``step_factor`` :math:`\cdot\varepsilon/K` at every step (Madry et al.'s rule
    :math:`\alpha = 2.5\varepsilon/K`). ``k = 0`` gives plain training (:math:`\alpha` is then unused and set to 0)."""
    steps = check_int("steps", steps, minimum=1)
    k = check_int("k", k, minimum=0)
    eps = check_float("eps", eps, positive=True)
    step_factor = check_float("step_factor", step_factor, positive=True)
    return [(k, step_factor * eps / k if k else 0.0)] * steps


def annealed_schedule(steps: int, k_start: int, k_end: int, eps: float, step_factor: float = 2.5) -> list[tuple[int, float]]:
    r"""Annealed schedule (Amata): :math:`K_n` grows linearly from ``k_start`` to ``k_end`` over ``steps`` outer steps
    (rounded to integers), the step size shrinks as :math:`\alpha_n =` ``step_factor`` :math:`\cdot\varepsilon/K_n`:
    a coarse inner solver early in training, an accurate one late."""
    steps = check_int("steps", steps, minimum=1)
    k_start = check_int("k_start", k_start, minimum=1)
    k_end = check_int("k_end", k_end, minimum=k_start)
    eps = check_float("eps", eps, positive=True)
    step_factor = check_float("step_factor", step_factor, positive=True)
    schedule = []
    for n in range(steps):
        fraction = n / (steps - 1) if steps > 1 else 1.0
        k = int(round(k_start + fraction * (k_end - k_start)))
        schedule.append((k, step_factor * eps / k))
    return schedule


def check_schedule(schedule) -> list[tuple[int, float]]:
    """Validate a schedule: a non-empty list of ``(K, step_size)`` with integer ``K >= 0`` and ``step_size > 0``
    whenever ``K > 0``. Returns it as a list of ``(int, float)``."""
    if not isinstance(schedule, (list, tuple)) or not schedule:
        raise TypeError(
            f"schedule must be a non-empty list of (K, step_size) pairs, got {type(schedule).__name__} {schedule!r}"[:200]
        )
    checked = []
    for n, pair in enumerate(schedule):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            raise TypeError(f"schedule[{n}] must be a pair (K, step_size), got {pair!r}")
        k = check_int(f"schedule[{n}] K (PGD steps)", pair[0], minimum=0)
        step = check_float(f"schedule[{n}] step_size", pair[1], nonnegative=True)
        if k > 0 and step <= 0:
            raise ValueError(f"schedule[{n}] step_size must be > 0 when K = {k} > 0, got {step}")
        checked.append((k, step))
    return checked


def schedule_cost(schedule) -> int:
    """Gradient evaluations a schedule costs: :math:`\\sum_n (K_n + 1)`."""
    return sum(k + 1 for k, _ in check_schedule(schedule))


def _check_eps_in_data_range(eps, x, norm):
    # the ball must be smaller than the data cloud, or the attack can move any point anywhere
    centred = (x - x.mean(dim=0)).flatten(1)
    spread = float(centred.abs().max()) if norm == "linf" else float(centred.norm(dim=1).max())
    if eps >= spread:
        raise ValueError(
            f"eps = {eps:.3g} is outside the data range: the {norm} ball would cover the whole data "
            f"cloud (largest distance from its mean: {spread:.3g}); choose eps < {spread:.3g}"
        )


@dataclass
class AdversarialTrainingResult:
    r"""What :func:`adversarial_training` returns.

    ``model`` (trained in place), ``history`` (dict of lists, one entry per outer step: ``"step"``, ``"K"``,
    ``"loss"``, ``"grad_evals"`` cumulative), ``grad_evals`` (total gradient evaluations), ``monitor`` (list of
    ``(grad_evals, value)``), ``fosc`` (list of ``(step, K_n, mean FOSC)``) and ``max_violation`` (largest
    :math:`\|\delta\| - \varepsilon` seen, :math:`\le 0` up to rounding).
    """

    model: nn.Module
    history: dict = field(default_factory=dict)
    grad_evals: int = 0
    monitor: list = field(default_factory=list)
    fosc: list = field(default_factory=list)
    max_violation: float = 0.0


def adversarial_training(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    schedule,
    *,
    lr: float = 1e-2,
    norm: str = "l2",
    random_start: bool = True,
    seed: int = 0,
    batch_size: int | None = None,
    monitor=None,
    monitor_every: int = 0,
    criterion_every: int = 0,
    device=None,
) -> AdversarialTrainingResult:
    r"""Adversarial training of ``model`` with Adam, one outer step per entry of ``schedule``.

    The batch of step :math:`n` is the whole training set (``batch_size=None``) or the next ``batch_size`` samples
    of a random permutation of it, drawn anew each epoch from a generator seeded by ``seed`` (an incomplete last
    batch of an epoch is dropped). Outer step :math:`n` with ``schedule[n]`` :math:`= (K_n, \alpha_n)`: if
    :math:`K_n > 0`, the batch is replaced by
    its PGD adversary (:func:`pgd`, ``eps``, step :math:`\alpha_n`, :math:`K_n` steps, random start seeded by
    ``seed + n``), then one Adam step (``lr``) on the cross-entropy. Every attack is checked to stay inside the
    ``eps``-ball (``RuntimeError`` otherwise); a NaN/Inf loss stops training with the step number.

    Gradient evaluations are counted by the loop: :math:`K_n` input gradients plus one parameter gradient per step.
    ``monitor(model) -> float`` (optional) is called before training and every ``monitor_every`` steps and after
    the last; its values are recorded with the gradient count at that time.

    ``criterion_every`` (optional, > 0): at step 0, every ``criterion_every`` steps and at the last step, the mean
    FOSC (:func:`fosc`) of that step's training attack is recorded, a measure of how well the inner problem was
    solved (for :math:`K_n = 0` the attack is the clean input, :math:`\delta = 0`). Each record costs one more input
    gradient, a measurement that is *not* counted in ``grad_evals``.

    Training runs on ``device``, by default the device of ``model`` (the data are moved there).
    Returns an :class:`AdversarialTrainingResult` (``fosc`` is empty unless ``criterion_every``).
    """
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    device = device_of(model) if device is None else torch.device(device)
    check_tensor("x", x, ndim=2)
    if not isinstance(y, torch.Tensor) or y.shape != x.shape[:1]:
        raise ValueError(f"y must be a tensor with one label per row of x ({x.shape[0]})")
    check_choice("norm", norm, NORMS)
    eps = check_float("eps", eps, positive=True)
    schedule = check_schedule(schedule)
    lr = check_float("lr", lr, positive=True)
    seed = check_int("seed", seed, minimum=0)
    monitor_every = check_int("monitor_every", monitor_every, minimum=0)
    criterion_every = check_int("criterion_every", criterion_every, minimum=0)
    if batch_size is not None:
        batch_size = check_int("batch_size", batch_size, minimum=1, maximum=x.shape[0])
    if monitor is not None and not callable(monitor):
        raise TypeError(f"monitor must be callable (model -> float) or None, got {type(monitor).__name__}")
    x, y = x.to(device), y.to(device)
    model.to(device)
    _check_eps_in_data_range(eps, x, norm)
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses, cumulative, records, criterion = [], [], [], []
    grad_evals, max_violation = 0, -eps
    if monitor is not None:
        records.append((0, float(monitor(model))))
    shuffle = generator(seed)
    per_epoch = x.shape[0] // batch_size if batch_size else 1
    for n, (k, step_size) in enumerate(schedule):
        if batch_size is None:
            xb, yb = x, y
        else:
            if n % per_epoch == 0:
                order = torch.randperm(x.shape[0], generator=shuffle).to(x.device)
            rows = order[(n % per_epoch) * batch_size : (n % per_epoch + 1) * batch_size]
            xb, yb = x[rows], y[rows]
        inputs = xb
        if k > 0:
            inputs = pgd(model, xb, yb, eps, step_size, k, norm=norm, random_start=random_start, seed=seed + n)
            delta = (inputs - xb).flatten(1)
            size = delta.abs().max(dim=1).values if norm == "linf" else delta.norm(dim=1)
            violation = float(size.max()) - eps
            if violation > 1e-5 * max(eps, 1.0):
                raise RuntimeError(f"the PGD attack left the eps-ball at step {n}: |delta| - eps = {violation:.3g}")
            max_violation = max(max_violation, violation)
            grad_evals += k
        if criterion_every and (n % criterion_every == 0 or n == len(schedule) - 1):
            criterion.append((n, k, float(fosc(model, inputs, xb, yb, eps, norm=norm).mean())))
        opt.zero_grad()
        loss = F.cross_entropy(model(inputs), yb)
        raise_if_nonfinite(loss.detach(), n, "adversarial training loss", "lr or the PGD step size is too large")
        loss.backward()
        opt.step()
        grad_evals += 1
        losses.append(float(loss.detach()))
        cumulative.append(grad_evals)
        if monitor is not None and ((monitor_every and (n + 1) % monitor_every == 0) or n == len(schedule) - 1):
            if not records or records[-1][0] != grad_evals:
                records.append((grad_evals, float(monitor(model))))
    history = dict(step=list(range(len(schedule))), K=[k for k, _ in schedule], loss=losses, grad_evals=cumulative)
    return AdversarialTrainingResult(
        model=model, history=history, grad_evals=grad_evals, monitor=records, fosc=criterion, max_violation=max_violation
    )


def _evaluation_attack(model, x, y, eps, steps, step_size, norm, seed) -> torch.Tensor:
    """The PGD attack of :func:`robust_accuracy` and :func:`robust_loss` (random start, default step 2.5 eps / steps)."""
    eps = check_float("eps", eps, positive=True)
    steps = check_int("steps", steps, minimum=1)
    step_size = 2.5 * eps / steps if step_size is None else step_size
    return pgd(model, x, y, eps, step_size, steps, norm=norm, random_start=True, seed=seed)


def robust_accuracy(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 50,
    step_size: float | None = None,
    norm: str = "l2",
    seed: int = 0,
) -> float:
    """Accuracy under a PGD attack (``steps`` steps, ``step_size`` default ``2.5 eps / steps``, random start
    seeded by ``seed``)."""
    adversarial = _evaluation_attack(model, x, y, eps, steps, step_size, norm, seed)
    with torch.no_grad():
        return accuracy(model(adversarial), y)


def robust_loss(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    eps: float,
    *,
    steps: int = 50,
    step_size: float | None = None,
    norm: str = "l2",
    seed: int = 0,
) -> float:
    r"""Mean cross-entropy at the PGD attack of :func:`robust_accuracy` (same arguments): an estimate of the
    robust loss :math:`\mathbb E\max_{\|\delta\|\le\varepsilon}\ell(F(x+\delta), y)` from below."""
    adversarial = _evaluation_attack(model, x, y, eps, steps, step_size, norm, seed)
    with torch.no_grad():
        return float(F.cross_entropy(model(adversarial), y))


def fosc(
    model, x_adv: torch.Tensor, x: torch.Tensor, y: torch.Tensor, eps: float, *, norm: str = "linf", loss_fn=F.cross_entropy
) -> torch.Tensor:
    r"""First-order stationarity of the inner maximum at the attack ``x_adv`` (Wang et al., ICML 2019), per sample.

    :math:`c = \varepsilon\,\|g\|_* - \langle x' - x, g\rangle` with :math:`g = \nabla_x \ell(F(x'), y)` the gradient
    of each sample's own loss and :math:`\|\cdot\|_*` the dual norm (:math:`\ell^1` for ``norm="linf"``,
    :math:`\ell^2` for ``"l2"``). :math:`c \ge 0` inside the ball, and :math:`c = 0` exactly where ``x_adv`` is a
    first-order stationary point (KKT point) of :math:`\max_{\|\delta\|\le\varepsilon}\ell`; a small :math:`c`
    means the inner problem is solved well. Returns a tensor of shape ``(batch,)``; costs one input gradient.
    """
    eps = _check_attack_args(model, x, y, eps, norm, None)
    check_tensor("x_adv", x_adv)
    if x_adv.shape != x.shape:
        raise ValueError(f"x_adv must have the shape of x, {tuple(x.shape)}, got {tuple(x_adv.shape)}")
    inputs = x_adv.detach().requires_grad_(True)
    with torch.enable_grad():
        loss = loss_fn(model(inputs), y, reduction="sum")  # the sum: row i of the gradient is sample i's own
        (grad,) = torch.autograd.grad(loss, inputs)
    grad, delta = grad.flatten(1), (x_adv - x).detach().flatten(1)
    dual = grad.abs().sum(dim=1) if norm == "linf" else grad.norm(dim=1)
    return (eps * dual - (delta * grad).sum(dim=1)).detach()


def digits_data(n_train: int = 1200, *, seed: int = 0, dtype=torch.float32, device=None):
    r"""scikit-learn's handwritten digits (1797 images of :math:`8\times8` pixels, 10 classes), pixels scaled to
    :math:`[0, 1]`, flattened to 64 features, split at random (``seed``) into ``n_train`` training and the rest
    test images. Ships with scikit-learn: nothing is downloaded. Returns ``(x_train, y_train, x_test, y_test)`` on
    ``device`` (default CPU)."""
    from sklearn.datasets import load_digits

    images, labels = load_digits(return_X_y=True)
    n_train = check_int("n_train", n_train, minimum=10, maximum=len(labels) - 10)
    device = torch.device("cpu") if device is None else torch.device(device)
    x = torch.tensor(images / 16.0, dtype=dtype)
    y = torch.tensor(labels, dtype=torch.long)
    order = torch.randperm(len(y), generator=generator(check_int("seed", seed, minimum=0)))
    train, test = order[:n_train], order[n_train:]
    return x[train].to(device), y[train].to(device), x[test].to(device), y[test].to(device)


def mlp_classifier(
    in_features: int = 64,
    width: int = 128,
    depth: int = 2,
    classes: int = 10,
    *,
    seed: int = 0,
    dtype=torch.float32,
    device=None,
) -> nn.Sequential:
    r"""A ReLU network with ``depth`` hidden layers of ``width`` units and a linear read-out to ``classes`` logits.

    :func:`mldyn_lite.numerics.mlp` with ``activation="relu"``: weights and biases start uniform in
    :math:`\pm 1/\sqrt{\text{fan-in}}` (PyTorch's default scale), drawn from a generator seeded by ``seed``
    (the global random state is not touched), on ``device`` (default CPU)."""
    in_features = check_int("in_features", in_features, minimum=1)
    width = check_int("width", width, minimum=1)
    depth = check_int("depth", depth, minimum=1)
    classes = check_int("classes", classes, minimum=2)
    return mlp(
        in_features, width, depth, classes, "relu", seed=check_int("seed", seed, minimum=0), dtype=dtype, device=device
    )
