"""Self-checks of chapter 3: the notebooks' solutions pass, typical wrong answers fail with the hint that names them."""

import numpy as np
import pytest
import torch
from scipy.linalg import expm

from mldyn_lite.cnn import tensorisation_ranks
from mldyn_lite.selfcheck import check, check_causal_filter, check_memory_kernel, check_unfolding_ranks

from notebook_cells import solution_function

# --- ex-ch3-causal-filter (notebook 3.1) ------------------------------------------------------


def causal_filter(rho, x, dt):
    """The solution: lag by lag, rho_j times the input shifted j steps into the future."""
    batch, length = x.shape
    y = np.zeros((batch, length))
    for j in range(min(len(rho), length)):
        y[:, j:] += dt * rho[j] * x[:, : length - j]
    return y


def by_convolve(rho, x, dt):
    return dt * np.stack([np.convolve(row, rho)[: x.shape[1]] for row in x])


def by_conv1d(rho, x, dt):
    """The package's way: torch conv1d with the kernel flipped, returning a tensor."""
    x = torch.as_tensor(x)
    padded = torch.nn.functional.pad(x[:, None, :], (len(rho) - 1, 0))
    return dt * torch.nn.functional.conv1d(padded, torch.as_tensor(rho).flip(0)[None, None, :])[:, 0, :]


def anti_causal(rho, x, dt):
    length = x.shape[1]
    y = np.zeros(x.shape)
    for j in range(min(len(rho), length)):
        y[:, : length - j] += dt * rho[j] * x[:, j:]
    return y


def lag_off_by_one(rho, x, dt):
    length = x.shape[1]
    y = np.zeros(x.shape)
    for j in range(min(len(rho), length - 1)):
        y[:, j + 1 :] += dt * rho[j] * x[:, : length - j - 1]
    return y


def without_dt(rho, x, dt):
    return causal_filter(rho, x, 1.0)


def conv1d_without_flip(rho, x, dt):
    x = torch.as_tensor(x)
    padded = torch.nn.functional.pad(x[:, None, :], (len(rho) - 1, 0))
    return dt * torch.nn.functional.conv1d(padded, torch.as_tensor(rho)[None, None, :])[:, 0, :]


def convolve_same(rho, x, dt):
    return dt * np.stack([np.convolve(row, rho, mode="same") for row in x])


def circular(rho, x, dt):
    return dt * np.stack([sum(r * np.roll(row, j) for j, r in enumerate(rho)) for row in x])


def full_convolution(rho, x, dt):
    return dt * np.stack([np.convolve(row, rho) for row in x])


def trapezoidal(rho, x, dt):
    """Half weight at both ends of the sum, as for the trapezoidal rule."""
    y = causal_filter(rho, x, dt)
    length = x.shape[1]
    for k in range(length):
        y[:, k] -= 0.5 * dt * rho[0] * x[:, k]
        if 0 < k < len(rho):
            y[:, k] -= 0.5 * dt * rho[k] * x[:, 0]
    return y


def in_place(rho, x, dt):
    x *= dt
    return causal_filter(rho, x, 1.0)


def test_correct_causal_filter_passes():
    result = check_causal_filter(causal_filter)
    assert result and result.cases == 3
    assert str(result) == "✓ ex-ch3-causal-filter: causal_filter passed all 3 checks."


@pytest.mark.parametrize("answer", [by_convolve, by_conv1d, lambda rho, x, dt: causal_filter(rho, x, dt).tolist()])
def test_other_correct_causal_filters_pass(answer):
    result = check_causal_filter(answer)
    assert result.passed, str(result)


def test_the_notebook_solution_is_the_tested_one():
    from_notebook = solution_function("ch3/01_sequence_modelling.ipynb", "causal_filter")
    assert str(check_causal_filter(from_notebook)) == "✓ ex-ch3-causal-filter: causal_filter passed all 3 checks."


@pytest.mark.parametrize(
    "wrong, case, hint",
    [
        (anti_causal, 1, "the sum looks into the future"),
        (lag_off_by_one, 1, "off by one in the lag: ρ_0 multiplies the present input"),
        (without_dt, 1, "the factor Δt is missing"),
        (conv1d_without_flip, 1, "the kernel is reversed"),
        (convolve_same, 1, "np.convolve(..., mode='same') centres the kernel"),
        (circular, 1, "the convolution wraps around"),
        (trapezoidal, 1, "these are trapezoidal weights"),
        (full_convolution, 1, "this is the full convolution"),
        (lambda rho, x, dt: causal_filter(rho, x, dt).T, 1, "transposed"),
        (in_place, 1, "x was modified in place"),
    ],
)
def test_wrong_causal_filter_is_caught_with_its_hint(wrong, case, hint):
    result = check_causal_filter(wrong)
    assert not result and result.failed_case == case
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch3-causal-filter: {wrong.__name__} failed check {case} of 3: ")


def test_a_filter_that_ignores_long_kernels_fails_the_second_case():
    """Correct for short kernels, but crashes (or truncates wrongly) when n_lags > length."""

    def no_long_kernels(rho, x, dt):
        y = np.zeros(x.shape)
        for j in range(len(rho)):
            y[:, j:] += dt * rho[j] * x[:, : x.shape[1] - j]
        return y

    result = check_causal_filter(no_long_kernels)
    assert not result and result.failed_case == 2 and result.got.startswith("ValueError")


def test_unknown_filter_mistake_gets_the_generic_hint():
    result = check_causal_filter(lambda rho, x, dt: 1.01 * causal_filter(rho, x, dt))
    assert not result and result.failed_case == 1
    assert "compute y_0 and y_1 by hand" in result.hint
    assert result.expected.startswith("array of shape (3, 10)")


# --- ex-ch3-rnn-kernel (notebook 3.2) ---------------------------------------------------------


def memory_kernel(W, U, c, s):
    """The solution: c^T expm(W s) U at each lag."""
    return np.array([c @ expm(W * lag) @ U for lag in s])


def by_eigendecomposition(W, U, c, s):
    values, vectors = np.linalg.eig(W)
    left, right = c @ vectors, np.linalg.solve(vectors, U)
    return np.real(np.exp(np.outer(s, values)) @ (left * right))


def by_torch(W, U, c, s):
    W, U, c = (torch.as_tensor(a) for a in (W, U, c))
    return torch.stack([c @ torch.linalg.matrix_exp(W * float(lag)) @ U for lag in s])


def transposed_exponent(W, U, c, s):
    return np.array([c @ expm(W.T * lag) @ U for lag in s])


def swapped_c_and_U(W, U, c, s):
    return np.array([U @ expm(W * lag) @ c for lag in s])


def elementwise_exp(W, U, c, s):
    return np.array([c @ np.exp(W * lag) @ U for lag in s])


def euler_powers(W, U, c, s):
    step = np.eye(len(W)) + W * (s[1] - s[0])
    return np.array([c @ np.linalg.matrix_power(step, k) @ U for k in range(len(s))])


def powers_of_one_step(W, U, c, s):
    step = expm(W * (s[1] - s[0]))
    return np.array([c @ np.linalg.matrix_power(step, k) @ U for k in range(len(s))])


def index_for_lag(W, U, c, s):
    return np.array([c @ expm(W * k) @ U for k in range(len(s))])


def negative_exponent(W, U, c, s):
    return np.array([c @ expm(-W * lag) @ U for lag in s])


def lag_outside(W, U, c, s):
    return np.array([c @ expm(W) @ U * lag for lag in s])


def without_U(W, U, c, s):
    return np.array([c @ expm(W * lag) for lag in s])


def without_c(W, U, c, s):
    return np.array([expm(W * lag) @ U for lag in s])


def column(W, U, c, s):
    return memory_kernel(W, U, c, s)[:, None]


def kernel_in_place(W, U, c, s):
    s *= 1.0
    W += 0.0
    U[:] = U / 1.0
    c[0] = c[0] + 1.0  # the only real change
    return memory_kernel(W, U, c, s)


def test_correct_memory_kernel_passes():
    result = check_memory_kernel(memory_kernel)
    assert result and result.cases == 3
    assert str(result) == "✓ ex-ch3-rnn-kernel: memory_kernel passed all 3 checks."


@pytest.mark.parametrize("answer", [by_eigendecomposition, by_torch, lambda W, U, c, s: list(memory_kernel(W, U, c, s))])
def test_other_correct_memory_kernels_pass(answer):
    result = check_memory_kernel(answer)
    assert result.passed, str(result)


def test_the_notebook_kernel_solution_is_the_tested_one():
    from_notebook = solution_function("ch3/02_approximation_and_memory.ipynb", "memory_kernel")
    assert str(check_memory_kernel(from_notebook)) == "✓ ex-ch3-rnn-kernel: memory_kernel passed all 3 checks."


@pytest.mark.parametrize(
    "wrong, case, hint",
    [
        (transposed_exponent, 1, "this is c^T e^{W^T s} U"),
        (swapped_c_and_U, 1, "c and U swapped"),
        (elementwise_exp, 1, "np.exp acts entry by entry"),
        (euler_powers, 1, "forward Euler's approximation"),
        (negative_exponent, 1, "the sign of the exponent"),
        (index_for_lag, 1, "the exponent uses the index k instead of the lag"),
        (powers_of_one_step, 2, "only on a uniform grid"),
        (lag_outside, 1, "the lag belongs inside the exponential"),
        (without_U, 1, "U is missing"),
        (without_c, 1, "the read-out c is missing"),
        (column, 1, "return a 1-D array of shape (n,)"),
        (kernel_in_place, 1, "c was modified in place"),
    ],
)
def test_wrong_memory_kernel_is_caught_with_its_hint(wrong, case, hint):
    result = check_memory_kernel(wrong)
    assert not result and result.failed_case == case
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch3-rnn-kernel: {wrong.__name__} failed check {case} of 3: ")


def test_a_kernel_that_squeezes_one_unit_wrongly_fails_the_third_case():
    """Correct for m > 1, but with one unit it treats the (1, 1) matrix as a number the wrong way."""

    def scalar_shortcut(W, U, c, s):
        if len(W) == 1:
            return np.exp(W[0, 0] * s)  # forgets c and U
        return memory_kernel(W, U, c, s)

    result = check_memory_kernel(scalar_shortcut)
    assert not result and result.failed_case == 3
    assert "ρ(0) = c·U" in result.hint


def test_missing_return_is_reported():
    result = check_memory_kernel(lambda W, U, c, s: None)
    assert not result and "no `return` statement" in result.hint


# --- the framework ----------------------------------------------------------------------------


def test_non_callable_is_a_type_error():
    with pytest.raises(TypeError, match="memory_kernel must be callable"):
        check_memory_kernel(np.eye(2))
    with pytest.raises(TypeError, match="causal_filter must be callable"):
        check_causal_filter("causal_filter")


@pytest.mark.parametrize(
    "checker, label", [(check_memory_kernel, "ex-ch3-rnn-kernel"), (check_causal_filter, "ex-ch3-causal-filter")]
)
def test_stub_raises_not_implemented_with_the_exercise(checker, label):
    def stub(*args):
        raise NotImplementedError(f"Exercise {label}: write the function")

    with pytest.raises(NotImplementedError, match=f"{label}: stub is not written yet"):
        checker(stub)


def test_registry_finds_the_chapter_3_checks():
    assert check("ex-ch3-rnn-kernel", memory_kernel).passed
    assert check("ex-ch3-causal-filter", causal_filter).passed
    assert not check("ex-ch3-rnn-kernel", euler_powers).passed
    assert not check("ex-ch3-causal-filter", anti_causal).passed


# --- ex-ch3-unfolding-ranks (notebook 3.2) ----------------------------------------------------


def unfolding_ranks(rho, K, tol):
    """The solution: digits least significant first, then the SVD of each unfolding."""
    tensor = np.asarray(rho).reshape((2,) * K).transpose(tuple(range(K - 1, -1, -1)))
    ranks = []
    for k in range(1, K):
        singular_values = np.linalg.svd(tensor.reshape(2**k, -1), compute_uv=False)
        ranks.append(int((singular_values > tol * singular_values[0]).sum()))
    return ranks


def _svd_ranks(matrices, threshold):
    return [int((np.linalg.svd(m, compute_uv=False) > threshold(m)).sum()) for m in matrices]


def most_significant_first(rho, K, tol):
    return _svd_ranks([rho.reshape(2**k, -1) for k in range(1, K)], lambda m: tol * np.linalg.norm(m, 2))


def hard_coded_tolerance(rho, K, tol):
    return unfolding_ranks(rho, K, 1e-3)


def absolute_tolerance(rho, K, tol):
    tensor = rho.reshape((2,) * K, order="F")  # also least significant first
    return _svd_ranks([tensor.reshape(2**k, -1) for k in range(1, K)], lambda m: tol)


def exact_ranks(rho, K, tol):
    tensor = rho.reshape((2,) * K, order="F")
    return [int(np.linalg.matrix_rank(tensor.reshape(2**k, -1))) for k in range(1, K)]


def all_cuts(rho, K, tol):
    return [1] + unfolding_ranks(rho, K, tol) + [1]


def test_correct_unfolding_ranks_pass():
    result = check_unfolding_ranks(unfolding_ranks)
    assert result and result.cases == 3
    assert str(result) == "✓ ex-ch3-unfolding-ranks: unfolding_ranks passed all 3 checks."


@pytest.mark.parametrize(
    "answer",
    [lambda rho, K, tol: tensorisation_ranks(rho, K, tol), lambda rho, K, tol: np.array(unfolding_ranks(rho, K, tol))],
)
def test_other_correct_unfolding_ranks_pass(answer):
    result = check_unfolding_ranks(answer)
    assert result.passed, str(result)


def test_the_notebook_ranks_solution_is_the_tested_one():
    from_notebook = solution_function("ch3/02_approximation_and_memory.ipynb", "unfolding_ranks")
    assert str(check_unfolding_ranks(from_notebook)) == "✓ ex-ch3-unfolding-ranks: unfolding_ranks passed all 3 checks."


@pytest.mark.parametrize(
    "wrong, case, hint",
    [
        (most_significant_first, 1, "the digits are in the wrong order"),
        (hard_coded_tolerance, 2, "the tolerance is hard-coded to 1e-3"),
        (absolute_tolerance, 2, "the tolerance is absolute"),
        (exact_ranks, 2, "these are exact ranks"),
        (all_cuts, 1, "the unfoldings at k = 0 and k = K"),
    ],
)
def test_wrong_unfolding_ranks_are_caught_with_their_hint(wrong, case, hint):
    result = check_unfolding_ranks(wrong)
    assert not result and result.failed_case == case
    assert hint in str(result)
    assert str(result).startswith(f"✗ ex-ch3-unfolding-ranks: {wrong.__name__} failed check {case} of 3: ")


def test_unknown_rank_mistake_gets_the_generic_hint():
    result = check_unfolding_ranks(lambda rho, K, tol: [r + 1 for r in unfolding_ranks(rho, K, tol)])
    assert not result and result.failed_case == 1
    assert result.expected == "ranks [2, 2, 1, 1, 1]" and result.got == "ranks [3, 3, 2, 2, 2]"
    assert "reshape the 2 × … × 2 tensor" in result.hint


def test_unfolding_ranks_stub_and_non_callable():
    with pytest.raises(TypeError, match="unfolding_ranks must be callable"):
        check_unfolding_ranks([2, 2, 1])

    def stub(rho, K, tol):
        raise NotImplementedError("Exercise ex-ch3-unfolding-ranks: write unfolding_ranks")

    with pytest.raises(NotImplementedError, match="ex-ch3-unfolding-ranks: stub is not written yet"):
        check_unfolding_ranks(stub)
    assert check("ex-ch3-unfolding-ranks", unfolding_ranks).passed
