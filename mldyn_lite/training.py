"""A small, explicit training loop that refuses to fail silently.

:func:`fit` runs a torch optimiser on a loss closure, records the loss
history and stops with :class:`TrainingDivergedError` at the first step whose
loss or gradient is NaN or Inf, naming the step and the usual causes.
:func:`train_averaged` is the loop of chapter 4 (committor, quasipotential): Adam with a
geometrically decaying learning rate, returning an average of the weights.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import torch
from torch.optim.swa_utils import AveragedModel

from ._checks import check_callable, check_float, check_int

__all__ = ["AveragedTraining", "TrainingDivergedError", "fit", "raise_if_nonfinite", "train_averaged"]


class TrainingDivergedError(FloatingPointError):
    """Raised when a training loop meets a NaN or Inf loss or gradient."""


def raise_if_nonfinite(value: torch.Tensor, step: int, what: str = "loss", hint: str = "") -> None:
    """Raise :class:`TrainingDivergedError` if ``value`` holds NaN or Inf."""
    if not bool(torch.isfinite(value).all()):
        hint = hint or "the learning rate is probably too large, or the data contain NaN/Inf"
        raise TrainingDivergedError(f"{what} became NaN or Inf at step {step}; likely cause: {hint}")


def fit(
    params: Iterable[torch.nn.Parameter] | torch.nn.Module,
    loss_fn: Callable[[], torch.Tensor],
    *,
    steps: int,
    lr: float = 1e-2,
    optimizer: str = "adam",
    record_every: int = 1,
    clip: float | None = None,
) -> list[float]:
    """Minimise ``loss_fn()`` over ``params`` and return the recorded losses.

    Parameters
    ----------
    params
        A module or an iterable of tensors with ``requires_grad``.
    loss_fn
        A closure that computes the (scalar) loss from the current parameters.
    steps
        Number of optimiser steps.
    lr
        Learning rate.
    optimizer
        ``"adam"``, ``"sgd"`` or ``"lbfgs"``.
    record_every
        Keep every ``record_every``-th loss in the returned history.
    clip
        If given, clip the gradient norm to this value before each step.
    """
    if isinstance(params, torch.nn.Module):
        params = list(params.parameters())
    else:
        params = list(params)
    if not params or not all(isinstance(p, torch.Tensor) and p.requires_grad for p in params):
        raise ValueError("params must be a module or a non-empty iterable of tensors with requires_grad=True")
    check_callable("loss_fn", loss_fn)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    record_every = check_int("record_every", record_every, minimum=1)
    if clip is not None:
        clip = check_float("clip", clip, positive=True)
    makers = {
        "adam": lambda: torch.optim.Adam(params, lr=lr),
        "sgd": lambda: torch.optim.SGD(params, lr=lr),
        "lbfgs": lambda: torch.optim.LBFGS(params, lr=lr, max_iter=1, line_search_fn="strong_wolfe"),
    }
    if optimizer not in makers:
        raise ValueError(f"optimizer must be one of {sorted(makers)}, got {optimizer!r}")
    opt = makers[optimizer]()
    history: list[float] = []
    for step in range(steps):
        state = {}

        def closure():
            opt.zero_grad()
            loss = loss_fn()
            if not isinstance(loss, torch.Tensor) or loss.ndim != 0:
                raise TypeError("loss_fn must return a scalar torch.Tensor")
            raise_if_nonfinite(loss.detach(), step)
            loss.backward()
            for p in params:
                if p.grad is not None:
                    raise_if_nonfinite(p.grad, step, "gradient")
            if clip is not None:
                torch.nn.utils.clip_grad_norm_(params, clip)
            state.setdefault("loss", loss.detach())
            return loss

        opt.step(closure)
        if step % record_every == 0 or step == steps - 1:
            history.append(float(state["loss"]))
    return history


@dataclass
class AveragedTraining:
    """Result of :func:`train_averaged`: the weight-averaged ``model`` (the trained network is left as it ended),
    the ``history`` (``{"step": [...], "loss": [...]}``, every ``record_every`` steps) and ``cpu_seconds``."""

    model: torch.nn.Module
    history: dict
    cpu_seconds: float


def train_averaged(
    model: torch.nn.Module,
    loss_at: Callable[[int], torch.Tensor],
    *,
    steps: int,
    lr: float,
    final_lr: float,
    clip: float | None = None,
    average_from: float = 0.0,
    ema: float | None = None,
    record_every: int = 10,
    callback: Callable | None = None,
    hint: str = "",
) -> AveragedTraining:
    r"""Adam with a geometrically decaying learning rate and an average of the weights (the loop of chapter 4).

    The learning rate falls from ``lr`` to ``final_lr`` as :math:`\mathrm{lr}\,(\mathrm{final\_lr}/\mathrm{lr})^{k/(K-1)}`
    over the ``steps`` :math:`= K` steps; ``loss_at(k)`` returns the loss of step :math:`k` (fresh samples,
    a scheduled penalty, ...); the gradient norm is clipped at ``clip`` if given. The returned model is
    an average of the iterates (:class:`torch.optim.swa_utils.AveragedModel`, stochastic weight averaging,
    Izmailov et al. 2018): with ``ema=None`` the uniform mean of the iterates from step
    ``int(average_from * steps)`` on, else the exponential moving average with factor ``ema`` of all iterates.
    A NaN/Inf loss stops training with :class:`TrainingDivergedError` naming the step (and ``hint``).
    ``callback(step, current)`` runs every ``record_every`` steps with the current estimate (the average
    once averaging has started, else the trained model).
    """
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    check_callable("loss_at", loss_at)
    steps = check_int("steps", steps, minimum=1)
    lr = check_float("lr", lr, positive=True)
    final_lr = check_float("final_lr", final_lr, positive=True)
    record_every = check_int("record_every", record_every, minimum=1)
    average_from = check_float("average_from", average_from, minimum=0.0, maximum=1.0)
    if clip is not None:
        clip = check_float("clip", clip, positive=True)
    if callback is not None:
        check_callable("callback", callback)
    start = time.process_time()
    if ema is None:
        average = AveragedModel(model)
        first_averaged = min(int(average_from * steps), steps - 1)
    else:
        factor = check_float("ema", ema, minimum=0.0, maximum=1.0)
        average = AveragedModel(model, avg_fn=lambda averaged, current, count: factor * averaged + (1 - factor) * current)
        first_averaged = 0
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    schedule = torch.optim.lr_scheduler.ExponentialLR(optimizer, (final_lr / lr) ** (1 / max(steps - 1, 1)))
    history = {"step": [], "loss": []}
    for step in range(steps):
        loss = loss_at(step)
        raise_if_nonfinite(loss.detach(), step, hint=hint)
        optimizer.zero_grad()
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        schedule.step()
        if step >= first_averaged:
            average.update_parameters(model)
        if step % record_every == 0 or step == steps - 1:
            history["step"].append(step)
            history["loss"].append(float(loss.detach()))
            if callback is not None:
                callback(step, average.module if step >= first_averaged else model)
    return AveragedTraining(
        model=average.module.requires_grad_(False), history=history, cpu_seconds=time.process_time() - start
    )
