r"""Self-checks of chapter 3.

* :func:`check_causal_filter` — ex-ch3-causal-filter (notebook 3.1): the discrete causal, shift-invariant
  linear functional :math:`y_k = \Delta t \sum_{j=0}^{k} \rho_j\, x_{k-j}` (the Riemann sum of
  :math:`\int_0^\infty \rho(s)\, x_{t-s}\, ds`; inputs before time 0 count as zero);
* :func:`check_memory_kernel` — ex-ch3-rnn-kernel (notebook 3.2): the memory kernel of a linear
  continuous-time RNN :math:`\dot h = W h + U x,\ y = c^\top h`, :math:`\rho(s) = c^\top e^{W s} U`, on a
  given grid of lags;
* :func:`check_unfolding_ranks` — ex-ch3-unfolding-ranks (notebook 3.2): the tensorisation ranks of a kernel on
  lags :math:`s = \sum_{k<K} b_k 2^k`, the numerical ranks of the unfoldings
  :math:`(b_0 \dots b_{k-1}) \times (b_k \dots b_{K-1})`, :math:`k = 1, \dots, K-1` (singular values above
  ``tol`` times the largest).
"""

from __future__ import annotations

import numpy as np
import torch

from .._checks import check_callable
from ._framework import CaseFailed, CheckResult, describe, diagnose, exercise_check, run_cases

__all__ = ["check_causal_filter", "check_memory_kernel", "check_unfolding_ranks"]


def _as_array(got, expected_shape: tuple[int, ...], what: str) -> np.ndarray:
    """The reader's answer as a float array (numpy, torch or nested lists), or a failed case."""
    if got is None:
        raise CaseFailed(f"an array of shape {expected_shape}", "None", "the function has no `return` statement")
    try:
        if isinstance(got, torch.Tensor):
            got = got.detach().cpu().numpy()
        array = np.asarray(got, dtype=float)
    except (TypeError, ValueError):
        raise CaseFailed(f"an array of shape {expected_shape}", describe(got), f"return {what} as a numpy array") from None
    return array


def _unchanged(originals: dict[str, np.ndarray], passed: dict[str, np.ndarray]) -> None:
    for name, original in originals.items():
        if not np.array_equal(passed[name], original):
            raise CaseFailed(
                f"{name} unchanged",
                f"{name} was modified in place",
                f"compute new arrays instead of writing into the argument {name}",
            )


def _close(got: np.ndarray, reference: np.ndarray) -> bool:
    scale = float(np.abs(reference).max()) if reference.size else 1.0
    return bool(np.allclose(got, reference, rtol=1e-5, atol=1e-8 * max(scale, 1.0)))


# --- chapter 3 · notebook 3.1: the causal linear functional ------------------------------------


def _causal_filter(rho, x, dt):
    """The reference, written as the double sum of the definition."""
    batch, length = x.shape
    y = np.zeros((batch, length))
    for k in range(length):
        for j in range(min(k + 1, rho.size)):
            y[:, k] += dt * rho[j] * x[:, k - j]
    return y


def _shifted_sum(rho, x, dt, lag_of):
    """``dt * sum_j rho_j x_{lag_of(k, j)}`` with zero outside the sequence: the family of typical mistakes."""
    batch, length = x.shape
    y = np.zeros((batch, length))
    for k in range(length):
        for j in range(rho.size):
            i = lag_of(k, j)
            if 0 <= i < length:
                y[:, k] += dt * rho[j] * x[:, i]
    return y


def _filter_mistakes(rho, x, dt) -> list[tuple[np.ndarray, str]]:
    """What the typical wrong causal filters return, with the hint for each."""
    n, length = rho.size, x.shape[1]
    full = np.stack([np.convolve(row, rho) for row in x])
    circular = np.stack([sum(dt * rho[j] * np.roll(row, j) for j in range(n)) for row in x])
    trapezoid = _causal_filter(rho, x, dt)
    for k in range(length):
        trapezoid[:, k] -= 0.5 * dt * rho[0] * x[:, k]
        if 0 < k < n:
            trapezoid[:, k] -= 0.5 * dt * rho[k] * x[:, 0]
    return [
        (
            _shifted_sum(rho, x, dt, lambda k, j: k + j),
            "the sum looks into the future, x_{k+j}: a causal filter only uses the present and the past, "
            "y_k = Δt Σ_j ρ_j x_{k-j}",
        ),
        (
            _shifted_sum(rho, x, dt, lambda k, j: k - j - 1),
            "off by one in the lag: ρ_0 multiplies the present input x_k (lag 0), ρ_1 the input x_{k-1}, and so on",
        ),
        (
            _shifted_sum(rho, x, dt, lambda k, j: k - j + 1),
            "off by one in the lag: ρ_j multiplies x_{k-j}, so y_k uses x_k but not x_{k+1}",
        ),
        (
            _causal_filter(rho, x, 1.0),
            "the factor Δt is missing: y_k = Δt Σ_j ρ_j x_{k-j} is the Riemann sum of ∫ ρ(s) x_{t-s} ds",
        ),
        (
            _shifted_sum(rho, x, dt, lambda k, j: k - (n - 1 - j)),
            "the kernel is reversed, ρ_{n-1-j} instead of ρ_j: torch.nn.functional.conv1d and np.correlate compute a "
            "cross-correlation — flip ρ first, or use np.convolve",
        ),
        (
            dt * full[:, (n - 1) // 2 : (n - 1) // 2 + length] if length >= n else None,
            "np.convolve(..., mode='same') centres the kernel, so part of it looks into the future: take "
            "np.convolve(x_row, rho)[:length], the first `length` entries of the full convolution",
        ),
        (
            dt * full[:, n - 1 : n - 1 + length] if length >= n else None,
            "these are the last `length` entries of the full convolution (shifted by n_lags - 1): take the first "
            "`length` entries, np.convolve(x_row, rho)[:length]",
        ),
        (
            circular,
            "the convolution wraps around (np.roll, or an FFT without zero padding): the first outputs pick up inputs "
            "from the end of the sequence — inputs before time 0 count as zero",
        ),
        (
            trapezoid,
            "these are trapezoidal weights (Δt/2 at the ends of the sum): use the Riemann sum, weight Δt for every lag",
        ),
    ]


def _check_filter_case(causal_filter, rho, x, dt, reference=None):
    batch, length = x.shape
    if reference is None:
        reference = _causal_filter(rho, x, dt)
    rho_in, x_in = rho.copy(), x.copy()
    got = causal_filter(rho_in, x_in, dt)
    _unchanged({"rho": rho, "x": x}, {"rho": rho_in, "x": x_in})
    got = _as_array(got, (batch, length), "y")
    if got.shape != (batch, length):
        n = rho.size
        if got.shape == (length, batch):
            hint = "transposed: x has shape (batch, length), one sequence per row, and so has y"
        elif got.shape == (batch, length + n - 1):
            hint = "this is the full convolution, of length length + n_lags - 1: keep the first `length` outputs"
        elif got.shape == (length,) or got.shape == (batch,):
            hint = "filter every sequence of the batch: y has one row per row of x"
        else:
            hint = "y has the shape of x, (batch, length): one output per input time"
        raise CaseFailed(f"shape {(batch, length)} (the shape of x)", f"shape {got.shape}", hint)
    if not _close(got, reference):
        mistakes = [(answer, hint) for answer, hint in _filter_mistakes(rho, x, dt) if answer is not None]
        hint = diagnose(
            got,
            mistakes,
            "compute y_0 and y_1 by hand: y_0 = Δt ρ_0 x_0, y_1 = Δt (ρ_0 x_1 + ρ_1 x_0), and lags "
            "j > k or j ≥ n_lags contribute nothing",
        )
        raise CaseFailed(describe(reference), describe(got), hint)


@exercise_check("ex-ch3-causal-filter")
def check_causal_filter(causal_filter) -> CheckResult:
    r"""Check ``causal_filter(rho, x, dt)`` of notebook 3.1.

    ``rho`` has shape ``(n_lags,)`` (the kernel :math:`\rho_j = \rho(j\Delta t)`), ``x`` shape ``(batch, length)``;
    the result has the shape of ``x``: :math:`y_k = \Delta t \sum_{j=0}^{\min(k,\, n_{lags} - 1)} \rho_j x_{k-j}`.
    Cases: a short kernel on a batch of three sequences, a kernel longer than the sequences, and unit
    impulses (at time 0 and at time 3), whose outputs are the kernel itself, delayed.
    """
    check_callable("causal_filter", causal_filter)
    rng = np.random.default_rng(303)
    rho_short, x_short = rng.standard_normal(6), rng.standard_normal((3, 10))
    rho_long, x_long = rng.standard_normal(12), rng.standard_normal((2, 7))
    rho_impulse = np.array([1.0, -0.5, 0.25, 2.0, 0.75])
    impulses = np.zeros((2, 9))
    impulses[0, 0] = impulses[1, 3] = 1.0
    responses = np.zeros((2, 9))
    responses[0, :5] = 0.4 * rho_impulse
    responses[1, 3:8] = 0.4 * rho_impulse
    return run_cases(
        "ex-ch3-causal-filter",
        causal_filter,
        [
            (
                "a kernel of 6 lags on a batch of 3 random sequences of length 10, Δt = 0.5",
                lambda: _check_filter_case(causal_filter, rho_short, x_short, 0.5),
            ),
            (
                "a kernel of 12 lags, longer than the sequences (batch of 2, length 7), Δt = 0.2",
                lambda: _check_filter_case(causal_filter, rho_long, x_long, 0.2),
            ),
            (
                "unit impulses at times 0 and 3 (length 9), Δt = 0.4: the outputs are Δt ρ, starting at the impulse",
                lambda: _check_filter_case(causal_filter, rho_impulse, impulses, 0.4, reference=responses),
            ),
        ],
    )


# --- chapter 3 · notebook 3.2: the memory kernel of a linear RNN --------------------------------


def _kernel(W, U, c, s):
    from scipy.linalg import expm

    return np.array([c @ expm(W * lag) @ U for lag in s])


def _kernel_mistakes(W, U, c, s) -> list[tuple[np.ndarray, str]]:
    """What the typical wrong kernels return (of every shape), with the hint for each."""
    from scipy.linalg import expm

    m = W.shape[0]
    dt = s[1] - s[0]
    euler = np.eye(m) + W * dt
    return [
        (
            _kernel(W.T, U, c, s),
            "this is c^T e^{W^T s} U (W transposed, or c and U swapped): the hidden state solves dh/dt = W h + U x, "
            "so ρ(s) = c^T e^{Ws} U",
        ),
        (
            np.array([c @ np.exp(W * lag) @ U for lag in s]),
            "np.exp acts entry by entry: the matrix exponential e^{Ws} is scipy.linalg.expm(W * s)",
        ),
        (
            np.array([c @ np.linalg.matrix_power(euler, j) @ U for j in range(s.size)]),
            "(I + WΔt)^k is forward Euler's approximation of e^{W kΔt}, only first-order accurate: use the exact "
            "matrix exponential scipy.linalg.expm(W * s_k)",
        ),
        (
            _kernel(-W, U, c, s),
            "the sign of the exponent: dh/dt = W h + U x gives e^{+Ws}; W itself is stable (eigenvalues with "
            "negative real part), so ρ decays",
        ),
        (
            _kernel(W, U, c, np.arange(s.size)),
            "the exponent uses the index k instead of the lag s_k: evaluate e^{W s_k} at the lags given in s",
        ),
        (
            np.array([c @ np.linalg.matrix_power(expm(W * dt), j) @ U for j in range(s.size)]),
            "powers of e^{WΔt} give the kernel only on a uniform grid s_k = kΔt starting at 0: the lags in s are "
            "arbitrary, evaluate e^{W s_k} at each of them",
        ),
        (np.array([c @ expm(W) @ U * lag for lag in s]), "the lag belongs inside the exponential: e^{Ws}, not s e^{W}"),
        (
            np.array([c @ expm(W * lag) for lag in s]),
            "U is missing: ρ(s) = c^T e^{Ws} U is one number per lag (U of shape (m,) on the right)",
        ),
        (
            np.array([expm(W * lag) @ U for lag in s]),
            "the read-out c is missing: ρ(s) = c^T e^{Ws} U is one number per lag (c^T on the left)",
        ),
        (np.array([expm(W * lag) for lag in s]), "this is e^{Ws} itself: multiply by c^T on the left and U on the right"),
    ]


def _check_kernel_case(memory_kernel, W, U, c, s, reference=None):
    n = s.size
    if reference is None:
        reference = _kernel(W, U, c, s)
    inputs = {"W": W.copy(), "U": U.copy(), "c": c.copy(), "s": s.copy()}
    got = memory_kernel(inputs["W"], inputs["U"], inputs["c"], inputs["s"])
    _unchanged({"W": W, "U": U, "c": c, "s": s}, inputs)
    got = _as_array(got, (n,), "ρ on the grid")
    if got.shape != (n,):
        if got.shape in ((n, 1), (1, n)):
            default = "return a 1-D array of shape (n,), one value per lag (e.g. np.array([...]) of numbers)"
        else:
            default = "return one number per lag: an array of shape (n,) with ρ(s_k) = c^T e^{W s_k} U"
        hint = diagnose(got, _kernel_mistakes(W, U, c, s), default)
        raise CaseFailed(f"shape {(n,)} (the shape of s)", f"shape {got.shape}", hint)
    if not _close(got, reference):
        hint = diagnose(
            got, _kernel_mistakes(W, U, c, s), "check ρ(0) = c·U first, then one lag by hand with scipy.linalg.expm(W * s_k)"
        )
        raise CaseFailed(describe(reference), describe(got), hint)


@exercise_check("ex-ch3-rnn-kernel")
def check_memory_kernel(memory_kernel) -> CheckResult:
    r"""Check ``memory_kernel(W, U, c, s)`` of notebook 3.2.

    ``W`` has shape ``(m, m)``, ``U`` and ``c`` shape ``(m,)``, ``s`` holds ``n`` lags :math:`s_k \ge 0`; the
    result is the array of shape ``(n,)`` of :math:`\rho(s_k) = c^\top e^{W s_k} U`. The reference uses
    ``scipy.linalg.expm``. Cases: a non-normal stable ``W`` with three units on a uniform grid, five units
    with oscillating modes on an irregular grid of lags, and one unit, where
    :math:`\rho(s) = c\,U\,e^{-\mu s}` in closed form.
    """
    check_callable("memory_kernel", memory_kernel)
    rng = np.random.default_rng(32)
    W_3 = -0.6 * np.eye(3) + np.triu(rng.standard_normal((3, 3)), 1) + 0.3 * rng.standard_normal((3, 3))
    U_3, c_3 = rng.standard_normal(3), rng.standard_normal(3)
    s_3 = 0.25 * np.arange(12)
    skew = rng.standard_normal((5, 5))
    W_5 = -0.4 * np.eye(5) + 1.5 * (skew - skew.T) / np.sqrt(5) + 0.2 * rng.standard_normal((5, 5))
    U_5, c_5 = rng.standard_normal(5), rng.standard_normal(5)
    s_5 = np.array([0.0, 0.15, 0.9, 1.3, 2.2, 3.7, 5.5])
    mu, u_1, c_1 = 0.7, 1.6, -0.8
    s_1 = np.array([0.0, 0.5, 1.25, 4.0])
    return run_cases(
        "ex-ch3-rnn-kernel",
        memory_kernel,
        [
            (
                "m = 3 hidden units, a stable non-normal W, 12 lags s = 0, 0.25, …, 2.75",
                lambda: _check_kernel_case(memory_kernel, W_3, U_3, c_3, s_3),
            ),
            (
                "m = 5 with oscillating modes (complex eigenvalues of W), 7 irregular lags between 0 and 5.5",
                lambda: _check_kernel_case(memory_kernel, W_5, U_5, c_5, s_5),
            ),
            (
                "one hidden unit, W = [[-0.7]], U = [1.6], c = [-0.8]: ρ(s) = c U e^{-0.7 s} at s = 0, 0.5, 1.25, 4",
                lambda: _check_kernel_case(
                    memory_kernel,
                    np.array([[-mu]]),
                    np.array([u_1]),
                    np.array([c_1]),
                    s_1,
                    reference=c_1 * u_1 * np.exp(-mu * s_1),
                ),
            ),
        ],
    )


# --- chapter 3 · notebook 3.2: tensorisation ranks of a kernel ---------------------------------


def _ranks(unfoldings, tol, relative=True):
    ranks = []
    for matrix in unfoldings:
        sing = np.linalg.svd(matrix, compute_uv=False)
        ranks.append(int((sing > (tol * sing[0] if relative else tol)).sum()))
    return ranks


def _rank_mistakes(rho, K, tol) -> list[tuple[list[int], str]]:
    """What the typical wrong rank computations return, with the hint for each."""
    least_first = rho.reshape((2,) * K).transpose(tuple(range(K - 1, -1, -1)))
    correct = [least_first.reshape(2**k, -1) for k in range(1, K)]
    most_first = [rho.reshape(2**k, -1) for k in range(1, K)]
    return [
        (
            _ranks(most_first, tol),
            "the digits are in the wrong order: rho.reshape((2,) * K) puts the most significant digit b_{K-1} first; "
            "transpose the axes (or reshape in Fortran order) so that axis k is b_k, least significant first",
        ),
        (_ranks(correct, 1e-3), "the tolerance is hard-coded to 1e-3: use the argument tol"),
        (
            _ranks(correct, tol, relative=False),
            "the tolerance is absolute: count the singular values above tol times the largest singular value "
            "of that unfolding",
        ),
        (
            [int(np.linalg.matrix_rank(matrix)) for matrix in correct],
            "these are exact ranks (np.linalg.matrix_rank): count only the singular values above tol times the largest one",
        ),
    ]


def _check_ranks_case(unfolding_ranks, rho, K, tol, reference):
    rho_in = rho.copy()
    got = unfolding_ranks(rho_in, K, tol)
    _unchanged({"rho": rho}, {"rho": rho_in})
    got = _as_array(got, (K - 1,), "the list of ranks")
    if got.shape != (K - 1,):
        if got.ndim == 1 and got.size in (K, K + 1):
            hint = (
                "one rank per cut k = 1, …, K-1: the unfoldings at k = 0 and k = K have a single row or column, "
                "so their rank is always 1 and they are left out"
            )
        else:
            hint = "return a list of K - 1 integers, the rank of the unfolding for each k = 1, …, K-1"
        raise CaseFailed(f"{K - 1} ranks, for k = 1, …, {K - 1}", f"shape {got.shape}: {describe(got)}", hint)
    if not np.array_equal(got, reference):
        hint = diagnose(
            got,
            _rank_mistakes(rho, K, tol),
            "for each k, reshape the 2 × … × 2 tensor T[b_0, …, b_{K-1}] into a (2^k, 2^{K-k}) matrix "
            "(rows: b_0 … b_{k-1}), take its singular values and count those above tol times the largest",
        )
        raise CaseFailed(
            f"ranks {list(reference)}", f"ranks {[int(r) if float(r).is_integer() else float(r) for r in got]}", hint
        )


@exercise_check("ex-ch3-unfolding-ranks")
def check_unfolding_ranks(unfolding_ranks) -> CheckResult:
    r"""Check ``unfolding_ranks(rho, K, tol)`` of notebook 3.2.

    ``rho`` holds a kernel on the lags :math:`s = 0, \dots, 2^K - 1`; the result is the list of the numerical ranks
    of the unfoldings :math:`(b_0 \dots b_{k-1}) \times (b_k \dots b_{K-1})` of the tensor
    :math:`T[b_0, \dots, b_{K-1}] = \rho(\sum_k b_k 2^k)`, :math:`k = 1, \dots, K-1`, counting singular values above
    ``tol`` times the largest. References: ``mldyn_lite.cnn.tensorisation_ranks`` and closed forms. Cases: a
    kernel whose low digits and high digits separate (ranks 2, 2, 1, 1, 1 — not symmetric under reversing the
    digits), a small polynomial kernel with ``tol = 1e-2``, and a delay, of rank 1 at every cut.
    """
    from ..cnn import delay_kernel, tensorisation_ranks

    check_callable("unfolding_ranks", unfolding_ranks)
    rng = np.random.default_rng(7)
    s_6 = np.arange(64)
    separable = rng.standard_normal(8)[s_6 % 8] * 0.9 ** (s_6 // 8)
    polynomial = 1e-5 * (1.0 + np.arange(32)) ** -1.1
    delay = delay_kernel(45, 7)
    return run_cases(
        "ex-ch3-unfolding-ranks",
        unfolding_ranks,
        [
            (
                "K = 6, ρ(s) = f(s mod 8) · 0.9^(s // 8) with random f: low and high digits separate at k = 3, tol = 1e-3",
                lambda: _check_ranks_case(unfolding_ranks, separable, 6, 1e-3, [2, 2, 1, 1, 1]),
            ),
            (
                "K = 5, a small polynomial kernel 1e-5 · (1 + s)^-1.1, tol = 1e-2",
                lambda: _check_ranks_case(unfolding_ranks, polynomial, 5, 1e-2, tensorisation_ranks(polynomial, 5, 1e-2)),
            ),
            (
                "K = 7, the delay y_t = x_{t-45}: rank 1 at every cut",
                lambda: _check_ranks_case(unfolding_ranks, delay, 7, 1e-3, [1] * 6),
            ),
        ],
    )
