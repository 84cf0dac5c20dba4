"""Device, seeding and thread settings shared by every chapter.

* :func:`get_device` picks CUDA when it is available and the CPU otherwise;
  the choice can be overridden with an argument or the ``MLDYN_DEVICE``
  environment variable.
* :func:`set_seed` seeds Python, numpy and torch so that stored notebook
  outputs are reproduced exactly on re-execution.
* :func:`set_threads` sets torch's intra-op threads. On a 2-core machine torch
  with 2 threads slows sharply as soon as the other core is busy (a notebook
  kernel next to a browser, two test workers), so the default is 1. The same
  holds for the BLAS library behind numpy and scipy, which is limited through
  ``threadpoolctl``.
"""

from __future__ import annotations

import os
import random

import numpy as np
import torch

from ._checks import check_int

__all__ = ["DEFAULT_THREADS", "get_device", "set_seed", "set_threads", "setup"]

DEFAULT_THREADS = 1


def get_device(device: str | torch.device | None = None) -> torch.device:
    """Return the torch device to compute on.

    Parameters
    ----------
    device
        ``None`` (default) chooses ``$MLDYN_DEVICE`` if set, else ``"cuda"``
        when available, else ``"cpu"``. A string or :class:`torch.device` is
        validated and returned; asking for CUDA on a machine without it raises.
    """
    if device is None:
        device = os.environ.get("MLDYN_DEVICE") or ("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be None, a string or a torch.device, got {type(device).__name__}")
    try:
        device = torch.device(device)
    except RuntimeError as exc:
        raise ValueError(f"device must name a torch device such as 'cpu' or 'cuda', got {device!r}") from exc
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device='cuda' was requested but CUDA is not available on this machine; use 'cpu'")
    return device


def set_seed(seed: int) -> None:
    """Seed Python's ``random``, numpy's global generator and torch (CPU and CUDA)."""
    seed = check_int("seed", seed, minimum=0)
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def set_threads(threads: int = DEFAULT_THREADS) -> None:
    """Set torch's intra-op threads and the BLAS threads of numpy/scipy (default 1, see module docstring)."""
    threads = check_int("threads", threads, minimum=1)
    torch.set_num_threads(threads)
    try:
        from threadpoolctl import threadpool_limits
    except ModuleNotFoundError:  # optional: without it only torch is limited
        return
    threadpool_limits(limits=threads)


def setup(seed: int = 0, threads: int = DEFAULT_THREADS, device: str | torch.device | None = None) -> torch.device:
    """One call at the top of every notebook: threads, seed, plot style; returns the device."""
    from .plotting import use_book_style

    set_threads(threads)
    set_seed(seed)
    use_book_style()
    return get_device(device)
