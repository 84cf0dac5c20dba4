"""A small, explicit training loop that refuses to fail silently.

:func:`fit` runs a torch optimiser on a loss closure, records the loss
history and stops with :class:`TrainingDivergedError` at the first step whose
loss or gradient is NaN or Inf, naming the step and the usual causes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import torch

from ._checks import check_callable, check_float, check_int


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
