"""Argument checks shared by the public functions of :mod:`mldyn_lite`.

Every public function validates its inputs with these helpers so that a wrong
argument fails at once with a message that names the argument and says what
was expected, instead of failing later deep inside torch or numpy.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Callable

import numpy as np
import torch


def _describe(value) -> str:
    return (
        f"{type(value).__name__} {value!r}"
        if not hasattr(value, "shape")
        else (f"{type(value).__name__} of shape {tuple(value.shape)}")
    )


def check_int(name: str, value, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Return ``value`` as an int, or raise if it is not an integer in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_float(
    name: str,
    value,
    *,
    positive: bool = False,
    nonnegative: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
) -> float:
    """Return ``value`` as a finite float, or raise if it is not a number in range."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_describe(value)}")
    value = float(value)
    if not np.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if positive and value <= 0:
        raise ValueError(f"{name} must be > 0, got {value}")
    if nonnegative and value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise ValueError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_callable(name: str, value) -> Callable:
    """Raise ``TypeError`` unless ``value`` is callable."""
    if not callable(value):
        raise TypeError(f"{name} must be callable, got {_describe(value)}")
    return value


def check_choice(name: str, value, choices) -> str:
    """Raise ``ValueError`` unless ``value`` is one of ``choices``."""
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def check_tensor(
    name: str,
    value,
    *,
    ndim: int | tuple[int, ...] | None = None,
    last_dim: int | None = None,
    finite: bool = True,
) -> torch.Tensor:
    """Raise unless ``value`` is a floating-point tensor of the expected shape."""
    if not isinstance(value, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {_describe(value)}")
    if not value.is_floating_point():
        raise TypeError(f"{name} must have a floating dtype, got {value.dtype}")
    if ndim is not None:
        allowed = (ndim,) if isinstance(ndim, int) else ndim
        if value.ndim not in allowed:
            raise ValueError(f"{name} must have {' or '.join(map(str, allowed))} dimensions, got shape {tuple(value.shape)}")
    if last_dim is not None and (value.ndim == 0 or value.shape[-1] != last_dim):
        raise ValueError(f"{name} must have last dimension {last_dim}, got shape {tuple(value.shape)}")
    if finite and not bool(torch.isfinite(value).all()):
        raise ValueError(f"{name} contains NaN or Inf")
    return value


def check_array(name: str, value, *, ndim: int | None = None, finite: bool = True) -> np.ndarray:
    """Return ``value`` as a float numpy array, or raise with the argument's name."""
    if isinstance(value, torch.Tensor):
        value = value.detach().cpu().numpy()
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be array-like of numbers, got {_describe(value)}") from exc
    if ndim is not None and array.ndim != ndim:
        raise ValueError(f"{name} must have {ndim} dimensions, got shape {array.shape}")
    if finite and not np.all(np.isfinite(array)):
        raise ValueError(f"{name} contains NaN or Inf")
    return array


def check_box(box, name: str = "box"):
    """Return ``((xmin, xmax), (ymin, ymax))`` as floats, or raise if ``box`` is not such a rectangle."""
    try:
        (x0, x1), (y0, y1) = box
    except (TypeError, ValueError) as exc:
        raise TypeError(f"{name} must be ((xmin, xmax), (ymin, ymax)), got {box!r}") from exc
    x0, x1, y0, y1 = (check_float(name, v) for v in (x0, x1, y0, y1))
    if not (x0 < x1 and y0 < y1):
        raise ValueError(f"{name} must satisfy xmin < xmax and ymin < ymax, got {box!r}")
    return (x0, x1), (y0, y1)


def resolve_options(cls: type, options, overrides: dict, caller: str, aliases: dict | None = None):
    """The options of a trainer: ``options`` (an instance of the dataclass ``cls``, or ``None`` for the
    defaults) with ``overrides`` (keyword arguments named like its fields, or like ``aliases``) applied."""
    if options is None:
        options = cls()
    elif not isinstance(options, cls):
        raise TypeError(f"options must be a {cls.__name__}, got {type(options).__name__}")
    if not overrides:
        return options
    fields = {f.name for f in dataclasses.fields(cls)}
    renamed = {}
    for key, value in overrides.items():
        name = (aliases or {}).get(key, key)
        if name not in fields:
            known = ", ".join(sorted(fields))
            raise TypeError(f"{caller}() got an unexpected keyword argument {key!r}; options are {known}")
        renamed[name] = value
    return dataclasses.replace(options, **renamed)


def resolve_generator(seed, generator, device) -> tuple[torch.Generator, int | None]:
    """For trainers: ``generator`` if given (the seed is then reported as ``None``),
    else a new one on ``device`` seeded with ``seed`` (:func:`mldyn_lite.numerics.generator`)."""
    from .numerics import generator as new_generator

    if generator is None:
        seed = check_int("seed", seed, minimum=0)
        return new_generator(seed, device), seed
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
    return generator, None
